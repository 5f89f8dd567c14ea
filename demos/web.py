"""The garvideo web demo (Gradio): upload a clip, give objects on one frame, see the propagated masks,
then read the description or the answer as it is generated.

Run it with::

    pip install -e ".[demo]"                                          # in a garvideo clone
    python -m garvideo.demos.web --model HaochenWang/GAR-1B            # or a local folder
    python -m garvideo.demos.web --model /tmp/tiny --tracker flow      # a tiny random model (smoke test)

and open http://127.0.0.1:7860. In the page:

1. upload a clip (mp4, webm, avi, ...);
2. pick the prompt frame with the slider;
3. give each object (``<object0>``, ``<object1>``, ...) by uploading a mask file (PNG id map, 0/255
   PNG, ``.npy`` or COCO RLE ``.json``; an id map gives several objects at once) or, when a SAM 2
   checkpoint is available (``--sam2-checkpoint`` or ``$GARVIDEO_SAM2_CHECKPOINT``), by clicking
   positive/negative points or the two corners of a box on the frame: SAM 2 turns them into a mask;
4. press *Run*: the masks are propagated through the clip and shown as a video, then the
   description (or the answer to a question about ``<object0>``...) is streamed into the text box.

This module only wires the page: tracking, overlays, the model and prompts all come from the
library (:mod:`garvideo.trackers`, :mod:`garvideo.overlay`, :mod:`garvideo.pipeline`). The logic a
page event runs lives in :class:`WebDemo` (no Gradio in it), so it is testable without a browser.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import logging
import os
import queue
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from garvideo.demos._common import add_model_args, add_tracker_args, demo_options, error_line
from garvideo.errors import GarVideoError, InputError, ModelUnavailableError
from garvideo.masks import load_mask
from garvideo.options import GarVideoOptions, build_garvideo
from garvideo.overlay import draw_masks, object_color, render_overlay
from garvideo.pipeline import rewrite_object_refs
from garvideo.trackers import TRACKERS, Prompt, build_tracker, find_sam2_checkpoint, masks_from_prompts
from garvideo.trackers.text import TextDetector, text_prompts
from garvideo.video import open_video

logger = logging.getLogger(__name__)

MAX_OBJECTS = 5
"""GAR's prompt vocabulary has five region tokens, ``<Prompt0>`` … ``<Prompt4>`` (its tokenizer's
added tokens from id 128256), so a question can name at most five objects."""

CLICK_MODES = ("positive point", "negative point", "box corner")
TASKS = ("describe", "ask")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860

# Colours of the prompt markers drawn on the frame preview (RGB).
_POSITIVE = (40, 220, 40)
_NEGATIVE = (230, 40, 40)
_BOX = (255, 230, 0)


# ----------------------------------------------------------------------------------------------------
# per-browser-session state
# ----------------------------------------------------------------------------------------------------
@dataclass
class ObjectPrompt:
    """What the user gave for one object on the prompt frame.

    Attributes:
        mask: ``(H, W)`` bool mask (uploaded, or made by SAM 2 from the clicks); ``None`` when none yet.
        points: clicked points ``(x, y, label)``, label 1 positive / 0 negative.
        box: ``(x0, y0, x1, y1)`` in pixels, from two box-corner clicks.
        pending_corner: the first corner of a box being drawn.
        source: ``"upload"`` or ``"sam2"`` (where ``mask`` came from).
    """

    mask: np.ndarray | None = None
    points: list[tuple[float, float, int]] = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None
    pending_corner: tuple[float, float] | None = None
    source: str = ""


@dataclass
class SessionState:
    """One browser tab's clip and prompts (kept in a ``gr.State``; plain data only).

    Attributes:
        video: path of the uploaded clip (``None`` before an upload).
        num_frames, height, width, fps: the clip's facts.
        frame: the prompt frame.
        objects: object index (0 for ``<object0>``, ...) → its prompt on ``frame``.
        text_found, text_object: the candidates of the last text ("name the object") and the object
            whose mask is the picked one.
    """

    video: str | None = None
    num_frames: int = 0
    height: int = 0
    width: int = 0
    fps: float = 0.0
    frame: int = 0
    objects: dict[int, ObjectPrompt] = field(default_factory=dict)
    text_found: Any = None  # the last "name the object" detection (TextDetection) on ``frame``
    text_object: int = 0  # the object it fills

    def masks(self) -> list[np.ndarray]:
        """The objects' masks in order ``<object0>``, ``<object1>``, …

        Raises:
            InputError: no clip, no object, an object without a mask, or a gap in the numbering.
        """
        if self.video is None:
            raise InputError("clip", "upload a clip first")
        given = sorted(i for i, o in self.objects.items() if o.mask is not None)
        if not given:
            raise InputError("objects", "give at least one object: upload a mask or click on the frame")
        for want, have in enumerate(given):
            if want != have:
                raise InputError(f"object{want}", f"has no mask but object{have} has (number objects from 0)")
        return [self.objects[i].mask for i in given]  # type: ignore[misc]


@dataclass(frozen=True)
class RunUpdate:
    """One step of a run, as the page shows it.

    Attributes:
        video: path of the overlay video (``None`` until the masks are propagated).
        text: the description or answer generated so far.
        status: a short Markdown line on what is happening / what was done.
        done: whether this is the last update.
    """

    video: str | None
    text: str
    status: str
    done: bool = False


# ----------------------------------------------------------------------------------------------------
# the logic behind the page
# ----------------------------------------------------------------------------------------------------
class WebDemo:
    """Everything the page does, without Gradio: load the model once, then serve page events.

    Args:
        options: the model, the tracker (a name or a built :class:`garvideo.trackers.Tracker`), the SAM 2
            checkpoint (default ``$GARVIDEO_SAM2_CHECKPOINT`` or one in the Hugging Face cache: the
            ``sam2``/``auto`` tracker, and clicks → masks in the page whatever the tracker; with a ``sam2``
            tracker, clicks use that tracker's model), the device, K and the answer length
            (``settings.max_new_tokens``); see :func:`garvideo.demos._common.demo_options`.
        workdir: where overlay videos are written (default: a new temporary folder).
        sam3_checkpoint, text_threshold: SAM 3's concept detector for "name the object" (built on the
            first text; default ``$GARVIDEO_SAM3_CHECKPOINT``, else ``facebook/sam3``).

    Raises:
        InputError: a bad option or checkpoint.
        ModelUnavailableError: no GAR weights (offline, nothing on disk).
    """

    def __init__(
        self,
        options: GarVideoOptions,
        *,
        workdir: os.PathLike | None = None,
        sam3_checkpoint: str | None = None,
        text_threshold: float = 0.5,
    ) -> None:
        if isinstance(options.tracker, str) and options.tracker not in TRACKERS:
            raise InputError(
                "tracker", f"unknown tracker {options.tracker!r} (choose from {', '.join(TRACKERS)})"
            )
        found = find_sam2_checkpoint(options.sam2_checkpoint)
        self.sam2_checkpoint = found
        self.max_new_tokens = options.settings.max_new_tokens
        self._own_workdir = workdir is None  # made here: removed by close()
        self.workdir = (
            Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="garvideo-web-"))
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Load the weights and build the tracker now: a missing checkpoint stops the demo at start
        # (ModelUnavailableError), not at the first click, and the page can name what it runs.
        self.pipeline = build_garvideo(replace(options, sam2_checkpoint=found)).load()
        self.bundle = self.pipeline.bundle
        built = self.pipeline.tracker  # "auto" resolved to sam2 or flow by load()
        self.model_name = self.pipeline.model_name
        self.random_weights = has_random_weights(self.bundle)
        self._clip: Any = None  # the last PreparedClip, reused while the clip, frame and masks stay the same
        self._clip_key: tuple | None = None
        # SAM 2 for clicks → mask: the tracker itself when it is SAM 2, else built from the checkpoint
        # on the first click.
        self._segmenter: Any = built if getattr(built, "name", "") == "sam2" else None
        self._lock = threading.Lock()  # one model call at a time (the page also queues runs)
        self.sam3_checkpoint, self.text_threshold, self._device = (
            sam3_checkpoint,
            float(text_threshold),
            options.device,
        )
        self._detector: Any = None  # SAM 3's concept detector, built on the first text
        self._run_id = 0

    # -- page text ------------------------------------------------------------------------------
    @property
    def clicks_available(self) -> bool:
        """Whether points and boxes can be turned into masks (SAM 2 is loaded, or a checkpoint is known)."""
        return self._segmenter is not None or self.sam2_checkpoint is not None

    def banner(self) -> str:
        """Markdown shown at the top of the page: the model, and a warning for random weights."""
        lines = [
            f"**Model:** {md_code(self.model_name)} &nbsp; **Tracker:** {md_code(self.pipeline.tracker_name)}"
        ]
        if self.pipeline.tracker_reason:  # which tracker runs and why (e.g. flow because offline)
            lines.append(f"\n*Tracker chosen: {md_literal(self.pipeline.tracker_reason)}*")
        if self.random_weights:
            lines.append(
                "\n> ⚠️ **Random tiny model.** These weights are randomly initialised (a tiny GAR made by "
                "`garvideo make-tiny-model`): the text it produces is meaningless. The page only shows "
                "that the pipeline runs end to end. Start the demo with `--model HaochenWang/GAR-1B` "
                "(or a local checkpoint folder) for real descriptions."
            )
        if not self.clicks_available:
            lines.append(
                "\n*No SAM 2 checkpoint: give objects by uploading a mask (works with every tracker). "
                "Clicking points and drawing boxes need SAM 2: start with `--sam2-checkpoint PATH`, or "
                "online with the default `--tracker auto`, which downloads SAM 2.1.*"
            )
        return "\n".join(lines)

    def describe_prompts(self, state: SessionState) -> str:
        """Markdown summary of the objects given so far."""
        if state.video is None:
            return "Upload a clip to start."
        parts = [
            f"Clip: {state.num_frames} frames, {state.width}×{state.height}; prompt frame {state.frame}."
        ]
        if not state.objects:
            parts.append("No object yet.")
        for i in sorted(state.objects):
            o = state.objects[i]
            what = []
            if o.mask is not None:
                what.append(f"mask of {int(o.mask.sum())} px ({md_literal(o.source)})")
            if o.points:
                what.append(f"{len(o.points)} point(s)")
            if o.box is not None:
                what.append("a box")
            elif o.pending_corner is not None:
                what.append("first box corner (click the opposite corner)")
            parts.append(
                f"`<object{i}>` (id {i + 1} in the video): " + (", ".join(what) if what else "nothing yet")
            )
        return "  \n".join(parts)

    # -- clip and frame -------------------------------------------------------------------------
    def open_clip(self, path: str | None) -> SessionState:
        """A fresh state for the clip at ``path`` (``None``: no clip), prompt frame 0."""
        if not path:
            return SessionState()

        with open_video(path) as video:
            return SessionState(
                video=str(path),
                num_frames=video.num_frames,
                height=video.height,
                width=video.width,
                fps=video.fps,
            )

    def set_frame(self, state: SessionState, frame: int) -> SessionState:
        """Move the prompt frame; prompts given on another frame are dropped."""
        if state.video is None:
            return state
        frame = int(frame)
        if not 0 <= frame < state.num_frames:
            raise InputError("frame", f"{frame} is out of range (the clip has {state.num_frames} frames)")
        if frame == state.frame:
            return state
        return replace(state, frame=frame, objects={}, text_found=None)

    def render_frame(self, state: SessionState) -> np.ndarray | None:
        """The prompt frame with the objects' masks, points and boxes drawn: ``(H, W, 3)`` uint8."""
        if state.video is None:
            return None

        with open_video(state.video) as video:
            image = video.frame(state.frame)
        # <object{i}> is tracked (and drawn) as object id i + 1, as the pipeline numbers them.
        image = np.ascontiguousarray(
            draw_masks(image, {i + 1: o.mask for i, o in state.objects.items() if o.mask is not None})
        )
        r = max(3, round(min(state.height, state.width) / 80))
        for o in state.objects.values():
            for x, y, label in o.points:
                cv2.circle(image, (round(x), round(y)), r, _POSITIVE if label else _NEGATIVE, -1, cv2.LINE_AA)
                cv2.circle(image, (round(x), round(y)), r, (255, 255, 255), 1, cv2.LINE_AA)
            if o.box is not None:
                x0, y0, x1, y1 = (round(v) for v in o.box)
                cv2.rectangle(image, (x0, y0), (x1, y1), _BOX, 2)
            if o.pending_corner is not None:
                x, y = (round(v) for v in o.pending_corner)
                cv2.drawMarker(image, (x, y), _BOX, cv2.MARKER_CROSS, 3 * r, 2)
        if state.text_found is not None:
            draw_candidates(image, state.text_found)
        return image

    # -- text: name the object ------------------------------------------------------------------
    def find_text(self, state: SessionState, text: str, obj: int) -> SessionState:
        """Run SAM 3's concept detector for ``text`` on the prompt frame; the best candidate becomes
        ``<object{obj}>``'s mask (:meth:`pick_text` chooses another).

        Raises:
            InputError: no clip, an empty text; ``NoTextMatchError`` (the best scores listed) when no
                candidate is above the threshold.
        """
        if state.video is None:
            raise InputError("name the object", "upload a clip first")
        if not (text or "").strip():
            raise InputError("name the object", "type what the object is, e.g. 'the dog'")

        obj = _check_object(obj)
        with self._lock:
            if self._detector is None:
                self._detector = TextDetector(
                    self.sam3_checkpoint, device=self._device, threshold=self.text_threshold
                )
            with open_video(state.video) as video:
                _, (found,) = text_prompts(self._detector, video, [text.strip()], frame=state.frame)
        state = replace(state, text_found=found, text_object=obj)
        return self.pick_text(state, 0)

    def pick_text(self, state: SessionState, rank: int) -> SessionState:
        """Make candidate ``rank`` of the last text the mask of its object.

        Raises:
            InputError: no text found yet, or a rank beyond its candidates.
        """
        found = state.text_found
        if found is None:
            raise InputError("candidate", "name the object and press Find first")
        if not 0 <= int(rank) < len(found.candidates):
            raise InputError("candidate", f"#{rank} is not one of the {len(found.candidates)} candidates")
        chosen = found.candidates[int(rank)]
        objects = dict(state.objects)
        objects[state.text_object] = ObjectPrompt(
            mask=chosen.mask, source=f"text '{found.text}' #{chosen.rank}"
        )
        found = replace(found, picked=int(rank))
        return replace(state, objects=objects, text_found=found)

    def describe_candidates(self, state: SessionState) -> str:
        """Markdown list of the last text's candidates (rank, score, area, box), the picked one marked."""
        found = state.text_found
        if found is None:
            return ""
        head = f"Candidates for {md_literal(found.text)} on frame {found.frame} (score above "
        lines = [head + f"{found.threshold:g}), for `<object{state.text_object}>`:"]
        for c in found.candidates:
            box = ", ".join(f"{v:.0f}" for v in c.box)
            mark = " **← picked**" if c.rank == found.picked else ""
            lines.append(f"- #{c.rank}: score {c.score:.3f}, area {c.area} px, box ({box}){mark}")
        return "  \n".join(lines)

    # -- prompts --------------------------------------------------------------------------------
    def upload_mask(self, state: SessionState, path: str | None, obj: int) -> SessionState:
        """Read a mask file for ``<object{obj}>``; a file with several objects fills ``obj``, ``obj+1``, …

        Raises:
            InputError: no clip, an unreadable file, a size that differs from the clip's, or more
                objects than GAR's five region tokens.
        """
        if state.video is None:
            raise InputError("mask", "upload a clip first")
        if not path:
            return state

        obj = _check_object(obj)
        masks = load_mask(path, size=(state.height, state.width))
        if obj + len(masks) > MAX_OBJECTS:
            raise InputError(
                Path(path).name,
                f"holds {len(masks)} object(s); from object{obj} that goes past object{MAX_OBJECTS - 1} "
                f"(GAR takes at most {MAX_OBJECTS} objects)",
            )
        objects = dict(state.objects)
        for k, m in enumerate(masks):
            objects[obj + k] = ObjectPrompt(mask=m, source="upload")
        return replace(state, objects=objects)

    def click(self, state: SessionState, x: float, y: float, mode: str, obj: int) -> SessionState:
        """Add a point or a box corner for ``<object{obj}>`` at pixel ``(x, y)``; SAM 2 makes the mask.

        Raises:
            InputError: no clip, no SAM 2 checkpoint, a click outside the frame, an unknown mode.
        """
        if state.video is None:
            raise InputError("frame", "upload a clip first")
        if mode not in CLICK_MODES:
            raise InputError("click mode", f"unknown mode {mode!r} (choose from {', '.join(CLICK_MODES)})")
        if not self.clicks_available:
            raise InputError(
                "click",
                "points and boxes need a SAM 2 checkpoint (start the demo with --sam2-checkpoint PATH "
                "or set GARVIDEO_SAM2_CHECKPOINT); upload a mask instead",
            )
        obj = _check_object(obj)
        if not (0 <= x < state.width and 0 <= y < state.height):
            raise InputError("click", f"({x:g}, {y:g}) lies outside the {state.width}x{state.height} frame")
        cur = state.objects.get(obj, ObjectPrompt())
        cur = replace(cur, points=list(cur.points))
        # A tracker prompt is points or a box, not both (garvideo.trackers.Prompt): a finished box
        # replaces the object's points, and a point replaces its box.
        if mode == "box corner":
            if cur.pending_corner is None:
                cur.pending_corner = (float(x), float(y))
            else:
                (ax, ay), cur.pending_corner = cur.pending_corner, None
                cur.box, cur.points = (min(ax, x), min(ay, y), max(ax, x) + 1, max(ay, y) + 1), []
        else:
            cur.points.append((float(x), float(y), 1 if mode == "positive point" else 0))
            cur.box = None
        if cur.pending_corner is None and (cur.points or cur.box is not None):
            cur.mask, cur.source = self._segment(state, cur), "sam2"
        objects = dict(state.objects)
        objects[obj] = cur
        return replace(state, objects=objects)

    def clear_object(self, state: SessionState, obj: int) -> SessionState:
        """Forget what was given for ``<object{obj}>``."""
        objects = {k: v for k, v in state.objects.items() if k != _check_object(obj)}
        return replace(state, objects=objects)

    def _segment(self, state: SessionState, prompt: ObjectPrompt) -> np.ndarray:
        """SAM 2's mask on the prompt frame for the points (or the box) of one object."""

        if self._segmenter is None:
            self._segmenter = build_tracker("sam2", sam2_checkpoint=self.sam2_checkpoint)
        kwargs: dict[str, Any] = {}
        if prompt.box is not None:
            kwargs["box"] = prompt.box
        else:
            pts = np.array([(x, y) for x, y, _ in prompt.points], dtype=np.float32)  # (N, 2)
            kwargs.update(points=pts, labels=np.array([lab for _, _, lab in prompt.points], dtype=np.int64))
        with self._lock, open_video(state.video) as video:  # type: ignore[arg-type]
            # SAM 2 on the prompt frame alone, as --points / --box of describe and ask
            (mask,) = masks_from_prompts(
                self._segmenter, video, [Prompt(obj_id=1, frame=state.frame, **kwargs)]
            )
        return mask

    # -- running --------------------------------------------------------------------------------
    def run(
        self,
        state: SessionState,
        task: str,
        question: str = "",
        options: Sequence[str] = (),
    ) -> Iterator[RunUpdate]:
        """Propagate the masks, render the overlay, then describe or answer, streaming the text.

        Yields :class:`RunUpdate` s: first the overlay video with the tracks, then the text as it
        grows, and last (``done=True``) the final text, with the overlay re-rendered with the text
        burned in, and the timings. A clip prepared for one request (tracks, keyframe features, the
        prompt prefix) is reused by the next one on the same clip, frame and masks.

        Raises:
            InputError: no clip, no object, an unknown task, ``ask`` without a question, fewer than
                two options.
        """
        question, opts, masks = self.check_run(state, task, question, options)
        self._run_id += 1
        out = self.workdir / f"run{self._run_id:04d}"
        out.mkdir(parents=True, exist_ok=True)
        self._prune_runs(keep=2)
        t0 = time.perf_counter()
        with self._lock:
            clip = self._prepared(state, masks)
            overlay = _render_webm(clip, out / "tracks.webm")
        names = ", ".join(f"<object{i}>" for i in range(len(masks)))
        status = (
            f"Masks of {md_code(names)} propagated by {md_code(clip.tracker)} "
            f"({time.perf_counter() - t0:.1f} s); "
            f"{'describing' if task == 'describe' else 'answering'} from keyframes {clip.frames}…"
        )
        yield RunUpdate(video=str(overlay), text="", status=status)

        pieces: queue.Queue[str | None] = queue.Queue()
        outcome: dict[str, Any] = {}

        def generate() -> None:
            try:
                with self._lock:
                    if task == "describe":
                        outcome["result"] = self.pipeline.describe(clip, stream=pieces.put)
                    else:
                        outcome["result"] = self.pipeline.ask(clip, question, opts or None, stream=pieces.put)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the page's thread below
                outcome["error"] = exc
            finally:
                pieces.put(None)

        worker = threading.Thread(target=generate, name="garvideo-web-generate", daemon=True)
        worker.start()
        text = ""
        while (piece := pieces.get()) is not None:
            text += piece
            yield RunUpdate(video=str(overlay), text=text, status=status)
        worker.join()
        if "error" in outcome:
            raise outcome["error"]
        result = outcome["result"]
        caption = result.text if task == "describe" else f"Q: {question}\nA: {result.text}"
        with self._lock:
            final = _render_webm(clip, out / "overlay.webm", caption=caption)
        verb = "Described" if task == "describe" else "Answered"
        lines = [
            (
                f"{verb} in {time.perf_counter() - t0:.1f} s: keyframes {result.frames}, tracker "
                f"{md_code(result.tracker)}, {result.prompt_tokens} prompt tokens, {result.new_tokens} new tokens."
            )
        ]
        if getattr(result, "letter", None):
            lines.append(f"Chosen option: **{md_literal(result.letter)}**")
        spent = {k: v for k, v in result.timings.items() if v >= 0.005}
        lines.append(
            "Timings: "
            + ", ".join(f"{k} {v:.2f} s" for k, v in spent.items())
            + ("" if "prefill" in spent else " (tracks, keyframe features and prompt prefix reused)")
        )
        lines += [f"Note: {md_literal(n)}" for n in result.notes]
        yield RunUpdate(video=str(final), text=result.text, status="  \n".join(lines), done=True)

    def check_run(
        self, state: SessionState, task: str, question: str = "", options: Sequence[str] = ()
    ) -> tuple[str, list[str], list[np.ndarray]]:
        """Check a run's inputs before anything is done (the page runs this first, so a bad input
        leaves the previous result on the page). Returns the stripped question, options and the masks.

        Raises:
            InputError: see :meth:`run`.
        """

        if task not in TASKS:
            raise InputError("task", f"unknown task {task!r} (choose from {', '.join(TASKS)})")
        question = (question or "").strip()
        opts = [o.strip() for o in options if o and o.strip()]
        if task == "ask" and not question:
            raise InputError("question", "type a question (refer to the objects as <object0>, <object1>, …)")
        if len(opts) == 1:
            raise InputError("options", "give at least two options (one per line), or none for a free answer")
        masks = state.masks()
        if task == "ask":
            rewrite_object_refs(question, len(masks))
        return question, opts, masks

    def _prune_runs(self, keep: int) -> None:
        """Delete the run folders but the ``keep`` newest (the page may still show the previous run)."""
        runs = sorted(p for p in self.workdir.glob("run[0-9]*") if p.is_dir())
        for old in runs[:-keep] if keep > 0 else runs:
            shutil.rmtree(old, ignore_errors=True)

    def close(self) -> None:
        """Release the clip and delete the run folders (the whole work folder when made here)."""
        if self._clip is not None:
            self._clip.close()
            self._clip, self._clip_key = None, None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            self._prune_runs(keep=0)

    def _prepared(self, state: SessionState, masks: list[np.ndarray]) -> Any:
        """The :class:`garvideo.pipeline.PreparedClip` of ``state`` (reused when nothing changed)."""
        key = (state.video, state.frame, tuple(hash(m.tobytes()) for m in masks))
        if self._clip is not None and self._clip_key == key and self._clip.video is not None:
            return self._clip
        if self._clip is not None:
            self._clip.close()
        self._clip, self._clip_key = None, None
        if state.video is None:
            raise InputError("video", "choose a clip first")
        clip = self.pipeline.prepare(state.video, masks=masks, frame=state.frame, track_all_frames=True)
        self._clip, self._clip_key = clip, key
        return clip


