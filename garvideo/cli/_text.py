"""``--text`` on the commands that take objects: run SAM 3's concept detector and word what it found."""

from __future__ import annotations

from collections.abc import Sequence

import typer

from garvideo.errors import InputError
from garvideo.trackers.base import Prompt
from garvideo.trackers.text import TextDetection, TextDetector, text_prompts
from garvideo.trackers.types import VideoLike


def text_objects(
    video: VideoLike,
    texts: Sequence[str],
    picks: Sequence[int],
    frame: int,
    first_id: int,
    *,
    checkpoint: str | None,
    threshold: float,
    device: str | None,
) -> tuple[list[Prompt], list[TextDetection]]:
    """The mask prompts of ``--text`` (ids from ``first_id``) and their detections; nothing when no text."""
    if not texts:
        if picks:
            raise InputError("text_pick", "given without --text")
        return [], []
    detector = TextDetector(checkpoint, device=device, threshold=threshold)
    return text_prompts(detector, video, texts, frame=frame, first_id=first_id, picks=picks)


def print_text_notes(found: Sequence[TextDetection], object_offset: int) -> None:
    """One stderr line per text: the candidates (score, box, area) and which one became object K."""
    for k, det in enumerate(found):
        listed = "; ".join(
            f"#{c.rank} score {c.score:.3f} box {','.join(f'{v:.0f}' for v in c.box)} area {c.area}"
            for c in det.candidates
        )
        typer.echo(
            f'note: --text "{det.text}" on frame {det.frame}: object{object_offset + k} is candidate '
            f"#{det.picked} of {len(det.candidates)} ({listed})",
            err=True,
        )
