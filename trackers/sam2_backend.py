"""The ``sam2`` tracker: the SAM 2.1 video model, driven by garvideo's own streaming loop, giving
the masks of the official ``SAM2VideoPredictor`` (docs/sam2.md says what that covers).

The official ``SAM2VideoPredictor.init_state`` decodes every frame of the clip into an S x S
float32 tensor up front (about 12 MiB a frame at 1024) and keeps every frame's outputs. This
backend instead runs the model's own modules frame by frame as frames stream from the reader,
in the predictor's order and with its arithmetic:

* every prompt is added first (``add_new_mask`` / ``add_new_points_or_box``, then the
  preflight's memory encoding of the binarised prediction), on its frame decoded for it;
* one state, a forward pass from the earliest prompt frame P0 (every object starts there), then
  a backward pass from P0 on the same state, the backward pass's output kept where both reach;
* frames resized as ``load_video_frames`` does (PIL for image folders, decord's scaler for
  video files), memories rounded through bfloat16 as the predictor stores them, small holes in
  the S/4 logits filled as ``sam2._C`` does (OpenCV, 8-connectivity), outputs upsampled with
  ``F.interpolate`` (bilinear);
* the memory bank keeps only what ``_prepare_memory_conditioned_features`` can still read:
  non-conditioning entries within ``max(num_maskmem + 1, max_obj_ptrs_in_encoder)`` frames
  (``memory_temporal_stride_for_eval`` times ``num_maskmem + 1`` for the spatial memories), plus,
  while a backward pass is to follow, the entries just after P0 it will read. Memory is therefore
  bounded by the model plus a fixed window, whatever the clip length.

On CUDA the model runs under bfloat16 autocast; ``image_size`` (e.g. 512) and ``threads`` are the
speed levers on CPU.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from garvideo.errors import InputError, ModelUnavailableError
from garvideo.trackers.base import Prompt, Session, Tracker, VideoLike, iter_frames
from garvideo.video import VideoInfo, decord_frame_to_numpy

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
        raise InputError("sam2_config", f"unknown config {name!r} (choose from {', '.join(CONFIGS)})")
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
            "sam2_checkpoint",
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


def fill_holes_in_logits(low: Any, max_area: int) -> Any:
    """Fill small holes of SAM 2 mask logits as ``sam2.utils.misc.fill_holes_in_mask_scores`` does
    with its CUDA extension: background pixels (logit <= 0) in an 8-connected background component
    of at most ``max_area`` pixels get the logit 0.1. Components touching the border count too.

    Args:
        low: (N, 1, h, w) mask logits (torch).
        max_area: largest component filled (0: no filling).
    Returns:
        a tensor like ``low``.
    """
    import torch

    if max_area <= 0:
        return low
    bg = (low <= 0).cpu().numpy().astype(np.uint8)  # (N, 1, h, w)
    hole = np.zeros(bg.shape, dtype=bool)
    for i in range(bg.shape[0]):
        n, labels, stats, _ = cv2.connectedComponentsWithStats(bg[i, 0], connectivity=8)
        if n <= 1:
            continue
        small = stats[:, cv2.CC_STAT_AREA] <= max_area
        small[0] = False  # label 0: the foreground of the input to connectedComponents
        hole[i, 0] = small[labels]
    if not hole.any():
        return low
    return torch.where(torch.from_numpy(hole).to(low.device), 0.1, low)


def _fill_small_holes(mask: np.ndarray, max_area: int) -> np.ndarray:
    """A bool mask with its background components of at most ``max_area`` pixels filled (the mask
    form of :func:`fill_holes_in_logits`)."""
    import torch

    low = torch.from_numpy(np.where(mask, 1.0, -1.0).astype(np.float32))[None, None]
    return (fill_holes_in_logits(low, max_area)[0, 0] > 0).numpy()


class _DecordResized:
    """Frames of a video file decoded at ``size`` x ``size`` by decord's own scaler, as
    ``sam2.utils.misc.load_video_frames_from_video_file`` reads them (``VideoReader(path,
    width=size, height=size)``), with random access: sequential reads use ``next()``, a jump
    seeks, a backward read decodes a forward chunk and serves it from a cache."""

    def __init__(self, path: str, size: int) -> None:
        import decord

        # One decoding thread: with decord's default (num_threads=0, one per core), this second reader
        # running beside garvideo's full-size decord reader took the tiny-SAM 2 run on a 2,000-frame
        # 854x480 mp4 to a 1,968 MB peak (1,207 MB with one thread; docs/sam2.md "Memory"). Same
        # pixels as the official reader's defaults (tests/test_trackers_sam2_parity.py checks it).
        self._reader = decord.VideoReader(path, width=size, height=size, num_threads=1)
        self._next = 0
        self._cache: dict[int, np.ndarray] = {}

    def __call__(self, i: int) -> np.ndarray:
        if i in self._cache:
            return self._cache[i]
        if i < self._next - 1:  # going backward: decode [i - chunk + 1, i] forward, keep it
            lo = max(0, i - 15)
            self._reader.seek_accurate(lo)
            self._cache = {j: decord_frame_to_numpy(self._reader.next()) for j in range(lo, i + 1)}
            self._next = i + 1
            return self._cache[i]
        if i != self._next:
            self._reader.seek_accurate(i)
        frame = decord_frame_to_numpy(self._reader.next())  # (S, S, 3) uint8 RGB
        self._next = i + 1
        return frame


class _FrameSource:
    """The model's input for a frame, made as the official ``load_video_frames`` makes it.

    * a folder of images: the file opened with PIL, ``convert("RGB").resize((S, S))`` (PIL's
      default filter, bicubic with antialiasing), ``/ 255.0`` in float64 then stored as float32
      (sam2/utils/misc.py ``_load_img_as_tensor``);
    * a video file: decord's decoder scales to S x S, then ``float() / 255.0`` in float32
      (``load_video_frames_from_video_file``); without decord, the decoded frame through PIL;
    * anything else (an in-memory clip): the decoded frame through PIL as for a folder;
    then ``(x - mean) / std`` with ImageNet's mean and std, in float32.
    """

    def __init__(self, video: VideoLike, size: int, device: Any) -> None:
        self.size, self.device = int(size), device
        self.files = getattr(video, "files", None)
        self.decord: _DecordResized | None = None
        info: VideoInfo | None = getattr(video, "info", None)  # a file-backed garvideo.video.Video
        if self.files is None and info is not None and info.backend in ("decord", "opencv"):
            try:
                self.decord = _DecordResized(str(info.source), self.size)
            except Exception as exc:  # noqa: BLE001 - no decord, or it cannot open the file
                logger.warning(
                    "sam2: cannot read %s with decord (%s); frames are resized with PIL, which differs "
                    "from the official predictor's mp4 decoding",
                    info.source,
                    type(exc).__name__,
                )
        self.kind = "decord" if self.decord is not None else ("pil-file" if self.files is not None else "pil")

    def tensor(self, frame_idx: int, image: np.ndarray) -> Any:
        """(1, 3, S, S) float32 normalised input of frame ``frame_idx`` (``image``: its RGB pixels)."""
        import torch
        from PIL import Image

        s = self.size
        if self.decord is not None:
            x = torch.from_numpy(np.ascontiguousarray(self.decord(frame_idx))).permute(2, 0, 1).float() / 255.0
        else:
            if self.files is not None:
                with Image.open(self.files[frame_idx]) as im:
                    arr = np.array(im.convert("RGB").resize((s, s)))
            else:
                arr = np.array(Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).resize((s, s)))
            x = torch.from_numpy(arr / 255.0).permute(2, 0, 1).float()
        mean = torch.tensor(_MEAN.tolist(), dtype=torch.float32)[:, None, None]
        std = torch.tensor(_STD.tolist(), dtype=torch.float32)[:, None, None]
        x = (x - mean) / std
        return x[None].to(self.device)  # (1, 3, S, S)


class _Sam2Run:
    """The inference state of one ``track`` call: what ``init_state`` + ``add_new_*`` +
    ``propagate_in_video_preflight`` of the official predictor hold, with bounded memory banks.

    ``index`` maps a clip frame to the model's frame number (the frame itself in the default
    mode; the position among the visited frames with ``every_frame=False``), ``num_frames`` is
    what the model is told the clip length is.
    """

    def __init__(
        self,
        tracker: Sam2Tracker,
        video: VideoLike,
        prompts: Sequence[Prompt],
        index: dict[int, int],
        num_frames: int,
    ) -> None:
        self.t = tracker
        self.model = tracker.model
        self.video = video
        self.h, self.w = int(video.height), int(video.width)
        self.index = index
        self.num_frames = int(num_frames)
        self.source = _FrameSource(video, self.model.image_size, tracker.device)
        self.obj_ids = list(dict.fromkeys(p.obj_id for p in prompts))
        # Per object, the output_dict SAM2Base reads (entries without pred_masks).
        self.mem: dict[int, dict[str, dict[int, dict]]] = {
            o: {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}} for o in self.obj_ids
        }
        self.cond_masks: dict[tuple[int, int], Any] = {}  # (model frame, obj) -> (1,1,S/4,S/4) logits
        self.pos_enc: list | None = None  # memory positional encoding, identical for every entry
        m = self.model
        stride = max(1, int(m.memory_temporal_stride_for_eval))
        self.keep_spatial = (m.num_maskmem + 1) * stride  # non-cond spatial memories still readable
        self.keep_ptr = int(m.max_obj_ptrs_in_encoder) if m.use_obj_ptrs_in_encoder else 0
        self.protect: tuple[int, int] | None = None  # model frames (lo, hi] kept for the backward pass
        self._add_prompts(prompts)

    @property
    def window(self) -> int:
        """How many frames back a non-conditioning memory entry can still be read."""
        return max(self.keep_spatial, self.keep_ptr)

    # -- prompts (the official add_new_mask / add_new_points_or_box, then the preflight) ---------
    def _prompt_inputs(self, p: Prompt) -> tuple[dict | None, Any | None]:
        import torch
        import torch.nn.functional as F

        s = self.model.image_size
        dev = self.t.device
        if p.mask is not None:
            m = torch.tensor(np.asarray(p.mask).astype(bool), dtype=torch.bool)[None, None].float().to(dev)
            if m.shape[-2:] != (s, s):  # as add_new_mask: antialiased bilinear, then >= 0.5
                m = F.interpolate(m, size=(s, s), align_corners=False, mode="bilinear", antialias=True)
                m = (m >= 0.5).float()
            return None, m  # (1, 1, S, S)
        pts = torch.zeros(0, 2, dtype=torch.float32)
        labels = torch.zeros(0, dtype=torch.int32)
        if p.points is not None:
            pts = torch.tensor(np.asarray(p.points, dtype=np.float64).tolist(), dtype=torch.float32)
            labels = torch.tensor([int(v) for v in np.asarray(p.labels)], dtype=torch.int32)
        pts, labels = pts[None], labels[None]
        if p.box is not None:  # a box is two points labelled 2 (top-left) and 3 (bottom-right), first
            box = torch.tensor([float(v) for v in p.box], dtype=torch.float32).reshape(1, 2, 2)
            pts = torch.cat([box, pts], dim=1)
            labels = torch.cat([torch.tensor([[2, 3]], dtype=torch.int32), labels], dim=1)
        xy = pts / torch.tensor([self.w, self.h]) * s
        return {"point_coords": xy.to(dev), "point_labels": labels.to(dev)}, None

    def _features(self, frame: int, image: np.ndarray) -> tuple[Any, Any, Any]:
        x = self.source.tensor(frame, image)
        backbone_out = self.model.forward_image(x)
        _, feats, pos, sizes = self.model._prepare_backbone_features(backbone_out)
        return feats, pos, sizes

    def _add_prompts(self, prompts: Sequence[Prompt]) -> None:
        import torch
        import torch.nn.functional as F

        s = self.model.image_size
        by_frame: dict[int, list[Prompt]] = {}
        for p in prompts:
            by_frame.setdefault(p.frame, []).append(p)
        with torch.inference_mode(), self.t.autocast():
            for fi, image in iter_frames(self.video, sorted(by_frame)):
                feats, pos, sizes = self._features(fi, image)
                t = self.index[fi]
                for p in by_frame[fi]:
                    point_inputs, mask_inputs = self._prompt_inputs(p)
                    od = self.mem[p.obj_id]
                    # Every prompt frame is an initial conditioning frame: the predictor adds all
                    # prompts before tracking, so none of them has been tracked yet.
                    cur = self.model.track_step(
                        frame_idx=t,
                        is_init_cond_frame=True,
                        current_vision_feats=feats,
                        current_vision_pos_embeds=pos,
                        feat_sizes=sizes,
                        point_inputs=point_inputs,
                        mask_inputs=mask_inputs,
                        output_dict=od,
                        num_frames=self.num_frames,
                        track_in_reverse=False,
                        run_mem_encoder=False,
                    )
                    low = fill_holes_in_logits(cur["pred_masks"], self.t.fill_hole_area)
                    # propagate_in_video_preflight: the memory of a prompt frame encodes the stored
                    # (hole-filled) S/4 logits upsampled to S, binarised (is_mask_from_pts=True).
                    high = F.interpolate(low, size=(s, s), mode="bilinear", align_corners=False)
                    feat, pos_enc = self.model._encode_new_memory(
                        current_vision_feats=feats,
                        feat_sizes=sizes,
                        pred_masks_high_res=high,
                        object_score_logits=cur["object_score_logits"],
                        is_mask_from_pts=True,
                    )
                    cur = {**cur, "maskmem_features": feat, "maskmem_pos_enc": pos_enc}
                    od["cond_frame_outputs"][t] = self._entry(cur)
                    od["non_cond_frame_outputs"].pop(t, None)
                    self.cond_masks[(t, p.obj_id)] = low

    def _entry(self, cur: dict) -> dict:
        import torch

        if self.pos_enc is None and cur.get("maskmem_pos_enc") is not None:
            self.pos_enc = cur["maskmem_pos_enc"]
        feat = cur["maskmem_features"]  # (1, mem_dim, S/16, S/16)
        if feat is not None:
            # The predictor stores memories as bfloat16 (_run_single_frame_inference). Kept as
            # bfloat16 under CUDA autocast; on CPU float32 the rounded values are kept in float32,
            # what torch.cat promotes them to beside the float32 object pointers (without a pointer
            # the predictor's bfloat16 memory fails in a float32 matmul; these do not).
            feat = feat.to(torch.bfloat16)
            if self.t.device.type != "cuda":
                feat = feat.to(torch.float32)
        return {
            "maskmem_features": feat,
            "maskmem_pos_enc": self.pos_enc,
            "obj_ptr": cur["obj_ptr"],  # (1, hidden_dim)
            "object_score_logits": cur["object_score_logits"],
        }

    # -- outputs ---------------------------------------------------------------------------------
    def output(self, frame: int, obj_id: int, low: Any, score_logit: float) -> tuple[np.ndarray, float]:
        """The mask users get from ``propagate_in_video`` (``video_res_masks > 0``) and the presence
        score (sigmoid of the object score logit)."""
        import torch.nn.functional as F

        if self.t.logits_callback is not None:
            self.t.logits_callback(frame, obj_id, low[0, 0].float().cpu().numpy())
        full = F.interpolate(low, size=(self.h, self.w), mode="bilinear", align_corners=False)
        score = float(1.0 / (1.0 + np.exp(-np.clip(score_logit, -50, 50))))
        return (full[0, 0] > 0).cpu().numpy(), score

    def memory_entries(self) -> int:
        """Number of memory-bank entries held (for tests and benchmarks)."""
        return sum(len(m["non_cond_frame_outputs"]) + len(m["cond_frame_outputs"]) for m in self.mem.values())

    def prune(self, od: dict, frame: int, reverse: bool) -> None:
        """Drop what ``_prepare_memory_conditioned_features`` can no longer read from this pass
        (and, in the forward pass, what the backward pass will not read either)."""
        nc = od["non_cond_frame_outputs"]
        for f in list(nc):
            if self.protect is not None and self.protect[0] < f <= self.protect[1]:
                continue
            age = (f - frame) if reverse else (frame - f)
            if age >= self.window:
                del nc[f]
            elif age >= self.keep_spatial and nc[f].get("maskmem_features") is not None:
                nc[f] = {**nc[f], "maskmem_features": None}  # only the object pointer is still read


class _Sam2Session:
    """One pass of ``propagate_in_video`` (``reverse`` for the backward one) over a run."""

    def __init__(self, run: _Sam2Run, reverse: bool, close_run: bool) -> None:
        self.run = run
        self.reverse = reverse
        self.close_run = close_run

    def step(
        self, frame_idx: int, image: np.ndarray, prompts: Sequence[Prompt]
    ) -> dict[int, tuple[np.ndarray, float]]:
        import torch

        run, model = self.run, self.run.model
        t = run.index[frame_idx]
        out: dict[int, tuple[np.ndarray, float]] = {}
        with torch.inference_mode(), run.t.autocast():
            feats = None
            for oid in run.obj_ids:
                od = run.mem[oid]
                if t in od["cond_frame_outputs"]:  # a prompt frame: its stored output
                    low = run.cond_masks[(t, oid)]
                    score_logit = float(od["cond_frame_outputs"][t]["object_score_logits"].float().reshape(-1)[0])
                    out[oid] = run.output(frame_idx, oid, low, score_logit)
                    continue
                if feats is None:
                    feats, pos, sizes = run._features(frame_idx, image)
                cur = model.track_step(
                    frame_idx=t,
                    is_init_cond_frame=False,
                    current_vision_feats=feats,
                    current_vision_pos_embeds=pos,
                    feat_sizes=sizes,
                    point_inputs=None,
                    mask_inputs=None,
                    output_dict=od,
                    num_frames=run.num_frames,
                    track_in_reverse=self.reverse,
                    run_mem_encoder=True,
                )
                low = fill_holes_in_logits(cur["pred_masks"], run.t.fill_hole_area)  # (1,1,S/4,S/4)
                score_logit = float(cur["object_score_logits"].float().reshape(-1)[0])
                od["non_cond_frame_outputs"][t] = run._entry(cur)
                run.prune(od, t, self.reverse)
                out[oid] = run.output(frame_idx, oid, low, score_logit)
        run.t._memory_entries_max = max(run.t._memory_entries_max, run.memory_entries())
        return out

    def memory_entries(self) -> int:
        """Number of memory-bank entries held (for tests and benchmarks)."""
        return self.run.memory_entries()

    def close(self) -> None:
        if self.close_run:
            for od in self.run.mem.values():
                od["cond_frame_outputs"].clear()
                od["non_cond_frame_outputs"].clear()
            self.run.cond_masks.clear()
            self.run.pos_enc = None
        else:  # the backward pass reads on: from now on only what it can read is kept
            self.run.protect = None


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
            default, as SAM 2 was trained, and what gives the official predictor's masks).
            ``False`` (a departure, documented in docs/sam2.md) runs it on the kept frames
            (``frames=`` / ``stride``) and the prompt frames only, as if they were consecutive,
            one fresh state per pass, the estimate of the nearer prompt kept where both passes
            reach a frame: about ``stride`` times faster for keyframes, less robust to large
            motion between them, and not the official predictor's masks.
        model: an already built ``SAM2Base`` (e.g. a tiny random one in tests); no checkpoint then.
        logits_callback: called as ``logits_callback(frame, obj_id, logits)`` with the (S/4, S/4)
            float32 low-resolution mask logits (hole-filled) of every output, in output order
            (for parity tests against the official predictor's ``pred_masks``).

    With ``every_frame=True`` the masks are those of the official ``SAM2VideoPredictor`` run as
    ``init_state`` -> ``add_new_mask`` / ``add_new_points_or_box`` for every prompt ->
    ``propagate_in_video()`` -> ``propagate_in_video(reverse=True)`` on the same state, the
    outputs of both passes written into one dict (the backward pass's last); see docs/sam2.md.
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
        logits_callback: Any = None,
    ) -> None:
        import torch

        if threads is not None:
            if int(threads) < 1:
                raise InputError("threads", f"must be at least 1, got {threads}")
            self.threads = int(threads)  # set while tracking only (Tracker.track)
        if image_size is not None and (int(image_size) < 64 or int(image_size) % 32):
            raise InputError("image_size", f"must be a multiple of 32, at least 64; got {image_size}")
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.fill_hole_area = int(fill_hole_area)
        self.every_frame = bool(every_frame)
        self.logits_callback = logits_callback
        self._prompts: list[Prompt] = []  # the prompts of the track() call running
        self._run: _Sam2Run | None = None  # its state, shared by the forward and backward pass
        self._backward_follows = False
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
        import torch

        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _check_prompt(self, prompt: Prompt) -> None:
        """Masks, points and boxes are all accepted (checked by the base class)."""

    def track(self, video: VideoLike, prompts: Sequence[Prompt], **kwargs: Any) -> Any:
        self._memory_entries_max = 0
        self._prompts = list(prompts)
        try:
            return super().track(video, prompts, **kwargs)
        finally:
            self._prompts, self._run = [], None

    track.__doc__ = Tracker.track.__doc__

    def _plan_passes(
        self, n: int, by_frame: dict[int, list[Prompt]], keep: Sequence[int]
    ) -> tuple[list[int], list[int]]:
        """As the official predictor: forward from the earliest prompt frame P0 (every object
        starts there, whatever its prompt frame), then backward from P0; the forward pass runs on
        to the last kept frame and, when a backward pass follows, at least ``window`` frames past
        P0 (the backward pass reads those frames' memories). A backward pass that would only
        give P0 again (every object prompted there) is dropped."""
        if not self.every_frame:
            self._backward_follows = False
            return super()._plan_passes(n, by_frame, keep)
        p0 = min(by_frame)
        objs = {p.obj_id for ps in by_frame.values() for p in ps}
        at_p0 = {p.obj_id for p in by_frame[p0]}
        backward = p0 > 0 and keep[0] <= p0 and not (keep[0] == p0 and at_p0 == objs)
        last = max(keep[-1], p0)
        if backward:
            last = max(last, min(n - 1, p0 + self._window()))
        fwd = list(range(p0, last + 1)) if (keep[-1] >= p0 or backward) else []
        bwd = list(range(p0, keep[0] - 1, -1)) if backward else []
        self._backward_follows = backward
        return fwd, bwd

    def _later_pass_wins(self) -> bool:
        return self.every_frame

    def _window(self) -> int:
        m = self.model
        stride = max(1, int(m.memory_temporal_stride_for_eval))
        ptr = int(m.max_obj_ptrs_in_encoder) if m.use_obj_ptrs_in_encoder else 0
        return max((m.num_maskmem + 1) * stride, ptr)

    def _open_session(self, video: VideoLike, direction: str, order: Sequence[int]) -> Session:
        reverse = direction == "backward"
        if not self.every_frame:
            # One fresh state per pass, frames numbered by their position in the pass.
            n = len(order)
            index = {f: (i if not reverse else n - 1 - i) for i, f in enumerate(order)}
            run = _Sam2Run(self, video, self._prompts, index, n)
            return _Sam2Session(run, reverse, close_run=True)
        if self._run is None:
            n = int(video.num_frames)
            self._run = _Sam2Run(self, video, self._prompts, {f: f for f in range(n)}, n)
        run = self._run
        last_pass = reverse or not self._backward_follows
        if not last_pass:  # keep the memories next to P0 that the backward pass will read
            p0 = order[0]
            run.protect = (p0, p0 + run.window)
        return _Sam2Session(run, reverse, close_run=last_pass)

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
