#!/usr/bin/env python
"""Regenerate ``tests/golden/*.json``: reference values of the OFFICIAL GAR code on a seeded tiny GAR.

The official code (github Haochen-Wang409/Grasp-Any-Region) is not part of garvideo and is never copied
into it. This script runs it from a checkout you give, in a scratch virtual environment outside the
project, with the pins of its ``requirements.txt`` (transformers 4.56.2, timm 1.0.19, numpy 1.26.4):

1. ``--setup-venv`` makes that venv (``python3 -m venv``), adds a ``.pth`` file pointing at this
   interpreter's site-packages (torch, torchvision, einops, PIL without reinstalling them) and
   pip-installs the pins into it, where they shadow the newer versions.
2. The three official model files (``hf_models/modeling_gar.py``, ``hf_models/configuration_gar.py``,
   ``models/modeling/modeling_perception_lm.py``) and the official fast image processor are copied into
   a package in a temporary folder, with two import lines changed as the hub copies do: GAR's
   ``PerceptionLMForConditionalGeneration`` comes from the repository's own PerceptionLM copy (which
   has the ``feature_replay_video`` branch), and that copy's ``PerceptionLMConfig`` from transformers.
3. ``garvideo make-tiny-model`` writes the seeded tiny GAR (``cases.GOLDEN_SEED``); the official
   ``GARModel.from_pretrained(..., use_flash_attn=False)`` loads it unchanged.
4. The official side (this file, ``_official`` sub-command, in the scratch venv) preprocesses each case
   as the official code does (``PerceptionLMProcessor`` chat template and token expansion; the
   repository's fast image processor for tiles; a second one with ``resample = NEAREST`` for the
   prompt-id map, as ``datasets/GraspAnyRegion_Dataset.py``), runs ``GARModel.generate`` (images) or
   ``PerceptionLMForConditionalGeneration.generate(feature_replay_video=True)`` (the 3-frame videos),
   and records each stage. It also ``save_pretrained``s the model, to check that garvideo loads what the
   official code writes.
5. Back here, garvideo runs the same cases; a per-stage table of max abs differences is printed (own
   preprocessing on each side, and garvideo's model fed the official tiles), and ``tests/golden`` is
   written.

Usage (about 2 minutes on 2 cores; the DAVIS cases need ``../shared``)::

    python tools/make_golden.py --official /tmp/gar-official --venv /tmp/gar-official-venv --setup-venv
    python tools/make_golden.py --official /tmp/gar-official --venv /tmp/gar-official-venv  # venv exists

``--official`` is a checkout of the official repository (e.g. from ``git clone``; the goldens in the
repository were made at commit e479816). ``--compare-only`` prints the table without writing goldens.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
GOLDEN = TESTS / "golden"
PINS = ["transformers==4.56.2", "timm==1.0.19", "numpy==1.26.4", "huggingface_hub<1.0", "einops"]
#: (official file, file name in the scratch package, import line replaced, replacement)
OFFICIAL_FILES = (
    (
        "projects/grasp_any_region/hf_models/modeling_gar.py",
        "modeling_gar.py",
        "from transformers import GenerationConfig, PerceptionLMForConditionalGeneration",
        "from transformers import GenerationConfig\nfrom .modeling_perception_lm import PerceptionLMForConditionalGeneration",
    ),
    ("projects/grasp_any_region/hf_models/configuration_gar.py", "configuration_gar.py", None, None),
    (
        "projects/grasp_any_region/models/modeling/modeling_perception_lm.py",
        "modeling_perception_lm.py",
        "from .configuration_perception_lm import PerceptionLMConfig",
        "from transformers import PerceptionLMConfig",
    ),
    (
        "projects/grasp_any_region/models/modeling/image_processing_perception_lm_fast.py",
        "image_processing_perception_lm_fast.py",
        None,
        None,
    ),
)
PACKAGE = "gar_official"


def _cases():
    sys.path.insert(0, str(TESTS))
    from golden import cases

    return cases


# -- setup (garvideo's interpreter) ------------------------------------------------------------------------
def setup_venv(venv: Path) -> None:
    from compat_venv import make_overlay_venv  # tools/ is on sys.path when this script runs

    make_overlay_venv(venv, PINS, no_deps=False)


def official_package(checkout: Path, dest: Path) -> Path:
    """Copy the official files into ``dest/gar_official`` with the two import lines changed."""
    pkg = dest / PACKAGE
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    for src, name, old, new in OFFICIAL_FILES:
        text = (checkout / src).read_text()
        if old is not None:
            if old not in text:
                raise SystemExit(f"{src}: expected import line not found: {old!r}")
            text = text.replace(old, new)
        (pkg / name).write_text(text)
    return dest


# -- official side (scratch venv, transformers 4.56) -------------------------------------------------------
def official_worker(args: argparse.Namespace) -> None:
    import numpy as np
    import torch
    import torchvision
    import transformers
    from PIL import Image
    from transformers import GenerationConfig, PerceptionLMProcessor
    from transformers.image_utils import PILImageResampling

    C = _cases()
    sys.path.insert(0, str(args.pkg))
    from gar_official.image_processing_perception_lm_fast import PerceptionLMImageProcessorFast
    from gar_official.modeling_gar import GARModel

    torch.set_grad_enabled(False)
    model = GARModel.from_pretrained(str(args.model), use_flash_attn=False, torch_dtype=torch.float32).eval()
    emb = model.mllm.get_input_embeddings().weight
    lm_head = model.mllm.lm_head.weight
    processor = PerceptionLMProcessor.from_pretrained(str(args.model))
    tok = processor.tokenizer
    cfg = dict(processor.image_processor.__dict__)
    cfg.pop("_processor_class", None)

    def image_processor(vision_input_type: str, nearest: bool) -> Any:
        ip = PerceptionLMImageProcessorFast.from_dict({**cfg, "vision_input_type": vision_input_type})
        if nearest:  # datasets/GraspAnyRegion_Dataset.py: processor_mask.image_processor.resample = NEAREST
            ip.resample = PILImageResampling.NEAREST
        return ip

    no_prompt = tok.convert_tokens_to_ids("<NO_Prompt>") - 128256
    meta = {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "lm_head_tied": bool(lm_head.data_ptr() == emb.data_ptr() or torch.equal(lm_head, emb)),
        "official_commit": args.commit,
    }
    probe = C.probe_ids(int(emb.shape[0]))
    results: dict[str, Any] = {}
    full: dict[str, Any] = {}

    def one_case(name: str, source: str, kind: str) -> None:
        if (source == "davis" and args.shared is None) or (args.only and name not in args.only):
            return
        images, masks = C.case_inputs(source, kind, args.shared)
        pil = [Image.fromarray(a) for a in images]
        h, w = masks[0].shape
        indices = [1] if kind in (C.DESCRIBE, C.VIDEO) else list(range(len(masks)))

        def box(m: np.ndarray) -> tuple[float, float, float, float]:
            ys, xs = np.nonzero(m)  # evaluation/eval_dataset.py: argwhere min/max over W, H
            return (xs.min() / w, ys.min() / h, xs.max() / w, ys.max() / h)

        def crop(p: int) -> str:
            return f"<|reserved_special_token_{p + 2}|>"

        captured: dict[str, Any] = {"roi": []}
        orig_roi = torchvision.ops.roi_align

        def roi_spy(*a: Any, **k: Any) -> Any:
            out = orig_roi(*a, **k)
            captured["roi"].append(out.permute(0, 2, 3, 1).flatten(1, 2)[0].clone())
            return out

        orig_feats = model.mllm.get_image_features

        def feats_spy(*a: Any, **k: Any) -> Any:
            out = orig_feats(*a, **k)
            captured["image_features"] = out.clone()
            return out

        hook = model.mask_patch_embedding.register_forward_hook(
            lambda _m, _i, o: captured.__setitem__("mask_embeds", o.clone())
        )

        def lm_spy(_m: Any, _a: Any, kw: dict[str, Any]) -> None:
            if "inputs_embeds" not in captured:  # first step: the prompt
                captured["inputs_embeds"] = kw["inputs_embeds"][0].clone()
                cp = kw.get("cache_position")
                captured["cache_position_shape"] = None if cp is None else list(cp.shape)

        lm_hook = model.mllm.model.language_model.register_forward_pre_hook(lm_spy, with_kwargs=True)
        torchvision.ops.roi_align = roi_spy
        model.mllm.get_image_features = feats_spy
        gen = GenerationConfig(
            max_new_tokens=C.MAX_NEW_TOKENS,
            do_sample=False,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            output_logits=True,
            return_dict_in_generate=True,
        )
        try:
            if kind == C.VIDEO:
                # One tile per frame; the repository ships no video prompt text, so the layout is garvideo's
                # (the object's runs in frame order), with frame t's run on <|reserved_special_token_{2+t}|>
                # as the feature_replay_video branch expects.
                ip, ipm = image_processor("vanilla", False), image_processor("vanilla", True)
                pv = ip(images=pil, return_tensors="pt")["pixel_values"].flatten(0, 1)
                maps = [np.where(m, indices[0], no_prompt).astype(np.uint8) for m in masks]
                mv = ipm(images=[Image.fromarray(x) for x in maps], return_tensors="pt")[
                    "pixel_values"
                ].flatten(0, 1)
                runs = "".join(crop(t) * 256 for t in range(len(images)))
                qs = f"There are some objects I am curious about: <Prompt1>;\n<Prompt1>: {runs}Describe this masked region in detail."
                msgs = [
                    {
                        "role": "user",
                        "content": [{"type": "text", "text": "<|image|>" * (256 * len(images)) + qs}],
                    }
                ]
                raw = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
                enc = tok(raw, return_tensors="pt")
                ids, am = enc["input_ids"], enc["attention_mask"]
                bboxes = {str(tok.convert_tokens_to_ids(crop(t))): box(m) for t, m in enumerate(masks)}
                mask_ids = torch.clamp(torch.round((mv + 1.0) / 2.0 * 255.0).long(), 0, 5)
                mask_embeds = model.mask_patch_embedding((mask_ids != 5).float())
                out = model.mllm.generate(
                    input_ids=ids,
                    attention_mask=am,
                    pixel_values=pv,
                    mask_embeds=mask_embeds,
                    feature_replay_video=True,
                    bboxes=[bboxes],
                    processor=processor,
                    generation_config=gen,
                )
                new_tokens = out.sequences[0, ids.shape[1] :].tolist()
            else:
                ip, ipm = image_processor("thumb+tile", False), image_processor("thumb+tile", True)
                if kind == C.DESCRIBE:  # evaluation/eval_dataset.py: SingleRegionCaptionDataset
                    qs = (
                        "There are some objects I am curious about: <Prompt1>;\n<Prompt1>: "
                        + crop(1) * 256
                        + "Describe this masked region in detail."
                    )
                else:  # MultiRegionDataset, regions ascending (garvideo's order), each region its own box
                    question, options = (
                        (C.MC1_QUESTION, C.MC1_OPTIONS) if kind == C.MC1 else (C.MC2_QUESTION, C.MC2_OPTIONS)
                    )
                    objects = "There are some objects I am curious about: " + "".join(
                        f"<Prompt{p}>; " for p in indices
                    )
                    sub = "".join(f"<Prompt{p}>: {crop(p) * 256}\n" for p in indices)
                    qs = objects + "\n" + sub + "\n" + C.mc_text(question, options)
                filled = np.full((h, w), no_prompt, dtype=np.uint8)
                for p, m in zip(indices, masks):
                    filled[m & (filled == no_prompt)] = p
                bboxes = {str(tok.convert_tokens_to_ids(crop(p))): box(m) for p, m in zip(indices, masks)}
                msgs = [
                    {
                        "role": "user",
                        "content": [{"type": "image", "image": pil[0]}, {"type": "text", "text": qs}],
                    }
                ]
                raw = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
                enc = processor(text=[raw], images=[pil[0]], return_tensors="pt")
                ids, am = enc["input_ids"], enc["attention_mask"]
                po = ip(images=[pil[0]], return_tensors="pt")
                pv, ar = po["pixel_values"].flatten(0, 1), po["aspect_ratio"]
                mv = ipm(images=[Image.fromarray(filled)], return_tensors="pt")["pixel_values"].flatten(0, 1)
                out = model.generate(
                    pixel_values=pv,
                    global_mask_values=mv,
                    aspect_ratios=ar.unsqueeze(0),
                    bboxes=[bboxes],
                    input_ids=ids,
                    attention_mask=am,
                    generation_config=gen,
                )
                new_tokens = out.sequences[0].tolist()
        finally:
            torchvision.ops.roi_align = orig_roi
            del model.mllm.get_image_features
            hook.remove()
            lm_hook.remove()
        union = torch.round((mv[:, 0] + 1.0) / 2.0 * 255.0).long() != no_prompt
        # The same spliced embeddings through a plain causal forward of the official PerceptionLM.
        plain_out = model.mllm(
            inputs_embeds=captured["inputs_embeds"][None], use_cache=False, logits_to_keep=1
        )
        plain = plain_out.logits[0, -1].float().clone()  # clone: a view would keep the whole storage
        plain_gen = {
            k: v
            for k, v in gen.to_dict().items()
            if k in ("max_new_tokens", "do_sample", "eos_token_id", "pad_token_id")
        }
        plain_tokens = model.mllm.generate(
            inputs_embeds=captured["inputs_embeds"][None], generation_config=GenerationConfig(**plain_gen)
        )[0].tolist()
        logits = out.logits[0][0].float().clone()
        stages = {
            "pixel_values": pv.float(),
            "mask_values": union,
            "mask_embeds": captured["mask_embeds"].float(),
            "image_features": captured["image_features"].float(),
            "region_tokens": torch.stack(captured["roi"]).float(),
            "inputs_embeds": captured["inputs_embeds"].float(),
        }
        results[name] = {
            "source": source,
            "kind": kind,
            **{k: C.summarise(v) for k, v in stages.items()},
            "input_ids": ids[0].tolist(),
            "logits": {
                "probe_ids": probe,
                "probe_values": [float(v) for v in logits[probe].tolist()],
                "top10": torch.topk(logits, 10).indices.tolist(),
                "sum": float(logits.double().sum()),
            },
            "tokens": new_tokens,
            "cache_position_shape": captured["cache_position_shape"],
            "plain_forward_logits": {
                "probe_values": [float(v) for v in plain[probe].tolist()],
                "sum": float(plain.double().sum()),
                "tokens": plain_tokens,
            },
        }
        full[name] = {**stages, "logits": logits, "input_ids": ids[0].tolist(), "tokens": new_tokens}
        full[name]["plain_forward_logits"] = plain
        full[name]["plain_tokens"] = plain_tokens

    for name, (source, kind) in C.CASES.items():
        one_case(name, source, kind)
        if name in results:
            print(
                f"official: {name}: {len(results[name]['input_ids'])} ids, tokens {results[name]['tokens']}"
            )
    model.save_pretrained(str(args.work / "official_saved"))
    saved = json.loads((args.work / "official_saved" / "config.json").read_text())
    torch.save(full, args.work / "official_full.pt")
    (args.work / "official.json").write_text(
        json.dumps({"meta": meta, "cases": results, "saved_config": saved})
    )


# -- driver (garvideo's interpreter) -----------------------------------------------------------------------
def weights_sha256(folder: Path) -> str:
    from safetensors.torch import load_file

    state = load_file(str(folder / "model.safetensors"))
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].float().numpy().tobytes())
    return h.hexdigest()


def _maxdiff(a: Any, b: Any) -> str:
    import torch

    if isinstance(a, list):
        return "equal" if a == b else f"{sum(x != y for x, y in zip(a, b)) + abs(len(a) - len(b))} differ"
    if a.shape != b.shape:
        return f"shape {tuple(a.shape)} vs {tuple(b.shape)}"
    if a.dtype == torch.bool:
        n = int((a != b).sum())
        return "equal" if n == 0 else f"{n} of {a.numel()} differ"
    return f"{float((a.float() - b.float()).abs().max()):.2e}"


def compare(work: Path, model_dir: Path, shared: Path | None, only: list[str] | None = None) -> list[str]:
    """garvideo vs the official run, per stage, as table lines."""
    import torch

    from garvideo.model import load_gar

    C = _cases()
    from golden import stages

    full = torch.load(work / "official_full.pt")
    bundle = load_gar(model_dir, device="cpu", dtype="float32")
    keys = ["pixel_values", "mask_values", "mask_embeds", "image_features", "region_tokens", "input_ids"]
    keys += ["inputs_embeds", "logits", "plain_forward_logits", "tokens", "plain_tokens"]
    lines = ["| case | inputs | " + " | ".join(keys) + " |", "|---" * (len(keys) + 2) + "|"]
    for name, off in full.items():
        if only and name not in only:
            continue
        source, kind = C.CASES[name]
        images, masks = C.case_inputs(source, kind, shared)
        own = stages.run_case(bundle, kind, images, masks)
        fed = stages.run_case(
            bundle, kind, images, masks, pixel_values=off["pixel_values"], mask_values=off["mask_values"]
        )
        for label, g in (("own preprocessing", own), ("official tiles", fed)):
            cells = []
            for k in keys:
                a, b = g[{"plain_forward_logits": "logits", "plain_tokens": "tokens"}.get(k, k)], off[k]
                if k == "input_ids" and kind == C.VIDEO:  # per-frame crop tokens (official) vs per-object
                    crop = {128004, 128005, 128008, 128010, 128011}
                    a, b = [0 if i in crop else i for i in a], [0 if i in crop else i for i in b]
                cells.append(_maxdiff(a, b))
            lines.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd")
    w = sub.add_parser("_official", help="internal: the official side, run in the scratch venv")
    w.add_argument("--pkg", type=Path, required=True)
    w.add_argument("--model", type=Path, required=True)
    w.add_argument("--work", type=Path, required=True)
    w.add_argument("--shared", type=Path, default=None)
    w.add_argument("--commit", default="")
    w.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--official", type=Path, help="checkout of Haochen-Wang409/Grasp-Any-Region")
    ap.add_argument("--venv", type=Path, default=Path("/tmp/gar-official-venv"), help="scratch venv")
    ap.add_argument("--setup-venv", action="store_true", help="create the scratch venv and install the pins")
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared", help="../shared (DAVIS cases)")
    ap.add_argument("--out", type=Path, default=GOLDEN)
    ap.add_argument("--work", type=Path, default=None, help="keep intermediate files here")
    ap.add_argument("--compare-only", action="store_true", help="print the table, write no goldens")
    ap.add_argument("--only", nargs="*", default=None, help="case names (with --compare-only)")
    args = ap.parse_args()
    if args.cmd == "_official":
        official_worker(args)
        return
    if args.official is None:
        ap.error("--official is required")
    from garvideo.model.tiny import make_tiny_model

    C = _cases()
    if args.setup_venv:
        setup_venv(args.venv)
    shared = args.shared if (args.shared / "data" / "davis2016").is_dir() else None
    work = args.work or Path(tempfile.mkdtemp(prefix="garvideo-golden-"))
    work.mkdir(parents=True, exist_ok=True)
    official_package(args.official, work)
    model_dir = make_tiny_model(work / "tiny", seed=C.GOLDEN_SEED, max_num_tiles=C.MAX_NUM_TILES)
    commit = subprocess.run(
        ["git", "-C", str(args.official), "rev-parse", "HEAD"], check=False, capture_output=True, text=True
    ).stdout.strip()
    cmd = [
        str(args.venv / "bin" / "python"),
        __file__,
        "_official",
        "--pkg",
        str(work),
        "--model",
        str(model_dir),
    ]
    cmd += ["--work", str(work), "--commit", commit] + (["--shared", str(shared)] if shared else [])
    if args.only:
        if not args.compare_only:
            ap.error("--only needs --compare-only (goldens are written for every case)")
        cmd += ["--only", *args.only]
    subprocess.run(cmd, check=True)
    official = json.loads((work / "official.json").read_text())
    # garvideo loads what the official save_pretrained wrote (config + weights; tokenizer files from ours).
    saved = work / "official_saved"
    for f in model_dir.iterdir():
        if f.name not in ("config.json", "model.safetensors") and not (saved / f.name).exists():
            shutil.copy(f, saved / f.name)
    table = compare(work, model_dir, shared)
    table_saved = compare(work, saved, shared, only=["synthetic_describe"])[2:3]
    print("\n".join(table))
    print("garvideo loading the official save_pretrained folder, first case:\n" + "\n".join(table_saved))
    if args.compare_only:
        return
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {**official["meta"], "seed": C.GOLDEN_SEED, "weights_sha256": weights_sha256(model_dir)}
    for name, case in official["cases"].items():
        (args.out / f"{name}.json").write_text(
            json.dumps({"meta": meta, **case}, separators=(",", ":")) + "\n"
        )
    (args.out / "official_saved_config.json").write_text(
        json.dumps(official["saved_config"], indent=1) + "\n"
    )
    print(f"wrote {len(official['cases'])} golden cases to {args.out}")


if __name__ == "__main__":
    main()
