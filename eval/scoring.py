"""VideoRefer-Bench-Q scoring: the official rules, a strict parser beside them, and the score tables.

Official rules (DAMO-NLP-SG/VideoRefer, ``videorefer/eval/eval_videorefer_bench_q.py``, ``main``; the
VideoLLaMA3 copy ``videorefer_videollama3/evaluation/eval_videorefer_q_bench.py`` is the same):

* ground truth: the letter of the first ``(X)`` (``X`` in ``A``–``Z``) in ``Answer``; when there is
  none, the whole ``Answer`` string is compared;
* prediction: the first ``(X)`` in ``pred``; else the first ``X)``; else the first character of
  ``pred`` with every ``.`` removed;
* correct when the two are equal ignoring case; accuracy per ``type`` and overall as the micro average
  over all questions (total right / total questions, not the mean of the types).

Where the official script crashes (``pred`` empty, or only dots: ``''[0]`` raises ``IndexError``),
garvideo counts the question wrong and reports how many there were (``empty_predictions``). A record
that failed (``error`` not null) is counted wrong too, and reported as ``failed``.

The strict parser counts an answer only if exactly one option letter can be read from it without
guessing (see :func:`strict_letter`), so lucky parses of the official fallback ("A dog is …" read as
``A``) become visible.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from garvideo.errors import InputError, PathLike
from garvideo.runs.lines import read_jsonl
from garvideo.runs.settings import read_settings, short_value

# The five question types of VideoRefer-Bench-Q, in the order of the published table
# (DAMO-NLP-SG/VideoRefer, benchmark/README.md).
QUESTION_TYPES: tuple[str, ...] = (
    "Basic Questions",
    "Sequential Questions",
    "Relationship Questions",
    "Reasoning Questions",
    "Future Predictions",
)

_PAREN_LETTER = re.compile(r"\(([A-Z])\)")  # official rule 1 (and the ground-truth rule)
_CLOSE_LETTER = re.compile(r"([A-Z])\)")  # official rule 2
# strict: a letter standing on its own, followed by ")" "." or ":" (e.g. "B)", "(B)", "B.", "B:").
_STRICT_TOKEN = re.compile(r"(?<![A-Za-z0-9])\(?([A-Z])(?:\)|[.:](?![A-Za-z0-9]))")
_STRICT_ALONE = re.compile(r"^\(?([A-Za-z])\)?[.:]?$")
# strict: "Answer: B", "the answer is (B)", "Option B".
_STRICT_NAMED = re.compile(r"(?i:\b(?:answer|option)(?:\s+is)?\s*[:\-]?\s*)\(?([A-Z])(?![A-Za-z0-9])")


def official_gt(answer: str) -> str:
    """The ground truth as the official script reads it: the ``X`` of the first ``(X)``, else ``answer``."""
    m = _PAREN_LETTER.search(answer)
    return m.group(1) if m else answer


def official_letter(pred: str | None) -> str | None:
    """The letter the official script reads from a prediction; ``None`` where it would crash.

    The first ``(X)``; else the first ``X)``; else the first character of ``pred`` with dots removed
    (any character, not only a letter: that is what gets compared). ``None`` for an empty prediction
    (or one of dots only), on which the official script raises ``IndexError``.
    """
    if pred is None:
        return None
    m = _PAREN_LETTER.search(pred)
    if m:
        return m.group(1)
    m = _CLOSE_LETTER.search(pred)
    if m:
        return m.group(1)
    rest = pred.replace(".", "")
    return rest[0] if rest else None


def strict_letter(pred: str | None, num_options: int | None = None) -> str | None:
    """The option letter of a prediction when it can be read unambiguously, else ``None``.

    Read as a letter: the whole (stripped) prediction being one letter, optionally in parentheses
    and/or followed by ``.`` or ``:`` (``"B"``, ``"(B)"``, ``"b."``); otherwise every capital letter
    standing alone and marked as an option — ``(B)``, ``B)``, ``B.`` or ``B:`` not inside a word, or
    named (``Answer: B``, ``the answer is B``, ``option B``) — and the answer counts only when all of
    them are the same letter. A sentence starting with an article ("A dog …") or a pronoun
    ("I think …") gives no letter.

    Args:
        pred: the raw prediction.
        num_options: when given, only letters of the options (``A`` … the ``num_options``-th) count.
    """
    if not pred:
        return None
    text = pred.strip()
    allowed = None if num_options is None else {chr(ord("A") + i) for i in range(num_options)}
    m = _STRICT_ALONE.match(text)
    if m:
        letters = {m.group(1).upper()}
    else:
        letters = set(_STRICT_TOKEN.findall(text)) | set(_STRICT_NAMED.findall(text))
    if allowed is not None:
        letters &= allowed
    return letters.pop() if len(letters) == 1 else None


# ----------------------------------------------------------------------------------------------------
# scores
# ----------------------------------------------------------------------------------------------------
@dataclass
class Tally:
    """Correct answers out of a number of questions."""

    correct: int = 0
    total: int = 0

    @property
    def accuracy(self) -> float:
        """``correct / total`` as a fraction in [0, 1] (0 when there are no questions)."""
        return self.correct / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"correct": self.correct, "total": self.total, "accuracy": self.accuracy}


@dataclass
class ItemScore:
    """How one prediction was read.

    Attributes:
        type: the question type.
        gt: the ground truth as the official script reads it.
        letter: the official reading of ``pred`` (``None``: empty prediction).
        strict: the strict reading (``None``: no unambiguous letter).
        correct: the official verdict.
        strict_correct: the strict verdict.
        failed: the record carries an ``error``.
    """

    type: str
    gt: str
    letter: str | None
    strict: str | None
    correct: bool
    strict_correct: bool
    failed: bool


def score_item(record: Mapping[str, Any]) -> ItemScore:
    """Score one prediction record (``Answer``, ``pred``, ``type``; optional ``error``)."""
    gt = official_gt(str(record.get("Answer") or ""))
    pred = record.get("pred")
    pred = pred if isinstance(pred, str) else None
    failed = record.get("error") is not None
    letter = None if failed else official_letter(pred)
    strict = None if failed else strict_letter(pred)
    correct = letter is not None and letter.lower() == gt.lower()
    strict_correct = strict is not None and strict.lower() == gt.lower()
    return ItemScore(
        type=str(record.get("type")),
        gt=gt,
        letter=letter,
        strict=strict,
        correct=correct,
        strict_correct=strict_correct,
        failed=failed,
    )


@dataclass
class Scores:
    """A VideoRefer-Bench-Q score table.

    Attributes:
        overall: all questions (micro average, as the official script).
        per_type: per question type, the five official types first (in the published order), then any
            others in order of appearance.
        strict_overall / strict_per_type: the same under :func:`strict_letter`.
        empty_predictions: predictions empty (or only dots) — the official script crashes on them.
        unparsed: non-empty predictions in which the official rules find no letter ``A``–``Z`` (the
            first-character fallback gave something else, e.g. a digit or a space).
        failed: records that failed (``error`` set); counted wrong.
        settings: how the predictions were made (model, mode, tracker, ...): the settings recorded beside
            the predictions (``<stem>.settings.json``), never a later command line.
        settings_recorded: whether there were recorded settings (``False``: a predictions file made
            elsewhere or by an older garvideo; the table says so).
        missing: questions of the run with no prediction (a merge with ``--allow-partial``); when
            non-zero the scores are *partial* and say so everywhere they are shown.
    """

    overall: Tally = field(default_factory=Tally)
    per_type: dict[str, Tally] = field(default_factory=dict)
    strict_overall: Tally = field(default_factory=Tally)
    strict_per_type: dict[str, Tally] = field(default_factory=dict)
    empty_predictions: int = 0
    unparsed: int = 0
    failed: int = 0
    settings: dict[str, Any] = field(default_factory=dict)
    settings_recorded: bool = True
    missing: int = 0

    @property
    def partial(self) -> bool:
        """Some questions of the run have no prediction: the accuracies are not the run's."""
        return self.missing > 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``garvideo eval score --json``); accuracies are fractions in [0, 1]."""
        out: dict[str, Any] = {
            "overall": self.overall.to_dict(),
            "per_type": {k: v.to_dict() for k, v in self.per_type.items()},
            "empty_predictions": self.empty_predictions,
            "unparsed": self.unparsed,
            "failed": self.failed,
            "strict": {
                "overall": self.strict_overall.to_dict(),
                "per_type": {k: v.to_dict() for k, v in self.strict_per_type.items()},
            },
        }
        if self.settings:
            out["settings"] = dict(self.settings)
        out["settings_recorded"] = self.settings_recorded
        if self.partial:
            out["partial"] = True
            out["missing"] = self.missing
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scores:
        """Inverse of :meth:`to_dict`."""

        def tally(d: Mapping[str, Any]) -> Tally:
            return Tally(int(d["correct"]), int(d["total"]))

        strict = data.get("strict", {})
        return cls(
            overall=tally(data["overall"]),
            per_type={k: tally(v) for k, v in data["per_type"].items()},
            strict_overall=tally(strict.get("overall", {"correct": 0, "total": 0})),
            strict_per_type={k: tally(v) for k, v in strict.get("per_type", {}).items()},
            empty_predictions=int(data.get("empty_predictions", 0)),
            unparsed=int(data.get("unparsed", 0)),
            failed=int(data.get("failed", 0)),
            settings=dict(data.get("settings", {})),
            settings_recorded=bool(data.get("settings_recorded", True)),
            missing=int(data.get("missing", 0)),
        )

    def rows(self) -> list[tuple[str, Tally, Tally]]:
        """``(name, official, strict)`` per type, then ``("Overall", ...)``."""
        rows = [(k, v, self.strict_per_type.get(k, Tally())) for k, v in self.per_type.items()]
        rows.append(("Overall", self.overall, self.strict_overall))
        return rows


def score_records(records: Iterable[Mapping[str, Any]], settings: Mapping[str, Any] | None = None) -> Scores:
    """Score prediction records (each with ``Answer``, ``pred``, ``type``; optional ``error``), labelled
    with ``settings`` (``None``: none recorded, and the scores say so)."""
    items = [score_item(r) for r in records]
    seen_types: list[str] = []
    for it in items:
        if it.type not in seen_types:
            seen_types.append(it.type)
    order = [t for t in QUESTION_TYPES if t in seen_types] + [
        t for t in seen_types if t not in QUESTION_TYPES
    ]
    scores = Scores(
        per_type={t: Tally() for t in order},
        strict_per_type={t: Tally() for t in order},
        settings=dict(settings or {}),
        settings_recorded=settings is not None,
    )
    for it in items:
        for tally, ok in (
            (scores.overall, it.correct),
            (scores.per_type[it.type], it.correct),
            (scores.strict_overall, it.strict_correct),
            (scores.strict_per_type[it.type], it.strict_correct),
        ):
            tally.total += 1
            tally.correct += int(ok)
        if it.failed:
            scores.failed += 1
        elif it.letter is None:
            scores.empty_predictions += 1
        elif not ("A" <= it.letter.upper() <= "Z"):
            scores.unparsed += 1
    return scores


def load_predictions(path: PathLike) -> list[dict[str, Any]]:
    """Read a predictions JSONL file, checking each line has ``Answer``, ``pred`` and ``type``.

    Every line counts, the last one too when it has no trailing newline (a file written by hand or
    by another tool).

    Raises:
        InputError: missing or empty file, a malformed line, or a line without the official keys.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "no such predictions file")
    contents = read_jsonl(p, tolerate_truncated_tail=False)
    if not contents.records:
        raise InputError(p, "no predictions in the file (it is empty)")
    for i, r in enumerate(contents.records, 1):
        missing = [k for k in ("Answer", "pred", "type") if k not in r]
        if missing:
            raise InputError(f"{p}:{i}", f"prediction lacks {', '.join(missing)}")
    return contents.records


