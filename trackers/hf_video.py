"""The ``sam3`` and ``edgetam`` trackers: transformers' video trackers, driven by garvideo's streaming loop.

One backend for the transformers video models that share ``Sam2VideoModel``'s inference-session API
(``Sam3TrackerVideoModel``, ``EdgeTamVideoModel``). Their own ``init_video_session(video=...)`` preprocesses
every frame up front, and a session keeps every frame and every frame's outputs (high-resolution masks
included) for ever. This backend instead, per pass (forward or backward from the prompt frames):

* preprocesses each frame as it streams from the reader (the processor's own video processor, one frame at a
  time) and hands it to the session with ``add_new_frame``;
* adds the prompts of that frame with the processor's ``add_inputs_to_inference_session`` (masks, points,
  boxes; several objects) and runs the model's ``forward(inference_session, frame_idx, reverse)`` — the very
  call ``propagate_in_video_iterator`` makes per frame;
* then prunes what the model can no longer read (``_gather_memory_frame_outputs`` reads the non-conditioning
  outputs of the ``num_maskmem - 1`` previous frames, ``_get_object_pointers`` the object pointers of the
  ``max_object_pointers_in_encoder - 1`` previous ones): older non-conditioning outputs are deleted, those
  only read for their pointer keep it alone, every output drops its ``pred_masks`` / ``high_res_masks``
  (read only when a frame is visited twice, which a pass never does), and the frame's pixels are dropped.

The session reports the clip's length as its ``num_frames`` (the model bounds its pointer window with it),
so a pass gives the same outputs as transformers' own ``propagate_in_video_iterator`` over the whole clip
from the same prompt frame, bitwise (``tests/test_trackers_hf_video.py`` checks both directions).
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from garvideo import hub  # module attributes: looked up at call time (tests stand in for the hub)
from garvideo.errors import InputError, ModelUnavailableError
from garvideo.trackers.base import Prompt, Session, Tracker, VideoLike

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HfTrackerKind:
    """One transformers video tracker: its classes, default hub id and how to get access."""

    name: str  # the --tracker name
    title: str
    model_class: str
    processor_class: str
    hub_id: str
    env: str  # environment variable naming the checkpoint
    field: str  # the option (of build_tracker, GarVideoOptions) naming the checkpoint
    licence: str
    gated: bool


KINDS: dict[str, HfTrackerKind] = {
    "sam3": HfTrackerKind(
        name="sam3",
        title="SAM 3",
        model_class="Sam3TrackerVideoModel",
        processor_class="Sam3TrackerVideoProcessor",
        hub_id="facebook/sam3",
        env="GARVIDEO_SAM3_CHECKPOINT",
        field="sam3_checkpoint",
        licence="SAM License",
        gated=True,
    ),
    "edgetam": HfTrackerKind(
        name="edgetam",
        title="EdgeTAM",
        model_class="EdgeTamVideoModel",
        processor_class="Sam2VideoProcessor",
        # The checkpoint transformers' EdgeTAM docs and configuration name (auto_docstring checkpoint).
        hub_id="yonigozlan/EdgeTAM-hf",
        env="GARVIDEO_EDGETAM_CHECKPOINT",
        field="edgetam_checkpoint",
        licence="Apache-2.0",
        gated=False,
    ),
}
#: The classes the SAM 3 text path needs besides the tracker's (``Sam3Model`` + ``Sam3Processor``).
_EXTRA_CLASSES = {"sam3": ("Sam3Model", "Sam3Processor", "Sam3VideoModel", "Sam3VideoProcessor")}


def require_classes(kind: str) -> Any:
    """The ``transformers`` module, after checking it has the classes of ``kind`` (``sam3``/``edgetam``).

    Raises:
        ModelUnavailableError: the installed transformers predates them (4.56.2 has neither).
    """
    import transformers

    k = KINDS[kind]
    names = (k.model_class, k.processor_class, *_EXTRA_CLASSES.get(kind, ()))
    missing = [n for n in names if not hasattr(transformers, n)]
    if missing:
        raise ModelUnavailableError(
            f"{k.title} needs transformers with {', '.join(missing)}; the installed transformers "
            f"{transformers.__version__} has none (garvideo is developed on transformers 5.24: "
            "pip install 'transformers>=5.24,<6')"
        )
    return transformers


def how_to_get(kind: str) -> str:
    """One sentence on how to get the weights of ``kind``."""
    k = KINDS[kind]
    access = (
        f"accept the {k.licence} on https://huggingface.co/{k.hub_id} and log in with `hf auth login`, then "
        if k.gated
        else ""
    )
    return (
        f"{access}download it once while online (`hf download {k.hub_id}`), or give a local folder "
        f"({k.field}, or ${k.env}); tiny random weights for a smoke test: "
        f"`garvideo make-tiny-model --kind {kind} DIR`"
    )


def resolve_checkpoint(kind: str, checkpoint: str | None = None) -> Path:
    """The local folder of a ``kind`` checkpoint: ``checkpoint`` (the option), else ``$GARVIDEO_<KIND>_CHECKPOINT``,
    else the default hub id; a folder as is, a hub id from the Hugging Face cache, else downloaded.

    Raises:
        InputError: a path that is neither a folder nor a hub id.
        ModelUnavailableError: gated, offline, not downloadable — one line saying how to get access.
    """
    from garvideo.model.loading import _looks_like_hub_id  # imports torch: only when resolving

    k = KINDS[kind]
    name = str(checkpoint or os.environ.get(k.env) or k.hub_id)
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if not _looks_like_hub_id(name):
        raise InputError(name, f"no such {k.title} checkpoint folder (and not a hub id like {k.hub_id})")
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.txt"]
    try:
        return Path(snapshot_download(repo_id=name, allow_patterns=patterns, local_files_only=True))
    except Exception as exc:  # noqa: BLE001 - not cached: try the hub below
        logger.debug("%s not in the Hugging Face cache (%s)", name, type(exc).__name__)
    unreachable = "offline (HF_HUB_OFFLINE)" if hub.hub_offline() else hub.hub_unreachable()
    if unreachable is not None:
        raise ModelUnavailableError(
            f"{k.title} weights {name} are not on disk and {unreachable}; {how_to_get(kind)}"
        )
    try:
        return Path(snapshot_download(repo_id=name, allow_patterns=patterns))
    except Exception as exc:  # noqa: BLE001 - gated, missing, network: one line
        why = _download_failure(exc)
        raise ModelUnavailableError(
            f"cannot download {k.title} weights {name} ({why}); {how_to_get(kind)}"
        ) from None


def _download_failure(exc: BaseException) -> str:
    """A few words on why a hub download failed (gated repo, no such repo, other)."""
    try:
        from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
    except ImportError:  # pragma: no cover - old huggingface_hub
        return type(exc).__name__
    if isinstance(exc, GatedRepoError):
        return "the repository is gated: access not granted to this account"
    if isinstance(exc, RepositoryNotFoundError):
        return "no such repository, or it is gated and you are not logged in"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}" if str(exc) else type(exc).__name__


def load_tracker_model(kind: str, folder: Path, device: Any) -> tuple[Any, Any]:
    """``(model, processor)`` of ``kind`` from a checkpoint folder, in float32 on ``device``.

    Raises:
        InputError: the folder does not hold a ``kind`` checkpoint.
    """
    tf = require_classes(kind)
    k = KINDS[kind]
    try:
        model = getattr(tf, k.model_class).from_pretrained(str(folder))
        processor = getattr(tf, k.processor_class).from_pretrained(str(folder))
    except Exception as exc:  # noqa: BLE001 - any failure to read is bad input
        first = str(exc).splitlines()[0][:160] if str(exc) else ""
        raise InputError(
            folder, f"not a {k.title} checkpoint folder ({type(exc).__name__}: {first})"
        ) from None
    return model.to(device).float().eval(), processor


def _bounded_session_class(base: type) -> type:
    """A subclass of the model's inference-session class whose ``num_frames`` is the clip's length, not the
    number of frames it holds (it holds only the current one)."""

    def num_frames(self: Any) -> int:
        return self._garvideo_num_frames

    return type(f"Streaming{base.__name__}", (base,), {"num_frames": property(num_frames)})


# Keys of a stored frame output that the model reads again only when it revisits that frame.
_REVISIT_ONLY = ("pred_masks", "high_res_masks")


class _HfSession:
    def __init__(
        self, tracker: HfVideoTracker, video: VideoLike, order: Sequence[int], reverse: bool
    ) -> None:
        import torch

        self.t = tracker
        self.model = tracker.model
        self.processor = tracker.processor
        self.h, self.w = int(video.height), int(video.width)
        self.reverse = reverse
        # The model's frame index: the clip's index when every frame is visited; consecutive positions from
        # the first frame of the pass when only the kept frames are (the model reads its memory by index).
        sign = -1 if reverse else 1
        self.local = {f: int(order[0]) + sign * i for i, f in enumerate(order)}
        n = int(video.num_frames)
        # Sam3TrackerVideoModel -> Sam3TrackerVideoInferenceSession, EdgeTamVideoModel -> EdgeTamVideoInferenceSession
        mod = importlib.import_module(type(self.model).__module__)
        session_cls = getattr(mod, type(self.model).__name__.replace("Model", "InferenceSession"))
        self.session = _bounded_session_class(session_cls)(
            video_height=self.h,
            video_width=self.w,
            inference_device=tracker.device,
            inference_state_device=tracker.device,
            video_storage_device=tracker.device,
            dtype=torch.float32,
        )
        self.session._garvideo_num_frames = n
        cfg = self.model.config
        self.keep_spatial = int(cfg.num_maskmem)  # offsets 1..num_maskmem-1 are read
        self.keep_ptr = int(cfg.max_object_pointers_in_encoder)  # offsets 1..max-1 are read

    def _pixels(self, image: np.ndarray) -> Any:
        vp = self.processor.video_processor
        return vp(videos=[image[None]], return_tensors="pt").pixel_values_videos[0][0]  # (3, S, S)

    def _add(self, pos: int, p: Prompt) -> None:
        add = self.processor.add_inputs_to_inference_session
        if p.mask is not None:
            add(self.session, frame_idx=pos, obj_ids=[p.obj_id], input_masks=np.asarray(p.mask, dtype=bool))
        elif p.points is not None:
            pts = np.asarray(p.points, dtype=np.float64).tolist()
            labels = [int(v) for v in np.asarray(p.labels)]
            add(
                self.session, frame_idx=pos, obj_ids=[p.obj_id], input_points=[[pts]],
                input_labels=[[labels]], original_size=(self.h, self.w),
            )  # fmt: skip
        else:
            box = [float(v) for v in p.box]  # type: ignore[union-attr]
            add(
                self.session,
                frame_idx=pos,
                obj_ids=[p.obj_id],
                input_boxes=[[box]],
                original_size=(self.h, self.w),
            )

    def _check_mixing(self, prompts: Sequence[Prompt]) -> None:
        """EdgeTAM in transformers (5.24) returns a (1, 1) presence logit for a mask prompt and (1, 1, 1) for
        every other object, and its forward fails concatenating them: refuse that case with a clear message."""
        if self.t.name != "edgetam":
            return
        masked = {p.obj_id for p in prompts if p.mask is not None}
        others = (set(self.session.obj_ids) | {p.obj_id for p in prompts}) - masked
        if masked and others:
            raise InputError(
                f"mask prompt of object {min(masked)}",
                "transformers' EdgeTAM cannot take a mask prompt on a frame where other objects are tracked or "
                "prompted by points/boxes (its forward fails); prompt those objects on another frame, give them "
                "masks too, or use --tracker sam3 / sam2",
            )

    def step(
        self, frame_idx: int, image: np.ndarray, prompts: Sequence[Prompt]
    ) -> dict[int, tuple[np.ndarray, float]]:
        import torch

        pos = self.local[frame_idx]
        s = self.session
        if prompts:
            self._check_mixing(prompts)
            for p in prompts:
                self._add(pos, p)
            # add_inputs_to_inference_session marks only the objects of its own call as new.
            s.obj_with_new_inputs = list(
                dict.fromkeys([*s.obj_with_new_inputs, *(p.obj_id for p in prompts)])
            )
        if s.get_obj_num() == 0:
            return {}
        with torch.inference_mode():
            s.add_new_frame(self._pixels(image), pos)
            out = self.model(inference_session=s, frame_idx=pos, reverse=self.reverse)
            logits = self.processor.post_process_masks(
                [out.pred_masks], original_sizes=[[self.h, self.w]], binarize=False
            )[0]  # (N_obj, 1, H, W)
            fg = (logits[:, 0] > 0).cpu().numpy()
            scores = torch.sigmoid(out.object_score_logits.float().reshape(-1)).cpu().numpy()
        by_obj = {p.obj_id: p for p in prompts}
        result: dict[int, tuple[np.ndarray, float]] = {}
        for i, oid in enumerate(out.object_ids):
            given = by_obj.get(oid)
            if given is not None and given.mask is not None:
                result[oid] = (np.asarray(given.mask).astype(bool), 1.0)  # a mask prompt is its own output
            else:
                result[oid] = (fg[i], float(scores[i]))
        if self.t.prune:
            self._prune(pos)
        self.t._memory_entries_max = max(self.t._memory_entries_max, self.memory_entries())
        return result

    def _prune(self, pos: int) -> None:
        s = self.session
        s.processed_frames.pop(pos, None)
        for obj_idx, od in s.output_dict_per_obj.items():
            for entries in od.values():
                for entry in entries.values():
                    for key in _REVISIT_ONLY:
                        entry.pop(key, None)
            nc = od["non_cond_frame_outputs"]
            for f in list(nc):
                age = (f - pos) if self.reverse else (pos - f)
                if age >= max(self.keep_spatial, self.keep_ptr):
                    del nc[f]
                elif age >= self.keep_spatial and "maskmem_features" in nc[f]:
                    nc[f] = {"object_pointer": nc[f]["object_pointer"]}  # only the pointer is still read
            tracked = s.frames_tracked_per_obj[obj_idx]
            for f in [f for f in tracked if f != pos]:
                del tracked[f]

    def memory_entries(self) -> int:
        """Stored frame outputs, all objects (for tests and benchmarks)."""
        return sum(
            len(od["cond_frame_outputs"]) + len(od["non_cond_frame_outputs"])
            for od in self.session.output_dict_per_obj.values()
        )

    def close(self) -> None:
        self.session.reset_inference_session()
        self.session.processed_frames = None


class HfVideoTracker(Tracker):
    """A transformers video tracker (``sam3``: ``Sam3TrackerVideoModel``; ``edgetam``: ``EdgeTamVideoModel``)
    with streamed frames and a memory bounded by the model's window.

    Args:
        kind: ``"sam3"`` or ``"edgetam"``.
        checkpoint: a folder or hub id (default: ``$GARVIDEO_SAM3_CHECKPOINT`` / ``$GARVIDEO_EDGETAM_CHECKPOINT``,
            else the default hub id: ``facebook/sam3``, gated, or ``yonigozlan/EdgeTAM-hf``).
        device: ``"cuda"``, ``"cpu"`` or ``None`` (CUDA when available). Float32 throughout.
        threads: torch CPU thread count (``None``: leave torch's setting).
        every_frame: run on every frame between the prompt and the kept frames (default) or only on the kept
            and prompt frames, as if consecutive (as the sam2 backend's option).
        model, processor: already built ones (tests); no checkpoint is read then.
        prune: drop what the model can no longer read (default; ``False`` only to test that it changes nothing).
    """

    def __init__(
        self,
        kind: str,
        checkpoint: str | None = None,
        device: str | None = None,
        threads: int | None = None,
        every_frame: bool = True,
        model: Any = None,
        processor: Any = None,
        prune: bool = True,
    ) -> None:
        import torch

        if kind not in KINDS:
            raise InputError(
                "tracker", f"unknown transformers tracker {kind!r} (choose from {', '.join(KINDS)})"
            )
        self.name = kind
        self.kind = KINDS[kind]
        if threads is not None:
            if int(threads) < 1:
                raise InputError("threads", f"must be at least 1, got {threads}")
            self.threads = int(threads)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.every_frame = bool(every_frame)
        self.prune = bool(prune)
        self._memory_entries_max = 0
        self.checkpoint: str | None = None
        if model is not None:
            if processor is None:
                raise InputError("processor", "give the processor with the model")
            self.model, self.processor = model.to(self.device).eval(), processor
            return
        require_classes(kind)
        folder = resolve_checkpoint(kind, checkpoint)
        self.model, self.processor = load_tracker_model(kind, folder, self.device)
        self.checkpoint = str(folder)
        logger.info("%s: %s on %s", kind, folder, self.device)

    def _check_prompt(self, prompt: Prompt) -> None:
        """Masks, points and boxes are all accepted (checked by the base class)."""

    def track(self, video: VideoLike, prompts: Sequence[Prompt], **kwargs: Any) -> Any:
        self._memory_entries_max = 0
        return super().track(video, prompts, **kwargs)

    track.__doc__ = Tracker.track.__doc__

    def _open_session(self, video: VideoLike, direction: str, order: Sequence[int]) -> Session:
        return _HfSession(self, video, order, reverse=(direction == "backward"))

    def _visits_every_frame(self) -> bool:
        return self.every_frame

    def describe(self) -> dict[str, object]:
        return {
            "model": self.kind.model_class,
            "checkpoint": self.checkpoint,
            "image_size": int(self.model.config.image_size),
            "device": str(self.device),
            "memory_entries_max": self._memory_entries_max,
        }
