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

Modules: :mod:`~garvideo.trackers.flow.options` (:class:`FlowOptions`, :func:`parse_flow_options`),
:mod:`~garvideo.trackers.flow.geometry` (boxes, distances, the guided filter),
:mod:`~garvideo.trackers.flow.appearance` (colour histograms, the bilateral grid),
:mod:`~garvideo.trackers.flow.motion` (the background's affine motion),
:mod:`~garvideo.trackers.flow.session` (one propagation pass) and
:mod:`~garvideo.trackers.flow.tracker` (:class:`FlowTracker`). This module only re-exports.
"""

from garvideo.trackers.flow.options import PRESETS, FlowOptions, parse_flow_options
from garvideo.trackers.flow.session import FlowSession
from garvideo.trackers.flow.tracker import FlowTracker

__all__ = ["PRESETS", "FlowOptions", "FlowSession", "FlowTracker", "parse_flow_options"]
