"""The ``sam2`` tracker: the SAM 2.1 video model, driven by garvideo's own streaming loop.

The official ``SAM2VideoPredictor.init_state`` decodes every frame of the clip into a
1024x1024 float32 tensor up front (about 12 MiB a frame) and keeps every frame's outputs. This
backend instead runs the model's own modules frame by frame as frames stream from the reader:

* ``SAM2Base.forward_image`` + ``_prepare_backbone_features`` encode one frame (shared by all
  objects), then it is dropped;
* ``SAM2Base.track_step`` segments each object, attending to its memory bank (conditioning frames
  = the prompt frames, plus the most recent non-conditioning frames) and encodes the new memory;
* the memory bank keeps only what ``_prepare_memory_conditioned_features`` can still read:
  non-conditioning entries within ``max(num_maskmem - 1, max_obj_ptrs_in_encoder - 1)`` frames
  (``memory_temporal_stride_for_eval`` times that for the spatial memories), and of those only
  the memory features, their positional encoding (one tensor shared by all entries) and the
  object pointer. Memory is therefore bounded by the model plus a fixed window, whatever the
  clip length.

CPU details handled here: the ``sam2._C`` CUDA extension (hole filling) is not needed — small
holes in the low-resolution mask are filled with OpenCV, as the predictor's
``fill_holes_in_mask_scores`` does with the extension; memory features stay in the compute dtype
(the predictor casts them to bfloat16 for storage, which breaks float32 CPU inference when
tracking backward or with objects prompted on different frames); ``image_size`` (e.g. 512) and
``threads`` are the speed levers on CPU. On CUDA the model runs under bfloat16 autocast.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from garvideo.errors import InputError, ModelUnavailableError
from garvideo.trackers.base import Prompt, Session, Tracker, VideoLike

logger = logging.getLogger(__name__)

# Hub ids and checkpoint file names of SAM 2.1 (as in sam2/build_sam.py HF_MODEL_ID_TO_FILENAMES).
HUB_CHECKPOINTS = {
    "facebook/sam2.1-hiera-tiny": ("sam2.1_hiera_t", "sam2.1_hiera_tiny.pt"),
    "facebook/sam2.1-hiera-small": ("sam2.1_hiera_s", "sam2.1_hiera_small.pt"),
    "facebook/sam2.1-hiera-base-plus": ("sam2.1_hiera_b+", "sam2.1_hiera_base_plus.pt"),
    "facebook/sam2.1-hiera-large": ("sam2.1_hiera_l", "sam2.1_hiera_large.pt"),
}
CONFIGS = ("sam2.1_hiera_t", "sam2.1_hiera_s", "sam2.1_hiera_b+", "sam2.1_hiera_l")
# Image normalisation of SAM 2 (sam2/utils/misc.py load_video_frames: ImageNet mean/std).
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# Hydra overrides the official video predictor applies (sam2/build_sam.py build_sam2_video_predictor,
# apply_postprocessing=True); fill_hole_area=8 is its default hole size at mask-logit resolution.
_PREDICTOR_OVERRIDES = [
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
    "++model.binarize_mask_from_pts_for_mem_enc=true",
]
DEFAULT_FILL_HOLE_AREA = 8

# Hydra overrides that shrink sam2.1_hiera_t to a tiny model of the same architecture (8-dim Hiera
# with one global-attention block, 32-dim features, 16-dim memory, one memory-attention layer),
# for tests and memory benchmarks with random weights. Keys follow configs/sam2.1/sam2.1_hiera_t.yaml.
TINY_OVERRIDES = (
    "++model.image_encoder.trunk.embed_dim=8",
    "++model.image_encoder.trunk.num_heads=1",
    "++model.image_encoder.trunk.stages=[1,1,2,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3]",
    "++model.image_encoder.trunk.window_pos_embed_bkg_spatial_size=[4,4]",
    "++model.image_encoder.trunk.window_spec=[4,4,4,4]",
    "++model.image_encoder.neck.d_model=32",
    "++model.image_encoder.neck.backbone_channel_list=[64,32,16,8]",
    "++model.image_encoder.neck.position_encoding.num_pos_feats=32",
    "++model.memory_attention.d_model=32",
    "++model.memory_attention.num_layers=1",
    "++model.memory_attention.layer.d_model=32",
    "++model.memory_attention.layer.dim_feedforward=32",
    "++model.memory_attention.layer.self_attention.embedding_dim=32",
    "++model.memory_attention.layer.self_attention.feat_sizes=[8,8]",
    "++model.memory_attention.layer.cross_attention.embedding_dim=32",
    "++model.memory_attention.layer.cross_attention.feat_sizes=[8,8]",
    "++model.memory_attention.layer.cross_attention.kv_in_dim=16",
    "++model.memory_encoder.out_dim=16",
    "++model.memory_encoder.in_dim=32",
    "++model.memory_encoder.position_encoding.num_pos_feats=16",
    "++model.memory_encoder.mask_downsampler.embed_dim=32",
    "++model.memory_encoder.fuser.layer.dim=32",
)


def config_name(name: str) -> str:
    """Normalise a config name (``sam2.1_hiera_t``, ``t``, or the hydra path) to the hydra path."""
    short = Path(name).name.removesuffix(".yaml")
    if short in ("t", "s", "b+", "l"):
        short = f"sam2.1_hiera_{short}"
    if short not in CONFIGS:
        raise InputError("--sam2-config", f"unknown config {name!r} (choose from {', '.join(CONFIGS)})")
    return f"configs/sam2.1/{short}.yaml"


def _config_for_checkpoint(path: str) -> str:
    stem = Path(path).name.lower()
    for key, short in (
        ("tiny", "t"),
        ("small", "s"),
        ("base_plus", "b+"),
        ("base-plus", "b+"),
        ("large", "l"),
        ("_t.", "t"),
        ("_s.", "s"),
        ("_b+.", "b+"),
        ("_l.", "l"),
    ):
        if key in stem:
            return config_name(short)
    return config_name("t")


# The SAM 2.1 checkpoint ``auto`` downloads when none is on disk, per device kind. Published figures
# (facebookresearch/sam2 README, "SAM 2.1 checkpoints" table; speed on one A100, torch 2.5.1, CUDA 12.4):
#   hiera-tiny       38.9 M params, 91.2 FPS, SA-V test J&F 76.5, MOSE val 71.8, LVOS v2 77.3
#   hiera-small      46.0 M,        84.8 FPS,                76.6,          73.5,         78.3
#   hiera-base-plus  80.8 M,        64.1 FPS,                78.2,          73.7,         78.2
#   hiera-large     224.4 M,        39.5 FPS,                79.5,          74.6,         80.6
# On CUDA the large model still runs in real time and is the most accurate; on CPU, where SAM 2 costs
# seconds per frame (bench/track.py: hiera-t 1.7 s/frame at image size 512, 9.7 s at 1024, 1 thread),
# the tiny one is the fastest and within 0.1 J&F of the small one on SA-V.
DEFAULT_HUB_CHECKPOINT = {
    "cuda": "facebook/sam2.1-hiera-large",
    "cpu": "facebook/sam2.1-hiera-tiny",
}


def default_hub_checkpoint(device: str | None = None) -> str:
    """The hub id ``auto`` downloads for ``device`` (``None``: CUDA when available, else CPU)."""
    if device is None:
        import torch

        kind = "cuda" if torch.cuda.is_available() else "cpu"
    else:
        kind = "cuda" if str(device).startswith("cuda") else "cpu"
    return DEFAULT_HUB_CHECKPOINT[kind]


def download_hub_checkpoint(repo_id: str) -> str:
    """Download (or find in the cache) the ``.pt`` file of a SAM 2.1 hub id; its local path.

    Goes through ``huggingface_hub.hf_hub_download`` (looked up at call time), the one download path.

    Raises:
        InputError: an unknown hub id.
        Exception: whatever the download raises (offline, network error, ...).
    """
    if repo_id not in HUB_CHECKPOINTS:
        raise InputError(
            "--sam2-checkpoint",
            f"unknown SAM 2.1 hub id {repo_id!r} (choose from {', '.join(HUB_CHECKPOINTS)})",
        )
    import huggingface_hub

    return str(huggingface_hub.hf_hub_download(repo_id, HUB_CHECKPOINTS[repo_id][1]))


def cached_hub_checkpoint() -> str | None:
    """A SAM 2.1 checkpoint already in the Hugging Face cache, or ``None``: the default for this
    machine's device first (:func:`default_hub_checkpoint`), then the others smallest first."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    first = default_hub_checkpoint()
    for repo in [first, *(r for r in HUB_CHECKPOINTS if r != first)]:
        fname = HUB_CHECKPOINTS[repo][1]
        try:
            hit = try_to_load_from_cache(repo, fname)
        except Exception as exc:  # noqa: BLE001 - a broken cache is the same as no cache
            logger.debug("hugging face cache lookup of %s failed: %s", repo, exc)
            continue
        if isinstance(hit, str) and os.path.isfile(hit):
            return hit
    return None


