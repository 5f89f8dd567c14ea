"""Inputs and requests of the golden parity cases, shared by ``tools/make_golden.py`` and the tests.

Only NumPy and Pillow: the official side imports this file under transformers 4.56 / NumPy 1.26, the
garvideo side under transformers 5 / NumPy 2. Everything is generated deterministically (no random
generator whose stream could change between versions), except the DAVIS frames read from ``../shared``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Seed of ``garvideo make-tiny-model`` for the golden weights.
GOLDEN_SEED = 0
#: Tile limit of the golden tiny model's processor.
MAX_NUM_TILES = 4
#: Greedy tokens compared per case.
MAX_NEW_TOKENS = 6
#: DAVIS 2016 sequence and frames used (``../shared/data/davis2016``, 480p).
DAVIS_SEQUENCE = "camel"
DAVIS_FRAMES = (0, 1, 2)

DESCRIBE = "describe"  # one region, caption convention (<Prompt1>)
MC1 = "mc1"  # one region, GAR-Bench VQA convention (<Prompt0>)
MC2 = "mc2"  # two regions, GAR-Bench VQA convention
VIDEO = "video"  # one object on three frames, official feature_replay_video branch

MC1_QUESTION = "What colour is <Prompt0>?"
MC1_OPTIONS = ("Red", "Green", "Blue", "Yellow")
MC2_QUESTION = "Which is larger, <Prompt0> or <Prompt1>?"
MC2_OPTIONS = ("<Prompt0>", "<Prompt1>")


def mc_text(question: str, options: tuple[str, ...]) -> str:
    """The GAR-Bench VQA user text (``evaluation/GAR-Bench/inference.py``, ``--mode vqa``), labels ``A.``…"""
    lines = "".join(f"\n{chr(65 + i)}. {o}" for i, o in enumerate(options))
    return f"Question: {question}\nOptions:{lines}\nAnswer with the correct option's letter directly."


def synthetic_image(height: int = 310, width: int = 530) -> np.ndarray:
    """``(H, W, 3)`` uint8: smooth gradients plus sharp-edged shapes (edges stress the resize kernels)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 127.5 + 127.5 * np.sin(x / 17.0) * np.cos(y / 23.0)
    g = 255.0 * x / (width - 1)
    b = 255.0 * ((x + 2 * y) % 97) / 96.0
    img = np.stack([r, g, b], axis=2)
    img[(x - 150) ** 2 + (y - 120) ** 2 < 70**2] = (230, 40, 30)
    img[200:280, 300:470] = (20, 200, 60)
    img[((x // 9 + y // 9) % 2 == 0) & (y > 285)] = (250, 250, 250)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def synthetic_masks(height: int = 310, width: int = 530) -> list[np.ndarray]:
    """Two disjoint bool masks: a disc and an off-grid rectangle with a notch."""
    y, x = np.mgrid[0:height, 0:width]
    disc = (x - 150) ** 2 + (y - 120) ** 2 < 71**2
    rect = (x >= 301) & (x < 467) & (y >= 203) & (y < 277) & ~((x > 380) & (y < 225))
    return [disc, rect]


def synthetic_frames(
    num: int = 3, height: int = 200, width: int = 280
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``num`` frames of a disc moving right over a textured background, and the disc's masks."""
    y, x = np.mgrid[0:height, 0:width]
    frames, masks = [], []
    for t in range(num):
        cx, cy = 70 + 45 * t, 90 + 7 * t
        disc = (x - cx) ** 2 + (y - cy) ** 2 < 38**2
        img = np.stack([(x * 3 + t * 11) % 256, (y * 5) % 256, ((x + y) * 2) % 256], axis=2).astype(
            np.float64
        )
        img[disc] = (240, 200, 20)
        frames.append(img.astype(np.uint8))
        masks.append(disc)
    return frames, masks


def davis_frames(shared: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The DAVIS frames and their (binary) masks from ``shared`` = the ``../shared`` folder."""
    from PIL import Image

    root = Path(shared) / "data" / "davis2016"
    frames, masks = [], []
    for f in DAVIS_FRAMES:
        frames.append(
            np.asarray(
                Image.open(root / "JPEGImages" / "480p" / DAVIS_SEQUENCE / f"{f:05d}.jpg").convert("RGB")
            )
        )
        masks.append(
            np.asarray(Image.open(root / "Annotations" / "480p" / DAVIS_SEQUENCE / f"{f:05d}.png")) > 0
        )
    return frames, masks


#: name → (source, kind). ``synthetic`` cases need nothing; ``davis`` cases need ``../shared``.
CASES: dict[str, tuple[str, str]] = {
    "synthetic_describe": ("synthetic", DESCRIBE),
    "synthetic_mc1": ("synthetic", MC1),
    "synthetic_mc2": ("synthetic", MC2),
    "synthetic_video": ("synthetic", VIDEO),
    "davis_describe": ("davis", DESCRIBE),
    "davis_mc1": ("davis", MC1),
    "davis_video": ("davis", VIDEO),
}


def case_inputs(source: str, kind: str, shared: Path | None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(images, masks) of a case: one image and its region masks, or T frames and the object's masks."""
    if source == "synthetic":
        if kind == VIDEO:
            return synthetic_frames()
        masks = synthetic_masks()
        return [synthetic_image()], masks if kind == MC2 else masks[:1]
    if shared is None:
        raise FileNotFoundError("the DAVIS cases need ../shared")
    frames, masks = davis_frames(shared)
    if kind == VIDEO:
        return frames, masks
    return frames[:1], masks[:1]


def probe_ids(vocab_size: int, count: int = 48) -> list[int]:
    """Vocabulary ids whose last-position logits are stored (spread over the vocabulary, plus specials)."""
    step = vocab_size // count
    return sorted({i * step for i in range(count)} | {128000, 128002, 128004, 128005, 128009, 128256})


def summarise(tensor, *, samples: int = 256) -> dict:
    """A JSON summary of a tensor: shape, float64 sum and abs-sum, and ``samples`` evenly spaced values."""
    import torch

    t = tensor.detach().to("cpu")
    if t.dtype == torch.bool:
        import hashlib

        packed = np.packbits(t.numpy().reshape(-1))
        return {
            "shape": list(t.shape),
            "count": int(t.sum()),
            "sha256": hashlib.sha256(packed.tobytes()).hexdigest(),
        }
    flat = t.reshape(-1).to(torch.float64)
    n = flat.numel()
    idx = sorted({int(i * (n - 1) / max(samples - 1, 1)) for i in range(min(samples, n))})
    return {
        "shape": list(t.shape),
        "sum": float(flat.sum()),
        "abs_sum": float(flat.abs().sum()),
        "index": idx,
        "values": [float(v) for v in flat[idx].tolist()],
    }
