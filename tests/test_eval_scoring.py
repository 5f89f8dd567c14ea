"""VideoRefer-Bench-Q scoring (garvideo.eval.scoring) on hand-written predictions.

The expected letters follow the official rules of DAMO-NLP-SG/VideoRefer
``videorefer/eval/eval_videorefer_bench_q.py`` (``main``), worked out by hand for each case.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from garvideo.cli import app
from garvideo.eval.scoring import (
    QUESTION_TYPES,
    Scores,
    format_markdown,
    official_gt,
    official_letter,
    score_file,
    score_records,
    strict_letter,
    write_scores,
)


@pytest.mark.parametrize(
    ("answer", "gt"),
    [
        ("(B) Red", "B"),
        ("(D) It will sink into water", "D"),
        ("Red (C) or (A)", "C"),  # the first (X)
        ("B", "B"),  # no (X): the whole string is the ground truth
        ("(b) lower", "(b) lower"),  # (x) must be a capital letter
    ],
)
def test_official_ground_truth(answer, gt):
    assert official_gt(answer) == gt


@pytest.mark.parametrize(
    ("pred", "letter"),
    [
        ("(C) Swimming on the water", "C"),  # rule 1: first (X)
        ("The answer is (B).", "B"),
        ("A) first, then (D)", "D"),  # rule 1 wins over an earlier X)
        ("(A) or (B)", "A"),  # the first (X)
        ("B) Silver", "B"),  # rule 2: first X)
        ("Maybe C) or D)", "C"),
        ("it is b) or so", "i"),  # no capital X): the fallback takes the first character
        ("B", "B"),  # rule 3: first character
        ("B.", "B"),
        ("b", "b"),  # compared case-insensitively later
        (".B", "B"),  # dots removed before taking the first character
        ("...C", "C"),
        (" B", " "),  # a leading space is the first character
        ("A dog is swimming.", "A"),  # a lucky parse of the fallback
        ("Answer: C", "A"),  # no (X), no X): first character
        ("(b) lower case", "("),  # (b) and b) are not capital letters: first character
        ("1", "1"),
        ("", None),  # the official script crashes (IndexError)
        ("...", None),
        (None, None),
    ],
)
def test_official_prediction_letter(pred, letter):
    assert official_letter(pred) == letter


@pytest.mark.parametrize(
    ("pred", "letter"),
    [
        ("B", "B"),
        ("(B)", "B"),
        ("b.", "B"),
        ("(C) Swimming on the water", "C"),
        ("B) Silver", "B"),
        ("The answer is B.", "B"),
        ("Answer: C", "C"),
        ("the answer is (D)", "D"),
        ("Option B is right", "B"),
        ("I think (C).", "C"),  # the pronoun "I" is not an option mark
        ("A. Black", "A"),
        ("A dog is swimming.", None),  # the article is not a letter
        ("(A) or (B)", None),  # ambiguous
        ("It is B", None),  # a bare letter inside a sentence is not read
        ("", None),
        ("1", None),
    ],
)
def test_strict_letter(pred, letter):
    assert strict_letter(pred) == letter


def test_strict_letter_limited_to_the_options():
    assert strict_letter("(E)", num_options=4) is None
    assert strict_letter("(E) or (B)", num_options=4) == "B"


def rec(qtype, answer, pred, error=None):
    return {"video": "v", "Answer": answer, "pred": pred, "type": qtype, "error": error}


def test_scores_per_type_and_micro_average():
    basic, seq, fut = "Basic Questions", "Sequential Questions", "Future Predictions"
    records = [
        rec(seq, "(A) x", "(A) x"),  # right
        rec(basic, "(B) x", "B"),  # right
        rec(basic, "(B) x", "b"),  # right (case-insensitive)
        rec(basic, "(B) x", "(C)"),  # wrong
        rec(basic, "(A) x", "A dog"),  # right officially (lucky), wrong strictly
        rec(basic, "(A) x", ""),  # empty: wrong, counted
        rec(fut, "(D) x", "D."),  # right
        rec(fut, "(D) x", "", error="record 9: no such video folder"),  # failed: wrong
        rec("Odd Type", "(A) x", "7"),  # unparsed (no letter)
    ]
    s = score_records(records)
    assert list(s.per_type) == [basic, seq, fut, "Odd Type"]  # official order first, then others
    assert (s.per_type[basic].correct, s.per_type[basic].total) == (3, 5)
    assert (s.per_type[seq].correct, s.per_type[seq].total) == (1, 1)
    assert (s.per_type[fut].correct, s.per_type[fut].total) == (1, 2)
    assert (s.overall.correct, s.overall.total) == (5, 9)
    assert s.overall.accuracy == pytest.approx(5 / 9)  # micro average
    mean_of_types = (3 / 5 + 1 + 1 / 2 + 0) / 4
    assert s.overall.accuracy != pytest.approx(mean_of_types)
    assert (s.strict_overall.correct, s.strict_per_type[basic].correct) == (4, 2)
    assert (s.empty_predictions, s.unparsed, s.failed) == (1, 1, 1)


def test_scores_json_shape_and_tables(tmp_path):
    records = [rec(t, "(A) x", "(A)") for t in QUESTION_TYPES] + [rec("Basic Questions", "(A) x", "(B)")]
    s = score_records(records, settings={"model": "tiny", "mode": "single"})
    d = s.to_dict()
    assert set(d) >= {"overall", "per_type", "empty_predictions", "unparsed"}
    assert d["overall"] == {"correct": 5, "total": 6, "accuracy": 5 / 6}
    assert d["per_type"]["Basic Questions"] == {"correct": 1, "total": 2, "accuracy": 0.5}
    assert 0.0 <= d["strict"]["overall"]["accuracy"] <= 1.0
    assert Scores.from_dict(json.loads(json.dumps(d))).to_dict() == d
    md = format_markdown(s)
    assert "| Basic Questions | 1 | 2 | 50.0 | 50.0 |" in md and "| **Overall** | 5 | 6 | 83.3 | 83.3 |" in md
    assert "model: tiny" in md

    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps(r) + "\n" for r in records))
    json_path, md_path = write_scores(s, preds)
    assert json_path.name == "preds.scores.json" and md_path.name == "preds.scores.md"
    # the settings come from the run's settings sidecar, never from an earlier score file
    elsewhere = score_file(preds)
    assert not elsewhere.settings_recorded and elsewhere.settings == {}
    assert "settings: not recorded" in format_markdown(elsewhere)
    from garvideo.runs.settings import RunSettings, write_settings

    write_settings(preds, RunSettings({"model": "tiny", "mode": "single"}, {}))
    again = score_file(preds)
    assert again.to_dict() == d


def test_eval_score_command(tmp_path):
    preds = tmp_path / "p.jsonl"
    records = [rec("Basic Questions", "(A) x", "(A) x"), rec("Basic Questions", "(B) x", "")]
    preds.write_text("".join(json.dumps(r) + "\n" for r in records))
    runner = CliRunner()
    res = runner.invoke(app, ["eval", "score", str(preds), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["overall"] == {"correct": 1, "total": 2, "accuracy": 0.5} and d["empty_predictions"] == 1
    table = runner.invoke(app, ["eval", "score", str(preds)], terminal_width=200)
    assert table.exit_code == 0 and "Basic Questions" in table.output and "50.0" in table.output

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"Answer": "(A)", "pred": "A"}\n')
    res = runner.invoke(app, ["eval", "score", str(bad)])
    assert res.exit_code != 0 and "lacks type" in str(res.exception)
