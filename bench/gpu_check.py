"""One GPU check for garvideo: run it as is on a machine with an NVIDIA GPU (under 8 minutes on one
H100-class GPU); it writes ``bench/results/gpu_check.json`` and prints a table.

What it measures (random weights throughout: no download, and the cost of a forward pass does not
depend on the weights):

1. **GAR-1B and GAR-8B** (their real architectures, ``bench/_common.py``) in bfloat16: vision tiles/s
   (448×448 tiles with a mask, batch ``--tiles``), prefill tokens/s (one prompt of ``--prefill`` tokens)
   and decode tokens/s (batch 1, ``--decode`` tokens forced), each against the GPU's bf16 roofline:
   the dense bf16 peak (a table keyed by the device name, e.g. H100 SXM and H200 989 TFLOP/s, A100 312)
   for vision and prefill (model FLOP utilisation = FLOPs counted from the shapes / time / peak) and,
   for decode, which is bound by memory traffic, the HBM bandwidth (weights read per token / time /
   bandwidth) as well.
2. **SAM 2.1 hiera-t and hiera-l** at 1024 (random weights from the sam2 package's configs, bf16
   autocast): frames/s tracking one object through ``--sam2-frames`` frames of a clip.
3. **describe** end to end on CUDA with GAR-1B's shape: a DAVIS clip from ``../shared`` when present,
   else the generated sample clip; flow tracker, K = 8; its stage timings.
4. **The tiny GAR on CUDA versus CPU in float32** (TF32 off): the same describe must give the same
   text; the check fails (exit 1) when it does not.
5. **Eval throughput**, GAR-1B's shape in bf16 on the shared VideoRefer mini file (when present):
   ``--batch-size 1`` versus ``8`` (both with ``--prefetch 2``), questions/s and model-busy share.
6. **The server at load**, GAR-1B's shape in bf16: ``garvideo serve``'s app (on uvicorn in this process,
   one model shared by two apps) with batching off (``max_batch_size=1``) and on (``8``), 1 and 8
   concurrent ``openai`` clients for 20 s each (64 new tokens per request) (``bench/serve_load.py``'s clients, the
   variants interleaved): requests/s, p50/p95 latency and the ratios.

Without CUDA it says so and exits 2. ``--device cpu --smoke`` runs every section's code with the tiny
model and tiny sizes on the CPU (for the test suite; its figures mean nothing).

Usage:
    .venv/bin/python bench/gpu_check.py [--device cuda] [--skip sam2,eval] [--out bench/results/gpu_check.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import (
    RESULTS,
    SHARED,
    command_line,
    gar_1b_config,
    gar_8b_config,
    gar_bundle,
    peak_rss_mb,
    write_json,
)

SECTIONS = ("gar", "sam2", "describe", "tiny", "eval", "serve")

# Dense bf16 tensor-core peak (TFLOP/s, no sparsity) and HBM bandwidth (TB/s), from NVIDIA's data
# sheets; matched against torch.cuda.get_device_name() in this order (first match wins).
GPU_PEAKS: tuple[tuple[str, float, float], ...] = (
    ("GH200", 989.0, 4.0),
    ("H200", 989.0, 4.8),
    ("H100 NVL", 835.0, 3.9),
    ("H100 PCIe", 756.0, 2.0),
    ("H100", 989.0, 3.35),  # SXM5 ("NVIDIA H100 80GB HBM3")
    ("H800", 989.0, 3.35),
    ("B200", 2250.0, 8.0),
    ("A100-SXM4-80GB", 312.0, 2.04),
    ("A100 80GB PCIe", 312.0, 1.94),
    ("A100", 312.0, 1.56),  # 40 GB
    ("A800", 312.0, 2.04),
    ("L40S", 362.0, 0.864),
    ("L40", 181.0, 0.864),
    ("L4", 121.0, 0.3),
    ("A10G", 70.0, 0.6),
    ("A10", 125.0, 0.6),
)


def gpu_peak(name: str) -> tuple[float | None, float | None]:
    """``(bf16 TFLOP/s, HBM TB/s)`` of a GPU by its name, ``(None, None)`` when not in the table."""
    for key, tflops, tbps in GPU_PEAKS:
        if key.lower() in name.lower():
            return tflops, tbps
    return None, None


# ----------------------------------------------------------------------------------------------------
# FLOP counts
# ----------------------------------------------------------------------------------------------------
def shape_counts(model: Any) -> dict[str, Any]:
    """Parameter counts of the parts that do the matmuls, and the attention sizes, of a GarModel."""
    vision = llm = head = other = 0
    for name, p in model.named_parameters():
        n = p.numel()
        if "vision_tower" in name:
            vision += n
        elif "language_model" in name and "embed_tokens" not in name:
            llm += n
        elif "lm_head" in name:
            head += n
        elif "embed_tokens" not in name:
            other += n  # projector, mask embedding
    cfg = model.mllm.config
    text = cfg.text_config
    vargs = dict(cfg.vision_config.model_args)
    if head == 0:  # tied output head: the embedding is read once more per token
        head = int(text.vocab_size) * int(text.hidden_size)
    return {
        "vision_params": vision,
        "llm_params": llm,
        "head_params": head,
        "other_params": other,
        "vision_width": int(vargs.get("embed_dim", 0)),
        "vision_depth": int(vargs.get("depth", 0)),
        "vision_tokens": (448 // 14) ** 2,  # 32×32 patches of 14 on a 448 tile
        "llm_layers": int(text.num_hidden_layers),
        "attn_width": int(text.num_attention_heads) * int(getattr(text, "head_dim", 0) or 0),
    }


def vision_flops_per_tile(c: dict[str, Any]) -> float:
    """2 FLOPs per weight per patch token, plus attention (QK^T and AV: 4·T²·width per layer)."""
    t = c["vision_tokens"]
    return 2.0 * c["vision_params"] * t + 4.0 * c["vision_depth"] * t * t * c["vision_width"]


def prefill_flops(c: dict[str, Any], tokens: int) -> float:
    """LLM matmuls on every token, causal attention (half of 4·L²·width per layer), the head once."""
    return (
        2.0 * c["llm_params"] * tokens
        + 2.0 * c["llm_layers"] * tokens * tokens * c["attn_width"]
        + 2.0 * c["head_params"]
    )


def decode_flops(c: dict[str, Any], context: int) -> float:
    """One new token at ``context`` positions: LLM matmuls, attention over the context, the head."""
    return 2.0 * (c["llm_params"] + c["head_params"]) + 4.0 * c["llm_layers"] * context * c["attn_width"]


def decode_bytes(c: dict[str, Any], dtype_bytes: int = 2) -> float:
    """Weights read per decoded token (the KV cache read is left out: it is small next to them here)."""
    return float(c["llm_params"] + c["head_params"]) * dtype_bytes


# ----------------------------------------------------------------------------------------------------
# timing
# ----------------------------------------------------------------------------------------------------
def sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: Any, repeats: int) -> tuple[float, Any]:
    """Median seconds of ``repeats`` calls (after one warm-up call) and the last result."""
    out = fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2], out


def roofline(flops: float, seconds: float, peak_tflops: float | None) -> float | None:
    return None if not peak_tflops else flops / seconds / (peak_tflops * 1e12)


def check_gar(
    name: str, config: Any, device: Any, args: Any, peak: tuple[float | None, float | None]
) -> dict:
    """Vision tiles/s, prefill tokens/s, decode tokens/s of one architecture (random weights)."""
    import torch

    dtype = torch.float32 if args.smoke else torch.bfloat16
    t0 = time.perf_counter()
    bundle = gar_bundle(config, device, dtype, f"{name} shape, random weights")
    build_s = time.perf_counter() - t0
    model = bundle.model
    c = shape_counts(model)
    gen = torch.Generator(device="cpu").manual_seed(0)

    pixels = torch.rand((args.tiles, 3, 448, 448), generator=gen).mul(2).sub(1).to(device, dtype)
    masks = (torch.rand((args.tiles, 448, 448), generator=gen) > 0.5).to(device, dtype)
    with torch.inference_mode():
        vis_s, _ = timed(lambda: model.encode_frames(pixels, masks), device, args.repeats)
    hidden = int(model.mllm.config.text_config.hidden_size)
    embeds = (torch.randn((1, args.prefill, hidden), generator=gen) * 0.02).to(device, dtype)
    pre_s, prefix = timed(lambda: bundle.prefill(embeds), device, args.repeats)
    suffix = torch.full((1, 4), 1000, dtype=torch.long, device=device)
    n = args.decode

    def decode() -> Any:
        return bundle.generate_from(prefix, suffix, max_new_tokens=n, min_new_tokens=n)

    dec_s, result = timed(decode, device, max(1, args.repeats // 2))
    tflops, tbps = peak
    tiles_per_s = args.tiles / vis_s
    out = {
        "dtype": str(dtype).replace("torch.", ""),
        "build_seconds": build_s,
        "params": {k: v for k, v in c.items() if k.endswith("params")},
        "vision": {
            "tiles": args.tiles,
            "seconds": vis_s,
            "tiles_per_s": tiles_per_s,
            "tflops_per_tile": vision_flops_per_tile(c) / 1e12,
            "mfu": roofline(vision_flops_per_tile(c) * args.tiles, vis_s, tflops),
        },
        "prefill": {
            "tokens": args.prefill,
            "seconds": pre_s,
            "tokens_per_s": args.prefill / pre_s,
            "mfu": roofline(prefill_flops(c, args.prefill), pre_s, tflops),
        },
        "decode": {
            "tokens": result.num_tokens,
            "context": args.prefill,
            "seconds": dec_s,
            "tokens_per_s": result.num_tokens / dec_s,
            "mfu": roofline(decode_flops(c, args.prefill) * result.num_tokens, dec_s, tflops),
            "bandwidth_use": (
                None if not tbps else decode_bytes(c) * result.num_tokens / dec_s / (tbps * 1e12)
            ),
        },
    }
    if device.type == "cuda":
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


def free_cuda(device: Any) -> None:
    """Give the memory of the objects just dropped back (between the models of :func:`check_gar`)."""
    import gc

    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def clip_for_check(tmp: Path) -> tuple[Path, Any, str]:
    """A DAVIS-2016 clip from ../shared (blackswan), else the generated sample clip; with its frame-0 mask."""
    from garvideo.masks import load_mask

    davis = SHARED / "data" / "davis2016"
    if (davis / "JPEGImages" / "480p" / "blackswan").is_dir():
        mask = load_mask(davis / "Annotations" / "480p" / "blackswan" / "00000.png")
        return davis / "JPEGImages" / "480p" / "blackswan", mask, "DAVIS-2016 blackswan (854x480, 50 frames)"
    from garvideo.demos.sample_clip import make_sample_clip

    clip = make_sample_clip(tmp / "sample")
    return clip.video_path, load_mask(clip.object_masks[0]), "synthetic sample clip (320x240, 48 frames)"


def check_sam2(device: Any, args: Any, video: Path, mask: Any) -> dict:
    """Frames/s of the sam2 backend with random-weight hiera-t and hiera-l at 1024 (bf16 autocast on CUDA)."""
    from garvideo.trackers import Prompt
    from garvideo.trackers.sam2_backend import Sam2Tracker, build_sam2_model
    from garvideo.video import open_video

    out = {}
    for cfg in ("sam2.1_hiera_t", "sam2.1_hiera_l"):
        model = build_sam2_model(f"configs/sam2.1/{cfg}.yaml", image_size=args.sam2_size, device=str(device))
        tracker = Sam2Tracker(model=model, device=str(device))
        with open_video(video) as v:
            n = min(args.sam2_frames, v.num_frames)
            prompt = [Prompt(obj_id=1, frame=0, mask=mask)]
            tracker.track(v, prompt, start=0, end=min(2, n))  # warm-up
            sync(device)
            t0 = time.perf_counter()
            tracker.track(v, prompt, start=0, end=n)
            sync(device)
            seconds = time.perf_counter() - t0
        out[cfg] = {
            "image_size": args.sam2_size,
            "frames": n,
            "seconds": seconds,
            "frames_per_s": n / seconds,
        }
        del tracker, model
    return out


def check_describe(device: Any, args: Any, video: Path, mask: Any, clip_name: str) -> dict:
    """One describe end to end (flow tracker, K keyframes, GAR-1B's shape, bf16) and its stage timings."""
    import torch

    from garvideo.pipeline import GarVideo

    dtype = torch.float32 if args.smoke else torch.bfloat16
    config = tiny_config() if args.smoke else gar_1b_config()
    bundle = gar_bundle(config, device, dtype, "GAR-1B shape, random weights")
    gv = GarVideo(
        model=bundle, tracker=args.tracker, num_frames=args.num_frames, device=str(device), dtype=dtype
    )
    n = args.decode
    gv.describe(video, masks=mask, frame=0, max_new_tokens=2, min_new_tokens=2)  # warm-up
    sync(device)
    r = gv.describe(video, masks=mask, frame=0, max_new_tokens=n, min_new_tokens=n)
    sync(device)
    return {
        "clip": clip_name,
        "tracker": r.tracker,
        "frames": r.frames,
        "prompt_tokens": r.prompt_tokens,
        "new_tokens": r.new_tokens,
        "timings": r.timings,
    }


def tiny_config() -> Any:
    from garvideo.model import GarConfig
    from garvideo.model.tiny import tiny_config_dict

    return GarConfig.from_dict(tiny_config_dict())


def describe_tiny(model_dir: Path, device: str, video: Path, mask: Any, tokens: int) -> Any:
    """The tiny GAR's describe of the clip in float32 on ``device`` (static tracker: no tracking noise)."""
    from garvideo.pipeline import GarVideo

    gv = GarVideo(str(model_dir), tracker="static", num_frames=4, device=device, dtype="float32")
    return gv.describe(video, masks=mask, frame=0, max_new_tokens=tokens)


def compare_tiny(
    model_dir: Path, device: str, reference_device: str, video: Path, mask: Any, tokens: int
) -> dict:
    """The tiny model's describe on ``device`` and on ``reference_device`` (float32): the texts must agree."""
    import torch

    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        a = describe_tiny(model_dir, device, video, mask, tokens)
        b = describe_tiny(model_dir, reference_device, video, mask, tokens)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    first_diff = next((i for i, (x, y) in enumerate(zip(a.text, b.text)) if x != y), None)
    if first_diff is None and len(a.text) != len(b.text):
        first_diff = min(len(a.text), len(b.text))
    return {
        "devices": [device, reference_device],
        "texts": [a.text, b.text],
        "new_tokens": [a.new_tokens, b.new_tokens],
        "agree": a.text == b.text and a.new_tokens == b.new_tokens,
        "first_difference_at_char": first_diff,
    }


def check_eval(device: Any, args: Any, tmp: Path) -> dict:
    """Eval throughput on the shared mini file, batch size 1 versus 8 (prefetch 2), GAR-1B's shape."""
    import torch

    from garvideo.eval.videorefer_q import run_videorefer_q
    from garvideo.pipeline import GarVideo
    from garvideo.runs.engine import RunnerStats

    data = SHARED / "data" / "videorefer-mini" / "VideoRefer-Bench-Q-mini.json"
    root = SHARED / "data" / "davis2016"
    if not data.is_file():
        return {"skipped": f"no shared VideoRefer mini file at {data}"}
    dtype = torch.float32 if args.smoke else torch.bfloat16
    config = tiny_config() if args.smoke else gar_1b_config()
    bundle = gar_bundle(config, device, dtype, "GAR-1B shape, random weights")
    out: dict[str, Any] = {
        "data": str(data),
        "tracker": args.tracker,
        "num_frames": args.num_frames,
        "runs": {},
    }
    preds = {}
    for batch_size in args.eval_batch_sizes:
        gv = GarVideo(
            model=bundle, tracker=args.tracker, num_frames=args.num_frames, max_new_tokens=args.eval_tokens
        )
        stats = RunnerStats()
        path = tmp / f"eval-b{batch_size}.jsonl"
        res = run_videorefer_q(
            data, root, path, gv, limit=args.eval_limit, prefetch=2, batch_size=batch_size, stats=stats
        )
        wall = res.summary.seconds
        preds[batch_size] = [json.loads(line)["pred"] for line in path.read_text().splitlines()]
        out["runs"][str(batch_size)] = {
            "questions": res.summary.written,
            "errors": res.summary.failed,
            "seconds": wall,
            "questions_per_s": res.summary.written / wall,
            "model_busy": stats.model_s / wall,
            "wait_s": stats.wait_s,
        }
    first = preds[args.eval_batch_sizes[0]]
    out["same_predictions"] = {str(b): p == first for b, p in preds.items()}
    return out


# ----------------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------------
def check_serve(device: Any, args: Any, tmp: Path) -> dict:
    """``garvideo serve``'s app with GAR-1B's shape (bf16; float32 tiny model with ``--smoke``): batching off
    and on, 1 and 8 concurrent clients (``bench/serve_load.py``'s measurement)."""
    import serve_load
    import torch

    from garvideo.demos.sample_clip import make_sample_clip
    from garvideo.masks import load_mask, rle_encode
    from garvideo.pipeline import GarVideo
    from garvideo.serve import ServeConfig, create_app
    from garvideo.serve.launch import ServerThread

    dtype = torch.float32 if args.smoke else torch.bfloat16
    config = tiny_config() if args.smoke else gar_1b_config()
    bundle = gar_bundle(config, device, dtype, "GAR-1B shape, random weights")
    sample = make_sample_clip(tmp / "serve-sample")
    mask_sets = [[{"frame": 0, "rle": rle_encode(load_mask(sample.object_masks[0])[0])}]]
    video = {"type": "video_url", "video_url": {"url": sample.video_path.as_uri()}}
    servers = {}
    try:
        for variant, batch in (("off", 1), ("on", 8)):
            gv = GarVideo(
                model=bundle, tracker="static", num_frames=args.num_frames, device=str(device), dtype=dtype
            )
            app = create_app(gv, ServeConfig(allowed_roots=[sample.root], max_batch_size=batch))
            servers[variant] = ServerThread(app).start()
        urls = {v: s.url for v, s in servers.items()}
        for url in urls.values():
            serve_load.warm_up(url, video, mask_sets, args.serve_tokens)
        rows = serve_load.compare(
            urls, video, mask_sets, args.serve_clients, args.serve_seconds, args.serve_tokens,
            f"server at load: GAR-1B shape, {dtype}, K={args.num_frames}, {args.serve_tokens} new tokens",
        )  # fmt: skip
        batches = serve_load.batch_histogram(urls["on"])
    finally:
        for s in servers.values():
            s.stop()
    return {
        "model": "GAR-1B shape" if not args.smoke else "tiny (smoke)",
        "dtype": str(dtype).replace("torch.", ""),
        "num_frames": args.num_frames,
        "max_tokens": args.serve_tokens,
        "seconds_per_level": args.serve_seconds,
        "rows": rows,
        "batch_rows_on": batches,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:1, ... (cpu only with --smoke)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on any device (for the tests)")
    parser.add_argument("--skip", default="", help=f"comma-separated sections to skip: {', '.join(SECTIONS)}")
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu_check.json")
    args = parser.parse_args(argv)
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = args.skip - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section {min(unknown)!r} (known: {', '.join(SECTIONS)})")
    # sizes: real ones on a GPU; tiny ones in the smoke run
    small = args.smoke
    args.tiles = 2 if small else 32
    args.prefill = 64 if small else 4096  # K = 8 keyframes, 1 object: 8 x (256 + 256) tokens
    args.decode = 4 if small else 128
    args.repeats = 1 if small else 5
    args.num_frames = 2 if small else 8
    args.sam2_frames = 3 if small else 50
    args.sam2_size = 256 if small else 1024
    args.tiny_tokens = 8 if small else 32
    args.eval_batch_sizes = [1, 2] if small else [1, 8]
    args.eval_limit = 2 if small else None
    args.eval_tokens = 4 if small else 16
    args.tracker = "static" if small else "flow"  # the smoke run checks the code, not the tracking
    args.serve_clients = [1, 8]
    args.serve_seconds = 1.5 if small else 20.0
    args.serve_tokens = 2 if small else 64
    if small:
        args.skip |= {"sam2"}  # random hiera models on the CPU take minutes
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    device = torch.device(args.device)
    if device.type != "cuda" and not args.smoke:
        print(
            f"error: --device {args.device}: this check measures the CUDA path; give a CUDA device",
            file=sys.stderr,
        )
        return 2
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            "error: no CUDA device available (torch.cuda.is_available() is False): this script checks the "
            "GPU path and must run on a machine with an NVIDIA GPU",
            file=sys.stderr,
        )
        return 2
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = gpu_peak(name) if device.type == "cuda" else (None, None)
    result: dict[str, Any] = {
        "device": str(device),
        "device_name": name,
        "bf16_peak_tflops": peak[0],
        "hbm_tb_per_s": peak[1],
        "smoke": args.smoke,
        "torch": torch.__version__,
        "sections": {},
        "errors": {},
        "command": command_line(),
    }
    print(
        f"GPU check on {name} ({device}); bf16 peak {peak[0]} TFLOP/s, HBM {peak[1]} TB/s (None: not in table)"
    )
    t_start = time.perf_counter()

    def section(key: str, fn: Callable[[], Any]) -> None:
        if key in args.skip:
            result["sections"][key] = {"skipped": "--smoke" if args.smoke and key == "sam2" else "--skip"}
            return
        t0 = time.perf_counter()
        try:
            result["sections"][key] = fn()
        except Exception as exc:  # noqa: BLE001 - one failing section must not hide the others
            result["errors"][key] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        print(f"[{key}] {time.perf_counter() - t0:.1f} s", flush=True)

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        video, mask, clip_name = clip_for_check(tmp)

        def gar() -> dict:
            configs = {"GAR-1B": tiny_config() if args.smoke else gar_1b_config()}
            configs["GAR-8B"] = tiny_config() if args.smoke else gar_8b_config()
            out = {}
            for k, cfg in configs.items():
                out[k] = check_gar(k, cfg, device, args, peak)
                free_cuda(device)
            return out

        def tiny() -> dict:
            from garvideo.model import make_tiny_model

            model_dir = Path(make_tiny_model(tmp / "tiny", seed=0))
            return compare_tiny(model_dir, str(device), "cpu", video, mask, args.tiny_tokens)

        section("gar", gar)
        section("sam2", lambda: check_sam2(device, args, video, mask))
        section("describe", lambda: check_describe(device, args, video, mask, clip_name))
        section("tiny", tiny)
        section("eval", lambda: check_eval(device, args, tmp))
        section("serve", lambda: check_serve(device, args, tmp))
    result["seconds"] = time.perf_counter() - t_start
    result["peak_rss_mb"] = peak_rss_mb()
    print_table(result)
    write_json(args.out, result)
    tiny_ok = result["sections"].get("tiny", {}).get("agree", True)
    if not tiny_ok:
        print("FAIL: the tiny model's text differs between CUDA and CPU in float32", file=sys.stderr)
    return 0 if tiny_ok and not result["errors"] else 1


def _pct(x: float | None) -> str:
    return "   n/a" if x is None else f"{100 * x:5.1f}%"


def print_table(r: dict[str, Any]) -> None:
    s = r["sections"]
    gar = s.get("gar", {})
    if "skipped" not in gar:
        print(f"\n{'model':7s} {'vision tiles/s':>14s} {'MFU':>6s} {'prefill tok/s':>13s} {'MFU':>6s} "
              f"{'decode tok/s':>12s} {'MFU':>6s} {'HBM use':>7s}")  # fmt: skip
        for k, g in gar.items():
            v, p, d = g["vision"], g["prefill"], g["decode"]
            print(
                f"{k:7s} {v['tiles_per_s']:14.1f} {_pct(v['mfu'])} {p['tokens_per_s']:13.0f} {_pct(p['mfu'])} "
                f"{d['tokens_per_s']:12.1f} {_pct(d['mfu'])} {_pct(d['bandwidth_use'])}"
            )
    for k, v in s.get("sam2", {}).items():
        if isinstance(v, dict):
            print(f"{k}: {v['frames_per_s']:.1f} frames/s at {v['image_size']}")
    d = s.get("describe", {})
    if "timings" in d:
        print("describe: " + ", ".join(f"{k} {v:.3f} s" for k, v in d["timings"].items()) + f" ({d['clip']})")
    t = s.get("tiny", {})
    if "agree" in t:
        print(
            f"tiny model float32 {t['devices'][0]} vs {t['devices'][1]}: {'agree' if t['agree'] else 'DIFFER'}"
        )
    e = s.get("eval", {})
    for b, run in e.get("runs", {}).items():
        print(f"eval batch {b}: {run['questions_per_s']:.2f} q/s, model busy {100 * run['model_busy']:.0f}%")
    for row in s.get("serve", {}).get("rows", []):
        print(
            f"serve {row['clients']} clients: {row['off']['requests_per_s']:.2f} -> {row['on']['requests_per_s']:.2f} "
            f"req/s batched (x{row['requests_per_s_ratio']}), p95 {row['off']['p95_s']:.2f} -> {row['on']['p95_s']:.2f} s"
        )
    for k, msg in r["errors"].items():
        print(f"section {k} FAILED: {msg}")
    print(f"total {r['seconds']:.0f} s")


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
