"""Region-level video understanding: the image-trained GAR model applied zero-shot to a clip.

:class:`GarVideo` runs the pipeline::

    masks on one frame ──tracker──> masks on the keyframes ──> one 448×448 tile per keyframe, with
    that frame's union mask ──> per-frame RoI replay (frame t's map, frame t's box) ──> one prompt
    (frames' global tokens, then each object's region tokens in time order, then the instruction)
    ──> greedy generation ──> text (and the option letter for multiple choice)

* **Keyframes** come from :func:`garvideo.keyframes.select_keyframes` (default: K = 8, uniform
  segment midpoints over the clip).
* **Per-frame encoding** and **replay** are :meth:`garvideo.model.GarBundle.encode_frames` and
  :func:`garvideo.model.replay_regions`, which follow the official video branch
  (``modeling_perception_lm.py:prepare_inputs_for_generation(feature_replay_video=True)``: frame
  ``t``'s region tokens are roi_align'ed from frame ``t``'s own 16×16 map, with the official box
  arithmetic by default and ``roi_mode="corrected"`` as the option).
* **The prompt text** is :func:`garvideo.model.prompts.build_video_prompt` — the one place the
  layout is written down. An object absent on a keyframe contributes no region tokens for that
  frame and the prompt names the keyframes where it is not visible; one absent on every keyframe is
  left out of the object list, the layout GAR was trained on for a prompt that is "not in the image".
* **Token budget**: each keyframe costs 256 global tokens plus 256 per object. When K keyframes
  would not fit in the model's context (``max_position_embeddings`` of the loaded config; 11,520
  for GAR-1B) with the prompt text, a reserve for the question and ``max_new_tokens``, K is reduced
  and a note says so; a prompt is never truncated.
* **Sharing**: a :class:`PreparedClip` holds the tracking result, the keyframe features and the
  replayed regions; the KV cache of the prompt prefix (everything up to the last region token) is
  kept on the clip too, so several questions on one clip pay for it once.

Objects are ``<object0>``, ``<object1>``, … in questions, in the order of the masks; the pipeline
rewrites them to the prompt tokens of :func:`garvideo.model.prompts.prompt_indices`.
"""

from __future__ import annotations

import logging
import os
import re
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from garvideo.errors import InputError, ModelUnavailableError, PathLike
from garvideo.keyframes import STRATEGIES, select_keyframes

__all__ = [
    "DEFAULT_CONTEXT_LENGTH",
    "DEFAULT_MAX_NEW_TOKENS",
    "AnswerResult",
    "DescribeResult",
    "GarVideo",
    "ObjectInfo",
    "PreparedClip",
    "PromptInputs",
    "frame_cost",
    "load_model_or_none",
    "rewrite_object_refs",
]

logger = logging.getLogger(__name__)

#: GAR-1B's context (``text_config.max_position_embeddings``), used until a model is loaded.
DEFAULT_CONTEXT_LENGTH = 11520
#: New tokens generated unless a call says otherwise (also reserved in the token budget).
DEFAULT_MAX_NEW_TOKENS = 512
#: Tokens reserved in the budget for the instruction / question text (options included).
QUESTION_RESERVE = 256
#: Prompt-text tokens assumed (template, object list) when no model is loaded to count them.
_TEXT_OVERHEAD_GUESS = 128
#: Prefix caches kept per clip (one per distinct prefix: e.g. describe and ask of a single object).
_MAX_PREFIX_CACHES = 2

_OBJECT_REF = re.compile(r"<object(\d+)>")
FrameMasks = Mapping[int, np.ndarray | None]
StreamFn = Callable[[str], None]


def frame_cost(num_objects: int) -> int:
    """Prompt positions one keyframe costs: 256 global tokens plus 256 region tokens per object."""
    from garvideo.model.prompts import REGION_TOKENS, TOKENS_PER_TILE

    return TOKENS_PER_TILE + REGION_TOKENS * num_objects


def rewrite_object_refs(question: str, num_objects: int) -> str:
    """Replace ``<objectK>`` in a question by the prompt token of object K (``<PromptK>``; a single object
    asked about is ``<Prompt0>``, as :func:`garvideo.model.prompts.prompt_indices` with ``ask=True`` assigns).

    Raises:
        InputError: a reference to an object that was not given.
    """
    from garvideo.model.prompts import prompt_indices, prompt_token

    indices = prompt_indices(num_objects, ask=True)

    def sub(m: re.Match[str]) -> str:
        k = int(m.group(1))
        if k >= num_objects:
            raise InputError(
                "--question",
                f"refers to <object{k}> but only {num_objects} object(s) were given (<object0>"
                + (f"..<object{num_objects - 1}>)" if num_objects > 1 else ")"),
            )
        return prompt_token(indices[k])

    return _OBJECT_REF.sub(sub, question)


