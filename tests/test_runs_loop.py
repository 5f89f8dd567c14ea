"""Resumable, sharded JSONL runs (garvideo.runs.loop; shards merged by garvideo.runs.merge).

Runs here use a small real answering function: a deterministic function of the item (a hash of its
text), so two runs agree exactly. Records carry ``timings`` (wall times, which differ between runs);
outputs are compared with ``timings`` stripped and everything else byte for byte.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from garvideo.errors import InputError
from garvideo.runs.lines import read_jsonl
from garvideo.runs.loop import JsonlRun, RunInterrupted, run_jsonl
from garvideo.runs.merge import merge_shards
from garvideo.runs.shards import Shard, find_parts, resolve_shard

REPO = Path(__file__).resolve().parents[1]

ITEMS = [{"id": i, "clip": f"clip{i % 3}", "text": f"question number {i}"} for i in range(10)]


def answer(item: dict) -> dict:
    t0 = time.perf_counter()
    if "bad" in item["text"]:
        raise ValueError(f"cannot answer {item['text']!r}")
    digest = hashlib.sha256(item["text"].encode()).hexdigest()
    return {
        "id": item["id"],
        "answer": "ABCD"[int(digest, 16) % 4],
        "pred": digest[:12],
        "error": None,
        "timings": {"total": time.perf_counter() - t0},
    }


def on_error(item: dict, exc: BaseException) -> dict:
    return {"id": item["id"], "answer": None, "pred": "", "error": str(exc), "timings": {}}


SPEC = JsonlRun(key=lambda it: it["id"], process=answer, on_error=on_error)
GROUPED = JsonlRun(key=lambda it: it["id"], process=answer, on_error=on_error, group=lambda it: it["clip"])


def test_single_run_writes_one_line_per_item_in_input_order(tmp_path):
    out = tmp_path / "out.jsonl"
    s = run_jsonl(ITEMS, out, GROUPED)
    recs = read_jsonl(out).records
    assert [r["id"] for r in recs] == list(range(10))  # grouped processing, input order on disk
    assert s.complete and s.written == 10 and s.skipped == 0 and s.failed == 0
    assert out.read_text().endswith("\n") and len(out.read_text().splitlines()) == 10
    again = run_jsonl(ITEMS, out, GROUPED)  # nothing left to do
    assert again.written == 0 and again.skipped == 10 and again.complete


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, stripped):
    ref = tmp_path / "ref.jsonl"
    run_jsonl(ITEMS, ref, GROUPED)

    out = tmp_path / "out.jsonl"
    calls = []

    def interrupt_after_4(item):
        if len(calls) == 4:
            raise KeyboardInterrupt
        calls.append(item["id"])
        return answer(item)

    spec = JsonlRun(
        key=lambda it: it["id"], process=interrupt_after_4, on_error=on_error, group=lambda it: it["clip"]
    )
    with pytest.raises(RunInterrupted) as info:
        run_jsonl(ITEMS, out, spec)
    assert info.value.summary.written == 4
    assert [r["id"] for r in read_jsonl(out).records] == calls  # nothing written is lost

    seen = []
    resumed = run_jsonl(
        ITEMS,
        out,
        JsonlRun(
            key=SPEC.key,
            process=lambda it: seen.append(it["id"]) or answer(it),
            on_error=on_error,
            group=GROUPED.group,
        ),
    )
    assert sorted(seen) == sorted(set(range(10)) - set(calls))  # only the missing ones are redone
    assert resumed.skipped == 4 and resumed.written == 6 and resumed.complete
    assert stripped(out) == stripped(ref)


def test_a_line_cut_off_by_a_crash_is_dropped_and_redone(tmp_path, stripped):
    ref = tmp_path / "ref.jsonl"
    run_jsonl(ITEMS, ref, SPEC)
    out = tmp_path / "out.jsonl"
    lines = ref.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:3]) + lines[3][:17])  # a crash in the middle of line 4
    contents = read_jsonl(out)
    assert contents.dropped_tail and [r["id"] for r in contents.records] == [0, 1, 2]
    s = run_jsonl(ITEMS, out, SPEC)
    assert s.skipped == 3 and s.written == 7
    assert stripped(out) == stripped(ref)


def test_bad_items_are_recorded_and_the_run_goes_on(tmp_path):
    items = [dict(it) for it in ITEMS]
    items[2]["text"] = "a bad question"
    items[7]["text"] = "another bad one"
    out = tmp_path / "out.jsonl"
    s = run_jsonl(items, out, SPEC)
    recs = read_jsonl(out).records
    assert s.failed == 2 and s.failed_total == 2 and s.complete
    assert [r["id"] for r in recs if r["error"]] == [2, 7]
    assert "cannot answer 'a bad question'" in recs[2]["error"]
    assert all(r["error"] is None and r["answer"] in "ABCD" for i, r in enumerate(recs) if i not in (2, 7))

    # skip_failed keeps them (answered, with an error); a plain rerun redoes them in place
    kept = run_jsonl(items, out, SPEC, skip_failed=True)
    assert kept.written == 0 and kept.kept_failed == 2 and kept.failed_total == 2
    items[2]["text"] = "fixed question"
    retried = run_jsonl(items, out, SPEC)
    recs = read_jsonl(out).records
    assert retried.written == 2 and retried.retried == 2 and retried.skipped == 8
    assert retried.failed == 1 and retried.failed_total == 1
    assert [r["id"] for r in recs] == list(range(10))  # the retry replaced the old lines, order kept
    assert recs[2]["error"] is None and recs[7]["error"]


@pytest.mark.parametrize("consecutive", [False, True])
@pytest.mark.parametrize("count", [2, 3, 7])
def test_sharded_and_merged_equals_single(tmp_path, count, consecutive, stripped):
    items = sorted(ITEMS, key=lambda it: it["clip"]) if consecutive else ITEMS  # else clips interleave
    ref = tmp_path / "ref.jsonl"
    run_jsonl(items, ref, GROUPED)
    out = tmp_path / "sharded.jsonl"
    summaries = [run_jsonl(items, out, GROUPED, shard=f"{i}/{count}") for i in range(count)]
    assert [s.out.name for s in summaries] == [f"sharded.part-{i}-of-{count}.jsonl" for i in range(count)]
    assert sum(s.total for s in summaries) == len(items)
    # every clip's items are on one rank
    ranks = {it["clip"]: {i for i, s in enumerate(summaries) for r in read_jsonl(s.out).records if r["id"] == it["id"]} for it in items}  # fmt: skip
    assert all(len(r) == 1 for r in ranks.values())
    # the last rank to finish found every part complete and merged them, in input order
    assert [s.merged for s in summaries[:-1]] == [None] * (count - 1) and summaries[-1].merged == out
    assert stripped(out) == stripped(ref)
    # the explicit merge step (which does not know the input) concatenates the parts in rank order:
    # the same file when each clip's items are consecutive in the input, else the same records
    out.unlink()
    result = merge_shards(out)
    assert result.records == len(items) and result.parts == find_parts(out)
    assert stripped(out) == stripped(ref) if consecutive else sorted(stripped(out)) == sorted(stripped(ref))


def test_torchrun_env_picks_the_shard(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert resolve_shard(None) == Shard(1, 2)
    assert resolve_shard("0/4") == Shard(0, 4)  # an explicit --shard wins
    s = run_jsonl(ITEMS, tmp_path / "o.jsonl", SPEC)
    assert s.out.name == "o.part-1-of-2.jsonl" and [r["id"] for r in read_jsonl(s.out).records] == [
        5,
        6,
        7,
        8,
        9,
    ]
    monkeypatch.delenv("RANK")
    assert resolve_shard(None) == Shard(0, 1)


def test_merge_checks_the_parts(tmp_path):
    out = tmp_path / "o.jsonl"
    with pytest.raises(InputError, match="no part files"):
        merge_shards(out)
    run_jsonl(ITEMS, out, SPEC, shard="0/3")
    run_jsonl(ITEMS, out, SPEC, shard="2/3")
    with pytest.raises(InputError, match=r"ranks \[1\] of 3 are missing"):
        merge_shards(out)
    dup = tmp_path / "d.jsonl"
    (tmp_path / "d.part-0-of-2.jsonl").write_text('{"id": 1}\n')
    (tmp_path / "d.part-1-of-2.jsonl").write_text('{"id": 1}\n')
    with pytest.raises(InputError, match="also in"):
        merge_shards(dup)


def test_input_errors(tmp_path):
    with pytest.raises(InputError, match="more than once"):
        run_jsonl([{"id": 1, "text": "a"}, {"id": "1", "text": "b"}], tmp_path / "o.jsonl", SPEC)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\nnot json\n{"id": 2}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:2"):
        read_jsonl(bad)


_CTRL_C_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from garvideo.runs.loop import JsonlRun, RunInterrupted, run_jsonl

    def slow(item):
        time.sleep(0.15)
        return {"id": item["id"], "answer": item["id"] * 2, "error": None}

    items = [{"id": i} for i in range(200)]
    spec = JsonlRun(key=lambda it: it["id"], process=slow, on_error=lambda it, e: {"id": it["id"], "error": str(e)})
    try:
        run_jsonl(items, sys.argv[1], spec)
    except RunInterrupted as exc:
        print("written", exc.summary.written, flush=True)
        sys.exit(130)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT semantics")
def test_ctrl_c_loses_nothing_already_written(tmp_path):
    out = tmp_path / "out.jsonl"
    script = tmp_path / "run.py"
    script.write_text(_CTRL_C_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, str(script), str(out)], stdout=subprocess.PIPE, text=True, env=env
    )
    deadline = time.time() + 60
    while time.time() < deadline and (not out.exists() or out.read_text().count("\n") < 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, stdout
    written = int(stdout.split()[-1])
    recs = read_jsonl(out)
    assert not recs.dropped_tail and len(recs.records) == written >= 3
    assert [r["answer"] for r in recs.records] == [2 * i for i in range(written)]
