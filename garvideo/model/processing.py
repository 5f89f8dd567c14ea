"""Inputs for GAR: image tiling, region masks, boxes and tokenisation.

What is reproduced exactly, and from which official file:

* **Image tiles** (thumb+tile AnyRes, 448-pixel tiles, stretched, not letterboxed; a thumbnail first, then
  ``ncw × nch`` tiles, row-major). The official fast image processor
  (``models/modeling/image_processing_perception_lm_fast.py`` of the GAR repository, the same code as
  transformers 4.56's ``PerceptionLMImageProcessorFast``) resizes the uint8 ``(N, 3, H, W)`` tensor with
  torchvision's **v1** ``transforms.functional.resize`` (bicubic; antialias is that function's default,
  ``True``), then rescales and normalises in one step, ``(x.float() - mean/r) / (std/r)`` with
  ``r = rescale_factor`` (``BaseImageProcessorFast._fuse_mean_std_and_rescale_factor``). garvideo calls the
  same function with the same arguments (:func:`resize_like_official`), so its tiles equal the official
  ones bitwise on any installed transformers. transformers 5's own PerceptionLM processor resizes with the
  **v2** functional API instead, whose bicubic uint8 kernel differs (11 % and 19 % of the tile values,
  by up to 25/255 and 6/255, on the synthetic and DAVIS golden images), so garvideo does not call it; it only reads its settings and its canvas search
  (``_fit_image_to_canvas`` / ``_find_closest_aspect_ratio``: same code as 4.56, ties go to the later
  candidate). ``max_num_tiles`` comes from the checkpoint's ``preprocessor_config.json``. Training used 16
  (GAR-1B) and 8 (GAR-8B) tiles (``configs/gar_1b.py`` / ``gar_8b.py``), but ``convert_to_hf.py`` saves the
  processor of the base PerceptionLM, so the released value is whatever that file says (open point);
  garvideo uses the file, as the official evaluation does.
* **Region masks**: the training path (``datasets/GraspAnyRegion_Dataset.py``) tiles the prompt-id map with
  a second image processor whose ``resample`` is ``PILImageResampling.NEAREST``; the fast processor hands
  that integer to the v1 resize, which maps it to torchvision's legacy ``InterpolationMode.NEAREST``
  (not ``NEAREST_EXACT``, which is what transformers 5 maps ``NEAREST`` to, and which differs on region
  boundaries). garvideo resizes the binary union with that legacy nearest mode. GAR only uses the union of
  the prompts (id ≠ ``<NO_Prompt>``), and nearest resampling of the union equals the union of the resampled
  id map, so the union is resampled directly (the official ``-1 * np.ones(uint8)`` map, which overflows
  under NumPy 2, is never built).
* **Not reproducible offline**: the released processor's ``visual_prompts`` path (the hub's
  ``processing_gar.py``, remote code not in the repository) could not be read here. Its output must decode
  exactly to prompt ids (``GARModel.generate`` rounds ``(v + 1) / 2 · 255``), which nearest resampling
  guarantees; garvideo reproduces the training path above and assumes the hub path does the same.
* Region boxes: ``(x_min/W, y_min/H, x_max/W, y_max/H)``, max inclusive (``evaluation/eval_dataset.py``),
  computed per region (the official multi-region code uses the last mask's box for every prompt; see
  ``GarProcessor.preprocess_image(last_mask_box=True)`` for the switch that reproduces it). An empty mask has
  no box.
* Video frames: one 448×448 tile per frame (the fast processor's ``vision_input_type`` other than
  ``thumb+tile``: a single resize to ``tile_size × tile_size``), same resize and masks as above.

The golden tests (``tests/test_model_golden_parity.py``, made by ``tools/make_golden.py`` with the official code)
pin all of this.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as tvf  # the v1 API, as the official fast processor

if TYPE_CHECKING:  # the type checker sees the transformers installed here (5.x: the slow class)
    from transformers import PerceptionLMImageProcessor
else:
    try:
        from transformers import PerceptionLMImageProcessor
    except ImportError:
        # transformers 4.56 exports only the fast class (the settings and canvas search are the same)
        from transformers import PerceptionLMImageProcessorFast as PerceptionLMImageProcessor

from garvideo.errors import InputError
from garvideo.model.prompts import MAX_REGIONS

# PerceptionLM's image-processor defaults (transformers' PerceptionLMFastImageProcessorKwargs docs).
_PLM_DEFAULTS = {"vision_input_type": "thumb+tile", "tile_size": 448, "max_num_tiles": 36}

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
PREPROCESSOR_NAME = "preprocessor_config.json"
#: PerceptionLM's chat template for one conversation, written by garvideo (not copied) so that it renders
#: exactly :func:`garvideo.model.prompts.apply_chat_template`: BOS, the system turn (the default message
#: unless the first message is a system one), each turn's images/videos first and its text trimmed, then the
#: assistant header when ``add_generation_prompt``.
CHAT_TEMPLATE = (
    "{{ bos_token }}<|start_header_id|>system<|end_header_id|>\n\n"
    "{% if messages[0]['role'] == 'system' %}"
    "{% if messages[0]['content'] is string %}{{ messages[0]['content'] | trim }}"
    "{% else %}{% for c in messages[0]['content'] %}{{ c['text'] | trim }}{% endfor %}{% endif %}"
    "{% set turns = messages[1:] %}"
    "{% else %}{{ default_system_message }}{% set turns = messages %}{% endif %}<|eot_id|>"
    "{% for m in turns %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{% if m['content'] is string %}{{ m['content'] | trim }}{% else %}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<|image|>"
    "{% elif c['type'] == 'video' %}<|video|>{% endif %}{% endfor %}"
    "{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] | trim }}{% endif %}{% endfor %}"
    "{% endif %}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
#: Keys of ``preprocessor_config.json`` passed on to the image processor.
_IMAGE_PROCESSOR_KEYS = (
    "tile_size",
    "max_num_tiles",
    "vision_input_type",
    "image_mean",
    "image_std",
    "do_resize",
    "do_rescale",
    "rescale_factor",
    "do_normalize",
    "do_convert_rgb",
    "resample",
)


@dataclass
class ImageInputs:
    """One image ready for :meth:`GarModel.encode_image`.

    Attributes:
        pixel_values: ``(1 + ncw·nch, 3, 448, 448)`` float32, thumbnail first.
        mask_values: ``(1 + ncw·nch, 448, 448)`` bool, union of the region masks per tile.
        aspect_ratio: ``(ncw, nch)`` tiles across and down.
        boxes: per region, the normalised box or ``None`` for an empty mask.
        image_size: ``(H, W)`` of the input image.
    """

    pixel_values: torch.Tensor
    mask_values: torch.Tensor
    aspect_ratio: tuple[int, int]
    boxes: list[tuple[float, float, float, float] | None]
    image_size: tuple[int, int]

    @property
    def num_tiles(self) -> int:
        return int(self.pixel_values.shape[0])

    @property
    def present(self) -> list[bool]:
        return [b is not None for b in self.boxes]


@dataclass
class FrameInputs:
    """Frames ready for :meth:`GarModel.encode_frames`: ``pixel_values (T, 3, 448, 448)``, ``mask_values (T, 448, 448)``."""

    pixel_values: torch.Tensor
    mask_values: torch.Tensor


def as_rgb_array(image: Any, *, source: str = "image") -> np.ndarray:
    """An ``(H, W, 3)`` uint8 RGB array from a NumPy array or PIL image."""
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL
        image = np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise InputError(source, f"expected an (H, W, 3) RGB image, got shape {arr.shape}")
    if arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.dtype != np.uint8:
        raise InputError(source, f"expected uint8 pixels, got {arr.dtype}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InputError(source, f"empty image of shape {arr.shape}")
    arr = np.ascontiguousarray(arr)
    return arr if arr.flags.writeable else arr.copy()  # torch.from_numpy warns on read-only arrays


def as_binary_mask(mask: Any, size: tuple[int, int], *, source: str = "mask") -> np.ndarray:
    """Check a region mask and return it as ``(H, W)`` bool.

    Accepted: bool arrays, or numeric arrays whose values are all in {0, 1} or all in {0, 255}.

    Raises:
        InputError: wrong shape, size ≠ the image size, or non-binary values.
    """
    if hasattr(mask, "convert") and hasattr(mask, "size"):
        mask = np.asarray(mask.convert("L"))
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise InputError(source, f"expected a 2-D mask, got shape {arr.shape}")
    if tuple(arr.shape) != tuple(size):
        raise InputError(source, f"mask size {arr.shape[1]}x{arr.shape[0]} != image size {size[1]}x{size[0]}")
    if arr.dtype == bool:
        return arr
    values = np.unique(arr)
    if not (set(values.tolist()) <= {0, 1} or set(values.tolist()) <= {0, 255}):
        shown = ", ".join(str(v) for v in values[:5].tolist())
        raise InputError(source, f"mask is not binary (values {shown}{', ...' if values.size > 5 else ''})")
    return arr != 0


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """Normalised box of a binary mask as the official code computes it, or ``None`` if empty.

    ``(x_min/W, y_min/H, x_max/W, y_max/H)`` with inclusive max (``evaluation/eval_dataset.py``).
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise InputError("mask", f"expected a 2-D mask, got shape {mask.shape}")
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    return (float(cols[0]) / w, float(rows[0]) / h, float(cols[-1]) / w, float(rows[-1]) / h)


