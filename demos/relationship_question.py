"""Demo: several objects in a clip and a question about how they relate.

    python -m garvideo.demos.relationship_question --model HaochenWang/GAR-1B      # sample clip, 2 objects
    python -m garvideo.demos.relationship_question --model /tmp/tiny --tracker flow \\
        --question "Which object moves faster, <object0> or <object1>?" --option "<object0>" --option "<object1>"
    python -m garvideo.demos.relationship_question --video my.mp4 --mask people.png --frame 5

Objects are ``<object0>``, ``<object1>``, … in the order of the masks (an id-map file gives them in
id order). Several questions (``--question`` repeated) share one prepared clip: tracking, frame
features and the prompt prefix are computed once. The overlay video shows the tracks with the
questions and answers at the bottom.

Only library calls: :class:`garvideo.pipeline.GarVideo` and :func:`garvideo.overlay.render_overlay`.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from garvideo.demos._common import (
    add_overlay_arg,
    demo_options,
    demo_parser,
    error_line,
    overlay_path,
    parse_demo_args,
    resolve_input,
    write_stdout,
)
from garvideo.errors import InputError, ModelUnavailableError, PathLike
from garvideo.options import build_garvideo
from garvideo.overlay import render_overlay

if TYPE_CHECKING:
    from garvideo.model.loading import GarBundle

logger = logging.getLogger(__name__)

DEFAULT_QUESTION = "What is the relationship between <object0> and <object1> in this video?"


@dataclass(frozen=True)
class QADemoResult:
    """What :func:`ask_about_objects` produced.

    Attributes:
        questions: the questions asked, in order.
        answers: the answers (text), one per question.
        letters: for multiple-choice questions the chosen option letter, else ``None``.
        overlay: the overlay video (tracks, questions and answers).
        frames: the keyframes the model read.
        tracker: the tracker used.
        notes: the pipeline's notes.
    """

    questions: list[str]
    answers: list[str]
    letters: list[str | None]
    overlay: Path
    frames: list[int]
    tracker: str
    notes: list[str] = field(default_factory=list)


def ask_about_objects(
    video: PathLike,
    masks: Sequence[np.ndarray],
    questions: Sequence[str],
    overlay: PathLike,
    *,
    options: Sequence[str] | None = None,
    frame: int = 0,
    model: str | os.PathLike[str] | GarBundle | None = None,
    tracker: str = "auto",
    sam2_checkpoint: str | None = None,
    num_frames: int = 8,
    max_new_tokens: int = 128,
    device: str | None = None,
    on_text: Callable[[str], None] | None = None,
) -> QADemoResult:
    """Ask ``questions`` about the objects ``masks`` (on ``frame``) and write the overlay.

    Args:
        video: clip file or frame folder.
        masks: one ``(H, W)`` bool mask per object (``<object0>``, ``<object1>``, …).
        questions: questions naming the objects as ``<objectK>``; they share one prepared clip.
        overlay: the video to write (``.mp4``).
        options: multiple-choice options (applied to every question), or ``None`` for free form.
        frame, model, tracker, sam2_checkpoint, num_frames, max_new_tokens, device: as
            :func:`garvideo.demos.describe_clip.describe_clip`.
        on_text: called with each new piece of answer text as it is generated.

    Raises:
        InputError: no question, a question naming an object that has no mask, bad files.
        ModelUnavailableError: no weights.
    """
    questions = [q.strip() for q in questions if q and q.strip()]
    if not questions:
        raise InputError("question", "give at least one question")
    gv = build_garvideo(
        demo_options(
            model=model,
            tracker=tracker,
            sam2_checkpoint=sam2_checkpoint,
            num_frames=num_frames,
            max_new_tokens=max_new_tokens,
            device=device,
        )
    )
    # One prepared clip for every question: tracking, keyframe features and the prompt prefix are shared.
    clip = gv.prepare(video, masks=list(masks), frame=frame, track_all_frames=True)
    try:
        results = []
        for q in questions:
            results.append(gv.ask(clip, q, list(options) if options else None, stream=on_text))
            if on_text is not None:
                on_text("\n")
        caption = "\n".join(f"Q: {q}\nA: {r.text}" for q, r in zip(questions, results))
        path = render_overlay(clip.video, clip.masks_by_frame(), overlay, caption=caption)
    finally:
        clip.close()
    last = results[-1]
    return QADemoResult(
        questions=questions,
        answers=[r.text for r in results],
        letters=[r.letter for r in results],
        overlay=Path(path),
        frames=list(last.frames),
        tracker=last.tracker,
        notes=list(last.notes),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = demo_parser(
        "python -m garvideo.demos.relationship_question",
        "Ask how several objects in a clip relate; write an overlay video with the answers.",
        "Example: python -m garvideo.demos.relationship_question --video my.mp4 --mask a.png --mask b.png "
        '--question "What is <object0> doing to <object1>?"',
    )
    parser.set_defaults(max_new_tokens=128)
    parser.add_argument(
        "--question",
        action="append",
        default=None,
        help=f"question naming the objects <object0>, <object1>, … (repeatable; default: "
        f"{DEFAULT_QUESTION!r})",
    )
    parser.add_argument(
        "--option",
        action="append",
        default=None,
        help="multiple-choice option (repeatable); without it the answers are free-form",
    )
    add_overlay_arg(parser, "question.mp4")
    args = parse_demo_args(parser, argv)

    questions = args.question or [DEFAULT_QUESTION]
    try:
        inp = resolve_input(args, min_objects=2 if args.question is None else 1)
        print(f"Q: {questions[0]}\nA: ", end="", flush=True)  # later questions: see _QuestionPrinter
        res = ask_about_objects(
            inp.video,
            inp.masks,
            questions,
            overlay_path(args),
            options=args.option,
            frame=inp.frame,
            model=args.model,
            tracker=args.tracker,
            sam2_checkpoint=args.sam2_checkpoint,
            num_frames=args.num_frames,
            max_new_tokens=args.max_new_tokens,
            device=args.device,
            on_text=_QuestionPrinter(questions, write_stdout),
        )
    except (InputError, ModelUnavailableError) as exc:
        print("\n" + error_line(exc), file=sys.stderr)
        return 2
    for q, letter in zip(res.questions, res.letters):
        if letter is not None:
            print(f"chosen option for {q!r}: {letter}")
    print(f"keyframes {res.frames}, tracker {res.tracker}")
    for note in res.notes:
        print(f"note: {note}")
    print(f"overlay: {res.overlay}")
    return 0


class _QuestionPrinter:
    """Streams answers, printing the next question after each answer's closing newline."""

    def __init__(self, questions: Sequence[str], write: Callable[[str], None]) -> None:
        self._next = list(questions[1:])
        self._write = write

    def __call__(self, piece: str) -> None:
        self._write(piece)
        if piece == "\n" and self._next:
            self._write(f"Q: {self._next.pop(0)}\nA: ")


if __name__ == "__main__":
    raise SystemExit(main())