def draw_candidates(image: np.ndarray, found: Any) -> None:
    """Draw a text's candidates on ``image`` (in place, (H, W, 3) uint8): each one's box in its colour
    (:func:`garvideo.overlay.object_color`) with ``#rank``; the picked one thicker, its mask tinted
    with :func:`garvideo.overlay.draw_masks` by the caller (it is the object's mask)."""

    h, w = image.shape[:2]
    scale = max(0.4, min(h, w) / 400)
    for c in found.candidates:
        x0, y0, x1, y1 = (round(v) for v in c.box)
        colour = object_color(c.rank + 1)
        cv2.rectangle(image, (x0, y0), (x1, y1), colour, 3 if c.rank == found.picked else 1)
        label = f"#{c.rank} {c.score:.2f}"
        org = (max(0, x0 + 2), max(12, y0 + round(14 * scale)))
        cv2.putText(image, label, org, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(image, label, org, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, colour, 1, cv2.LINE_AA)


def _render_webm(clip: Any, out: Path, caption: str | None = None) -> Path:
    """The overlay of a prepared clip as a ``.webm`` (VP8): a video the browser's ``<video>`` plays."""

    return Path(render_overlay(clip.video, clip.masks_by_frame(), out, caption=caption))


def has_random_weights(bundle: Any) -> bool:
    """Whether a loaded GAR holds random weights (a tiny model from ``garvideo.model.make_tiny_model``).

    Reads the model package's marker, ``GarBundle.random_weights`` (the ``garvideo_random_init`` key
    ``make_tiny_model`` writes into ``config.json``; official checkpoints never have it).
    """
    return bool(getattr(bundle, "random_weights", False))


def _check_object(obj: Any) -> int:
    try:
        k = int(str(obj).removeprefix("object").strip("<>"))
    except ValueError:
        raise InputError("object", f"not an object index: {obj!r}") from None
    if not 0 <= k < MAX_OBJECTS:
        raise InputError("object", f"object index must be in 0..{MAX_OBJECTS - 1}, got {k}")
    return k


# ----------------------------------------------------------------------------------------------------
# the page
# ----------------------------------------------------------------------------------------------------
_ABS_PATH = re.compile(r"(?<![\w.])/(?:[^\s/:;,()'\"]+/)+([^\s/:;,()'\"]+)")
# A library remedy for the command line in parentheses, e.g. masks' "(pass --resize-masks to resize it)":
# the page has no such option, so the hint is left out.
_FLAG_HINT = re.compile(r"\s*\([^()]*--[a-z][^()]*\)")

#: Library field (an :class:`~garvideo.errors.InputError`'s ``source``) -> what the page calls it. The page's
#: own errors already name its elements ("clip", "candidate", "click", ...); files are shown by their name.
PAGE_LABELS: dict[str, str] = {
    "video": "clip",
    "masks": "mask",
    "frame": "prompt frame",
    "points": "click",
    "box": "click",
    "question": "question",
    "options": "options",
    "num_frames": "keyframes",
    "keyframes": "keyframes",
    "max_new_tokens": "answer length",
    "text": "name the object",
    "text_pick": "candidate",
    "text_threshold": "candidate score",
    "tracker": "tracker",
    "sam2_checkpoint": "SAM 2 checkpoint",
    "sam3_checkpoint": "SAM 3 checkpoint",
}


_MD_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()#+\-.!|~])")


def md_literal(text: Any) -> str:
    """``text`` for a Markdown element of the page, shown as it is: HTML's ``&``, ``<`` and ``>`` as
    entities (Gradio renders Markdown's HTML, so ``<object0>`` would otherwise be taken as a tag and
    cut the line there) and Markdown's punctuation backslash-escaped (no emphasis, links or code)."""
    return _MD_PUNCTUATION.sub(r"\\\1", html.escape(str(text), quote=False))


def md_code(text: Any) -> str:
    """``text`` as a Markdown code span (shown verbatim: no HTML, entities or emphasis inside), fenced
    with more backticks than it holds in a row."""
    t = str(text).replace("\n", " ")
    longest = max((len(m) for m in re.findall(r"`+", t)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if t.startswith("`") or t.endswith("`") or longest else ""
    return f"{fence}{pad}{t}{pad}{fence}"


def toast_html(exc: GarVideoError) -> str:
    """:func:`toast_message` as the toast's HTML (Gradio puts a toast's message in as HTML): escaped,
    so a question, an option or a file name is shown as typed and cannot add markup or script."""
    return html.escape(toast_message(exc), quote=True)


def toast_message(exc: GarVideoError) -> str:
    """An error as the page shows it: file names without their (temporary) folders, page element
    names instead of library fields (:data:`PAGE_LABELS`), and no hints about command-line flags."""
    source = getattr(exc, "source", None)
    problem = getattr(exc, "problem", None) or str(exc)
    problem = _ABS_PATH.sub(lambda m: m.group(1), _FLAG_HINT.sub("", problem))
    if source is None:
        return problem
    field, sep, detail = source.partition(" ")  # a field, or a field and what it was ('text "the dog"')
    if field in PAGE_LABELS:
        source = PAGE_LABELS[field] + sep + detail
    elif os.path.isabs(source):  # an uploaded file: its name, not Gradio's temporary folder
        source = Path(source).name
    return f"{source}: {problem}"


def build_app(demo: WebDemo) -> Any:
    """The Gradio page for ``demo``: returns a ``gradio.Blocks`` (call ``.launch()`` on it).

    Element ids (stable, used by the browser test): ``banner``, ``video-input``, ``frame``,
    ``frame-image``, ``object``, ``click-mode``, ``clear-object``, ``mask-input``, ``prompt-info``,
    ``task``, ``question``, ``options``, ``run``, ``overlay-video``, ``answer``, ``run-info``,
    ``text-prompt``, ``find-text``, ``text-pick``, ``text-candidates``.
    """
    import gradio as gr

    objects = [f"object{i}" for i in range(MAX_OBJECTS)]

    def _fail(exc: GarVideoError) -> Exception:
        return gr.Error(toast_html(exc), print_exception=False)

    def on_video(path: str | None):
        try:
            state = demo.open_clip(path)
        except GarVideoError as exc:
            raise _fail(exc) from None
        slider = gr.update(
            minimum=0,
            maximum=max(0, state.num_frames - 1),
            value=0,
            step=1,
            interactive=state.video is not None,
        )
        return state, slider, demo.render_frame(state), demo.describe_prompts(state)

    def on_frame(state: SessionState, frame: float):
        try:
            state = demo.set_frame(state, int(frame))
            return state, demo.render_frame(state), demo.describe_prompts(state)
        except GarVideoError as exc:
            raise _fail(exc) from None

    def on_click(state: SessionState, obj: str, mode: str, evt: gr.SelectData):
        try:
            x, y = evt.index
            state = demo.click(state, float(x), float(y), mode, _check_object(obj))
            return state, demo.render_frame(state), demo.describe_prompts(state)
        except GarVideoError as exc:
            raise _fail(exc) from None

    # Gradio finds the event-data argument by its annotation, which must be the class itself (this
    # module's annotations are strings, and ``gr`` is not a module global).
    on_click.__annotations__["evt"] = gr.SelectData

    def on_mask(state: SessionState, path: str | None, obj: str):
        try:
            state = demo.upload_mask(state, path, _check_object(obj))
            return state, demo.render_frame(state), demo.describe_prompts(state)
        except GarVideoError as exc:
            raise _fail(exc) from None

    def _candidates_update(state: SessionState):
        found = state.text_found
        if found is None:
            return gr.update(choices=[], value=None, interactive=False)
        choices = [f"#{c.rank}" for c in found.candidates]
        return gr.update(choices=choices, value=f"#{found.picked}", interactive=True)

    def on_find(state: SessionState, text: str, obj: str):
        try:
            state = demo.find_text(state, text, _check_object(obj))
        except GarVideoError as exc:
            raise _fail(exc) from None
        return (
            state,
            demo.render_frame(state),
            demo.describe_prompts(state),
            demo.describe_candidates(state),
            _candidates_update(state),
        )

    def on_pick(state: SessionState, pick: str | None):
        if not pick:
            return (
                state,
                demo.render_frame(state),
                demo.describe_prompts(state),
                demo.describe_candidates(state),
            )
        try:
            state = demo.pick_text(state, int(str(pick).lstrip("#")))
        except (GarVideoError, ValueError) as exc:
            raise _fail(
                exc if isinstance(exc, GarVideoError) else InputError("candidate", str(exc))
            ) from None
        return state, demo.render_frame(state), demo.describe_prompts(state), demo.describe_candidates(state)

    def on_clear(state: SessionState, obj: str):
        state = demo.clear_object(state, _check_object(obj))
        return state, demo.render_frame(state), demo.describe_prompts(state)

    def on_check(state: SessionState, task: str, question: str, options: str) -> None:
        # no outputs: a bad input stops here, with the previous result still on the page
        try:
            demo.check_run(state, task, question, options.splitlines())
        except GarVideoError as exc:
            raise _fail(exc) from None

    def on_run(state: SessionState, task: str, question: str, options: str):
        try:
            for u in demo.run(state, task, question, options.splitlines()):
                yield u.video, u.text, u.status
        except GarVideoError as exc:
            raise _fail(exc) from None

    with gr.Blocks(title="garvideo: region-level video understanding") as app:
        gr.Markdown(
            "# garvideo\nTrack objects through a clip and describe them, or ask about them, with GAR "
            "(Grasp Any Region)."
        )
        gr.Markdown(demo.banner(), elem_id="banner")
        state = gr.State(SessionState())
        with gr.Row():
            with gr.Column():
                # A file box rather than gr.Video: the browser need not be able to play the upload
                # (an MPEG-4 Part 2 mp4, an avi...); the frame preview below shows the clip instead.
                video_in = gr.File(
                    label="1. Clip (mp4, webm, avi, mov, mkv…)", file_types=["video"], elem_id="video-input"
                )
                frame = gr.Slider(
                    0, 1, value=0, step=1, label="2. Prompt frame", interactive=False, elem_id="frame"
                )
                frame_img = gr.Image(
                    label="3. The prompt frame"
                    + (
                        " (click: points, or two box corners; a box replaces the points)"
                        if demo.clicks_available
                        else ""
                    ),
                    interactive=False,
                    type="numpy",
                    elem_id="frame-image",
                )
                with gr.Row():
                    obj = gr.Dropdown(objects, value=objects[0], label="Object", elem_id="object")
                    mode = gr.Radio(
                        list(CLICK_MODES),
                        value=CLICK_MODES[0],
                        label="A click adds",
                        interactive=demo.clicks_available,
                        elem_id="click-mode",
                    )
                    clear = gr.Button("Clear object", elem_id="clear-object")
                mask_in = gr.File(
                    label="…or upload a mask for the object (PNG id map or 0/255 PNG, .npy, COCO RLE .json)",
                    file_types=[".png", ".npy", ".json", ".bmp", ".jpg"],
                    elem_id="mask-input",
                )
                with gr.Row():
                    text_in = gr.Textbox(
                        label="…or name the object (SAM 3 finds it on the prompt frame)",
                        placeholder="the dog on the left",
                        elem_id="text-prompt",
                        scale=3,
                    )
                    find = gr.Button("Find", elem_id="find-text", scale=1)
                    pick = gr.Dropdown(
                        [], value=None, label="Candidate", interactive=False, elem_id="text-pick", scale=1
                    )
                text_info = gr.Markdown(elem_id="text-candidates")
                prompt_info = gr.Markdown("Upload a clip to start.", elem_id="prompt-info")
            with gr.Column():
                task = gr.Radio(list(TASKS), value="describe", label="4. Task", elem_id="task")
                question = gr.Textbox(
                    label="Question (for ask): refer to objects as <object0>, <object1>, …",
                    elem_id="question",
                )
                options = gr.Textbox(
                    label="Options, one per line (optional: multiple choice)", lines=3, elem_id="options"
                )
                run = gr.Button("Run", variant="primary", elem_id="run")
                video_out = gr.Video(
                    label="Propagated masks", interactive=False, loop=True, elem_id="overlay-video"
                )
                answer = gr.Textbox(
                    label="Description / answer", lines=6, interactive=False, elem_id="answer"
                )
                run_info = gr.Markdown(elem_id="run-info")

        video_in.change(on_video, [video_in], [state, frame, frame_img, prompt_info])
        # .input: the user moved the slider or typed a number (not our own reset on upload)
        frame.input(on_frame, [state, frame], [state, frame_img, prompt_info], trigger_mode="always_last")
        frame_img.select(on_click, [state, obj, mode], [state, frame_img, prompt_info])
        mask_in.upload(on_mask, [state, mask_in, obj], [state, frame_img, prompt_info])
        clear.click(on_clear, [state, obj], [state, frame_img, prompt_info])
        find.click(on_find, [state, text_in, obj], [state, frame_img, prompt_info, text_info, pick])
        text_in.submit(on_find, [state, text_in, obj], [state, frame_img, prompt_info, text_info, pick])
        pick.input(on_pick, [state, pick], [state, frame_img, prompt_info, text_info])
        run.click(on_check, [state, task, question, options], None).success(
            on_run, [state, task, question, options], [video_out, answer, run_info], concurrency_limit=1
        )
    return app


# ----------------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m garvideo.demos.web",
        description="garvideo's web demo (Gradio): upload a clip, give objects, see tracks and descriptions.",
        epilog="Example: python -m garvideo.demos.web --model HaochenWang/GAR-1B --port 7860",
    )
    add_tracker_args(p)  # --tracker, --sam2-checkpoint (also clicks/boxes → masks in the page)
    add_model_args(p)  # --model, --num-frames, --max-new-tokens, --device
    p.add_argument(
        "--sam3-checkpoint",
        default=None,
        help="SAM 3 folder or hub id for 'name the object' (default: $GARVIDEO_SAM3_CHECKPOINT, else "
        "facebook/sam3: gated, accept the licence on its hub page and `hf auth login`)",
    )
    p.add_argument(
        "--text-threshold",
        type=float,
        default=0.5,
        help="score a named object's candidate needs (default 0.5)",
    )
    p.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST}: this machine only)"
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress")
    return p


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM as Ctrl-C: Gradio stops its server and the run folder is removed on the way out."""
    raise KeyboardInterrupt


@contextlib.contextmanager
def web_workdir() -> Iterator[Path]:
    """One folder, ``$TMPDIR/garvideo-web-*``, for everything the demo writes, removed on the way out.

    Yields the folder; pass ``workdir / "runs"`` to :class:`WebDemo`. Unless ``$GRADIO_TEMP_DIR`` names
    another place, Gradio's cache of uploads and outputs goes there too (the variable is read when
    Gradio is imported, so enter this before importing it). SIGTERM is handled as Ctrl-C while inside,
    so ``kill`` cleans up as well; the previous handler is restored on exit.
    """

    workdir = Path(tempfile.mkdtemp(prefix="garvideo-web-"))
    own_cache = "GRADIO_TEMP_DIR" not in os.environ
    if own_cache:
        os.environ["GRADIO_TEMP_DIR"] = str(workdir / "gradio")
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield workdir
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(workdir, ignore_errors=True)
        if own_cache:
            os.environ.pop("GRADIO_TEMP_DIR", None)


def launch(demo: WebDemo, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, share: bool = False) -> None:
    """Serve ``demo``'s page until interrupted, then close it (``python -m garvideo.demos.web`` and
    ``garvideo web``). ``share=True`` asks Gradio for a public ``*.gradio.live`` link (needs internet)."""
    app = build_app(demo)
    print(
        f"garvideo web demo: model {demo.model_name}"
        + (" (RANDOM TINY WEIGHTS: text is meaningless)" if demo.random_weights else ""),
        flush=True,
    )
    try:
        app.queue(default_concurrency_limit=1).launch(
            server_name=host,
            server_port=port,
            share=share,
            inbrowser=False,
            ssr_mode=False,
            show_error=True,
            quiet=False,
        )
    finally:
        demo.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Start the web demo; returns the exit code (2 on bad input or missing weights, 130 on Ctrl-C
    before the server ran).

    Everything the demo writes goes to one folder (:func:`web_workdir`), removed when the demo stops:
    Ctrl-C, SIGTERM, or a failure at start.
    """

    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        with web_workdir() as workdir:
            try:
                import gradio  # noqa: F401
            except ImportError:
                print(
                    "error: the web demo needs Gradio: pip install -e '.[demo]' in a garvideo clone",
                    file=sys.stderr,
                )
                return 2
            try:
                options = demo_options(
                    model=args.model,
                    tracker=args.tracker,
                    sam2_checkpoint=args.sam2_checkpoint,
                    num_frames=args.num_frames,
                    max_new_tokens=args.max_new_tokens,
                    device=args.device,
                )
                demo = WebDemo(
                    options,
                    workdir=workdir / "runs",
                    sam3_checkpoint=args.sam3_checkpoint,
                    text_threshold=args.text_threshold,
                )
            except (InputError, ModelUnavailableError) as exc:
                print(error_line(exc), file=sys.stderr)
                return 2
            launch(demo, host=args.host, port=args.port)
    except KeyboardInterrupt:  # before the server ran (Gradio handles it while serving)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
