"""``bench/gpu_check.py``: its CPU-side parts run (``--device cpu --smoke``: every section's code with the
tiny model), and without CUDA it says so and exits 2. Its figures are only meaningful on a GPU."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def gpu_check():
    sys.path.insert(0, str(BENCH))
    try:
        import gpu_check

        yield gpu_check
    finally:
        sys.path.remove(str(BENCH))


def test_without_cuda_it_says_so_and_exits_2(gpu_check, monkeypatch, capsys, tmp_path):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # also on a machine with a GPU
    out = tmp_path / "gpu.json"
    assert gpu_check.main(["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no CUDA device available" in err and "NVIDIA GPU" in err
    assert not out.exists()
    assert gpu_check.main(["--device", "cpu", "--out", str(out)]) == 2  # the CPU only with --smoke
    assert "give a CUDA device" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--skip", "nonsense"])


def test_peak_table_and_flop_counts(gpu_check):
    assert gpu_check.gpu_peak("NVIDIA H100 80GB HBM3") == (989.0, 3.35)
    assert gpu_check.gpu_peak("NVIDIA H100 PCIe")[0] == 756.0
    assert gpu_check.gpu_peak("NVIDIA H200")[0] == 989.0
    assert gpu_check.gpu_peak("NVIDIA A100-SXM4-40GB")[0] == 312.0
    assert gpu_check.gpu_peak("Some Unknown GPU") == (None, None)
    c = {"llm_params": 1e9, "head_params": 2e8, "llm_layers": 16, "attn_width": 2048,
         "vision_params": 3e8, "vision_depth": 23, "vision_width": 1024, "vision_tokens": 1024}  # fmt: skip
    assert gpu_check.prefill_flops(c, 100) == pytest.approx(2e11 + 2 * 16 * 100 * 100 * 2048 + 4e8)
    assert gpu_check.decode_flops(c, 0) == pytest.approx(2.4e9)
    assert gpu_check.decode_bytes(c) == pytest.approx(2.4e9)
    assert gpu_check.vision_flops_per_tile(c) == pytest.approx(2 * 3e8 * 1024 + 4 * 23 * 1024**2 * 1024)
    assert (
        gpu_check.roofline(1e12, 1.0, 10.0) == pytest.approx(0.1) and gpu_check.roofline(1, 1, None) is None
    )


@pytest.mark.slow
def test_smoke_run_on_cpu_writes_every_section(gpu_check, tmp_path, capsys):
    out = tmp_path / "gpu.json"
    assert gpu_check.main(["--device", "cpu", "--smoke", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["smoke"] and r["device"] == "cpu" and r["errors"] == {}
    s = r["sections"]
    for model in ("GAR-1B", "GAR-8B"):
        g = s["gar"][model]
        assert g["vision"]["tiles_per_s"] > 0 and g["prefill"]["tokens_per_s"] > 0
        assert g["decode"]["tokens"] == 4 and g["vision"]["mfu"] is None  # no peak known for a CPU
    assert s["sam2"] == {"skipped": "--smoke"}
    assert s["describe"]["new_tokens"] == 4 and len(s["describe"]["frames"]) == 2
    assert s["tiny"]["agree"] and s["tiny"]["devices"] == ["cpu", "cpu"]
    if gpu_check.SHARED.joinpath("data", "videorefer-mini").is_dir():
        assert set(s["eval"]["runs"]) == {"1", "2"} and s["eval"]["same_predictions"] == {
            "1": True,
            "2": True,
        }
    else:  # outside the garvideo workplace: no benchmark file to run
        assert "no shared VideoRefer mini file" in s["eval"]["skipped"]
    serve = s["serve"]  # the server at load: batching off and on, 1 and 8 clients
    assert [row["clients"] for row in serve["rows"]] == [1, 8]
    for row in serve["rows"]:
        for variant in ("off", "on"):
            assert row[variant]["requests"] > 0 and row[variant]["errors"] == {}, row
        assert row["requests_per_s_ratio"] > 0 and row["p95_ratio"] > 0
    assert serve["batch_rows_on"]["count"] > 0  # the batching server's metrics were read
    out = capsys.readouterr().out
    assert "tiny model float32 cpu vs cpu: agree" in out and "serve 8 clients:" in out