def resolve_checkpoint(checkpoint: str) -> tuple[str, str | None]:
    """Path of the checkpoint file and, for hub ids, the matching config name.

    Raises:
        InputError: a path that does not exist.
        ModelUnavailableError: a hub id that cannot be downloaded (offline).
    """
    if checkpoint in HUB_CHECKPOINTS and not os.path.exists(checkpoint):
        cfg, fname = HUB_CHECKPOINTS[checkpoint]
        try:
            return download_hub_checkpoint(checkpoint), config_name(cfg)
        except Exception as exc:  # noqa: BLE001 - offline, gated, ...
            raise ModelUnavailableError(
                f"cannot download {checkpoint} ({type(exc).__name__}); download {fname} elsewhere and "
                f"pass --sam2-checkpoint PATH or set GARVIDEO_SAM2_CHECKPOINT"
            ) from None
    if not os.path.isfile(checkpoint):
        raise InputError(checkpoint, "sam2 checkpoint not found")
    return checkpoint, None


def build_sam2_model(
    config: str, image_size: int | None = None, device: str = "cpu", extra_overrides: Sequence[str] = ()
) -> Any:
    """Instantiate an (uninitialised) ``SAM2Base`` from a packaged sam2 config.

    Args:
        config: a hydra config path such as ``configs/sam2.1/sam2.1_hiera_t.yaml``.
        image_size: input resolution (multiple of 32; the configs use 1024).
        device: torch device.
        extra_overrides: more hydra overrides (tests use them to build tiny models).
    """
    import sam2  # noqa: F401 - initialises sam2's hydra config module
    from hydra import compose
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    overrides = list(_PREDICTOR_OVERRIDES)
    if image_size is not None:
        overrides.append(f"++model.image_size={int(image_size)}")
    overrides += list(extra_overrides)
    cfg = compose(config_name=config, overrides=overrides)
    OmegaConf.resolve(cfg)
    model = instantiate(cfg.model, _recursive_=True)
    return model.to(device).eval()


