"""Load on ``garvideo serve``, batching off versus on: N concurrent ``openai`` clients, requests/s and
p50/p95 latency, and the ratio, in one run.

For each model (``--models``: the tiny random GAR, and GAR-1B's shape with random weights), two servers
are started side by side on free ports of 127.0.0.1 (loopback only): ``--max-batch-size 1`` (batching off:
one request at a time, as before) and ``--max-batch-size B`` (batching on). Each level of ``--clients``
runs on both, one after the other (the order alternates from level to level), so that both variants
see the same machine load: compare them as the ratio printed. Before the levels each server answers a
warm-up request (the clip is prepared once; every measured request is a cache hit with ``--clips 1``).

* **tiny**: the real ``garvideo serve`` command with a tiny random GAR made in a temporary folder.
* **gar1b**: GAR-1B's architecture (``bench/_common.py``: PE-Core-L vision tower, Llama-3.2-1B-style LLM of
  width 2048, GAR's vocabulary of 128,262) with random weights, ``--gar1b-layers`` LLM layers (default 4
  of 16) and ``--gar1b-vision-layers`` vision layers (default 4 of 23) to fit the shared CPUs: each
  decoding step still reads the full-size embedding/output head (263 M parameters) plus the layers, so
  decoding is weight-streaming bound as in the full model. Served by this script in a subprocess
  (``--worker``) with :func:`garvideo.serve.create_app`, the app ``garvideo serve`` runs.

Each client is a thread with the official ``openai`` client that sends questions about the sample clip
back to back for ``--seconds`` (requests still running then are awaited and counted).

Prints a table per model (requests/s, p50/p95 latency and tokens/s, off and on, the ratios, the
machine's 1-min load average during the level) and writes ``bench/results/serve_load.json``.

Usage:
    .venv/bin/python bench/serve_load.py [--models tiny,gar1b] [--clients 1,4,8,16] [--seconds 10]
        [--gar1b-seconds 20] [--max-tokens 16] [--max-batch-size 8] [--out bench/results/serve_load.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _common import RESULTS, command_line, write_json

from garvideo.serve.launch import ServerProcess

MAX_CLIENTS = 64
MAX_SECONDS = 600
MODELS = ("tiny", "gar1b")


# ----------------------------------------------------------------------------------------------------
# servers
# ----------------------------------------------------------------------------------------------------
def start_server(argv: list[str]) -> ServerProcess:
    """A server subprocess (offline: nothing is downloaded); :meth:`ServerProcess.wait` before use."""
    return ServerProcess(argv, env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})


def worker(args: argparse.Namespace) -> None:
    """``--worker``: serve GAR-1B's shape (random weights, reduced layers) with ``create_app`` on uvicorn."""
    import torch
    import uvicorn
    from _common import gar_bundle

    from garvideo.pipeline import GarVideo
    from garvideo.serve import ServeConfig, create_app
    from garvideo.serve.launch import bind_socket

    bundle = gar_bundle(
        gar1b_config(args.gar1b_layers, args.gar1b_vision_layers),
        torch.device("cpu"),
        torch.float32,
        "GAR-1B-shape",
    )
    gv = GarVideo(model=bundle, tracker="static", num_frames=args.num_frames)
    config = ServeConfig(
        allowed_roots=[Path(args.allowed_root)], max_batch_size=args.worker_batch, max_queue=args.max_queue
    )
    if args.batch_wait_ms is not None:
        config.batch_wait_ms = args.batch_wait_ms
    sock = bind_socket("127.0.0.1", 0)
    print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", file=sys.stderr, flush=True)
    server = uvicorn.Server(uvicorn.Config(create_app(gv, config), log_level="warning", lifespan="on"))
    server.run(sockets=[sock])


def gar1b_config(layers: int, vision_layers: int) -> Any:
    """GAR-1B's :class:`garvideo.model.GarConfig` with ``layers`` LLM layers and ``vision_layers`` vision layers."""
    from garvideo.model import GarConfig
    from garvideo.model.configuration import gar_config_dict

    return GarConfig.from_dict(gar_config_dict(num_layers=layers, vision_depth=vision_layers))


# ----------------------------------------------------------------------------------------------------
# clients
# ----------------------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def request_args(video: dict, masks: list, text: str, max_tokens: int) -> dict:
    return {
        "model": "garvideo",
        "messages": [{"role": "user", "content": [video, {"type": "text", "text": text}]}],
        "extra_body": {"masks": masks},
        "max_tokens": max_tokens,
    }


