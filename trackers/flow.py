"""The ``flow`` tracker: weight-free mask propagation with optical flow and appearance models.

The default when no SAM2 checkpoint is available. Per frame and object, at a reduced working
resolution (long side ``work_size`` pixels):

1. **Flow warping.** Dense DIS optical flow (Kroeger et al., ECCV 2016; OpenCV
   ``DISOpticalFlow``) from the current frame back to the previous one warps the previous soft
   mask onto the current frame (backward warping: every current pixel looks up where it came from).
   The flow is computed on the crop around the tracked objects only, at the finest DIS pyramid
   scale whose cost stays within ``flow_budget`` x that of whole-frame flow at DIS's default
   quarter resolution, so a small object gets flow at full working resolution (small fast objects
   are otherwise left behind).
2. **Forward/backward consistency.** The forward flow is also computed; where following the
   backward flow and then the forward flow does not come back to the start (Sundaram et al.,
   ECCV 2010), the warped value is unreliable and its weight is lowered, leaving the decision to
   the appearance model.
3. **Appearance.** (a) Colour histograms (quantised CIE Lab) of the object and of its background
   give a per-pixel foreground likelihood ratio. The background is half a ring around the object
   and half the whole frame outside it, so a look-alike anywhere in the frame counts as
   background. The model mixes the histograms of the prompt frame (re-anchoring: they never
   drift) with running histograms re-estimated from confidently classified pixels of recent
   frames. (b) A bilateral colour-and-position likelihood: the previous frame's soft mask is
   splatted into an (x, y, Lab) grid (cells ``bilateral_cell`` x the object's size) at the
   positions the forward flow moves it to, and each pixel reads the object share of previous
   pixels of its colour near it (after Märki et al., CVPR 2016), so a similar-coloured neighbour
   next to the object stays background.
   (c) Motion against the background: an affine model of the background's (camera) motion is
   fitted robustly to the flow around the search band; a pixel that moves like the background while
   the object moves distinctly is likely background (a wall, a crowd, a fence the mask has leaked
   onto), one that moves like the object is mildly likely object (motion segmentation in the spirit
   of Papazoglou & Ferrari, ICCV 2013). Leaks onto a static or panning background are what the
   colour terms cannot undo once the warp carries them; this term does. It is silent where the flow
   fails the forward/backward check (a disocclusion behind a moving object gets the object's
   motion from DIS, and would otherwise hold the mask back on the trail the object left).
4. **Fusion.** Flow and appearance are combined in log-odds, inside a search band around the
   warped mask (objects do not teleport); connected components that do not touch the warped mask
   are dropped (holes are kept: ``fill_holes``).
5. **Boundary refinement.** A guided filter (He et al., ECCV 2010) with the frame as guide snaps
   the soft mask to image edges at full resolution before thresholding.

6. **Occlusion.** When the mask shrinks below ``occluded_fraction`` of the object's typical
   (pre-occlusion) area, a constant-velocity motion model keeps the object's last unoccluded box
   moving (the velocity is frozen: a remnant stuck to a static occluder does not move with the
   object). Until ``recover_frames`` frames after the area has recovered, the mask is re-seeded
   from whole connected components of object-coloured pixels (colour log-odds above
   ``redetect_logit``, of plausible size next to the old area) that reach the search band or the
   predicted box, so the part re-emerging from behind the occluder is taken at its full visible
   extent, and mask components that mostly do not look like the object are dropped. An object
   whose mask shrinks below ``absent_fraction`` of its typical area is reported absent (empty
   mask, presence score 0) and is looked for, by appearance, in its predicted box for
   ``redetect_frames`` frames; once that box has left the frame it stays absent until a later
   prompt re-anchors it.

Every step can be switched off (``consistency=False`` ...) for ablations (``bench/track.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from garvideo.errors import InputError
from garvideo.trackers.base import Prompt, Session, Tracker, VideoLike

_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
_BINS = 16  # Lab histogram bins per channel (16^3 = 4096 colours)
_EPS = 1e-4
_KERNEL7 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))


@dataclass(frozen=True)
class FlowOptions:
    """Settings of the flow tracker (defaults are the ones measured in ``bench/track.py``).

    Attributes:
        work_size: long side, in pixels, of the working resolution (flow, fusion, appearance); on
            the ten shared DAVIS-2016 sequences (854x480) 768 is as good as full resolution and
            better than 640 (``bench/track.py --loo work_size=640,768,854``, measured before the
            motion term was added).
        preset: DIS optical-flow preset (``ultrafast``, ``fast``, ``medium``).
        consistency, appearance, refine, redetect, adaptive: switch the forward/backward check, the
            colour models, the guided-filter boundary refinement, the occlusion handling, the
            per-frame weighting of the colour models by their agreement with the flow (off by
            default: it helped only on the sequences it was tuned on, ``bench/track.py``).
        fine_flow: flow on the crop around the objects at the finest affordable scale (else on the
            whole frame at DIS's default quarter resolution).
        flow_budget: cost of that crop flow, in units of whole-frame quarter-resolution flow.
        global_bg: half of the background colour model from the whole frame (else a ring only).
        bilateral: weight of the bilateral colour-and-position log-odds (0: off).
        bilateral_cell: bilateral grid cell, as a fraction of sqrt(object area).
        fill_holes: fill holes in the propagated mask (off by default: the gaps between legs or
            between an arm and the body are real, and filling them carried ground into the mask).
        motion: weight of the motion log-odds (0: off); the log-odds lie in [-2, ``motion_positive``].
        motion_positive: most a pixel moving like the object adds (log-odds). Small: many other
            things move (water, spray, other people), while moving like the background is strong
            evidence (``bench/track.py --loo "motion=0.5,1,1.5;motion_positive=0.25,0.5,0.75"``).
        motion_reliable: no motion evidence where the flow fails the forward/backward check (off:
            for ablations only).
        anchor_weight: share of the prompt frame's colour histograms in the appearance model.
        update_rate: how fast the running histograms follow the recent frames.
        flow_weight, appearance_weight: weights of the warped mask and of the colour log-odds.
        band: search band and background ring width, as a fraction of sqrt(object area).
        refine_radius, refine_eps: guided-filter window radius (full-resolution pixels) and epsilon.
        absent_fraction: below this fraction of its typical area the object is reported absent.
        redetect_logit: colour log-odds a pixel needs to be taken as the object by appearance alone.
        redetect_area: smallest re-detected component, as a fraction of the typical area.
        redetect_frames: how long a lost object is looked for in its predicted box.
        occluded_fraction: below this fraction of its typical area the object is taken as partly
            occluded: its velocity is frozen, components of the mask that do not look like the
            object are dropped, and it is re-seeded and grown by appearance.
        recover_frames: how many frames after the area recovers the re-seeding and growing go on.
    """

    work_size: int = 768
    preset: str = "ultrafast"
    consistency: bool = True
    appearance: bool = True
    refine: bool = True
    anchor_weight: float = 0.5
    update_rate: float = 0.3
    flow_weight: float = 1.0
    appearance_weight: float = 0.3
    band: float = 0.15
    refine_radius: int = 4
    refine_eps: float = 1e-3
    absent_fraction: float = 0.02
    redetect: bool = True
    redetect_logit: float = 1.0
    redetect_area: float = 0.05
    redetect_frames: int = 60
    occluded_fraction: float = 0.7
    recover_frames: int = 8
    adaptive: bool = False
    fine_flow: bool = True
    flow_budget: float = 2.0
    global_bg: bool = True
    bilateral: float = 0.5
    bilateral_cell: float = 0.125
    fill_holes: bool = False
    motion: float = 1.0
    motion_positive: float = 0.5
    motion_reliable: bool = True

    def __post_init__(self) -> None:
        if self.preset not in _PRESETS:
            raise InputError("preset", f"must be one of {', '.join(_PRESETS)}, got {self.preset!r}")
        if self.work_size < 32:
            raise InputError("work_size", f"must be at least 32, got {self.work_size}")


def _quantise_lab(rgb_small: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(h, w, 3) uint8 RGB -> (h, w) int32 histogram bin index in quantised Lab (16 bins a
    channel) and (h, w) int32 bilateral-grid colour index (8 bins a channel)."""
    lab = cv2.cvtColor(rgb_small, cv2.COLOR_RGB2LAB)
    l, a, b = cv2.split(lab >> 4)  # 256 / 16 = 16 bins per channel
    bins = (l.astype(np.uint16) << 8 | a.astype(np.uint16) << 4 | b).astype(np.int32)  # (l*16+a)*16+b
    l, a, b = l >> 1, a >> 1, b >> 1  # 8 bins per channel
    return bins, (l.astype(np.uint16) << 6 | a.astype(np.uint16) << 3 | b).astype(np.int32)


def _count(bins: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """(4096,) int64 pixel count of each colour bin (over the bool mask, if given)."""
    return np.bincount((bins if mask is None else bins[mask]).ravel(), minlength=_BINS**3)


def _hist(counts: np.ndarray) -> np.ndarray:
    """Pixel counts -> (4096,) float32 normalised histogram."""
    h = counts.astype(np.float32)
    s = h.sum()
    return h / s if s > 0 else h


def _distance(mask: np.ndarray, reach: float) -> np.ndarray:
    """(h, w) float32 Euclidean distance of every pixel to the nearest pixel of the bool mask, exact
    up to ``reach`` (farther pixels: inf).

    ``_distance(m, r) <= r`` is ``m`` dilated by a disc of radius r, at a cost that does not grow with
    r (a dilation with a large elliptical kernel dominated the tracker's time at full resolution).
    It is computed on the mask's box widened by ``reach``: the whole mask lies in it, so the
    distances there are the same as on the whole frame.
    """
    out = np.full(mask.shape, np.inf, np.float32)
    crop = _distance_crop(mask, reach)
    if crop is not None:
        out[crop[1]] = crop[0]
    return out


def _distance_crop(mask: np.ndarray, reach: float) -> tuple[np.ndarray, tuple[slice, slice]] | None:
    """``_distance`` on the mask's box widened by ``reach`` only: (distances there, the box's
    slices); outside the box every distance exceeds ``reach``. None for an empty mask."""
    box = _bbox(mask)
    if box is None:
        return None
    m = int(np.ceil(reach)) + 1
    x0, y0 = max(0, int(box[0]) - m), max(0, int(box[1]) - m)
    x1, y1 = min(mask.shape[1], int(box[2]) + m), min(mask.shape[0], int(box[3]) + m)
    crop = (~mask[y0:y1, x0:x1]).astype(np.uint8)
    return cv2.distanceTransform(crop, cv2.DIST_L2, cv2.DIST_MASK_PRECISE), np.s_[y0:y1, x0:x1]


def _guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Grey-guide guided filter (He et al., ECCV 2010), box filters from OpenCV; float32 in [0, 1]."""
    k = (2 * radius + 1, 2 * radius + 1)

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, k, borderType=cv2.BORDER_REFLECT)

    mean_i = box(guide)
    mean_p = box(src)
    cov_ip = box(guide * src) - mean_i * mean_p
    var_i = box(guide * guide) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box(a) * guide + box(b)


def _robust_affine(
    x: np.ndarray, y: np.ndarray, uv: np.ndarray, rounds: int = 10
) -> tuple[np.ndarray, float]:
    """Affine motion model fitted robustly to flow samples.

    Args:
        x, y: (n,) float32 pixel coordinates of the samples.
        uv: (n, 2) float32 flow at the samples.
        rounds: iteratively reweighted least-squares rounds (Cauchy weights; with 30 % outliers
            moving 8 px otherwise, 5 rounds leave a 0.3 px bias and 10 converge).

    Returns:
        ``(A, scale)``: A (3, 2) with ``[1, x, y] @ A`` the model's flow, and the robust scale (pixels,
        at least 0.3) of the residuals, 1.4826 x their median (the standard deviation for Gaussian
        noise; outliers such as another moving object do not inflate it).
    """
    X = np.stack([np.ones_like(x), x, y], 1).astype(np.float64)  # (n, 3)
    uv = uv.astype(np.float64)
    A = np.zeros((3, 2))
    A[0] = np.median(uv, axis=0)  # start from the median translation: robust to up to half outliers
    for _ in range(rounds):
        r = np.linalg.norm(uv - X @ A, axis=1)
        scale = max(0.3, 1.4826 * float(np.median(r)))
        w = 1.0 / (1.0 + (r / (2.0 * scale)) ** 2)
        Xw = X * w[:, None]
        # Weighted least squares by the normal equations (3 x 3): the samples are few and well spread.
        A_new = np.linalg.solve(Xw.T @ X + 1e-9 * np.eye(3), Xw.T @ uv)
        done = np.abs(A_new - A).max() < 1e-4
        A = A_new
        if done:
            break
    r = np.linalg.norm(uv - X @ A, axis=1)
    return A, max(0.3, 1.4826 * float(np.median(r)))


def _motion_logodds(r: np.ndarray, scale: float, m_obj: float, positive: float) -> np.ndarray:
    """Log-odds that a pixel is the object, from how far its flow departs from the background's.

    Args:
        r: residuals (pixels): distance of each pixel's flow from the background model's.
        scale: the background residuals' robust scale (noise).
        m_obj: the object's median residual (its own motion); at least ``2 * scale + 0.5``.
        positive: the most a pixel moving like the object adds.

    Returns:
        float32, same shape as ``r``: -2 at r = 0, rising linearly to 0 at the midpoint
        ``tau = (m_obj + scale) / 2``, then ``positive`` at r = m_obj, falling back to 0 at
        r = 2 m_obj (much faster than the object: spray, another object, a flow error).
    """
    tau = 0.5 * (m_obj + scale)
    neg = np.clip(2.0 * (r / tau - 1.0), -2.0, 0.0)
    rise = np.clip((r - tau) / max(m_obj - tau, 1e-3), 0.0, 1.0)
    fall = np.clip(2.0 - r / m_obj, 0.0, 1.0)
    return (neg + positive * np.minimum(rise, fall)).astype(np.float32)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill background regions not connected to the image border."""
    n, labels = cv2.connectedComponents((~mask).astype(np.uint8), connectivity=4)
    if n <= 2:  # label 0 is the mask itself; one background component touches the border
        return mask
    hole = np.ones(n, dtype=bool)
    hole[0] = False
    hole[np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))] = False
    return mask | hole[labels]


