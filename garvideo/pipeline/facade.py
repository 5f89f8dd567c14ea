"""The facade: :class:`GarVideo` holds the settings, loads the model and builds the tracker (:meth:`GarVideo.load`,
or on first use), and calls the stages in order, each with the inputs it uses:
:func:`~garvideo.pipeline.clip.prepare_clip` (tracking, keyframes), :func:`~garvideo.pipeline.encoding.encode_clip`,
:func:`~garvideo.pipeline.prompt.build_prompt_inputs`, the budget check
(:class:`~garvideo.pipeline.budget.TokenBudget`), :func:`~garvideo.pipeline.generation.run_request` and, for many
questions, :func:`~garvideo.pipeline.batching.answer_batch`. No stage sees the facade."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from garvideo.errors import InputError, PathLike
from garvideo.pipeline.batching import Question, ResultFn, answer_batch
from garvideo.pipeline.budget import DEFAULT_MAX_NEW_TOKENS, TokenBudget
from garvideo.pipeline.clip import prepare_clip
from garvideo.pipeline.encoding import encode_clip
from garvideo.pipeline.generation import StreamFn, request_timings, run_request
from garvideo.pipeline.prepared import FrameMasks, PreparedClip
from garvideo.pipeline.prompt import PromptInputs, build_prompt_inputs, check_question
from garvideo.pipeline.results import AnswerResult, DescribeResult, build_result, dtype_name, result_fields
from garvideo.pipeline.settings import PipelineSettings
from garvideo.trackers.base import ProgressFn, Tracker
from garvideo.trackers.build import build_tracker
from garvideo.trackers.types import VideoLike

if TYPE_CHECKING:
    from garvideo.model import GarBundle

__all__ = ["GarVideo"]

logger = logging.getLogger(__name__)


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
        device, dtype: passed to :func:`garvideo.model.load_gar` (default: CUDA when available; dtype
            ``$GARVIDEO_DTYPE``, else ``"auto"``: bf16 on CUDA and on CPUs with native bf16, else float32).
            :attr:`model_dtype` and the results' ``dtype`` say which was used.
        include_prompt_frame: make the prompt frame one of the keyframes.
        per_second: keyframes per second for ``keyframes="fps"``.
        max_new_tokens: default generation length (reserved in the token budget).
        tracker_options: options for :func:`garvideo.trackers.build_tracker` (e.g. ``sam2_checkpoint``).
        settings: all of ``num_frames`` … ``max_new_tokens`` as one :class:`PipelineSettings`; when given,
            those arguments are not read.
    """

    def __init__(
        self,
        model: str | PathLike | GarBundle | None = None,
        tracker: str | Tracker = "auto",
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
        settings: PipelineSettings | None = None,
    ) -> None:
        if settings is None:
            settings = PipelineSettings(
                num_frames=num_frames,
                keyframes=keyframes,
                include_prompt_frame=include_prompt_frame,
                per_second=per_second,
                roi_mode=roi_mode,
                max_new_tokens=max_new_tokens,
            )
        self.settings = settings
        self.device = device
        self.dtype = dtype
        self.tracker_options = dict(tracker_options or {})
        self._bundle: GarBundle | None = None
        self._model_spec: str | PathLike | GarBundle | None = model
        if model is not None and not isinstance(model, (str, os.PathLike)):
            self._bundle = model  # a loaded GarBundle
        self._tracker: Tracker | None = None
        self._tracker_spec = tracker
        if not isinstance(tracker, str):
            self._tracker = tracker

    @classmethod
    def from_pretrained(cls, model: str | PathLike | GarBundle | None = None, **options: Any) -> GarVideo:
        """Build a :class:`GarVideo` and load it now: the model's weights and the tracker.

        The constructor transformers users reach for first; ``GarVideo(model, ...)`` does the same but loads
        lazily, on first use.

        Args:
            model: hub id or local folder of a GAR checkpoint (as for :class:`GarVideo`); default
                ``$GARVIDEO_MODEL`` or ``HaochenWang/GAR-1B``.
            **options: the other :class:`GarVideo` arguments (``tracker``, ``num_frames``, ``device``,
                ``dtype``, ...).

        Raises:
            InputError: a bad option or checkpoint.
            ModelUnavailableError: no weights offline (the message says how to get them).

        Example::

            gv = GarVideo.from_pretrained("HaochenWang/GAR-1B", tracker="auto", num_frames=8)
        """
        return cls(model=model, **options).load()

    def load(self, *, tracker: bool = True) -> GarVideo:
        """Load the model's weights and (``tracker=True``) build the tracker now; returns ``self``.

        Without it both happen on first use. Idempotent.

        Raises:
            ModelUnavailableError: no weights offline (the message says how to get them).
            InputError: a bad checkpoint or tracker option.
        """
        self.bundle  # noqa: B018 - the one place a property is touched to load
        if tracker:
            self.tracker  # noqa: B018 - builds the tracker ("auto" resolves here)
        return self

    def __repr__(self) -> str:
        """The model (and whether it is loaded), the tracker and K; never loads anything."""
        model = f"{self.model_name!r}" + ("" if self.model_loaded else " (not loaded)")
        tracker = self.tracker_name if self._tracker is not None else f"{self._tracker_spec} (not built)"
        dtype = f", dtype={self.model_dtype!r}" if self.model_loaded else ""
        return (
            f"GarVideo(model={model}, tracker={tracker!r}, num_frames={self.num_frames}, "
            f"keyframes={self.keyframes!r}, roi_mode={self.roi_mode!r}{dtype})"
        )

    # -- the settings, by name (read-only: per-call overrides go through the methods' arguments) ----------
    @property
    def num_frames(self) -> int:
        return self.settings.num_frames

    @property
    def keyframes(self) -> str:
        return self.settings.keyframes

    @property
    def roi_mode(self) -> str:
        return self.settings.roi_mode

    @property
    def include_prompt_frame(self) -> bool:
        return self.settings.include_prompt_frame

    @property
    def per_second(self) -> float:
        return self.settings.per_second

    @property
    def max_new_tokens(self) -> int:
        return self.settings.max_new_tokens

    # -- lazily built parts -----------------------------------------------------------------------------
    @property
    def bundle(self) -> GarBundle:
        """The loaded :class:`garvideo.model.GarBundle` (loaded on first access).

        Raises:
            ModelUnavailableError: no weights offline (the message says how to get them).
        """
        if self._bundle is None:
            # Local: garvideo.model.loading imports transformers; importing the facade does not.
            from garvideo.model import load_gar

            spec = self._model_spec
            assert spec is None or isinstance(spec, (str, os.PathLike))  # a bundle was taken in __init__
            t0 = time.perf_counter()
            self._bundle = load_gar(spec, dtype=self.dtype, device=self.device)
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
        if isinstance(self._model_spec, (str, os.PathLike)):
            return os.fspath(self._model_spec)
        from garvideo.model import DEFAULT_MODEL, MODEL_ENV  # local: transformers (see bundle)

        return os.environ.get(MODEL_ENV) or DEFAULT_MODEL

    @property
    def model_dtype(self) -> str:
        """The model's dtype name (``"float32"``, ``"bfloat16"``): the loaded model's, or (before loading) what
        ``dtype`` resolves to on ``device`` (``"auto"``: see :func:`garvideo.model.loading.auto_dtype`)."""
        if self._bundle is not None:
            return dtype_name(self._bundle.dtype)
        from garvideo.model.loading import resolve_device, resolve_dtype  # local: transformers (see bundle)

        return dtype_name(resolve_dtype(self.dtype, resolve_device(self.device)))

    @property
    def tracker(self) -> Tracker:
        """The :class:`garvideo.trackers.Tracker` (built on first access)."""
        if self._tracker is None:
            spec = self._tracker_spec
            assert isinstance(spec, str)  # a Tracker was taken in __init__
            self._tracker = build_tracker(spec, **self.tracker_options)
        return self._tracker

    def _build_tracker(self) -> Tracker:
        """The tracker, built now if needed (what :func:`prepare_clip` calls when it tracks)."""
        return self.tracker

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

    # -- budget -------------------------------------------------------------------------------------------
    def token_budget(self) -> TokenBudget:
        """The :class:`TokenBudget` of the loaded model, or GAR-1B's defaults before loading (never loads)."""
        return TokenBudget.for_bundle(self._bundle)

    def context_length(self) -> int:
        """The model's context in positions (``max_position_embeddings``); GAR-1B's 11,520 before loading."""
        return self.token_budget().context_length

    def max_keyframes(self, num_objects: int, max_new_tokens: int | None = None) -> int:
        """The most keyframes that fit the context with ``num_objects`` objects (budget rule).

        ``K · (256 + 256 · objects) + text + QUESTION_RESERVE + max_new_tokens <= context``.
        """
        new = self.settings.with_overrides(max_new_tokens=max_new_tokens).max_new_tokens
        return self.token_budget().max_keyframes(num_objects, new)

    # -- prepare ------------------------------------------------------------------------------------------
    def prepare(
        self,
        video: PathLike | VideoLike,
        masks: np.ndarray | Sequence[np.ndarray] | None = None,
        frame: int = 0,
        frame_masks: Sequence[FrameMasks] | None = None,
        *,
        num_frames: int | None = None,
        keyframes: str | None = None,
        include_prompt_frame: bool | None = None,
        encode: bool = True,
        track_all_frames: bool = False,
        progress: ProgressFn | None = None,
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
            InputError: a bad ``num_frames`` / ``keyframes``, no or both mask forms, 0 or more than 5
                objects, a mask of the wrong size or empty, a frame out of range, no keyframe fitting the
                context.
            ModelUnavailableError: ``encode=True`` and no weights.
        """
        settings = self.settings.with_overrides(
            num_frames=num_frames, keyframes=keyframes, include_prompt_frame=include_prompt_frame
        )
        # The model is loaded first when encoding: the budget counts with its tokenizer and context.
        encoder = self.bundle if encode else None
        return prepare_clip(
            video,
            masks,
            frame,
            frame_masks,
            settings=settings,
            budget=self.token_budget(),
            tracker=self._build_tracker,
            encoder=encoder,
            track_all_frames=track_all_frames,
            progress=progress,
        )

    # -- encode -------------------------------------------------------------------------------------------
    def encode(self, clip: PreparedClip) -> PreparedClip:
        """Encode the clip's keyframes (one 448×448 tile each, with the frame's union mask) and replay each
        object's regions from its own frame's map and box. Done once per clip; a no-op afterwards."""
        return encode_clip(self.bundle, clip, self.settings.roi_mode)

    # -- prompt -------------------------------------------------------------------------------------------
    def prompt_inputs(
        self, clip: PreparedClip, question: str | None = None, options: Sequence[str] | None = None
    ) -> PromptInputs:
        """The token ids of a describe (``question=None``) or ask request on ``clip``.

        The question's ``<objectK>`` references become the objects' prompt tokens; with ``options``, the
        question is put in the model's multiple-choice format (:func:`format_multiple_choice`).
        """
        return build_prompt_inputs(self.bundle, clip, question, options)

    def _clip_for(
        self,
        clip_or_video: PreparedClip | PathLike | VideoLike,
        masks: np.ndarray | Sequence[np.ndarray] | None,
        frame: int | None,
        frame_masks: Sequence[FrameMasks] | None,
    ) -> PreparedClip:
        if isinstance(clip_or_video, PreparedClip):
            if masks is not None or frame is not None or frame_masks is not None:
                raise InputError(
                    "masks", "a prepared clip already has its masks; pass them to prepare() instead"
                )
            return clip_or_video
        return self.prepare(clip_or_video, masks, 0 if frame is None else frame, frame_masks)

    def _request(
        self,
        clip_or_video: PreparedClip | PathLike | VideoLike,
        masks: np.ndarray | Sequence[np.ndarray] | None,
        frame: int | None,
        frame_masks: Sequence[FrameMasks] | None,
        question: str | None,
        options: list[str] | None,
        stream: StreamFn | None,
        max_new_tokens: int | None,
        generate_kwargs: dict[str, Any],
    ) -> dict[str, Any]:
        """One describe (``question=None``) or ask request, stage by stage: the :class:`DescribeResult`
        fields."""
        t0 = time.perf_counter()
        clip = self._clip_for(clip_or_video, masks, frame, frame_masks)
        settings = self.settings.with_overrides(max_new_tokens=max_new_tokens)
        bundle = self.bundle
        encode_clip(bundle, clip, settings.roi_mode)
        inputs = build_prompt_inputs(bundle, clip, question, options)
        source = "max_new_tokens" if question is None else "question"
        self.token_budget().check_request(inputs.length, settings.max_new_tokens, source)
        gen, run = run_request(
            bundle,
            clip,
            inputs,
            max_new_tokens=settings.max_new_tokens,
            stream=stream,
            generate_kwargs=generate_kwargs,
        )
        return result_fields(clip, bundle, gen, inputs.length, request_timings(clip, t0, run))

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
        if not isinstance(question, str):
            raise InputError("question", "the question is empty")
        checked = check_question(question, options)
        clip_args = (clip_or_video, masks, frame, frame_masks)
        fields = self._request(*clip_args, question, checked, stream, max_new_tokens, generate_kwargs)
        return build_result(fields, question, checked)

    def run_batch(
        self,
        questions: Sequence[Question],
        *,
        batch_size: int = 8,
        return_exceptions: bool = False,
        on_result: ResultFn | None = None,
    ) -> list[DescribeResult | AnswerResult]:
        """Answer many describe / ask requests on prepared clips, generating up to ``batch_size`` at once.

        Questions on one clip go together (and share the clip's prefix KV cache); a batch is filled up with
        the next clip's questions. Greedy decoding only.

        Args:
            questions: :class:`Question` items (``question=None`` for a describe request).
            batch_size: the most questions generated at once (1: one by one).
            return_exceptions: give each question's error as its entry of the list instead of raising (the
                other questions are answered); a :attr:`Question.stream` that raises stops its row only.
            on_result: ``on_result(index, result_or_error)`` for each question as soon as its row has ended
                (rows that end early leave the batch and are reported before it ends).

        Returns:
            One result per question, in input order: a :class:`DescribeResult` for ``question=None``, else an
            :class:`AnswerResult`. In float32 the text, letter and token count equal those of calling
            :meth:`describe` / :meth:`ask` one by one (tested); in bf16 they may differ where two tokens are
            nearly tied.

        Raises:
            InputError: a bad question (checked for all questions before any generation), a prompt over the
                context, ``batch_size < 1``.
        """
        return answer_batch(
            self.bundle,
            questions,
            settings=self.settings,
            budget=self.token_budget(),
            batch_size=batch_size,
            return_exceptions=return_exceptions,
            on_result=on_result,
        )