def load_sam2_checkpoint(model: Any, path: str) -> None:
    """Load an official SAM 2.1 ``.pt`` checkpoint (``{"model": state_dict}``) into ``model``.

    Raises:
        InputError: unreadable file, or keys that do not match the config.
    """
    import torch

    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to read is bad input
        raise InputError(path, f"unreadable sam2 checkpoint ({type(exc).__name__})") from None
    if isinstance(sd, dict) and "model" in sd:
        sd = sd["model"]
    if not isinstance(sd, dict):
        raise InputError(path, "not a sam2 checkpoint (expected a dict with a 'model' state dict)")
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise InputError(
            path,
            f"checkpoint does not match the config: {len(missing)} missing keys (e.g. "
            f"{list(missing)[:2]}), {len(unexpected)} unexpected (e.g. {list(unexpected)[:2]}); "
            "pick the matching --sam2-config",
        )


def _fill_small_holes(mask: np.ndarray, max_area: int) -> np.ndarray:
    """Fill background components of at most ``max_area`` pixels (as sam2's
    ``fill_holes_in_mask_scores``, which needs the CUDA extension, does on mask logits)."""
    if max_area <= 0:
        return mask
    n, labels, stats, _ = cv2.connectedComponentsWithStats((~mask).astype(np.uint8), connectivity=8)
    if n <= 1:
        return mask
    small = stats[:, cv2.CC_STAT_AREA] <= max_area
    small[0] = False  # label 0 is the mask itself
    return mask | small[labels]