# ----------------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------------
@dataclass
class ObjectInfo:
    """One object of a prepared clip.

    Attributes:
        index: K of ``<objectK>`` (the order of the masks).
        prompt_token: the token a describe prompt uses for it (``<Prompt1>`` alone, ``<PromptK>`` among
            several); a question about a single object uses ``<Prompt0>`` (GAR-Bench convention).
        prompt_frame: the frame its mask was given on (``None`` for per-frame masks given as is).
        present: per keyframe, whether it is visible (non-empty mask).
        boxes: per keyframe, its normalised box ``(x_min/W, y_min/H, x_max/W, y_max/H)`` (``None`` if absent).
    """

    index: int
    prompt_token: str
    prompt_frame: int | None
    present: list[bool]
    boxes: list[tuple[float, float, float, float] | None]

    def to_json(self, frames: Sequence[int]) -> dict[str, Any]:
        return {
            "id": f"object{self.index}",
            "prompt_token": self.prompt_token,
            "prompt_frame": self.prompt_frame,
            "visible_frames": [int(f) for f, p in zip(frames, self.present) if p],
            "absent_frames": [int(f) for f, p in zip(frames, self.present) if not p],
            "boxes": {
                str(int(f)): [round(v, 5) for v in b] for f, b in zip(frames, self.boxes) if b is not None
            },
        }


@dataclass
class PreparedClip:
    """A clip ready for questions: keyframes, masks and (once encoded) features and prefix caches.

    Made by :meth:`GarVideo.prepare`; pass it to :meth:`GarVideo.describe` / :meth:`GarVideo.ask`
    as often as needed. It keeps the video open (for lazy encoding); :meth:`close` releases it.

    Attributes:
        source: the video's path.
        num_frames, fps, height, width: the clip's metadata.
        frames: the keyframe indices, ascending.
        objects: per object, presence and boxes on the keyframes.
        masks: ``(K, O, H, W)`` bool, each object's mask on each keyframe.
        tracker: the tracker that made the masks (``"given"`` for per-frame masks used as given).
        track: the full :class:`garvideo.trackers.TrackResult` (``None`` for given masks); it holds
            every frame when prepared with ``track_all_frames=True`` (e.g. for an overlay).
        tracker_reason: which tracker ran and why (``TrackResult.reason``); also the first note.
        notes: what the pipeline changed or noticed (reduced K, absent objects …).
        timings: seconds spent preparing, by stage (``decode``, ``tracking``, ``vision``).
    """

    source: str
    num_frames: int
    fps: float
    height: int
    width: int
    frames: list[int]
    objects: list[ObjectInfo]
    masks: np.ndarray
    tracker: str
    track: Any = None
    tracker_reason: str = ""
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    video: Any = field(default=None, repr=False)
    features: Any = field(default=None, repr=False)  # garvideo.model.FrameFeatures once encoded
    regions: torch.Tensor | None = field(default=None, repr=False)  # (R, 256, D) in prompt order
    roi_mode: str | None = None
    model_name: str | None = None
    #: What :attr:`features`, :attr:`regions` and :attr:`prefix_caches` were computed with: model identity
    #: and settings (see :meth:`cache_key_for`); a clip reused with another model or setting recomputes.
    cache_key: tuple[Any, ...] | None = field(default=None, repr=False)
    model_ref: Any = field(default=None, repr=False)  # weakref to that model (guards against id reuse)
    prefix_caches: OrderedDict[tuple[Any, ...], Any] = field(default_factory=OrderedDict, repr=False)
    timings_reported: bool = False
    prepared_at: float = 0.0  # perf_counter() when prepare() started

    @property
    def num_objects(self) -> int:
        return len(self.objects)

    @property
    def present(self) -> list[list[bool]]:
        """``present[k][t]``: object k visible on keyframe t (the layout :func:`build_video_prompt` takes)."""
        return [list(o.present) for o in self.objects]

    @property
    def encoded(self) -> bool:
        return self.features is not None

    def masks_by_frame(self) -> Any:
        """What :func:`garvideo.overlay.render_overlay` draws: the tracking result, or the keyframe masks
        as ``{frame: {object id (1-based): mask}}``."""
        if self.track is not None:
            return self.track
        return {
            int(f): {k + 1: self.masks[t, k] for k in range(self.num_objects)}
            for t, f in enumerate(self.frames)
        }

    def objects_json(self) -> list[dict[str, Any]]:
        return [o.to_json(self.frames) for o in self.objects]

    @staticmethod
    def cache_key_for(bundle: Any, roi_mode: str) -> tuple[Any, ...]:
        """Identity of the model and the settings the clip's features and caches depend on.

        The model object (its ``id``, checked with a weak reference), its name, dtype and device, the
        processor's tile size and normalisation, and the RoI mode.
        """
        ip = bundle.processor.image_processor
        return (
            id(bundle.model),
            str(bundle.name),
            str(bundle.dtype),
            str(bundle.device),
            int(ip.tile_size),
            tuple(ip.image_mean),
            tuple(ip.image_std),
            str(roi_mode),
        )

    def encoded_for(self, key: tuple[Any, ...], model: Any) -> bool:
        """Whether the features were computed with this key by this very model object."""
        return (
            self.features is not None
            and self.cache_key == key
            and self.model_ref is not None
            and self.model_ref() is model
        )

    def close(self) -> None:
        """Release the video and the cached features."""
        if self.video is not None and hasattr(self.video, "close"):
            self.video.close()
        self.video = None
        self.features = None
        self.regions = None
        self.cache_key = self.model_ref = None
        self.prefix_caches.clear()


@dataclass
class PromptInputs:
    """The model input of one request (see :meth:`GarVideo.prompt_inputs`).

    Attributes:
        text: the templated prompt text.
        input_ids: ``(1, L)`` token ids.
        prefix_length: tokens up to and including the last image/region placeholder: the part shared by
            every question on the clip.
        region_order: the ``(object, keyframe position)`` of each 256-token region run, in prompt order.
    """

    text: str
    input_ids: torch.Tensor
    prefix_length: int
    region_order: list[tuple[int, int]]

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[1])


