"""Output-line fields (garvideo.runs.records): key order, rounding, the recorded error reason, timings."""

from __future__ import annotations

import time
from types import SimpleNamespace

from garvideo.errors import InputError
from garvideo.runs.records import ANSWER_KEYS, answer_fields, answer_record, answer_timings, error_text


def test_answer_record_keys_in_order_and_values_plain():
    rec = answer_record("q1", answer="B", pred="B", frames=[3, 9], notes=("n",), timings={"total": 0.123456})
    assert tuple(rec) == ANSWER_KEYS
    assert rec["frames"] == [3, 9] and rec["notes"] == ["n"] and rec["timings"] == {"total": 0.1235}
    assert answer_fields() == {"frames": [], "error": None, "notes": [], "timings": {}}


def test_error_text_is_one_line():
    assert error_text(InputError("id 3", "no such video")) == "id 3: no such video"
    assert error_text(ValueError("first line\nsecond")) == "ValueError: first line"
    assert error_text(RuntimeError()) == "RuntimeError"


def test_answer_timings_copy_the_results_stages_and_share_the_total():
    result = SimpleNamespace(timings={"prefill": 0.5, "generation": 1.0, "total": 99.0})
    t0 = time.perf_counter() - 2.0
    got = answer_timings(0.25, result, t0, wait_s=0.1, items=2)  # type: ignore[arg-type] - the fields read
    assert list(got) == ["prepare", "wait", "prefill", "generation", "total"]
    assert got["prepare"] == 0.25 and got["wait"] == 0.1 and 1.0 <= got["total"] < 2.0  # 2 s over 2 items
    assert "wait" not in answer_timings(0.0, result, time.perf_counter())  # type: ignore[arg-type]
