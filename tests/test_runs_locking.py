"""One writer per output (garvideo.runs.locking): the lock error is its own class, not bad input."""

from __future__ import annotations

import pytest

from garvideo.errors import GarVideoError, InputError
from garvideo.runs.locking import OutputLocked, lock_path, output_lock


def test_a_second_lock_on_one_file_is_refused_with_the_holders_pid(tmp_path):
    out = tmp_path / "answers.jsonl"
    with output_lock(out) as lp:
        pid = lp.read_text().strip()
        assert lp == lock_path(out) and pid.isdigit()
        with pytest.raises(OutputLocked) as exc, output_lock(out):
            pass
        with output_lock(tmp_path / "other.jsonl"):  # another file: its own lock
            pass
    err = exc.value
    assert isinstance(err, GarVideoError) and not isinstance(err, InputError)
    assert err.path == out and err.pid == pid
    assert str(err) == f"{out}: is being written by another process (pid {pid})"
    assert not lock_path(out).exists()  # released and removed


def test_the_cli_prints_the_lock_error_as_one_line(tmp_path):
    from garvideo.cli._errors import error_line

    exc = OutputLocked(tmp_path / "a.jsonl", "123")
    assert error_line(exc) == f"error: {tmp_path / 'a.jsonl'}: is being written by another process (pid 123)"