@dataclass
class DescribeResult:
    """What :meth:`GarVideo.describe` returns.

    Attributes:
        text: the description.
        frames: the keyframes the model saw.
        objects: per object, ``id``, ``prompt_token``, ``prompt_frame``, ``visible_frames``,
            ``absent_frames``, ``boxes``.
        tracker: the tracker used (``"given"`` for masks given per frame).
        model: the model name.
        timings: seconds by stage (``decode``, ``tracking``, ``vision`` when the clip was prepared in
            this call; ``prefill``, ``generation``, ``total``).
        notes: what the pipeline changed or noticed (the first one says which tracker ran and why).
        prompt_tokens: prompt length in tokens.
        new_tokens: tokens generated.
        tracker_reason: why that tracker (e.g. ``"auto: flow (...): offline (HF_HUB_OFFLINE) ..."``).
    """

    text: str
    frames: list[int]
    objects: list[dict[str, Any]]
    tracker: str
    model: str
    timings: dict[str, float]
    notes: list[str]
    prompt_tokens: int = 0
    new_tokens: int = 0
    tracker_reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "frames": [int(f) for f in self.frames],
            "objects": self.objects,
            "tracker": self.tracker,
            "tracker_reason": self.tracker_reason,
            "model": self.model,
            "timings": {k: round(float(v), 4) for k, v in self.timings.items()},
            "notes": list(self.notes),
            "prompt_tokens": self.prompt_tokens,
            "new_tokens": self.new_tokens,
        }


@dataclass
class AnswerResult(DescribeResult):
    """What :meth:`GarVideo.ask` returns: a :class:`DescribeResult` plus the question.

    Attributes:
        question: the question as asked (with ``<objectK>`` references).
        options: the option texts (multiple choice) or ``None``.
        letter: the chosen option letter (``"A"`` …) read from ``text``; ``None`` for a free-form
            question or an answer that names no option.
    """

    question: str = ""
    options: list[str] | None = None
    letter: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        out.update({"question": self.question, "options": self.options, "letter": self.letter})
        return out