class _ObjectMemory:
    """One object's memory bank: the ``output_dict`` that ``SAM2Base`` reads."""

    def __init__(self) -> None:
        self.output_dict: dict[str, dict[int, dict]] = {
            "cond_frame_outputs": {},
            "non_cond_frame_outputs": {},
        }


class _Sam2Session:
    def __init__(self, tracker: Sam2Tracker, video: VideoLike, order: Sequence[int], reverse: bool) -> None:
        self.t = tracker
        self.model = tracker.model
        self.h, self.w = int(video.height), int(video.width)
        # The model indexes its memory by frame number and reads the frames just before the current
        # one; it is given the position in the visited sequence (consecutive even when only the kept
        # frames are visited), increasing along a forward pass and decreasing along a backward one.
        n = len(order)
        self.local = {f: (i if not reverse else n - 1 - i) for i, f in enumerate(order)}
        self.num_frames = n
        self.reverse = reverse
        self.objects: dict[int, _ObjectMemory] = {}
        self.pos_enc: list | None = None  # memory positional encoding, identical for every entry
        m = self.model
        stride = max(1, int(m.memory_temporal_stride_for_eval))
        self.keep_spatial = (m.num_maskmem + 1) * stride  # non-cond spatial memories still readable
        self.keep_ptr = int(m.max_obj_ptrs_in_encoder) if m.use_obj_ptrs_in_encoder else 0

    # -- inputs --------------------------------------------------------------------------------
    def _image_tensor(self, image: np.ndarray) -> Any:
        import torch

        s = self.model.image_size
        # The predictor resizes each frame to a square image_size x image_size with PIL's default
        # (bicubic) filter, then normalises (sam2/utils/misc.py _load_img_as_tensor).
        x = cv2.resize(image, (s, s), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255.0
        x = (x - _MEAN) / _STD
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].to(
            self.t.device
        )  # (1,3,S,S)

    def _prompt_inputs(self, p: Prompt) -> tuple[dict | None, Any | None]:
        import torch

        s = self.model.image_size
        dev = self.t.device
        if p.mask is not None:
            m = cv2.resize(np.asarray(p.mask).astype(np.float32), (s, s), interpolation=cv2.INTER_AREA)
            return None, torch.from_numpy((m >= 0.5).astype(np.float32))[None, None].to(dev)  # (1,1,S,S)
        pts: list[list[float]] = []
        labels: list[int] = []
        if p.box is not None:  # a box is two points labelled 2 (top-left) and 3 (bottom-right)
            x0, y0, x1, y1 = (float(v) for v in p.box)
            pts += [[x0, y0], [x1, y1]]
            labels += [2, 3]
        if p.points is not None:
            pts += np.asarray(p.points, dtype=np.float64).tolist()
            labels += [int(v) for v in np.asarray(p.labels)]
        xy = torch.tensor(pts, dtype=torch.float32) / torch.tensor([self.w, self.h], dtype=torch.float32) * s
        return {
            "point_coords": xy[None].to(dev),
            "point_labels": torch.tensor([labels], dtype=torch.int32).to(dev),
        }, None

    # -- one frame -----------------------------------------------------------------------------
    def step(
        self, frame_idx: int, image: np.ndarray, prompts: Sequence[Prompt]
    ) -> dict[int, tuple[np.ndarray, float]]:
        import torch

        for p in prompts:
            self.objects.setdefault(p.obj_id, _ObjectMemory())
        if not self.objects:
            return {}
        out: dict[int, tuple[np.ndarray, float]] = {}
        t = self.local[frame_idx]  # the model's frame index (see __init__)
        with torch.inference_mode(), self.t.autocast():
            backbone_out = self.model.forward_image(self._image_tensor(image))
            _, feats, pos, sizes = self.model._prepare_backbone_features(backbone_out)
            by_obj = {p.obj_id: p for p in prompts}
            for oid, mem in self.objects.items():
                p = by_obj.get(oid)
                is_cond = p is not None
                point_inputs, mask_inputs = self._prompt_inputs(p) if p is not None else (None, None)
                init = is_cond and not mem.output_dict["cond_frame_outputs"]
                cur = self.model.track_step(
                    frame_idx=t,
                    is_init_cond_frame=init,
                    current_vision_feats=feats,
                    current_vision_pos_embeds=pos,
                    feat_sizes=sizes,
                    point_inputs=point_inputs,
                    mask_inputs=mask_inputs,
                    output_dict=mem.output_dict,
                    num_frames=self.num_frames,
                    track_in_reverse=self.reverse,
                    run_mem_encoder=True,
                )
                low = cur["pred_masks"]  # (1, 1, S/4, S/4) mask logits
                score_logit = float(cur["object_score_logits"].float().reshape(-1)[0])
                if p is not None and p.mask is not None:
                    out[oid] = (np.asarray(p.mask).astype(bool), 1.0)  # a mask prompt is its own output
                else:
                    out[oid] = self._to_output(low, score_logit)
                self._remember(mem, t, cur, is_cond)
        return out

    def _to_output(self, low: Any, score_logit: float) -> tuple[np.ndarray, float]:
        score = float(1.0 / (1.0 + np.exp(-np.clip(score_logit, -50, 50))))
        if score_logit <= 0:
            return np.zeros((self.h, self.w), dtype=bool), score
        logits = low[0, 0].float().cpu().numpy()  # (S/4, S/4)
        fg = _fill_small_holes(logits > 0, self.t.fill_hole_area)
        logits = np.where(fg & (logits <= 0), 0.1, logits).astype(np.float32)
        # Back to the video's size (the predictor's _get_orig_video_res_output: bilinear).
        full = cv2.resize(logits, (self.w, self.h), interpolation=cv2.INTER_LINEAR) > 0
        return full, score

    def _remember(self, mem: _ObjectMemory, frame_idx: int, cur: dict, is_cond: bool) -> None:
        if self.pos_enc is None and cur.get("maskmem_pos_enc") is not None:
            self.pos_enc = cur["maskmem_pos_enc"]
        entry = {
            "maskmem_features": cur["maskmem_features"],  # (1, mem_dim, S/16, S/16), compute dtype
            "maskmem_pos_enc": self.pos_enc,
            "obj_ptr": cur["obj_ptr"],  # (1, hidden_dim)
            "object_score_logits": cur["object_score_logits"],
        }
        key = "cond_frame_outputs" if is_cond else "non_cond_frame_outputs"
        mem.output_dict[key][frame_idx] = entry
        # The predictor also drops non-conditioning memories on a frame that becomes conditioning.
        if is_cond:
            mem.output_dict["non_cond_frame_outputs"].pop(frame_idx, None)
        self._prune(mem, frame_idx)
        self.t._memory_entries_max = max(self.t._memory_entries_max, self.memory_entries())

    def _prune(self, mem: _ObjectMemory, frame_idx: int) -> None:
        nc = mem.output_dict["non_cond_frame_outputs"]
        for f in list(nc):
            age = (f - frame_idx) if self.reverse else (frame_idx - f)
            if age >= max(self.keep_spatial, self.keep_ptr):
                del nc[f]
            elif age >= self.keep_spatial and nc[f].get("maskmem_features") is not None:
                nc[f] = {**nc[f], "maskmem_features": None}  # only the object pointer is still read

    def memory_entries(self) -> int:
        """Number of memory-bank entries held (for tests and benchmarks)."""
        return sum(
            len(m.output_dict["non_cond_frame_outputs"]) + len(m.output_dict["cond_frame_outputs"])
            for m in self.objects.values()
        )

    def close(self) -> None:
        self.objects.clear()
        self.pos_enc = None