def run_level(
    url: str,
    video: dict,
    mask_sets: list,
    clients: int,
    seconds: float,
    max_tokens: int,
    stream: bool = False,
) -> dict:
    """``clients`` threads sending requests back to back for ``seconds``; the figures of the level."""
    from openai import APIStatusError, OpenAI

    latencies: list[float] = []
    tokens: list[int] = []
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(idx: int) -> None:
        api = OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=600)
        n = 0
        while time.monotonic() < deadline:
            n += 1
            masks = mask_sets[(idx + n) % len(mask_sets)]
            req = request_args(video, masks, f"Question {idx}.{n}: what is <object0> doing?", max_tokens)
            t0 = time.perf_counter()
            try:
                if stream:
                    used = 0
                    for chunk in api.chat.completions.create(
                        **req, stream=True, stream_options={"include_usage": True}
                    ):
                        if chunk.usage is not None:
                            used = chunk.usage.completion_tokens
                else:
                    used = api.chat.completions.create(**req).usage.completion_tokens
            except APIStatusError as exc:
                with lock:
                    errors[str(exc.status_code)] += 1
                time.sleep(0.05)
                continue
            except Exception as exc:  # noqa: BLE001 - a lost request is what this counts
                with lock:
                    errors[type(exc).__name__] += 1
                continue
            with lock:
                latencies.append(time.perf_counter() - t0)
                tokens.append(used)

    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    done = len(latencies)
    return {
        "clients": clients,
        "seconds": round(wall, 2),
        "requests": done,
        "requests_per_s": round(done / wall, 3),
        "p50_s": round(percentile(latencies, 0.5), 4),
        "p95_s": round(percentile(latencies, 0.95), 4),
        "mean_s": round(statistics.fmean(latencies), 4) if latencies else None,
        "errors": dict(errors),
        "completion_tokens_per_s": round(sum(tokens) / wall, 2),
        "loadavg_1min": round((load_before + os.getloadavg()[0]) / 2, 2),
    }


def warm_up(url: str, video: dict, mask_sets: list, max_tokens: int) -> None:
    """Three requests per mask set: each clip is prepared (and the code paths warm) before the levels."""
    from openai import OpenAI

    api = OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=1800)
    for masks in mask_sets:
        for _ in range(3):
            api.chat.completions.create(**request_args(video, masks, "Warm-up: <object0>?", max_tokens))


def compare(
    urls: dict[str, str],
    video: dict,
    mask_sets: list,
    levels: list[int],
    seconds: float,
    max_tokens: int,
    label: str,
) -> list[dict]:
    """Every level on both servers (``off`` / ``on``), the order alternating; rows with both and the ratios."""
    import httpx

    rows = []
    print(f"\n{label}")
    print(
        f"{'clients':>7} | {'req/s off':>9} {'on':>7} {'ratio':>6} | {'p50 off':>8} {'on':>7} | "
        f"{'p95 off':>8} {'on':>7} {'ratio':>6} | {'tok/s off':>9} {'on':>7} | {'load':>5}  errors"
    )
    for i, clients in enumerate(levels):
        order = ("off", "on") if i % 2 == 0 else ("on", "off")
        row: dict[str, Any] = {"clients": clients, "order": list(order)}
        for variant in order:
            row[variant] = run_level(urls[variant], video, mask_sets, clients, seconds, max_tokens)
        off, on = row["off"], row["on"]
        row["requests_per_s_ratio"] = (
            round(on["requests_per_s"] / off["requests_per_s"], 3) if off["requests_per_s"] else None
        )
        row["p95_ratio"] = round(on["p95_s"] / off["p95_s"], 3) if off["p95_s"] else None
        load = (off["loadavg_1min"] + on["loadavg_1min"]) / 2
        errs = {k: v for k, v in {"off": off["errors"], "on": on["errors"]}.items() if v}
        print(
            f"{clients:>7} | {off['requests_per_s']:>9.2f} {on['requests_per_s']:>7.2f} {row['requests_per_s_ratio']:>6.2f} | "
            f"{off['p50_s']:>8.3f} {on['p50_s']:>7.3f} | {off['p95_s']:>8.3f} {on['p95_s']:>7.3f} "
            f"{row['p95_ratio']:>6.2f} | {off['completion_tokens_per_s']:>9.1f} {on['completion_tokens_per_s']:>7.1f} | "
            f"{load:>5.1f}  {errs or 'none'}",
            flush=True,
        )
        rows.append(row)
    for variant in ("off", "on"):
        health = httpx.get(urls[variant] + "/health", timeout=10).json()
        rows_served = health["requests"]
        print(f"  server {variant}: {rows_served}, cache {health['cache']}")
    return rows


