"""The flow tracker's propagation pass (:class:`FlowSession`): per frame, flow warping, the appearance and
motion terms, fusion, occlusion handling and boundary refinement, as :mod:`garvideo.trackers.flow` describes.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from garvideo.trackers.flow.appearance import BINS, bilateral_logodds, colour_lut, colour_models, quantise_lab
from garvideo.trackers.flow.geometry import bbox, distance_crop, fill_holes, guided_filter
from garvideo.trackers.flow.motion import background_motion
from garvideo.trackers.flow.options import FlowOptions
from garvideo.trackers.types import Prompt

#: OpenCV's DIS preset for each :data:`~garvideo.trackers.flow.options.PRESETS` name.
_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
KERNEL7 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))


class TrackedObject:
    """One object's state in a :class:`FlowSession` (working resolution)."""

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
        self.box = bbox(prob > 0.5)  # (x0, y0, x1, y1) of the last unoccluded mask
        self.vel = np.zeros(2, np.float32)  # mean motion per frame (dx, dy)
        self.lost_for = 0  # frames since the object was lost
        self.recover = 0  # frames left of re-seeding/growing after a (partial) occlusion


class FlowSession:
    """One propagation pass of the flow tracker: fed the frames in order, returns each object's mask."""

    def __init__(self, opts: FlowOptions, height: int, width: int) -> None:
        self.o = opts
        self.h, self.w = height, width
        scale = min(1.0, opts.work_size / max(height, width))
        self.sw, self.sh = max(8, round(width * scale)), max(8, round(height * scale))
        # One DIS instance per finest pyramid scale (0: full working resolution, 2: a quarter).
        self.dis = {}
        for scale in range(3):
            d = cv2.DISOpticalFlow.create(_DIS_PRESETS[opts.preset])
            d.setFinestScale(scale)
            self.dis[scale] = d
        self.prev_gray: np.ndarray | None = None
        self.flow_box: tuple[int, int, int, int] | None = None  # (x0, y0, x1, y1) where flow_b is set
        self.prev_col8: np.ndarray | None = None  # previous frame's bilateral colour index
        self.objects: dict[int, TrackedObject] = {}
        gy, gx = np.mgrid[0 : self.sh, 0 : self.sw].astype(np.float32)
        self.grid_x, self.grid_y = gx, gy

    # -- helpers -------------------------------------------------------------------------------
    def _small(self, x: np.ndarray, interp: int = cv2.INTER_AREA) -> np.ndarray:
        if (self.sh, self.sw) == x.shape[:2]:
            return x
        return cv2.resize(x, (self.sw, self.sh), interpolation=interp)

    def _anchor(self, p: Prompt, bins: np.ndarray | None) -> TrackedObject:
        m = self._small(np.asarray(p.mask).astype(np.float32), cv2.INTER_AREA)
        if bins is None:
            fg = bg = np.zeros(BINS**3, np.float32)
        else:
            fg, bg = colour_models(bins, m, self.o.band, self.o.global_bg)
        return TrackedObject(m.astype(np.float32), float(np.count_nonzero(m > 0.5)), fg, bg)

    def _flow(self, gray: np.ndarray, objects: list[TrackedObject]) -> tuple[np.ndarray, np.ndarray | None]:
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
            box = bbox(ob.prob > 0.5) if not ob.absent else None
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
        # flow=None: DIS starts from zero flow (OpenCV accepts it; its stub does not say so)
        flow_b[y0:y1, x0:x1] = self.dis[scale].calc(cur, prev, None)  # type: ignore[call-overload]
        if flow_f is not None:
            flow_f[y0:y1, x0:x1] = self.dis[scale].calc(prev, cur, None)  # type: ignore[call-overload]
        return flow_b, flow_f

    # -- one frame -----------------------------------------------------------------------------
    def step(
        self, frame_idx: int, image: np.ndarray, prompts: Sequence[Prompt]
    ) -> dict[int, tuple[np.ndarray, float]]:
        o = self.o
        small = self._small(image)
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        bins, col8 = quantise_lab(small) if o.appearance else (None, None)
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
                col_lut = colour_lut((ob.anchor_fg, ob.anchor_bg), (ob.run_fg, ob.run_bg), o.anchor_weight)
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
    def _predicted_box(self, ob: TrackedObject) -> np.ndarray | None:
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

    def _update_motion(self, ob: TrackedObject, fgm: np.ndarray, flow_b: np.ndarray, area: float) -> None:
        unoccluded = area >= self.o.occluded_fraction * ob.area_ref
        # Object motion this frame: minus the mean backward flow over the mask. Frozen while the
        # object is partly hidden (constant velocity): the visible remnant next to a static
        # occluder moves with the occluder, not with the object.
        box = bbox(fgm)
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
        self, ob: TrackedObject, bins: np.ndarray | None, col_lut: np.ndarray | None
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
        keep = fill_holes(big[labels])
        return np.where(keep, 0.9, 0.0).astype(np.float32)

    def _propagate(
        self,
        ob: TrackedObject,
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
        size = max(2, int(np.sqrt(max(int(np.count_nonzero(core)), 1)) * o.band))
        near = np.zeros(core.shape, bool)
        dist = distance_crop(core, size)
        band_box = None
        if dist is not None:
            near[dist[1]] = dist[0] <= size
            band_box = bbox(near[dist[1]])
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
        if bins is not None and col_lut is not None and (occluded or o.adaptive):  # has_col
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
                        cv2.dilate(sure_fg.astype(np.uint8), KERNEL7, iterations=2) > 0
                    )
                    if col is not None and sure_fg.any() and sure_bg.any():
                        acc = 0.5 * ((col[sure_fg] > 0).mean() + (col[sure_bg] < 0).mean())
                        w_app *= float(np.clip((acc - 0.6) / 0.3, 0.0, 1.5))
                col_sl = col[sl] if col is not None else np.clip(col_lut[bins[sl]], -4, 4)
                logit = logit + w_app * col_sl
            if o.motion > 0:
                mot = background_motion(
                    flow_b, self.flow_box, (self.grid_x, self.grid_y), core, near, sl, o.motion_positive
                )
                if mot is not None:
                    if reliable is not None and o.motion_reliable:
                        # No motion evidence where the flow fails its forward/backward check
                        # (disocclusions: DIS fills them with the neighbouring object's motion).
                        mot = np.where(reliable, mot, 0.0)
                    logit = logit + o.motion * mot
            if o.bilateral > 0 and col8 is not None and prev_col8 is not None:
                bil = bilateral_logodds(
                    ob.prob, ob.area_ref, warped, col8, prev_col8, flow_f,
                    (self.grid_x, self.grid_y), o.bilateral_cell, o.band,
                )  # fmt: skip
                logit = logit + o.bilateral * bil[sl]
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
            filled = fill_holes(fgm)
            prob = np.where(filled & ~fgm, 0.51, prob).astype(np.float32)
            fgm = filled
        if bins is not None and fgm.any():
            conf_fg = fgm & (prob > 0.8)
            if np.count_nonzero(conf_fg) > 16:
                nfg, nbg = colour_models(bins, conf_fg.astype(np.float32), o.band, o.global_bg)
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
        box = bbox(up > 0.02)
        if box is None:
            return up > 0.5
        r = 2 * self.o.refine_radius + 2
        y0, y1 = max(0, int(box[1]) - r), min(self.h, int(box[3]) + r)
        x0, x1 = max(0, int(box[0]) - r), min(self.w, int(box[2]) + r)
        crop = up[y0:y1, x0:x1]
        grey = cv2.cvtColor(guide[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY).astype(np.float32) * (1.0 / 255.0)
        ref = guided_filter(grey, crop, self.o.refine_radius, self.o.refine_eps)
        out = np.zeros((self.h, self.w), dtype=bool)
        out[y0:y1, x0:x1] = ref > 0.5
        return out

    def close(self) -> None:
        self.objects.clear()
        self.prev_gray = None
