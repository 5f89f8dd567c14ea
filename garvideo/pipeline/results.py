"""What :meth:`garvideo.pipeline.GarVideo.describe` and :meth:`~garvideo.pipeline.GarVideo.ask` return."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, overload

if TYPE_CHECKING:
    import torch

    from garvideo.model import GarBundle, GenerationResult
    from garvideo.pipeline.prepared import PreparedClip

__all__ = ["AnswerResult", "DescribeResult", "build_result", "dtype_name", "result_fields"]


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
        dtype: the model's dtype (``"float32"``, ``"bfloat16"``; what ``--dtype auto`` chose).
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
    dtype: str = ""
    tracker_reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain Python values (a deep copy; timings not rounded). :meth:`to_json` is the
        record the command line writes (timings rounded to 0.1 ms)."""
        out = asdict(self)
        out["frames"] = [int(f) for f in out["frames"]]
        return out

    def _repr_fields(self) -> list[str]:
        text = self.text if len(self.text) <= 60 else self.text[:57] + "..."
        frames = [int(f) for f in self.frames]
        shown = frames if len(frames) <= 8 else [*frames[:7], "..."]
        fields = [
            f"text={text!r}",
            f"frames={shown} ({len(frames)})".replace("'...'", "..."),
            f"objects={len(self.objects)}",
            f"tracker={self.tracker!r}",
            f"model={self.model!r}",
            f"new_tokens={self.new_tokens}",
        ]
        if "total" in self.timings:
            fields.append(f"total={float(self.timings['total']):.2f}s")
        return fields

    def __repr__(self) -> str:
        """A short summary (the text cut to 60 characters, counts instead of the objects' boxes)."""
        return f"{type(self).__name__}({', '.join(self._repr_fields())})"

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
            "dtype": self.dtype,
        }


@dataclass(repr=False)  # DescribeResult's short __repr__
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

    def _repr_fields(self) -> list[str]:
        fields = super()._repr_fields()
        fields.insert(0, f"question={self.question!r}")
        if self.options is not None:
            why = "" if self.letter is not None else " (the answer names no option)"
            fields.insert(1, f"options={len(self.options)}, letter={self.letter!r}{why}")
        return fields

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        out.update({"question": self.question, "options": self.options, "letter": self.letter})
        return out


@overload
def build_result(fields: dict[str, Any], question: None, options: None) -> DescribeResult: ...
@overload
def build_result(fields: dict[str, Any], question: str, options: list[str] | None) -> AnswerResult: ...
@overload
def build_result(
    fields: dict[str, Any], question: str | None, options: list[str] | None
) -> DescribeResult | AnswerResult: ...
def build_result(
    fields: dict[str, Any], question: str | None, options: list[str] | None
) -> DescribeResult | AnswerResult:
    """A :class:`DescribeResult` (``question=None``) or an :class:`AnswerResult` (with the option letter read
    from the text for a multiple-choice question) from the :class:`DescribeResult` fields."""
    if question is None:
        return DescribeResult(**fields)
    letter = None
    if options is not None:
        # Local: garvideo.model.loading imports transformers; the results module stays light.
        from garvideo.model import parse_choice

        letter = parse_choice(fields["text"], len(options))
    return AnswerResult(
        **fields, question=question, options=list(options) if options is not None else None, letter=letter
    )


def dtype_name(dtype: torch.dtype) -> str:
    """A dtype's short name: ``torch.bfloat16`` -> ``"bfloat16"`` (the results' ``dtype``)."""
    return str(dtype).replace("torch.", "")


def result_fields(
    clip: PreparedClip,
    bundle: GarBundle,
    gen: GenerationResult,
    prompt_tokens: int,
    timings: dict[str, float],
) -> dict[str, Any]:
    """The :class:`DescribeResult` fields of one request on ``clip``.

    Args:
        clip: the clip asked about.
        bundle: the model that answered (its name and dtype).
        gen: the generation (text and new tokens).
        prompt_tokens: the prompt's length.
        timings: seconds by stage.
    """
    return {
        "text": gen.text,
        "frames": list(clip.frames),
        "objects": clip.objects_json(),
        "tracker": clip.tracker,
        "tracker_reason": clip.tracker_reason,
        "model": str(bundle.name),
        "timings": timings,
        "notes": list(clip.notes),
        "prompt_tokens": prompt_tokens,
        "new_tokens": gen.num_tokens,
        "dtype": dtype_name(bundle.dtype),
    }