class Sam2Tracker(Tracker):
    """SAM 2.1 video segmentation with a bounded, streaming memory bank.

    Args:
        sam2_checkpoint: ``.pt`` file, or a hub id such as ``facebook/sam2.1-hiera-tiny`` (downloaded
            when online). Default: ``$GARVIDEO_SAM2_CHECKPOINT``.
        sam2_config: ``sam2.1_hiera_t`` / ``_s`` / ``_b+`` / ``_l`` (default: from the checkpoint's name).
        image_size: model input size (default: the config's 1024; 512 is about 4x faster on CPU).
        device: ``"cuda"``, ``"cpu"`` or ``None`` (CUDA when available).
        threads: torch CPU thread count (``None``: leave torch's setting).
        fill_hole_area: fill holes of at most this many pixels in the mask logits (0: off).
        every_frame: run the model on every frame between the prompt and the kept frames (the
            default, as SAM 2 was trained). ``False`` runs it on the kept frames (``frames=`` /
            ``stride``) and the prompt frames only, as if they were consecutive: about ``stride``
            times faster for keyframes, less robust to large motion between them.
        model: an already built ``SAM2Base`` (e.g. a tiny random one in tests); no checkpoint then.
    """

    name = "sam2"

    def __init__(
        self,
        sam2_checkpoint: str | None = None,
        sam2_config: str | None = None,
        image_size: int | None = None,
        device: str | None = None,
        threads: int | None = None,
        fill_hole_area: int = DEFAULT_FILL_HOLE_AREA,
        every_frame: bool = True,
        model: Any = None,
    ) -> None:
        import torch

        if threads is not None:
            if int(threads) < 1:
                raise InputError("threads", f"must be at least 1, got {threads}")
            torch.set_num_threads(int(threads))
        if image_size is not None and (int(image_size) < 64 or int(image_size) % 32):
            raise InputError("--image-size", f"must be a multiple of 32, at least 64; got {image_size}")
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.fill_hole_area = int(fill_hole_area)
        self.every_frame = bool(every_frame)
        self._memory_entries_max = 0  # largest memory bank (entries, all objects) of the last track()
        self.checkpoint: str | None = None
        if model is not None:
            self.model = model.to(self.device).eval()
            self.config = "custom"
            return
        ckpt = sam2_checkpoint or os.environ.get("GARVIDEO_SAM2_CHECKPOINT")
        if not ckpt:
            raise ModelUnavailableError(
                "no SAM2 checkpoint: pass --sam2-checkpoint PATH (or a hub id such as "
                "facebook/sam2.1-hiera-tiny when online) or set GARVIDEO_SAM2_CHECKPOINT; "
                "--tracker flow needs no weights"
            )
        path, hub_cfg = resolve_checkpoint(str(ckpt))
        cfg = config_name(sam2_config) if sam2_config else (hub_cfg or _config_for_checkpoint(path))
        self.model = build_sam2_model(cfg, image_size, str(self.device))
        load_sam2_checkpoint(self.model, path)
        self.model.to(self.device).eval()
        self.checkpoint, self.config = path, cfg
        logger.info("sam2: %s from %s, image size %d, %s", cfg, path, self.model.image_size, self.device)

    def autocast(self) -> Any:
        """bfloat16 autocast on CUDA; a no-op context on CPU (float32)."""
        import contextlib

        import torch

        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _check_prompt(self, prompt: Prompt) -> None:
        """Masks, points and boxes are all accepted (checked by the base class)."""

    def track(self, video: VideoLike, prompts: Sequence[Prompt], **kwargs: Any) -> Any:
        self._memory_entries_max = 0
        return super().track(video, prompts, **kwargs)

    track.__doc__ = Tracker.track.__doc__

    def _open_session(self, video: VideoLike, direction: str, order: Sequence[int]) -> Session:
        return _Sam2Session(self, video, order, reverse=(direction == "backward"))

    def _visits_every_frame(self) -> bool:
        return self.every_frame

    def describe(self) -> dict[str, object]:
        return {
            "config": self.config,
            "checkpoint": self.checkpoint,
            "image_size": int(self.model.image_size),
            "device": str(self.device),
            "memory_entries_max": self._memory_entries_max,
        }