class _Object:
    def __init__(self, prob: np.ndarray, area0: float, anchor_fg: np.ndarray, anchor_bg: np.ndarray) -> None:
        self.prob = prob  # (h, w) float32 soft mask on the previous frame, working resolution
        self.area0 = area0  # prompt area at working resolution
        self.anchor_fg = anchor_fg
        self.anchor_bg = anchor_bg
        self.run_fg = anchor_fg.copy()
        self.run_bg = anchor_bg.copy()
        self.absent = False
        # Motion model for re-detection after occlusion (working-resolution pixels).
        self.area_ref = area0  # typical unoccluded area
        self.box = _bbox(prob > 0.5)  # (x0, y0, x1, y1) of the last unoccluded mask
        self.vel = np.zeros(2, np.float32)  # mean motion per frame (dx, dy)
        self.lost_for = 0  # frames since the object was lost
        self.recover = 0  # frames left of re-seeding/growing after a (partial) occlusion


def _bbox(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    x, y, w, h = cv2.boundingRect(mask.astype(np.uint8))
    if w == 0 or h == 0:
        return None
    return float(x), float(y), float(x + w), float(y + h)


class _FlowSession:
    def __init__(self, opts: FlowOptions, height: int, width: int) -> None:
        self.o = opts
        self.h, self.w = height, width
        scale = min(1.0, opts.work_size / max(height, width))
        self.sw, self.sh = max(8, round(width * scale)), max(8, round(height * scale))
        # One DIS instance per finest pyramid scale (0: full working resolution, 2: a quarter).
        self.dis = {}
        for scale in range(3):
            d = cv2.DISOpticalFlow_create(_PRESETS[opts.preset])
            d.setFinestScale(scale)
            self.dis[scale] = d
        self.prev_gray: np.ndarray | None = None
        self.flow_box: tuple[int, int, int, int] | None = None  # (x0, y0, x1, y1) where flow_b is set
        self.prev_col8: np.ndarray | None = None  # previous frame's bilateral colour index
        self.objects: dict[int, _Object] = {}
        gy, gx = np.mgrid[0 : self.sh, 0 : self.sw].astype(np.float32)
        self.grid_x, self.grid_y = gx, gy

    # -- helpers -------------------------------------------------------------------------------
    def _small(self, x: np.ndarray, interp: int = cv2.INTER_AREA) -> np.ndarray:
        if (self.sh, self.sw) == x.shape[:2]:
            return x
        return cv2.resize(x, (self.sw, self.sh), interpolation=interp)

    def _models(self, bins: np.ndarray, prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Object and background colour histograms.

        Counted on the mask's neighbourhood only: the ring is (distance <= 2 size) minus
        (distance <= inner), the far background the whole frame minus (distance <= inner)."""
        fg = prob > 0.5
        size = max(2, int(np.sqrt(max(np.count_nonzero(fg), 1)) * self.o.band))
        crop = _distance_crop(fg, 2 * size)
        inner = max(1, size // 3)
        zero = np.zeros(_BINS**3, np.int64)
        if crop is None:
            n_fg = n_near = n_inner = zero
        else:
            dist, sl = crop
            b = bins[sl]
            n_fg, n_near, n_inner = _count(b, fg[sl]), _count(b, dist <= 2 * size), _count(b, dist <= inner)
        h_fg, h_bg = _hist(n_fg), _hist(n_near - n_inner)
        if self.o.global_bg:
            # Everything outside the object's neighbourhood: a look-alike anywhere in the frame (a
            # second animal, a crowd, a fence) makes its colours background, not only a ring.
            h_bg = 0.5 * h_bg + 0.5 * _hist(_count(bins) - n_inner)
        return h_fg, h_bg

    def _anchor(self, p: Prompt, bins: np.ndarray | None) -> _Object:
        m = self._small(np.asarray(p.mask).astype(np.float32), cv2.INTER_AREA)
        if bins is None:
            fg = bg = np.zeros(_BINS**3, np.float32)
        else:
            fg, bg = self._models(bins, m)
        return _Object(m.astype(np.float32), float(np.count_nonzero(m > 0.5)), fg, bg)

    def _flow(self, gray: np.ndarray, objects: list[_Object]) -> tuple[np.ndarray, np.ndarray | None]:
        """Backward (current -> previous) and forward (h, w, 2) flow, fine where the objects are.

        Flow is only needed near the tracked objects (the search band; the re-detection of a lost
        object uses colour alone), so it is computed on the crop around them: the objects' boxes
        widened by half their size plus twice their last motion. The finest DIS pyramid scale is
        then the finest one whose cost stays within that of whole-frame flow at a quarter of the
        working resolution (DIS's default): crop area / 4**scale <= frame area / 16 * ``flow_budget``.
        A small object thus gets flow at full working resolution (DIS at a quarter resolution moves
        a patch of 32 working pixels as one, which drags a small fast object's mask behind it).
        Outside the crop the flow is zero.
        """
        o = self.o
        x0, y0, x1, y1 = self.sw, self.sh, 0, 0
        for ob in objects:
            box = _bbox(ob.prob > 0.5) if not ob.absent else None
            if box is None:
                continue
            bx0, by0, bx1, by1 = box
            m = 0.5 * max(bx1 - bx0, by1 - by0) + 2 * float(np.abs(ob.vel).max()) + 16
            x0, y0 = min(x0, int(bx0 - m)), min(y0, int(by0 - m))
            x1, y1 = max(x1, int(bx1 + m)), max(y1, int(by1 + m))
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(self.sw, x1), min(self.sh, y1)
        if not o.fine_flow:  # whole frame at DIS's default finest scale (a quarter resolution)
            x0, y0, x1, y1 = 0, 0, self.sw, self.sh
        flow_b = np.zeros((self.sh, self.sw, 2), np.float32)
        flow_f = np.zeros_like(flow_b) if o.consistency else None
        self.flow_box = None
        if x1 - x0 < 16 or y1 - y0 < 16:
            return flow_b, flow_f
        self.flow_box = (x0, y0, x1, y1)
        assert self.prev_gray is not None
        area = (x1 - x0) * (y1 - y0)
        budget = self.sw * self.sh / 16 * o.flow_budget
        scale = next((s for s in range(3) if area / 4**s <= budget), 2) if o.fine_flow else 2
        cur = np.ascontiguousarray(gray[y0:y1, x0:x1])
        prev = np.ascontiguousarray(self.prev_gray[y0:y1, x0:x1])
        flow_b[y0:y1, x0:x1] = self.dis[scale].calc(cur, prev, None)
        if flow_f is not None:
            flow_f[y0:y1, x0:x1] = self.dis[scale].calc(prev, cur, None)
        return flow_b, flow_f

    # -- one frame -----------------------------------------------------------------------------
    def step(
        self, frame_idx: int, image: np.ndarray, prompts: Sequence[Prompt]
    ) -> dict[int, tuple[np.ndarray, float]]:
        o = self.o
        small = self._small(image)
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        bins, col8 = _quantise_lab(small) if o.appearance else (None, None)
        prompted = {p.obj_id for p in prompts}
        flow_b = flow_f = None
        if self.prev_gray is not None and any(k not in prompted for k in self.objects):
            flow_b, flow_f = self._flow(gray, [ob for k, ob in self.objects.items() if k not in prompted])
        self.prev_gray = gray
        prev_col8, self.prev_col8 = self.prev_col8, col8
        guide = image if o.refine else None  # the grey guide is made on the refined crop only

        out: dict[int, tuple[np.ndarray, float]] = {}
        for p in prompts:
            self.objects[p.obj_id] = self._anchor(p, bins)
            out[p.obj_id] = (np.asarray(p.mask).astype(bool), 1.0)
        if flow_b is None:
            for oid, ob in self.objects.items():
                if oid not in out:
                    out[oid] = (
                        (np.zeros((self.h, self.w), bool), 0.0)
                        if ob.absent
                        else (self._full(ob.prob, guide), 1.0)
                    )
            return out

        map_x = self.grid_x + flow_b[..., 0]
        map_y = self.grid_y + flow_b[..., 1]
        col_lut = None
        for oid, ob in self.objects.items():
            if oid in out:
                continue
            if bins is not None:
                fg = o.anchor_weight * ob.anchor_fg + (1 - o.anchor_weight) * ob.run_fg
                bg = o.anchor_weight * ob.anchor_bg + (1 - o.anchor_weight) * ob.run_bg
                col_lut = np.log((fg + _EPS) / (bg + _EPS)).astype(np.float32)
            if ob.absent:
                prob = self._redetect(ob, bins, col_lut) if o.redetect else None
                if prob is None:
                    out[oid] = (np.zeros((self.h, self.w), bool), 0.0)
                    continue
                ob.absent = False
                ob.lost_for = 0
            else:
                prob = self._propagate(ob, flow_b, flow_f, (map_x, map_y), bins, col_lut, col8, prev_col8)
            fgm = prob > 0.5
            area = float(np.count_nonzero(fgm))
            if area < o.absent_fraction * ob.area_ref:
                ob.absent = True
                ob.lost_for = 0
                out[oid] = (np.zeros((self.h, self.w), bool), 0.0)
                continue
            self._update_motion(ob, fgm, flow_b, area)
            ob.prob = prob
            score = float(min(1.0, area / max(1.0, 0.1 * ob.area_ref)))
            out[oid] = (self._full(prob, guide), max(score, 0.51))
        return out

    # -- per object ----------------------------------------------------------------------------
    def _predicted_box(self, ob: _Object) -> np.ndarray | None:
        """Bool mask of the box where the object should be by now (last unoccluded box moved by
        its velocity), or None when that box has left the frame."""
        if ob.box is None:
            return None
        x0, y0, x1, y1 = ob.box
        m = self.o.band * max(x1 - x0, y1 - y0)
        xa, ya = int(max(0, x0 - m)), int(max(0, y0 - m))
        xb, yb = int(min(self.sw, x1 + m)), int(min(self.sh, y1 + m))
        if xb <= xa or yb <= ya:
            return None
        box = np.zeros((self.sh, self.sw), bool)
        box[ya:yb, xa:xb] = True
        return box

    def _update_motion(self, ob: _Object, fgm: np.ndarray, flow_b: np.ndarray, area: float) -> None:
        unoccluded = area >= self.o.occluded_fraction * ob.area_ref
        # Object motion this frame: minus the mean backward flow over the mask. Frozen while the
        # object is partly hidden (constant velocity): the visible remnant next to a static
        # occluder moves with the occluder, not with the object.
        box = _bbox(fgm)
        if box is not None and unoccluded:
            sl = np.s_[int(box[1]) : int(box[3]), int(box[0]) : int(box[2])]
            v = -flow_b[sl][fgm[sl]].mean(axis=0)
            ob.vel = 0.5 * ob.vel + 0.5 * v.astype(np.float32)
        ob.recover = max(0, ob.recover - 1) if unoccluded else self.o.recover_frames
        if unoccluded:  # trust the mask's own box and area
            ob.box = box
            ob.area_ref = 0.8 * ob.area_ref + 0.2 * area
        elif ob.box is not None:  # partly occluded: the box keeps moving with the object
            ob.box = (
                ob.box[0] + ob.vel[0],
                ob.box[1] + ob.vel[1],
                ob.box[2] + ob.vel[0],
                ob.box[3] + ob.vel[1],
            )

    def _redetect(
        self, ob: _Object, bins: np.ndarray | None, col_lut: np.ndarray | None
    ) -> np.ndarray | None:
        """Look for a lost object in its predicted box by appearance alone."""
        o = self.o
        if ob.box is not None:
            ob.box = (
                ob.box[0] + ob.vel[0],
                ob.box[1] + ob.vel[1],
                ob.box[2] + ob.vel[0],
                ob.box[3] + ob.vel[1],
            )
        ob.lost_for += 1
        if bins is None or col_lut is None or ob.lost_for > o.redetect_frames:
            return None
        box = self._predicted_box(ob)
        if box is None:
            return None
        col = np.clip(col_lut[bins], -4, 4)
        cand = box & (col > o.redetect_logit)
        _, labels, stats, _ = cv2.connectedComponentsWithStats(cand.astype(np.uint8), connectivity=8)
        big = stats[:, cv2.CC_STAT_AREA] >= o.redetect_area * ob.area_ref
        big[0] = False
        if not big.any():
            return None
        keep = _fill_holes(big[labels])
        return np.where(keep, 0.9, 0.0).astype(np.float32)

    def _motion(
        self, flow_b: np.ndarray, core: np.ndarray, near: np.ndarray, sl: tuple[slice, slice]
    ) -> np.ndarray | None:
        """(band-box) motion log-odds (:func:`_motion_logodds`), or None when it says nothing.

        The background model is fitted to the flow crop outside the search band ``near`` (every 4th
        pixel each way: an affine fit needs few samples); the object's own motion is the median residual
        over the warped core. None when the crop is too small, or when the object does not move
        distinctly from the background (median residual below twice the noise + 0.5 px: a static
        object under a static camera, an object the camera follows exactly over a textureless
        background), where the residuals carry no information.
        """
        if self.flow_box is None:
            return None
        x0, y0, x1, y1 = self.flow_box
        sub = np.s_[y0:y1:4, x0:x1:4]
        gx, gy, fb = self.grid_x[sub], self.grid_y[sub], flow_b[sub]
        bg, obj = ~near[sub], core[sub]
        if np.count_nonzero(bg) < 50 or np.count_nonzero(obj) < 10:
            return None
        A, scale = _robust_affine(gx[bg], gy[bg], fb[bg])
        m_obj = float(np.median(np.linalg.norm(fb[obj] - self._affine_flow(A, gx[obj], gy[obj]), axis=-1)))
        if m_obj < 2.0 * scale + 0.5:
            return None
        r = np.linalg.norm(flow_b[sl] - self._affine_flow(A, self.grid_x[sl], self.grid_y[sl]), axis=-1)
        return _motion_logodds(r, scale, m_obj, self.o.motion_positive)

    @staticmethod
    def _affine_flow(A: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The affine model's flow (..., 2) at coordinates x, y (same shape)."""
        return np.stack([A[0, 0] + A[1, 0] * x + A[2, 0] * y, A[0, 1] + A[1, 1] * x + A[2, 1] * y], -1)

    def _bilateral(
        self,
        ob: _Object,
        warped: np.ndarray,
        col8: np.ndarray,
        prev_col8: np.ndarray,
        flow_f: np.ndarray | None,
    ) -> np.ndarray:
        """(h, w) log-odds that a pixel is the object given its colour AND position.

        The previous frame's soft mask is splatted into a bilateral grid (x, y, Lab; Märki et al.,
        CVPR 2016) at the positions the forward flow moves each pixel to, the grid is blurred over
        neighbouring cells, and each current pixel reads back the object share of previous pixels of
        its colour near it. Unlike a colour histogram, a look-alike next to the object (a second
        animal, a fence) is background because its own pixels were background a frame ago. Cells
        are ``bilateral_cell`` x sqrt(object area) wide; colours are quantised to 8 bins a channel.
        """
        h, w = warped.shape
        c = max(3.0, self.o.bilateral_cell * float(np.sqrt(max(ob.area_ref, 1.0))))
        core = warped > 0.5
        box = _bbox(core | (ob.prob > 0.5))
        out = np.zeros((h, w), np.float32)
        if box is None:
            return out
        pad = 2 * c + self.o.band * np.sqrt(max(ob.area_ref, 1.0))
        x0, y0 = int(max(0, box[0] - pad)), int(max(0, box[1] - pad))
        x1, y1 = int(min(w, box[2] + pad)), int(min(h, box[3] + pad))
        gw, gh = int((x1 - x0) / c) + 2, int((y1 - y0) / c) + 2

        px = self.grid_x[y0:y1, x0:x1]
        py = self.grid_y[y0:y1, x0:x1]
        if flow_f is not None:
            px = px + flow_f[y0:y1, x0:x1, 0]
            py = py + flow_f[y0:y1, x0:x1, 1]
        cx = np.clip(np.rint((px - x0) / c), 0, gw - 1).astype(np.int64)
        cy = np.clip(np.rint((py - y0) / c), 0, gh - 1).astype(np.int64)
        idx = (cy * gw + cx) * 512 + prev_col8[y0:y1, x0:x1]
        n = gh * gw * 512
        fg = np.bincount(idx.ravel(), weights=ob.prob[y0:y1, x0:x1].ravel(), minlength=n)
        tot = np.bincount(idx.ravel(), minlength=n)  # int64: exact counts, blurred exactly

        def blur(g: np.ndarray) -> np.ndarray:  # [1, 2, 1] over both spatial axes, zero outside
            g = g.reshape(gh, gw, 512)
            r = 2 * g
            r[1:] += g[:-1]
            r[:-1] += g[1:]
            out = 2 * r
            out[:, 1:] += r[:, :-1]
            out[:, :-1] += r[:, 1:]
            return out

        fg, tot = blur(fg), blur(tot)
        # Grid cell of each current pixel: one per column and one per row.
        qx = np.clip(np.rint((self.grid_x[0, x0:x1] - x0) / c), 0, gw - 1).astype(np.int64)
        qy = np.clip(np.rint((self.grid_y[y0:y1, 0] - y0) / c), 0, gh - 1).astype(np.int64)
        q = (qy[:, None] * gw + qx[None, :]) * 512 + col8[y0:y1, x0:x1]
        f = fg.ravel()[q]
        t = tot.ravel()[q]
        # A pseudo-count of one pixel each way: unseen colours are neutral (log-odds 0).
        out[y0:y1, x0:x1] = np.clip(np.log((f + 1.0) / (t - f + 1.0)).astype(np.float32), -4, 4)
        return out  # 0 outside the box

    def _propagate(
        self,
        ob: _Object,
        flow_b: np.ndarray,
        flow_f: np.ndarray | None,
        maps: tuple[np.ndarray, np.ndarray],
        bins: np.ndarray | None,
        col_lut: np.ndarray | None,
        col8: np.ndarray | None = None,
        prev_col8: np.ndarray | None = None,
    ) -> np.ndarray:
        """Warp the object's previous soft mask and fuse it with the appearance model."""
        o = self.o
        map_x, map_y = maps  # grid + backward flow
        warped = cv2.remap(
            ob.prob, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
        )
        if flow_f is None and bins is None:
            return warped  # plain backward warping
        # Search band: pixels near the warped mask only (objects do not teleport). The fusion is
        # computed on the band's bounding box only (the probability is 0 outside it).
        core = warped > 0.5
        size = max(2, int(np.sqrt(max(np.count_nonzero(core), 1)) * o.band))
        near = np.zeros(core.shape, bool)
        dist = _distance_crop(core, size)
        band_box = None
        if dist is not None:
            near[dist[1]] = dist[0] <= size
            band_box = _bbox(near[dist[1]])
            if band_box is not None:  # crop -> frame coordinates
                ox, oy = dist[1][1].start, dist[1][0].start
                band_box = (band_box[0] + ox, band_box[1] + oy, band_box[2] + ox, band_box[3] + oy)
        has_col = bins is not None and col_lut is not None
        occluded = (
            o.redetect
            and has_col
            and (np.count_nonzero(core) < o.occluded_fraction * ob.area_ref or ob.recover > 0)
        )
        col = None  # (h, w) colour log-odds, on the whole frame only when needed
        if has_col and (occluded or o.adaptive):
            col = np.clip(col_lut[bins], -4, 4)
        prob = np.zeros_like(warped)
        if band_box is not None:
            bx0, by0, bx1, by1 = (int(v) for v in band_box)
            sl = np.s_[by0:by1, bx0:bx1]
            if flow_f is not None:
                # Forward flow sampled where the backward flow points; consistent when they cancel.
                mx, my = map_x[sl], map_y[sl]
                fx = cv2.remap(flow_f[..., 0], mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                fy = cv2.remap(flow_f[..., 1], mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                fb = flow_b[sl]
                err = (fx + fb[..., 0]) ** 2 + (fy + fb[..., 1]) ** 2
                reliable = err <= 0.01 * (fb[..., 0] ** 2 + fb[..., 1] ** 2) + 0.5
                w_flow = np.where(reliable, o.flow_weight, 0.25 * o.flow_weight).astype(np.float32)
            else:
                reliable = None
                w_flow = np.float32(o.flow_weight)
            wp = np.clip(warped[sl], 0.02, 0.98)
            logit = w_flow * np.log(wp / (1 - wp))
            if has_col:
                assert bins is not None and col_lut is not None
                w_app = o.appearance_weight
                if o.adaptive:
                    # Trust the colours as much as they agree with the flow where the flow is sure.
                    sure_fg = warped > 0.9
                    sure_bg = (warped < 0.1) & (
                        cv2.dilate(sure_fg.astype(np.uint8), _KERNEL7, iterations=2) > 0
                    )
                    if col is not None and sure_fg.any() and sure_bg.any():
                        acc = 0.5 * ((col[sure_fg] > 0).mean() + (col[sure_bg] < 0).mean())
                        w_app *= float(np.clip((acc - 0.6) / 0.3, 0.0, 1.5))
                col_sl = col[sl] if col is not None else np.clip(col_lut[bins[sl]], -4, 4)
                logit = logit + w_app * col_sl
            if o.motion > 0:
                mot = self._motion(flow_b, core, near, sl)
                if mot is not None:
                    if reliable is not None and o.motion_reliable:
                        # No motion evidence where the flow fails its forward/backward check
                        # (disocclusions: DIS fills them with the neighbouring object's motion).
                        mot = np.where(reliable, mot, 0.0)
                    logit = logit + o.motion * mot
            if o.bilateral > 0 and col8 is not None and prev_col8 is not None:
                logit = logit + o.bilateral * self._bilateral(ob, warped, col8, prev_col8, flow_f)[sl]
            prob[sl] = np.where(near[sl], 1.0 / (1.0 + np.exp(-logit)), 0.0)
        # Partly occluded (or just re-emerged): the part coming out from behind the occluder is not
        # in the warped mask. Re-seed from the object-coloured connected components (colour
        # log-odds above redetect_logit) that reach the search band or the box predicted by the
        # constant-velocity model, of plausible size (redetect_area .. 1.5 x the area before the
        # occlusion); each is taken whole, so the mask grows to the full visible extent.
        seed = None
        if occluded:
            assert col is not None
            region = near
            box = self._predicted_box(ob)
            if box is not None:
                region = region | box
            cand = (col > o.redetect_logit).astype(np.uint8)
            nc, clab, cst, _ = cv2.connectedComponentsWithStats(cand, connectivity=8)
            area_c = cst[:, cv2.CC_STAT_AREA]
            ok = np.bincount(clab[region], minlength=nc) > 0
            ok &= (area_c >= o.redetect_area * ob.area_ref) & (area_c <= 1.5 * ob.area_ref)
            ok[0] = False
            seed = ok[clab]
            prob = np.where(seed, np.maximum(prob, 0.6), prob).astype(np.float32)
        fgm = prob > 0.5
        # Keep components that overlap the warped core or a re-seeded component; when occluded,
        # only those that look like the object (a remnant stuck to a static occluder does not).
        n, labels, stats, _ = cv2.connectedComponentsWithStats(fgm.astype(np.uint8), connectivity=8)
        if n > 2 or (occluded and n > 1):
            hit = np.bincount(labels[core], minlength=n) > 0
            if seed is not None and col is not None:
                hit |= np.bincount(labels[seed], minlength=n) > 0
                like = np.bincount(labels.ravel(), weights=(col > 0).ravel().astype(np.float32), minlength=n)
                hit &= like >= 0.5 * np.maximum(stats[:, cv2.CC_STAT_AREA], 1)
            hit[0] = False
            keep = hit[labels]
            prob = np.where(keep, prob, np.minimum(prob, 0.49)).astype(np.float32)
            fgm = keep
        if o.fill_holes:
            filled = _fill_holes(fgm)
            prob = np.where(filled & ~fgm, 0.51, prob).astype(np.float32)
            fgm = filled
        if bins is not None and fgm.any():
            conf_fg = fgm & (prob > 0.8)
            if np.count_nonzero(conf_fg) > 16:
                nfg, nbg = self._models(bins, conf_fg.astype(np.float32))
                r = o.update_rate
                ob.run_fg = (1 - r) * ob.run_fg + r * nfg
                ob.run_bg = (1 - r) * ob.run_bg + r * nbg
        return prob

    def _full(self, prob: np.ndarray, guide: np.ndarray | None) -> np.ndarray:
        """Working-resolution soft mask -> full-resolution bool mask (boundary refined with the
        (H, W, 3) uint8 RGB frame ``guide``)."""
        up = cv2.resize(prob, (self.w, self.h), interpolation=cv2.INTER_LINEAR)
        if guide is None:
            return up > 0.5
        # Refine only in a band around the boundary; elsewhere the decision is clear.
        box = _bbox(up > 0.02)
        if box is None:
            return up > 0.5
        r = 2 * self.o.refine_radius + 2
        y0, y1 = max(0, int(box[1]) - r), min(self.h, int(box[3]) + r)
        x0, x1 = max(0, int(box[0]) - r), min(self.w, int(box[2]) + r)
        crop = up[y0:y1, x0:x1]
        grey = cv2.cvtColor(guide[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY).astype(np.float32) * (1.0 / 255.0)
        ref = _guided_filter(grey, crop, self.o.refine_radius, self.o.refine_eps)
        out = np.zeros((self.h, self.w), dtype=bool)
        out[y0:y1, x0:x1] = ref > 0.5
        return out

    def close(self) -> None:
        self.objects.clear()
        self.prev_gray = None


def parse_flow_options(items: Sequence[str]) -> dict[str, object]:
    """``["work_size=640", "motion=0", "refine=false"]`` -> ``{"work_size": 640, "motion": 0.0, "refine": False}``.

    Each item is ``KEY=VALUE`` with KEY a :class:`FlowOptions` field; VALUE is read as that field's type
    (bool: true/false, yes/no, on/off, 1/0).

    Raises:
        InputError: (named ``--flow-option``) an item without ``=``, an unknown key, or a value of the
            wrong type.
    """
    defaults = FlowOptions()
    fields = [f.name for f in dataclasses.fields(FlowOptions)]
    out: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key or not raw:
            raise InputError("--flow-option", f"expected KEY=VALUE, got {item!r}")
        if key not in fields:
            raise InputError("--flow-option", f"unknown flow option {key!r} (options: {', '.join(fields)})")
        kind = type(getattr(defaults, key))
        try:
            if kind is bool:
                low = raw.lower()
                if low not in ("true", "false", "yes", "no", "on", "off", "1", "0"):
                    raise ValueError(raw)
                out[key] = low in ("true", "yes", "on", "1")
            else:
                out[key] = kind(raw)
        except ValueError:
            raise InputError("--flow-option", f"{key} takes a {kind.__name__}, got {raw!r}") from None
    FlowOptions(**out)  # type: ignore[arg-type]  # the value checks, now rather than at tracking time
    return out


class FlowTracker(Tracker):
    """Weight-free tracker: DIS optical flow + colour appearance models + guided-filter refinement.

    Args:
        work_size: long side, in pixels, of the working resolution (flow and fusion).
        preset: DIS preset, ``"ultrafast"``, ``"fast"`` or ``"medium"``.
        consistency, appearance, refine: switch the forward/backward check, the colour models and
            the boundary refinement (for ablations).
        threads: OpenCV thread count (``None``: OpenCV's default).
        **options: any other :class:`FlowOptions` field.
    """

    name = "flow"
    thread_library = "opencv"

    def __init__(self, threads: int | None = None, **options: object) -> None:
        unknown = set(options) - set(FlowOptions.__dataclass_fields__)
        if unknown:
            raise InputError("flow tracker options", f"unknown option(s): {', '.join(sorted(unknown))}")
        self.options = FlowOptions(**options)  # type: ignore[arg-type]
        if threads is not None:
            if threads < 1:
                raise InputError("threads", f"must be at least 1, got {threads}")
            self.threads = int(threads)

    def _open_session(self, video: VideoLike, direction: str, order: Sequence[int]) -> Session:
        return _FlowSession(self.options, int(video.height), int(video.width))

    def describe(self) -> dict[str, object]:
        return dict(dataclasses.asdict(self.options))