def resize_like_official(image: torch.Tensor, size: tuple[int, int], mode: InterpolationMode) -> torch.Tensor:
    """Resize a uint8 ``(N, C, H, W)`` tensor to ``size = (h, w)`` as the official fast processor does.

    torchvision's v1 ``transforms.functional.resize`` with its default ``antialias=True``
    (``image_processing_perception_lm_fast.py``: ``F.resize(image, (h, w), interpolation=resample)``).
    """
    return tvf.resize(image, [int(size[0]), int(size[1])], interpolation=mode, antialias=True)


def _last_mask_boxes(binary: Sequence[np.ndarray]) -> list[tuple[float, float, float, float] | None]:
    """Every present region boxed by the last mask (the official multi-region bug, for comparisons)."""
    last = mask_box(binary[-1])
    return [last if mask_box(m) is not None else None for m in binary]


class GarProcessor:
    """Image/mask preprocessing and tokenisation for GAR.

    Args:
        image_processor: transformers' PerceptionLM image processor (from ``preprocessor_config.json``).
        tokenizer: the checkpoint's tokenizer (Llama-3 + ``<Prompt0..4>``, ``<NO_Prompt>``).
    """

    def __init__(self, image_processor: PerceptionLMImageProcessor, tokenizer: Any) -> None:
        # transformers 4.56's fast processor leaves the settings it is not given at None (5.x fills in
        # the defaults): give them PerceptionLM's documented defaults.
        for key, default in _PLM_DEFAULTS.items():
            if getattr(image_processor, key, None) is None:
                setattr(image_processor, key, default)
        self.image_processor = image_processor
        self.tokenizer = tokenizer

    @classmethod
    def from_pretrained(cls, folder: PathLike, *, max_num_tiles: int | None = None) -> GarProcessor:
        """Read ``preprocessor_config.json`` and the tokenizer files of a model folder."""
        from transformers import PreTrainedTokenizerFast

        folder = Path(folder)
        cfg_path = folder / PREPROCESSOR_NAME
        cfg: dict[str, Any] = {}
        if cfg_path.is_file():
            try:
                cfg = json.loads(cfg_path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise InputError(cfg_path, f"cannot read: {exc}") from exc
        else:
            logger.warning("%s missing in %s; using PerceptionLM defaults", PREPROCESSOR_NAME, folder)
        kwargs = {k: cfg[k] for k in _IMAGE_PROCESSOR_KEYS if k in cfg}
        if max_num_tiles is not None:
            if max_num_tiles < 1:
                raise InputError("max_num_tiles", f"must be >= 1, got {max_num_tiles}")
            kwargs["max_num_tiles"] = int(max_num_tiles)
        image_processor = PerceptionLMImageProcessor(**kwargs)
        try:
            # PerceptionLM's tokenizer is a PreTrainedTokenizerFast (tokenizer.json); loading it directly
            # never consults config.json (whose auto_map would ask for trust_remote_code).
            tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder))
        except (OSError, ValueError) as exc:
            raise InputError(folder, f"cannot load the tokenizer: {exc}") from exc
        return cls(image_processor, tokenizer)

    def save_pretrained(self, folder: PathLike) -> None:
        """Write the tokenizer and processor files in the layout transformers 4.56 (the official code) loads.

        ``tokenizer.json``, ``tokenizer_config.json`` (``tokenizer_class`` ``PreTrainedTokenizerFast``, the
        chat template, ``image_token``/``video_token``), ``special_tokens_map.json``,
        ``preprocessor_config.json``, ``video_preprocessor_config.json``, ``processor_config.json`` and
        ``chat_template.json``
        (``PerceptionLMProcessor``: patch 14, pooling 2). transformers 5 reads them as well.
        """
        from garvideo.model.prompts import DEFAULT_SYSTEM_MESSAGE

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(str(folder))
        template = CHAT_TEMPLATE.replace("default_system_message", repr(DEFAULT_SYSTEM_MESSAGE))
        tok_cfg_path = folder / "tokenizer_config.json"
        tok_cfg = json.loads(tok_cfg_path.read_text()) if tok_cfg_path.is_file() else {}
        tok_cfg.pop("backend", None)  # transformers 5 only
        tok_cfg.update(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",  # 4.56 cannot resolve "TokenizersBackend"
                "chat_template": template,
                "extra_special_tokens": {"image_token": "<|image|>", "video_token": "<|video|>"},
            }
        )
        tok_cfg_path.write_text(json.dumps(tok_cfg, indent=2) + "\n")
        tok = self.tokenizer
        special = {
            k: str(getattr(tok, k)) for k in ("bos_token", "eos_token", "pad_token") if getattr(tok, k)
        }
        (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
        ip = self.image_processor
        preprocessor = {
            "image_processor_type": "PerceptionLMImageProcessorFast",
            "processor_class": "PerceptionLMProcessor",
            "vision_input_type": ip.vision_input_type,
            "tile_size": int(ip.tile_size),
            "max_num_tiles": int(ip.max_num_tiles),
            "max_frame_tiles": 1,
            "size": {"height": int(ip.tile_size), "width": int(ip.tile_size)},
            "resample": 3,  # PILImageResampling.BICUBIC
            "do_resize": True,
            "do_rescale": True,
            "rescale_factor": float(ip.rescale_factor),
            "do_normalize": True,
            "do_convert_rgb": True,
            "image_mean": list(ip.image_mean),
            "image_std": list(ip.image_std),
        }
        (folder / PREPROCESSOR_NAME).write_text(json.dumps(preprocessor, indent=2) + "\n")
        video = {  # PerceptionLMProcessor also loads a video processor (else AutoConfig asks for remote code)
            "video_processor_type": "PerceptionLMVideoProcessor",
            "processor_class": "PerceptionLMProcessor",
            "size": {"height": int(ip.tile_size), "width": int(ip.tile_size)},
            "image_mean": list(ip.image_mean),
            "image_std": list(ip.image_std),
        }
        (folder / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2) + "\n")
        processor = {"processor_class": "PerceptionLMProcessor", "patch_size": 14, "pooling_ratio": 2}
        (folder / "processor_config.json").write_text(json.dumps(processor, indent=2) + "\n")
        (folder / "chat_template.json").write_text(json.dumps({"chat_template": template}, indent=2) + "\n")

    # -- images ----------------------------------------------------------------------------------------
    @property
    def tile_size(self) -> int:
        return int(self.image_processor.tile_size)

    def aspect_ratio(self, height: int, width: int) -> tuple[int, int]:
        """``(ncw, nch)`` tile grid PerceptionLM picks for an image (transformers' own canvas search)."""
        ip = self.image_processor
        if ip.vision_input_type != "thumb+tile" or ip.max_num_tiles <= 1:
            return (1, 1)
        ratio = ip._fit_image_to_canvas(img_width=width, img_height=height, tile_size=self.tile_size)
        if ratio is None:
            ratio = ip._find_closest_aspect_ratio(
                img_width=width, img_height=height, tile_size=self.tile_size
            )
        return int(ratio[0]), int(ratio[1])

    def _normalise(self, tiles: torch.Tensor) -> torch.Tensor:
        """Fused rescale + normalise of uint8 tiles ``(N, 3, S, S)`` as the official fast processor does."""
        ip = self.image_processor
        x = tiles.to(torch.float32)
        do_rescale, do_normalize = bool(ip.do_rescale), bool(ip.do_normalize)
        factor = float(ip.rescale_factor)
        if do_normalize:
            mean = torch.tensor(ip.image_mean, dtype=torch.float32)
            std = torch.tensor(ip.image_std, dtype=torch.float32)
            if do_rescale:  # BaseImageProcessorFast._fuse_mean_std_and_rescale_factor
                mean, std = mean * (1.0 / factor), std * (1.0 / factor)
            return (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
        if do_rescale:
            return x * factor
        return x

    def tile_uint8(self, array: np.ndarray, *, vision_input_type: str, nearest: bool) -> torch.Tensor:
        """Resized, split tiles ``(N, C, S, S)`` uint8 of an ``(H, W, C)`` uint8 array (no normalisation)."""
        s = self.tile_size
        img = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).unsqueeze(0)  # (1, C, H, W)
        mode = InterpolationMode.NEAREST if nearest else InterpolationMode.BICUBIC
        thumb = resize_like_official(img, (s, s), mode)  # (1, C, S, S)
        if vision_input_type != "thumb+tile":
            return thumb
        ncw, nch = self.aspect_ratio(array.shape[0], array.shape[1])
        big = resize_like_official(img, (nch * s, ncw * s), mode)  # (1, C, nch·S, ncw·S)
        c = big.shape[1]
        tiles = big.view(c, nch, s, ncw, s).permute(1, 3, 0, 2, 4).reshape(nch * ncw, c, s, s)
        return torch.cat([thumb, tiles], dim=0)  # (1 + ncw·nch, C, S, S), row-major

    def _tiles(self, array: np.ndarray, *, vision_input_type: str) -> torch.Tensor:
        tiles = self.tile_uint8(array, vision_input_type=vision_input_type, nearest=False)
        return self._normalise(tiles)  # (N_tiles, 3, 448, 448) float32

    def _mask_tiles(self, union: np.ndarray, *, vision_input_type: str) -> torch.Tensor:
        single = union.astype(np.uint8)[:, :, None]  # nearest works per channel: one channel suffices
        tiles = self.tile_uint8(single, vision_input_type=vision_input_type, nearest=True)
        return tiles[:, 0] != 0  # (N_tiles, 448, 448) bool

    def preprocess_image(
        self, image: Any, masks: Sequence[Any], *, last_mask_box: bool = False
    ) -> ImageInputs:
        """Tile an image and its 1 to 5 region masks.

        Args:
            image: ``(H, W, 3)`` uint8 RGB array or PIL image.
            masks: 1 to 5 binary ``(H, W)`` masks (bool, or 0/1, or 0/255), one per region; a mask may be
                empty (the region is then absent).
            last_mask_box: reproduce the official ``MultiRegionDataset`` (``evaluation/eval_dataset.py``),
                which gives every region the box of the *last* mask (it reads ``masks_np[mask_id]`` after
                an earlier loop over the masks). Off by default: garvideo boxes each region by its own mask.
        """
        rgb = as_rgb_array(image)
        h, w = rgb.shape[:2]
        if isinstance(masks, np.ndarray) and masks.ndim == 2:
            masks = [masks]
        masks = list(masks)
        if not 1 <= len(masks) <= MAX_REGIONS:
            raise InputError("masks", f"expected 1 to {MAX_REGIONS} region masks, got {len(masks)}")
        binary = [as_binary_mask(m, (h, w), source=f"masks[{i}]") for i, m in enumerate(masks)]
        union = np.logical_or.reduce(binary)
        pixel_values = self._tiles(rgb, vision_input_type="thumb+tile")
        mask_values = self._mask_tiles(union, vision_input_type="thumb+tile")
        ratio = self.aspect_ratio(h, w)
        if pixel_values.shape[0] != 1 + ratio[0] * ratio[1]:
            raise RuntimeError(f"tile count {pixel_values.shape[0]} does not match the grid {ratio}")
        return ImageInputs(
            pixel_values=pixel_values.float(),
            mask_values=mask_values,
            aspect_ratio=ratio,
            boxes=[mask_box(m) for m in binary] if not last_mask_box else _last_mask_boxes(binary),
            image_size=(h, w),
        )

    def preprocess_frames(
        self, frames: Sequence[Any], union_masks: Sequence[Any] | None = None
    ) -> FrameInputs:
        """One 448×448 tile per frame (stretched), with each frame's union mask.

        Args:
            frames: T ``(H, W, 3)`` uint8 RGB frames (same size).
            union_masks: T binary ``(H, W)`` masks (the union of the objects on each frame), or ``None`` for
                all-empty masks.
        """
        if len(frames) == 0:
            raise InputError("frames", "no frames")
        if union_masks is not None and len(union_masks) != len(frames):
            raise InputError("union_masks", f"{len(union_masks)} masks for {len(frames)} frames")
        pix, msk = [], []
        for t, frame in enumerate(frames):
            rgb = as_rgb_array(frame, source=f"frames[{t}]")
            pix.append(self._tiles(rgb, vision_input_type="vanilla")[0])
            if union_masks is None:
                union = np.zeros(rgb.shape[:2], dtype=bool)
            else:
                union = as_binary_mask(union_masks[t], rgb.shape[:2], source=f"union_masks[{t}]")
            msk.append(self._mask_tiles(union, vision_input_type="vanilla")[0])
        return FrameInputs(pixel_values=torch.stack(pix).float(), mask_values=torch.stack(msk))

    # -- text ------------------------------------------------------------------------------------------
    def tokenize(self, text: str) -> torch.Tensor:
        """Token ids ``(1, L)`` of a templated prompt.

        The tokenizer adds its special tokens as the official inference does (``processor(text=...)`` on
        the rendered template; PerceptionLM's post-processor prepends ``<|begin_of_text|>``).
        """
        ids = self.tokenizer(text, add_special_tokens=True)["input_ids"]
        return torch.tensor([ids], dtype=torch.long)

    def tokenize_continuation(self, text: str) -> torch.Tensor:
        """Token ids ``(1, L)`` of text that continues a prompt (no special tokens added)."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return torch.tensor([ids], dtype=torch.long)

    def decode(self, ids: torch.Tensor | Sequence[int], *, skip_special_tokens: bool = True) -> str:
        """Text of generated ids (stripped)."""
        if isinstance(ids, torch.Tensor):
            ids = ids.reshape(-1).tolist()
        return self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens).strip()

    @property
    def eos_token_id(self) -> int:
        """``<|eot_id|>``: the official generation config's ``eos_token_id`` (the tokenizer's eos)."""
        return int(self.tokenizer.eos_token_id)

    @property
    def pad_token_id(self) -> int | None:
        pad = self.tokenizer.pad_token_id
        return None if pad is None else int(pad)