def batch_histogram(url: str) -> dict[str, float]:
    """The server's ``garvideo_batch_rows`` histogram (count, sum: mean rows per batch)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url + "/metrics", timeout=10).text
    out = {}
    for fam in text_string_to_metric_families(text):
        if fam.name == "garvideo_batch_rows":
            for s in fam.samples:
                if s.name.endswith(("_count", "_sum")):
                    out[s.name.rsplit("_", 1)[1]] = s.value
    out["mean_rows"] = round(out["sum"] / out["count"], 2) if out.get("count") else 0.0
    return out


# ----------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="tiny,gar1b", help=f"comma list of {', '.join(MODELS)}")
    parser.add_argument("--clients", default="1,4,8,16", help="concurrent clients per level (comma list)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per level and variant (tiny)")
    parser.add_argument(
        "--gar1b-seconds", type=float, default=20.0, help="seconds per level and variant (gar1b)"
    )
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument(
        "--max-batch-size", type=int, default=8, help="the batching-on server's --max-batch-size"
    )
    parser.add_argument(
        "--batch-wait-ms", type=float, default=None, help="the servers' --batch-wait-ms (default: theirs)"
    )
    parser.add_argument("--num-frames", type=int, default=4)
    parser.add_argument(
        "--gar1b-layers", type=int, default=4, help="LLM layers of the GAR-1B shape (16 in GAR-1B)"
    )
    parser.add_argument("--gar1b-vision-layers", type=int, default=4, help="vision layers (23 in GAR-1B)")
    parser.add_argument("--max-queue", type=int, default=64)
    parser.add_argument("--out", type=Path, default=RESULTS / "serve_load.json")
    # the GAR-1B-shape server subprocess
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-batch", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--allowed-root", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models or not set(models) <= set(MODELS):
        raise SystemExit(f"--models must be a comma list of {', '.join(MODELS)}")
    levels = [int(c) for c in str(args.clients).split(",") if c.strip()]
    if not levels or not all(1 <= c <= MAX_CLIENTS for c in levels):
        raise SystemExit(f"--clients must be numbers in 1..{MAX_CLIENTS}")
    if not (0 < args.seconds <= MAX_SECONDS and 0 < args.gar1b_seconds <= MAX_SECONDS):
        raise SystemExit(f"--seconds and --gar1b-seconds must be in (0, {MAX_SECONDS}]")
    if args.max_batch_size < 2:
        raise SystemExit("--max-batch-size must be >= 2 (the batching-on server)")

    from garvideo.demos.sample_clip import make_sample_clip
    from garvideo.masks import load_mask, rle_encode

    payload: dict[str, Any] = {
        "command": command_line(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "tracker": "static",
        "num_frames": args.num_frames,
        "max_tokens": args.max_tokens,
        "max_batch_size_on": args.max_batch_size,
        "batch_wait_ms": args.batch_wait_ms if args.batch_wait_ms is not None else "server default",
        "levels": levels,
        "models": {},
    }
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        tmpd = Path(tmp)
        sample = make_sample_clip(tmpd / "sample")
        mask_sets = [[{"frame": 0, "rle": rle_encode(load_mask(sample.object_masks[0])[0])}]]
        video = {"type": "video_url", "video_url": {"url": sample.video_path.as_uri()}}
        for model in models:
            servers: dict[str, ServerProcess] = {}
            t0 = time.perf_counter()
            try:
                for variant, batch in (("off", 1), ("on", args.max_batch_size)):
                    servers[variant] = start_server(server_argv(model, batch, sample.root, tmpd, args))
                for s in servers.values():
                    s.wait(timeout=600)
                startup = time.perf_counter() - t0
                urls = {v: s.url for v, s in servers.items()}
                for url in urls.values():
                    warm_up(url, video, mask_sets, args.max_tokens)
                seconds = args.seconds if model == "tiny" else args.gar1b_seconds
                label = describe_model(model, args)
                rows = compare(urls, video, mask_sets, levels, seconds, args.max_tokens, label)
                payload["models"][model] = {
                    "model": label,
                    "seconds_per_level": seconds,
                    "servers_startup_s": round(startup, 1),
                    "rows": rows,
                    "batch_rows_on": batch_histogram(urls["on"]),
                }
                print(f"  batching-on server's batches: {payload['models'][model]['batch_rows_on']}")
            finally:
                for s in servers.values():
                    s.stop()
    payload["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    write_json(args.out, payload)


def describe_model(model: str, args: argparse.Namespace) -> str:
    if model == "tiny":
        return "tiny random GAR (garvideo make-tiny-model), garvideo serve, dtype auto"
    return (
        f"GAR-1B shape, random weights, float32, {args.gar1b_layers} of 16 LLM layers and "
        f"{args.gar1b_vision_layers} of 23 vision layers (full width and vocabulary)"
    )


def server_argv(model: str, batch: int, root: Path, tmpd: Path, args: argparse.Namespace) -> list[str]:
    wait = [] if args.batch_wait_ms is None else ["--batch-wait-ms", str(args.batch_wait_ms)]
    return _server_argv(model, batch, root, tmpd, args) + wait


def _server_argv(model: str, batch: int, root: Path, tmpd: Path, args: argparse.Namespace) -> list[str]:
    if model == "tiny":
        folder = tmpd / "tiny"
        if not folder.is_dir():
            from garvideo.model import make_tiny_model

            make_tiny_model(folder, seed=0)
        return [
            sys.executable, "-c", "from garvideo.cli import main; main()", "serve",
            "--model", str(folder), "--tracker", "static", "--num-frames", str(args.num_frames),
            "--port", "0", "--host", "127.0.0.1", "--allowed-root", str(root),
            "--max-queue", str(args.max_queue), "--max-batch-size", str(batch),
        ]  # fmt: skip
    return [
        sys.executable, str(Path(__file__).resolve()), "--worker", "--worker-batch", str(batch),
        "--allowed-root", str(root), "--num-frames", str(args.num_frames), "--max-queue", str(args.max_queue),
        "--gar1b-layers", str(args.gar1b_layers), "--gar1b-vision-layers", str(args.gar1b_vision_layers),
    ]  # fmt: skip


if __name__ == "__main__":
    main()