# ----------------------------------------------------------------------------------------------------
# the pipeline
# ----------------------------------------------------------------------------------------------------
class GarVideo:
    """Describe objects in a video, or answer questions about them, with GAR.

    Args:
        model: hub id, local folder, or a loaded :class:`garvideo.model.GarBundle`; default
            ``$GARVIDEO_MODEL`` or ``HaochenWang/GAR-1B``. Loaded once, on first use.
        tracker: ``"auto"`` | ``"sam2"`` | ``"flow"`` | ``"static"``, or a
            :class:`garvideo.trackers.Tracker`. Built once, on first use.
        num_frames: K, the number of keyframes (reduced when the token budget needs it).
        keyframes: keyframe strategy (:data:`garvideo.keyframes.STRATEGIES`).
        roi_mode: ``"official"`` (the released checkpoints' RoI arithmetic) or ``"corrected"``.
        device, dtype: passed to :func:`garvideo.model.load_gar` (default: CUDA + bf16 when available,
            else CPU + float32).
        include_prompt_frame: make the prompt frame one of the keyframes.
        per_second: keyframes per second for ``keyframes="fps"``.
        max_new_tokens: default generation length (reserved in the token budget).
        tracker_options: options for :func:`garvideo.trackers.build_tracker` (e.g. ``sam2_checkpoint``).
    """

    def __init__(
        self,
        model: str | PathLike | Any | None = None,
        tracker: str | Any = "auto",
        num_frames: int = 8,
        keyframes: str = "uniform",
        roi_mode: str = "official",
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        *,
        include_prompt_frame: bool = False,
        per_second: float = 1.0,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        tracker_options: Mapping[str, Any] | None = None,
    ) -> None:
        from garvideo.model import ROI_MODES

        if keyframes not in STRATEGIES:
            raise InputError(
                "--keyframes",
                f"unknown keyframe strategy {keyframes!r} (choose from {', '.join(STRATEGIES)})",
            )
        if not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
            raise InputError("--num-frames", f"must be a positive integer, got {num_frames!r}")
        if roi_mode not in ROI_MODES:
            raise InputError("--roi-mode", f"must be one of {', '.join(ROI_MODES)}, got {roi_mode!r}")
        if max_new_tokens < 1:
            raise InputError("--max-new-tokens", f"must be >= 1, got {max_new_tokens}")
        if not per_second > 0:
            raise InputError("--per-second", f"must be positive, got {per_second}")
        self.num_frames = int(num_frames)
        self.keyframes = keyframes
        self.roi_mode = roi_mode
        self.include_prompt_frame = bool(include_prompt_frame)
        self.per_second = float(per_second)
        self.max_new_tokens = int(max_new_tokens)
        self.device = device
        self.dtype = dtype
        self.tracker_options = dict(tracker_options or {})
        self._bundle: Any = None
        self._model_spec: Any = model
        if model is not None and hasattr(model, "model") and hasattr(model, "processor"):
            self._bundle = model  # a loaded GarBundle
        self._tracker: Any = None
        self._tracker_spec = tracker
        if not isinstance(tracker, str):
            self._tracker = tracker

    # -- lazily built parts -----------------------------------------------------------------------------
    @property
    def bundle(self) -> Any:
        """The loaded :class:`garvideo.model.GarBundle` (loaded on first access).

        Raises:
            ModelUnavailableError: no weights offline (the message says how to get them).
        """
        if self._bundle is None:
            from garvideo.model import load_gar

            t0 = time.perf_counter()
            self._bundle = load_gar(self._model_spec, dtype=self.dtype, device=self.device)
            logger.info("model %s loaded in %.1fs", self._bundle.name, time.perf_counter() - t0)
        return self._bundle

    @property
    def model_loaded(self) -> bool:
        return self._bundle is not None

    @property
    def model_name(self) -> str:
        """The model's resolved name (or, before loading, the name it will be loaded from)."""
        if self._bundle is not None:
            return str(self._bundle.name)
        if self._model_spec is not None:
            return os.fspath(self._model_spec)
        from garvideo.model import DEFAULT_MODEL, MODEL_ENV

        return os.environ.get(MODEL_ENV) or DEFAULT_MODEL

    @property
    def tracker(self) -> Any:
        """The :class:`garvideo.trackers.Tracker` (built on first access)."""
        if self._tracker is None:
            from garvideo.trackers import build_tracker

            self._tracker = build_tracker(self._tracker_spec, **self.tracker_options)
        return self._tracker

    @property
    def tracker_name(self) -> str:
        if self._tracker is not None:
            return str(self._tracker.name)
        return str(self._tracker_spec)

    @property
    def tracker_reason(self) -> str | None:
        """Which tracker was built and why (``Tracker.selection``); ``None`` until something was tracked."""
        if self._tracker is None:
            return None
        return str(getattr(self._tracker, "selection", None) or self._tracker.name)

    def context_length(self) -> int:
        """The model's context in positions (``max_position_embeddings``); GAR-1B's 11,520 before loading."""
        if self._bundle is None:
            return DEFAULT_CONTEXT_LENGTH
        text_config = self._bundle.model.mllm.config.text_config
        return int(getattr(text_config, "max_position_embeddings", None) or DEFAULT_CONTEXT_LENGTH)

    # -- budget -------------------------------------------------------------------------------------------
    def _text_overhead(self, num_objects: int) -> int:
        """Prompt-text tokens besides the image and region tokens (template, object list)."""
        if self._bundle is None:
            return _TEXT_OVERHEAD_GUESS
        from garvideo.model.prompts import build_video_prompt

        text = build_video_prompt(1, [[True]] * num_objects, "")
        return int(self._bundle.tokenize(text).shape[1]) - frame_cost(num_objects)

    def max_keyframes(self, num_objects: int, max_new_tokens: int | None = None) -> int:
        """The most keyframes that fit the context with ``num_objects`` objects (budget rule).

        ``K · (256 + 256 · objects) + text + QUESTION_RESERVE + max_new_tokens <= context``.
        """
        new = self.max_new_tokens if max_new_tokens is None else int(max_new_tokens)
        room = self.context_length() - self._text_overhead(num_objects) - QUESTION_RESERVE - new
        return max(0, room // frame_cost(num_objects))

    # -- prepare ------------------------------------------------------------------------------------------
    def prepare(
        self,
        video: PathLike | Any,
        masks: np.ndarray | Sequence[np.ndarray] | None = None,
        frame: int = 0,
        frame_masks: Sequence[FrameMasks] | None = None,
        *,
        num_frames: int | None = None,
        keyframes: str | None = None,
        include_prompt_frame: bool | None = None,
        encode: bool = True,
        track_all_frames: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> PreparedClip:
        """Track the objects, choose the keyframes and (``encode=True``) encode them.

        Args:
            video: a path (file or frame folder) or a :class:`garvideo.video.Video`.
            masks: the objects' bool ``(H, W)`` masks on ``frame`` (one array or a list of 1 to 5),
                tracked through the clip. Exclusive with ``frame_masks``.
            frame: the frame ``masks`` belong to.
            frame_masks: per object, ``{frame index: (H, W) bool mask or None}`` used as given (e.g.
                benchmark annotations); ``None`` or an empty mask means absent on that frame. Keyframes
                are then chosen among the annotated frames.
            num_frames, keyframes, include_prompt_frame: override the instance's settings for this clip
                (``include_prompt_frame`` applies to ``masks``; ``frame_masks`` have no prompt frame).
            encode: encode the keyframes now (loads the model). ``False`` only tracks and picks
                keyframes (e.g. to draw an overlay without weights); encoding then happens on first use.
            track_all_frames: keep the masks of every frame in :attr:`PreparedClip.track` (for an overlay).
            progress: ``progress(done, total)`` while tracking.

        Raises:
            InputError: no or both mask forms, 0 or more than 5 objects, a mask of the wrong size or
                empty, a frame out of range, no keyframe fitting the context.
            ModelUnavailableError: ``encode=True`` and no weights.
        """
        from garvideo.model.processing import mask_box
        from garvideo.model.prompts import MAX_REGIONS, prompt_indices, prompt_token

        t_start = time.perf_counter()
        k_req = self.num_frames if num_frames is None else int(num_frames)
        strategy = self.keyframes if keyframes is None else keyframes
        include = self.include_prompt_frame if include_prompt_frame is None else bool(include_prompt_frame)
        if strategy not in STRATEGIES:
            raise InputError(
                "--keyframes", f"unknown keyframe strategy {strategy!r} (choose from {', '.join(STRATEGIES)})"
            )
        if k_req < 1:
            raise InputError("--num-frames", f"must be a positive integer, got {k_req}")
        if (masks is None) == (frame_masks is None):
            raise InputError(
                "masks", "give either masks (on one frame, tracked) or frame_masks (per frame), exactly one"
            )

        if encode:
            self.bundle  # noqa: B018 - load the model first: the budget counts with its tokenizer and context
        vid, owned = _open(video)
        try:
            n, h, w = int(vid.num_frames), int(vid.height), int(vid.width)
            fps = float(getattr(vid, "fps", 0.0) or 0.0)
            notes: list[str] = []
            timings: dict[str, float] = {"decode": 0.0, "tracking": 0.0, "vision": 0.0}

            if masks is not None:
                mask_list = [masks] if isinstance(masks, np.ndarray) and masks.ndim == 2 else list(masks)
                num_obj = len(mask_list)
            else:
                fm_list = list(frame_masks or [])
                num_obj = len(fm_list)
            if not 1 <= num_obj <= MAX_REGIONS:
                raise InputError("--mask", f"expected 1 to {MAX_REGIONS} objects, got {num_obj}")

            # Budget: reduce K (and say so) rather than ever truncating a prompt.
            k = k_req
            k_max = self.max_keyframes(num_obj)
            if k_max < 1:
                raise InputError(
                    "--max-new-tokens",
                    f"not even one keyframe fits the {self.context_length()}-position context with {num_obj} "
                    f"object(s) and {self.max_new_tokens} new tokens",
                )
            if k > k_max:
                notes.append(
                    f"reduced the keyframes from {k} to {k_max}: each keyframe costs {frame_cost(num_obj)} tokens "
                    f"(256 global + 256 per object, {num_obj} object(s)) and {k} would not fit the model's "
                    f"{self.context_length()}-position context with {self.max_new_tokens} new tokens"
                )
                logger.info(notes[-1])
                k = k_max

            if masks is not None:
                checked = [_check_mask(m, (h, w), f"masks[{i}]") for i, m in enumerate(mask_list)]
                if not 0 <= frame < n:
                    raise InputError(
                        "--frame", f"frame {frame} is out of range: the video has {n} frames (0..{n - 1})"
                    )
                frames, track, kf_masks, tracker_name = self._track(
                    vid, checked, int(frame), k, strategy, include, fps, track_all_frames, progress, timings
                )
                prompt_frames: list[int | None] = [int(frame)] * num_obj
                # Say which tracker ran and why (e.g. flow because offline), first among the notes.
                notes.insert(0, f"tracker: {track.reason or tracker_name}")
            else:
                given = [_check_frame_masks(fm, n, (h, w), i) for i, fm in enumerate(fm_list)]
                frames = _keyframes_from_given(given, n, k, strategy, fps, self.per_second)
                kf_masks = np.zeros((len(frames), num_obj, h, w), dtype=bool)
                for t, f in enumerate(frames):
                    for o, fm in enumerate(given):
                        m = fm.get(f)
                        if m is not None:
                            kf_masks[t, o] = m
                track, tracker_name = None, "given"
                prompt_frames = [None] * num_obj

            if len(frames) < k:
                notes.append(f"the clip gives {len(frames)} keyframes, fewer than the {k} asked for")
            indices = prompt_indices(num_obj)
            objects = []
            for o in range(num_obj):
                present = [bool(kf_masks[t, o].any()) for t in range(len(frames))]
                boxes = [mask_box(kf_masks[t, o]) if present[t] else None for t in range(len(frames))]
                objects.append(ObjectInfo(o, prompt_token(indices[o]), prompt_frames[o], present, boxes))
                absent = [int(f) for f, p in zip(frames, present) if not p]
                if len(absent) == len(frames):
                    notes.append(
                        f"object{o} is not visible on any keyframe: it gets no region tokens and the prompt "
                        "leaves it out of the object list"
                    )
                elif absent:
                    notes.append(
                        f"object{o} is absent on keyframe(s) {', '.join(map(str, absent))}: no region tokens "
                        "for those frames"
                    )
            clip = PreparedClip(
                source=str(getattr(vid, "source", video)),
                num_frames=n,
                fps=fps,
                height=h,
                width=w,
                frames=[int(f) for f in frames],
                objects=objects,
                masks=kf_masks,
                tracker=tracker_name,
                track=track,
                tracker_reason="masks given per frame (no tracking)" if track is None else track.reason,
                notes=notes,
                timings=timings,
                video=vid,
            )
            if encode:
                self.encode(clip)
            clip.timings["prepare"] = time.perf_counter() - t_start
            clip.prepared_at = t_start
            return clip
        except BaseException:
            if owned:
                vid.close()
            raise

    def _track(
        self,
        vid: Any,
        masks: list[np.ndarray],
        frame: int,
        k: int,
        strategy: str,
        include: bool,
        fps: float,
        track_all: bool,
        progress: Callable[[int, int], None] | None,
        timings: dict[str, float],
    ) -> tuple[list[int], Any, np.ndarray, str]:
        from garvideo.trackers import Prompt

        n, h, w = int(vid.num_frames), int(vid.height), int(vid.width)
        obj_ids = list(range(1, len(masks) + 1))
        prompts = [Prompt(obj_id=i, frame=frame, mask=m) for i, m in zip(obj_ids, masks)]
        needs_all = track_all or strategy == "visible"
        frames: list[int] | None = None
        if not needs_all:
            frames = select_keyframes(
                n,
                k,
                strategy,
                include_frame=frame if include else None,
                fps=fps or None,
                per_second=self.per_second,
            )
        result = self.tracker.track(vid, prompts, frames=None if needs_all else frames, progress=progress)
        timings["decode"] += float(result.timings.get("decode", 0.0))
        timings["tracking"] += float(result.timings.get("track", result.timings.get("total", 0.0)))
        if frames is None:
            visible = None
            if strategy == "visible":
                visible = np.array([[result.present(f, o) for o in obj_ids] for f in range(n)], dtype=bool)
            frames = select_keyframes(
                n,
                k,
                strategy,
                include_frame=frame if include else None,
                visible=visible,
                fps=fps or None,
                per_second=self.per_second,
            )
        kf = np.zeros((len(frames), len(masks), h, w), dtype=bool)
        for t, f in enumerate(frames):
            for j, o in enumerate(obj_ids):
                if f == frame:
                    kf[t, j] = masks[j]  # the prompt itself, exactly as given
                elif result.present(f, o):
                    kf[t, j] = result.mask(f, o)
        return frames, result, kf, str(result.tracker)

    # -- encode -------------------------------------------------------------------------------------------
    def encode(self, clip: PreparedClip) -> PreparedClip:
        """Encode the clip's keyframes (one 448×448 tile each, with the frame's union mask) and replay each
        object's regions from its own frame's map and box. Done once per clip; a no-op afterwards."""
        from garvideo.model.prompts import video_region_order

        bundle = self.bundle
        key = PreparedClip.cache_key_for(bundle, self.roi_mode)
        if clip.encoded_for(key, bundle.model):
            return clip
        if clip.video is None:
            raise InputError(clip.source, "the prepared clip was closed")
        t0 = time.perf_counter()
        images = dict(clip.video.frames(list(clip.frames)))
        t1 = time.perf_counter()
        frames_rgb = [images[f] for f in clip.frames]
        unions = [clip.masks[t].any(axis=0) for t in range(len(clip.frames))]  # (H, W) per keyframe
        feats = bundle.encode_frames(frames_rgb, unions)  # tokens (K, 256, D), maps (K, D, 16, 16)
        order = video_region_order(clip.present)  # (object, keyframe position), prompt order
        if order:
            boxes = [clip.objects[o].boxes[t] for o, t in order]
            with torch.inference_mode():
                regions = bundle.replay_regions(
                    feats.maps, boxes, [t for _, t in order], self.roi_mode
                )  # (R, 256, D)
        else:
            regions = None
        t2 = time.perf_counter()
        clip.features, clip.regions, clip.roi_mode = feats, regions, self.roi_mode
        clip.model_name = str(bundle.name)
        clip.cache_key, clip.model_ref = key, weakref.ref(bundle.model)
        clip.prefix_caches.clear()
        clip.timings["decode"] = clip.timings.get("decode", 0.0) + (t1 - t0)
        clip.timings["vision"] = clip.timings.get("vision", 0.0) + (t2 - t1)
        return clip

    # -- prompt -------------------------------------------------------------------------------------------
    def prompt_inputs(
        self, clip: PreparedClip, question: str | None = None, options: Sequence[str] | None = None
    ) -> PromptInputs:
        """The token ids of a describe (``question=None``) or ask request on ``clip``.

        The question's ``<objectK>`` references become the objects' prompt tokens; with ``options``, the
        question is put in the model's multiple-choice format (:func:`format_multiple_choice`).
        """
        from garvideo.model.prompts import (
            IMAGE_TOKEN_ID,
            REGION_TOKEN_IDS,
            build_video_prompt,
            format_multiple_choice,
            video_region_order,
        )

        instruction = None
        if question is not None:
            instruction = rewrite_object_refs(question, clip.num_objects)
            if options is not None:
                instruction = format_multiple_choice(instruction, list(options))
        text = build_video_prompt(len(clip.frames), clip.present, instruction)
        ids = self.bundle.tokenize(text)  # (1, L)
        special = torch.tensor((IMAGE_TOKEN_ID,) + tuple(REGION_TOKEN_IDS))
        where = torch.isin(ids[0], special).nonzero().reshape(-1)
        prefix_length = int(where[-1]) + 1 if where.numel() else 0
        return PromptInputs(text, ids, prefix_length, video_region_order(clip.present))

    def _check_budget(self, inputs: PromptInputs, max_new_tokens: int, source: str) -> None:
        context = self.context_length()
        if inputs.length + max_new_tokens > context:
            raise InputError(
                source,
                f"the prompt ({inputs.length} tokens) plus {max_new_tokens} new tokens exceeds the model's "
                f"{context}-position context; use fewer keyframes (--num-frames), fewer objects, a shorter "
                "question or fewer new tokens (nothing is truncated)",
            )

    def _prefix(self, clip: PreparedClip, inputs: PromptInputs) -> tuple[Any, float]:
        """The KV cache of the prompt prefix (from the clip's cache when an equal prefix was run)."""
        # Keyed by the features' model/settings key too: a cache never outlives the features it came from.
        key = (clip.cache_key, *inputs.input_ids[0, : inputs.prefix_length].tolist())
        cached = clip.prefix_caches.get(key)
        if cached is not None:
            clip.prefix_caches.move_to_end(key)
            return cached, 0.0
        t0 = time.perf_counter()
        bundle = self.bundle
        feats = clip.features
        embeds = bundle.embed_prompt(inputs.input_ids[:, : inputs.prefix_length], feats.tokens, clip.regions)
        cache = bundle.prefill(embeds)  # (1, P, D) -> KV cache
        clip.prefix_caches[key] = cache
        while len(clip.prefix_caches) > _MAX_PREFIX_CACHES:
            clip.prefix_caches.popitem(last=False)
        return cache, time.perf_counter() - t0

    def _run(
        self,
        clip: PreparedClip,
        question: str | None,
        options: Sequence[str] | None,
        stream: StreamFn | None,
        max_new_tokens: int | None,
        generate_kwargs: dict[str, Any],
        source: str,
    ) -> tuple[Any, PromptInputs, dict[str, float]]:
        new = self.max_new_tokens if max_new_tokens is None else int(max_new_tokens)
        if new < 1:
            raise InputError("--max-new-tokens", f"must be >= 1, got {new}")
        self.encode(clip)
        inputs = self.prompt_inputs(clip, question, options)
        self._check_budget(inputs, new, source)
        prefix, prefill_s = self._prefix(clip, inputs)
        suffix_ids = inputs.input_ids[:, inputs.prefix_length :]
        t0 = time.perf_counter()
        gen = self.bundle.generate_from(
            prefix, suffix_ids, on_text=stream, max_new_tokens=new, **generate_kwargs
        )
        gen_s = time.perf_counter() - t0
        return gen, inputs, {"prefill": prefill_s, "generation": gen_s}

    def _clip_for(self, clip_or_video: Any, prepare_kwargs: dict[str, Any]) -> PreparedClip:
        if isinstance(clip_or_video, PreparedClip):
            if any(v is not None for v in prepare_kwargs.values()):
                raise InputError(
                    "masks", "a prepared clip already has its masks; pass them to prepare() instead"
                )
            return clip_or_video
        kwargs = {k: v for k, v in prepare_kwargs.items() if v is not None}
        return self.prepare(clip_or_video, **kwargs)

    @staticmethod
    def _timings(clip: PreparedClip, t_call: float, run: dict[str, float]) -> dict[str, float]:
        """Stage timings of one request. The clip's own stages (decode, tracking, vision) are reported
        by the first request on it (then 0: shared work is counted once); ``total`` adds the clip's
        preparation time to this call's when it is reported here."""
        first = not clip.timings_reported
        clip.timings_reported = True
        out = {k: (clip.timings.get(k, 0.0) if first else 0.0) for k in ("decode", "tracking", "vision")}
        out.update(run)
        call = time.perf_counter() - t_call
        # prepare() inside this call is already part of `call`; a clip prepared earlier is added once.
        prepared_here = clip.prepared_at >= t_call
        out["total"] = call + (clip.timings.get("prepare", 0.0) if first and not prepared_here else 0.0)
        return out

    def _request(
        self,
        clip_or_video: PreparedClip | PathLike | Any,
        masks: np.ndarray | Sequence[np.ndarray] | None,
        frame: int | None,
        frame_masks: Sequence[FrameMasks] | None,
        question: str | None,
        options: Sequence[str] | None,
        stream: StreamFn | None,
        max_new_tokens: int | None,
        generate_kwargs: dict[str, Any],
    ) -> dict[str, Any]:
        """One describe (``question=None``) or ask request: the :class:`DescribeResult` fields."""
        t0 = time.perf_counter()
        clip = self._clip_for(clip_or_video, {"masks": masks, "frame": frame, "frame_masks": frame_masks})
        source = "describe" if question is None else "--question"
        gen, inputs, run = self._run(clip, question, options, stream, max_new_tokens, generate_kwargs, source)
        timings = self._timings(clip, t0, run)
        return {
            "text": gen.text,
            "frames": list(clip.frames),
            "objects": clip.objects_json(),
            "tracker": clip.tracker,
            "tracker_reason": clip.tracker_reason,
            "model": self.model_name,
            "timings": timings,
            "notes": list(clip.notes),
            "prompt_tokens": inputs.length,
            "new_tokens": gen.num_tokens,
        }

    # -- public requests -------------------------------------------------------------------------------------
    def describe(
        self,
        clip_or_video: PreparedClip | PathLike | Any,
        masks: np.ndarray | Sequence[np.ndarray] | None = None,
        frame: int | None = None,
        frame_masks: Sequence[FrameMasks] | None = None,
        *,
        stream: StreamFn | None = None,
        max_new_tokens: int | None = None,
        **generate_kwargs: Any,
    ) -> DescribeResult:
        """Describe the objects of a clip (one object: GAR's detailed region caption).

        Args:
            clip_or_video: a :class:`PreparedClip`, or a video (then give ``masks``/``frame`` or
                ``frame_masks`` as for :meth:`prepare`).
            stream: called with each new piece of text as it is generated.
            max_new_tokens: generation length (default: the instance's).
            **generate_kwargs: passed to generation (greedy unless ``do_sample=True``).
        """
        clip_args = (clip_or_video, masks, frame, frame_masks)
        return DescribeResult(
            **self._request(*clip_args, None, None, stream, max_new_tokens, generate_kwargs)
        )

    def ask(
        self,
        clip_or_video: PreparedClip | PathLike | Any,
        question: str,
        options: Sequence[str] | None = None,
        masks: np.ndarray | Sequence[np.ndarray] | None = None,
        frame: int | None = None,
        frame_masks: Sequence[FrameMasks] | None = None,
        *,
        stream: StreamFn | None = None,
        max_new_tokens: int | None = None,
        **generate_kwargs: Any,
    ) -> AnswerResult:
        """Answer a question about the objects of a clip, free-form or multiple choice.

        Args:
            clip_or_video: a :class:`PreparedClip`, or a video (with ``masks``/``frame`` or ``frame_masks``).
            question: the question; objects are ``<object0>``, ``<object1>``, … in mask order.
            options: option texts for a multiple-choice question, lettered A, B, … in order (the model's
                multiple-choice format); the answer's :attr:`AnswerResult.letter` is the option chosen.
            stream, max_new_tokens, **generate_kwargs: as for :meth:`describe`.

        Raises:
            InputError: an empty question, fewer than 2 options, a reference to a missing object.
        """
        if not isinstance(question, str) or not question.strip():
            raise InputError("--question", "the question is empty")
        if options is not None:
            options = [str(o) for o in options]
            if len(options) < 2:
                raise InputError(
                    "--option", f"a multiple-choice question needs at least 2 options, got {len(options)}"
                )
        clip_args = (clip_or_video, masks, frame, frame_masks)
        fields = self._request(*clip_args, question, options, stream, max_new_tokens, generate_kwargs)
        letter = None
        if options is not None:
            from garvideo.model import parse_choice

            letter = parse_choice(fields["text"], len(options))
        return AnswerResult(
            **fields,
            question=question,
            options=list(options) if options is not None else None,
            letter=letter,
        )


# ----------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------
def _open(video: Any) -> tuple[Any, bool]:
    """A :class:`garvideo.video.Video` and whether we opened it."""
    if hasattr(video, "frames") and hasattr(video, "num_frames"):
        return video, False
    from garvideo.video import open_video

    return open_video(video), True


def _check_mask(mask: Any, size: tuple[int, int], source: str) -> np.ndarray:
    from garvideo.model.processing import as_binary_mask

    m = as_binary_mask(mask, size, source=source)
    if not m.any():
        raise InputError(source, "mask is empty (no pixel set)")
    return m


def _check_frame_masks(fm: Any, n: int, size: tuple[int, int], obj: int) -> dict[int, np.ndarray | None]:
    from garvideo.model.processing import as_binary_mask

    if not isinstance(fm, Mapping):
        raise InputError(f"frame_masks[{obj}]", "must map frame indices to masks")
    out: dict[int, np.ndarray | None] = {}
    for f, m in fm.items():
        try:
            fi = int(f)
        except (TypeError, ValueError) as exc:
            raise InputError(f"frame_masks[{obj}]", f"frame key {f!r} is not an integer") from exc
        if not 0 <= fi < n:
            raise InputError(f"frame_masks[{obj}]", f"frame {fi} is out of range: the video has {n} frames")
        if m is None:
            out[fi] = None
            continue
        b = as_binary_mask(m, size, source=f"frame_masks[{obj}][{fi}]")
        out[fi] = b if b.any() else None
    if not out:
        raise InputError(f"frame_masks[{obj}]", "no frames given")
    if all(v is None for v in out.values()):
        raise InputError(f"frame_masks[{obj}]", "the object has no non-empty mask on any frame")
    return out


def _keyframes_from_given(
    given: list[dict[int, np.ndarray | None]], n: int, k: int, strategy: str, fps: float, per_second: float
) -> list[int]:
    """Keyframes among the annotated frames (those with an entry for some object).

    ``uniform`` / ``videorefer`` / ``fps`` pick frames over the whole clip and take the nearest
    annotated frame for each (earlier on a tie), filling up uniformly from the remaining annotated
    frames if two picks meet; ``visible`` picks among the annotated frames by visibility.
    """
    cands = sorted(set().union(*(set(fm) for fm in given)))
    if strategy == "visible":
        vis = np.array([[fm.get(f) is not None for fm in given] for f in cands], dtype=bool)
        return [cands[i] for i in select_keyframes(len(cands), k, "visible", visible=vis)]
    picks = select_keyframes(n, k, strategy, fps=fps or None, per_second=per_second)
    arr = np.array(cands)
    chosen = sorted({int(arr[np.argmin(np.abs(arr - p))]) for p in picks})
    want = min(k if strategy != "fps" else len(picks), len(cands))
    if len(chosen) < want:
        rest = [f for f in cands if f not in set(chosen)]
        from garvideo.keyframes import segment_midpoints

        chosen = sorted(set(chosen) | {rest[i] for i in segment_midpoints(len(rest), want - len(chosen))})
    return chosen


def load_model_or_none(gv: GarVideo) -> ModelUnavailableError | None:
    """Load ``gv``'s model; return the :class:`ModelUnavailableError` instead of raising it (for callers
    that can do useful work without weights, e.g. track and draw an overlay first)."""
    try:
        gv.bundle  # noqa: B018 - loads the model
    except ModelUnavailableError as exc:
        return exc
    return None