def recorded_settings(predictions: PathLike) -> dict[str, Any] | None:
    """The settings the predictions were made with, as the run recorded them beside the file
    (``<stem>.settings.json``, :mod:`garvideo.runs.settings`), or ``None`` when none were recorded.

    Raises:
        InputError: an unreadable settings file.
    """
    found = read_settings(predictions)
    return None if found is None else dict(found.settings)


def score_file(path: PathLike) -> Scores:
    """Score a predictions JSONL file, labelled with the settings recorded beside it (when none are, the
    scores say so: a file made elsewhere)."""
    records = load_predictions(path)
    return score_records(records, recorded_settings(path))


# ----------------------------------------------------------------------------------------------------
# tables
# ----------------------------------------------------------------------------------------------------
def scores_paths(predictions: PathLike) -> tuple[Path, Path]:
    """``(<stem>.scores.json, <stem>.scores.md)`` next to a predictions file."""
    p = Path(predictions)
    return p.with_name(p.stem + ".scores.json"), p.with_name(p.stem + ".scores.md")


def format_markdown(scores: Scores, title: str = "VideoRefer-Bench-Q") -> str:
    """The score table as Markdown (accuracies in percent, one decimal, as the published table)."""
    lines = [f"# {title}", ""]
    if scores.partial:
        lines += [f"**Partial**: {scores.missing} questions of the run have no prediction.", ""]
    lines += [settings_line(scores), ""]
    lines += [
        "| Type | Correct | Total | Accuracy (%) | Strict accuracy (%) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, off, strict in scores.rows():
        label = f"**{name}**" if name == "Overall" else name
        lines.append(
            f"| {label} | {off.correct} | {off.total} | {100 * off.accuracy:.1f} | {100 * strict.accuracy:.1f} |"
        )
    lines += [
        "",
        (
            f"Empty predictions: {scores.empty_predictions} (the official script stops on these); "
            f"unparsed: {scores.unparsed}; failed records: {scores.failed}; all counted wrong."
        ),
        "",
    ]
    return "\n".join(lines)


def settings_line(scores: Scores) -> str:
    """The line a score table shows its settings with (or that none were recorded)."""
    if not scores.settings_recorded:
        return (
            "settings: not recorded (predictions made elsewhere or by an older garvideo: no .settings.json)"
        )
    return ", ".join(f"{k}: {short_value(v)}" for k, v in scores.settings.items())


def write_scores(scores: Scores, predictions: PathLike) -> tuple[Path, Path]:
    """Write ``<stem>.scores.json`` and ``<stem>.scores.md`` next to ``predictions``; returns their paths."""
    json_path, md_path = scores_paths(predictions)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(scores.to_dict(), indent=2) + "\n")
    md_path.write_text(format_markdown(scores))
    return json_path, md_path
