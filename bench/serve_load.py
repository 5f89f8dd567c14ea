"""Load on ``garvideo serve``: N concurrent clients for T seconds, requests/s, latency and errors.

Each level of ``--clients`` (default 1, 4 and 8) runs for ``--seconds`` on the same server.

Starts the real server (``garvideo serve``) in a subprocess on a free port of 127.0.0.1 (loopback only)
with a model (default: the tiny random GAR, made in a temporary folder), the ``static`` tracker and
the synthetic sample clip under ``--allowed-root``. Each client is a thread with the official
``openai`` client that sends questions about the clip back to back until T seconds have passed
(requests still running then are awaited and counted). ``--clips M`` spreads the requests over M
different mask sets (M prepared clips, M ≤ the server's cache: after the first request on each, all are
cache hits). With ``--max-queue`` below the number of clients the server answers some requests 503;
they are counted as errors, by status.

Prints a table per level (requests, requests/s, p50/p95 latency, errors, tokens/s, the machine's 1-min
load average during the level: the machine is shared, compare runs as ratios), and writes ``bench/results/serve_load.json``.

Usage:
    .venv/bin/python bench/serve_load.py [--clients 1,4,8] [--seconds 20] [--max-tokens 16] [--clips 1]
        [--stream] [--model DIR] [--max-queue 32] [--out bench/results/serve_load.json]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from _common import RESULTS, command_line, write_json

MAX_CLIENTS = 64
MAX_SECONDS = 600


def start_server(argv: list[str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", "from garvideo.cli import main; main()", "serve", *argv],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
    )
    log: list[str] = []
    ready = threading.Event()
    url: list[str] = []

    def drain() -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            log.append(line)
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                url.append(m.group(1))
                ready.set()

    threading.Thread(target=drain, daemon=True).start()
    end = time.monotonic() + 300
    while not ready.wait(0.2):
        if proc.poll() is not None or time.monotonic() > end:
            proc.kill()
            raise SystemExit("garvideo serve did not start:\n" + "".join(log))
    return proc, url[0]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--clients", default="1,4,8", help="concurrent clients; a comma list runs each in turn"
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--clips", type=int, default=1, help="distinct mask sets (prepared clips)")
    parser.add_argument("--num-frames", type=int, default=4)
    parser.add_argument("--stream", action="store_true", help="stream the answers (SSE)")
    parser.add_argument("--model", default=None, help="GAR folder or hub id (default: a tiny random GAR)")
    parser.add_argument("--max-queue", type=int, default=32)
    parser.add_argument("--out", type=Path, default=RESULTS / "serve_load.json")
    args = parser.parse_args()
    levels = [int(c) for c in str(args.clients).split(",") if c.strip()]
    if not levels or not all(1 <= c <= MAX_CLIENTS for c in levels):
        raise SystemExit(f"--clients must be numbers in 1..{MAX_CLIENTS}")
    if not 0 < args.seconds <= MAX_SECONDS:
        raise SystemExit(f"--seconds must be in (0, {MAX_SECONDS}]")
    if not 1 <= args.clips <= 8:
        raise SystemExit("--clips must be in 1..8 (the server's default cache holds 8 clips)")

    import numpy as np

    from garvideo.demos.sample_clip import make_sample_clip
    from garvideo.masks import load_mask, rle_encode

    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        tmpd = Path(tmp)
        sample = make_sample_clip(tmpd / "sample")
        model = args.model
        if model is None:
            from garvideo.model import make_tiny_model

            model = str(make_tiny_model(tmpd / "tiny", seed=0))
        disc = load_mask(sample.object_masks[0])[0]
        # M mask sets: the disc's mask, shifted by a pixel per set (a different clip key each).
        mask_sets = [[{"frame": 0, "rle": rle_encode(np.roll(disc, i, axis=1))}] for i in range(args.clips)]
        argv = ["--model", model, "--tracker", "static", "--num-frames", str(args.num_frames), "--port", "0"]
        argv += [
            "--host",
            "127.0.0.1",
            "--allowed-root",
            str(sample.root),
            "--max-queue",
            str(args.max_queue),
        ]
        t_start = time.perf_counter()
        proc, url = start_server(argv)
        startup = time.perf_counter() - t_start
        video = {"type": "video_url", "video_url": {"url": sample.video_path.as_uri()}}
        print(
            f"{'clients':>7} {'requests':>8} {'req/s':>7} {'p50 s':>7} {'p95 s':>7} {'tok/s':>7} {'load':>6}  errors"
        )

        import httpx

        rows = []
        try:
            for clients in levels:
                row = run_level(url, video, mask_sets, clients, args)
                row["cache_after"] = httpx.get(url + "/health", timeout=10).json()["cache"]
                rows.append(row)
                print(
                    f"{clients:>7} {row['requests']:>8} {row['requests_per_s']:>7.2f} {row['p50_s']:>7.3f} "
                    f"{row['p95_s']:>7.3f} {row['completion_tokens_per_s']:>7.1f} {row['loadavg_1min']:>6.1f}  "
                    f"{row['errors'] or 'none'}",
                    flush=True,
                )
        finally:
            health = httpx.get(url + "/health", timeout=10).json()
            proc.terminate()
            proc.wait(30)

    print(
        f"server counts {health['requests']}, cache {health['cache']}, start-up {startup:.1f} s, {os.cpu_count()} CPUs"
    )
    write_json(
        args.out,
        {
            "command": command_line(),
            "model": args.model or "tiny random GAR (garvideo make-tiny-model)",
            "tracker": "static",
            "num_frames": args.num_frames,
            "max_tokens": args.max_tokens,
            "stream": args.stream,
            "clips": args.clips,
            "seconds_per_level": args.seconds,
            "server_startup_s": round(startup, 2),
            "server_counts": health["requests"],
            "cpus": os.cpu_count(),
            "rows": rows,
        },
    )


def run_level(url: str, video: dict, mask_sets: list, clients: int, args: argparse.Namespace) -> dict:
    """``clients`` threads sending requests back to back for ``args.seconds``; the figures of the level."""
    from openai import APIStatusError, OpenAI

    latencies: list[float] = []
    tokens: list[int] = []
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + args.seconds

    def client(idx: int) -> None:
        api = OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=600)
        n = 0
        while time.monotonic() < deadline:
            n += 1
            masks = mask_sets[(idx + n) % len(mask_sets)]
            text = {"type": "text", "text": f"Question {idx}.{n}: what is <object0> doing?"}
            t0 = time.perf_counter()
            try:
                r = api.chat.completions.create(
                    model="garvideo",
                    messages=[{"role": "user", "content": [video, text]}],
                    extra_body={"masks": masks},
                    max_tokens=args.max_tokens,
                    stream=args.stream,
                    **({"stream_options": {"include_usage": True}} if args.stream else {}),
                )
                if args.stream:
                    used = 0
                    for chunk in r:
                        if chunk.usage is not None:
                            used = chunk.usage.completion_tokens
                else:
                    used = r.usage.completion_tokens
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


if __name__ == "__main__":
    main()
