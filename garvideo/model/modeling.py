"""GAR (Grasp Any Region) in garvideo's own code, state-dict compatible with the official checkpoints.

GAR = PerceptionLM + a mask patch embedding (``projects/grasp_any_region/hf_models/modeling_gar.py``):

* ``mllm``: transformers' :class:`~transformers.PerceptionLMForConditionalGeneration` — timm PE vision
  tower, projector (Linear → GELU → Linear, then 2×2 average pooling) and a Llama LLM. Keys ``mllm.*``.
* ``mask_patch_embedding``: ``Conv2d(3 → ViT width, kernel = stride = 14, bias=False)``, zero-initialised
  (``models/grasp_any_region.py``). Its output is added to the ViT patch embeddings before the class
  token, position embedding and ``norm_pre`` (``models/modeling/modeling_perception_lm.py``,
  ``custom_forward_features``). Its input is the binary union of the region masks ("prompt-id map ≠
  ``<NO_Prompt>``", ``modeling_gar.py:GARModel.generate``) on every tile, thumbnail included.

RoI-aligned feature replay (``modeling_gar.py:GARModel.generate``): the projector outputs of the high-res
tiles (thumbnail dropped) are stitched into one ``(D, 16·nch, 16·ncw)`` map and
``torchvision.ops.roi_align(output_size=(16, 16), sampling_ratio=2, aligned=True)`` gives 256 tokens per
region. The official code converts the normalised box to feature-map coordinates (``box · feat``) *and*
passes ``spatial_scale = feat_w / orig_w = 1/28``, so the box is scaled twice and roi_align samples near the
top-left corner of the map; the released checkpoints were trained that way (``roi_mode="official"``, the
default). ``roi_mode="corrected"`` passes the box in canvas pixels (``box · feat · 28``) and scales it once.
The video branch (``prepare_inputs_for_generation(feature_replay_video=True)``) does the same per frame on
that frame's own 16×16 map with ``orig = 16 · 28 = 448``.

State dict: ``mllm.model.vision_tower.timm_model.*`` (timm PE: ``cls_token``, ``pos_embed``,
``patch_embed.proj``, ``norm_pre``, ``blocks.*``; no final ``norm`` with ``use_post_transformer_norm=False``),
``mllm.model.multi_modal_projector.linear_{1,2}.*``, ``mllm.model.language_model.*``, ``mllm.lm_head.weight``
and ``mask_patch_embedding.weight``: the module paths of transformers 4.56's PerceptionLM wrapped by
``GARModel`` (``hf_models/convert_to_hf.py`` saves ``GARModel(mllm=PerceptionLMForConditionalGeneration)``,
whose ``_checkpoint_conversion_mapping`` is empty). transformers 5 keeps these paths and has no PerceptionLM
key renaming, and garvideo assigns the tensors itself, so keys load one to one; anything missing or extra
fails loudly (``loading.load_state_dict_strict``). The LM head is tied iff ``text_config.tie_word_embeddings``
(``configuration._normalise_tying``): GAR-1B (Llama-3.2-1B) ties, GAR-8B (Llama-3.1-8B) does not.

Open points (not verifiable here, no weights or hub files):

* The released ``config.json`` files themselves were not seen; the layout is ``GARConfig.to_dict``'s.
  ``from_dict`` accepts the extra 4.x keys (``use_flash_attn``, ``torch_dtype``, ``rope_scaling`` — mapped
  to transformers 5's llama3 rope parameters, checked in the tests).
* The official code runs the LLM with flash-attention 2 and timm 1.0.19 (``requirements.txt``); garvideo
  uses SDPA and the installed timm, so logits agree to rounding, not bit for bit.
* The hub's own ``modeling_gar.py`` may differ from the repository copy: the repository's
  ``GARModel.generate`` passes ``mask_embeds`` to ``get_image_features``, which only the repository's own
  PerceptionLM (``models/modeling/modeling_perception_lm.py``) accepts.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
import torchvision
from torch import nn
from transformers import PerceptionLMForConditionalGeneration

from garvideo.errors import InputError
from garvideo.model.configuration import GarConfig, text_config, vision_config
from garvideo.model.prompts import IMAGE_TOKEN_ID, REGION_TOKEN_IDS, REGION_TOKENS, ROI_MODES, TOKENS_PER_TILE

logger = logging.getLogger(__name__)

#: Name of the KV-cache argument of transformers' forward/generate: ``cache`` from transformers 5.2x
#: (``past_key_values`` then warns and is removed in 5.40), ``past_key_values`` before.
CACHE_KWARG = (
    "cache"
    if "cache" in inspect.signature(PerceptionLMForConditionalGeneration.forward).parameters
    else "past_key_values"
)

RoiMode = Literal["official", "corrected"]
#: Side of the pooled feature map of one 448×448 tile (32×32 patches, 2×2 pooling).
TILE_FEAT = 16
#: Canvas pixels per pooled feature cell: 14-pixel patches pooled 2×2 (``orig = feat · 28``, official).
FEAT_STRIDE = 28
#: roi_align settings of the official replay.
ROI_OUTPUT = (16, 16)
ROI_SAMPLING_RATIO = 2


@dataclass
class ImageFeatures:
    """Vision features of one image (thumbnail + tiles).

    Attributes:
        tokens: ``(N_tiles, 256, D)`` projector outputs in LLM space, thumbnail first; they fill the
            ``<|image|>`` placeholders in this order.
        feature_map: ``(1, D, 16·nch, 16·ncw)`` the high-res tiles stitched (thumbnail dropped), for replay.
    """

    tokens: torch.Tensor
    feature_map: torch.Tensor


@dataclass
class FrameFeatures:
    """Vision features of T video frames, one 448×448 tile each.

    Attributes:
        tokens: ``(T, 256, D)`` global tokens in LLM space, frame order.
        maps: ``(T, D, 16, 16)`` the same tokens as per-frame feature maps, for replay.
    """

    tokens: torch.Tensor
    maps: torch.Tensor

    @property
    def num_frames(self) -> int:
        return int(self.tokens.shape[0])


@dataclass
class PrefixCache:
    """The KV cache of a prompt prefix, reusable by several :meth:`GarModel.generate` calls.

    Attributes:
        embeds: ``(1, L, D)`` the prefix embeddings.
        cache: the transformers ``Cache`` after the prefix (copied, never mutated, by each use).
    """

    embeds: torch.Tensor
    cache: Any

    @property
    def length(self) -> int:
        return int(self.embeds.shape[1])


@contextlib.contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Create parameters on the meta device (no memory, no init cost); buffers stay real.

    Loading then assigns the checkpoint tensors; non-persistent buffers (rotary tables) are computed as
    usual. Used only while constructing a model for :func:`garvideo.model.loading.load_gar`.
    """
    original = nn.Module.register_parameter

    def register(self: nn.Module, name: str, param: nn.Parameter | None) -> None:  # as register_parameter
        original(self, name, param)
        if param is not None and param.device.type != "meta":
            self._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    nn.Module.register_parameter = register  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = original  # type: ignore[method-assign]


class GarModel(nn.Module):
    """GAR: PerceptionLM (``mllm``) + ``mask_patch_embedding``; state-dict keys as the official checkpoints.

    Args:
        config: the GAR configuration.
        attn_implementation: LLM attention (``"sdpa"``; never flash-attention).
    """

    def __init__(self, config: GarConfig, *, attn_implementation: str = "sdpa") -> None:
        super().__init__()
        self.config = config
        mllm_config = config.mllm_config
        mllm_config._attn_implementation = attn_implementation  # recursive on the sub-configs
        text_config(mllm_config)._attn_implementation = attn_implementation
        # The vision tower (transformers' TimmWrapper around timm's PE) runs timm's own attention,
        # which uses F.scaled_dot_product_attention whatever this flag says. transformers 4.56 refuses
        # "sdpa" for it and 5.x warns on "eager": give it the value this transformers accepts.
        from transformers import TimmWrapperModel  # here, not at import: it imports timm

        vision_sdpa = getattr(TimmWrapperModel, "_supports_sdpa", False)
        vision_config(mllm_config)._attn_implementation = "sdpa" if vision_sdpa else "eager"
        self.mllm = PerceptionLMForConditionalGeneration(mllm_config)
        self.mask_patch_embedding = nn.Conv2d(
            in_channels=3,
            out_channels=config.vision_width,
            kernel_size=config.kernel_size,
            stride=config.kernel_size,
            bias=False,
        )
        if self.mask_patch_embedding.weight.device.type != "meta":
            nn.init.zeros_(self.mask_patch_embedding.weight)  # zero-init (models/grasp_any_region.py)

    # -- basic properties ------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.mask_patch_embedding.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.mask_patch_embedding.weight.dtype

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @property
    def tied_embeddings(self) -> bool:
        """The LM head shares the input embedding iff the *text* config says so (``GarConfig.tie_word_embeddings``).

        Not the PerceptionLM-level flag: see ``configuration._normalise_tying`` (GAR-8B has an untied head).
        """
        return self.config.tie_word_embeddings

    def tie_weights(self) -> None:
        """Share the LM head with the input embeddings when the config ties them."""
        if self.tied_embeddings:
            self.mllm.lm_head.weight = self.mllm.get_input_embeddings().weight

    def get_input_embeddings(self) -> nn.Embedding:
        # transformers annotates nn.Module; PerceptionLM's is the Llama's nn.Embedding.
        return cast(nn.Embedding, self.mllm.get_input_embeddings())

    # -- vision ------------------------------------------------------------------------------------------
    def mask_embeddings(self, mask_values: torch.Tensor) -> torch.Tensor:
        """Mask patch embeddings of binary masks.

        Args:
            mask_values: ``(N, H, W)`` bool (or 0/1) union masks, one per tile.

        Returns:
            ``(N, C_vit, H/14, W/14)``.
        """
        if mask_values.dim() != 3:
            raise InputError("mask_values", f"expected (N, H, W), got shape {tuple(mask_values.shape)}")
        binary = (mask_values != 0).to(device=self.device, dtype=self.dtype)
        # The official input is the prompt-id map through the RGB image processor: 3 equal channels.
        return self.mask_patch_embedding(binary[:, None].expand(-1, 3, -1, -1))

    def image_features(
        self, pixel_values: torch.Tensor, mask_values: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Projected vision features of tiles.

        Args:
            pixel_values: ``(N, 3, 448, 448)`` normalised tiles.
            mask_values: ``(N, 448, 448)`` bool union masks, or ``None`` (no mask embedding, plain PLM).

        Returns:
            ``(N, 256, D)`` tokens in LLM space.
        """
        if pixel_values.dim() != 4 or pixel_values.shape[1] != 3:
            raise InputError("pixel_values", f"expected (N, 3, H, W), got shape {tuple(pixel_values.shape)}")
        if mask_values is not None and (
            mask_values.shape[0] != pixel_values.shape[0] or mask_values.shape[-2:] != pixel_values.shape[-2:]
        ):
            raise InputError(
                "mask_values",
                f"shape {tuple(mask_values.shape)} does not match pixel_values {tuple(pixel_values.shape)}",
            )
        tower = self.mllm.model.vision_tower
        pixel_values = pixel_values.to(device=self.device, dtype=self.dtype)
        handle = None
        if mask_values is not None:
            mask_embeds = self.mask_embeddings(mask_values).flatten(2).transpose(1, 2)  # (N, P, C)

            def add_mask(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
                return output + mask_embeds.to(output.dtype)

            handle = tower.timm_model.patch_embed.register_forward_hook(add_mask)
        try:
            hidden = tower(pixel_values, do_pooling=False, return_dict=True).last_hidden_state  # (N, 1+P, C)
        finally:
            if handle is not None:
                handle.remove()
        if self.mllm.config.vision_use_cls_token:
            hidden = hidden[:, 1:, :]
        return self.mllm.model.multi_modal_projector(hidden)  # (N, 256, D)

    def encode_image(
        self, pixel_values: torch.Tensor, mask_values: torch.Tensor | None, aspect_ratio: Sequence[int]
    ) -> ImageFeatures:
        """Encode one image (thumbnail + ``ncw × nch`` tiles).

        Args:
            pixel_values: ``(1 + ncw·nch, 3, 448, 448)``.
            mask_values: ``(1 + ncw·nch, 448, 448)`` bool union masks (or ``None``).
            aspect_ratio: ``(ncw, nch)`` tiles across and down.
        """
        ncw, nch = int(aspect_ratio[0]), int(aspect_ratio[1])
        if pixel_values.shape[0] != 1 + ncw * nch:
            raise InputError(
                "pixel_values", f"{pixel_values.shape[0]} tiles for a {ncw}x{nch} grid plus the thumbnail"
            )
        tokens = self.image_features(pixel_values, mask_values)
        return ImageFeatures(tokens=tokens, feature_map=merge_tiles(tokens[1:], ncw, nch))

    def encode_frames(self, pixel_values: torch.Tensor, mask_values: torch.Tensor | None) -> FrameFeatures:
        """Encode T frames, one 448×448 tile each, with each frame's union mask (official video branch).

        Args:
            pixel_values: ``(T, 3, 448, 448)``.
            mask_values: ``(T, 448, 448)`` bool union of the objects' masks on each frame (or ``None``).
        """
        tokens = self.image_features(pixel_values, mask_values)  # (T, 256, D)
        side = _square_side(tokens.shape[1])
        maps = tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], side, side)
        return FrameFeatures(tokens=tokens, maps=maps)

    # -- prompt embedding --------------------------------------------------------------------------------
    def embed_prompt(
        self,
        input_ids: torch.Tensor,
        image_tokens: torch.Tensor | None = None,
        region_tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Token ids → ``inputs_embeds`` with image and region tokens spliced in.

        Args:
            input_ids: ``(1, L)`` or ``(L,)`` token ids with ``<|image|>`` and region placeholders.
            image_tokens: ``(..., D)`` global tokens, filling the ``<|image|>`` positions in order (their count
                must equal the number of ``<|image|>`` tokens).
            region_tokens: ``(R, 256, D)`` replayed regions, filling the runs of 256 region placeholders in
                order of appearance (a run of 256·k equal placeholders takes k regions).

        Returns:
            ``(1, L, D)`` embeddings in the model dtype.
        """
        ids = input_ids.reshape(-1).to(self.device)
        embeds = self.get_input_embeddings()(ids).clone()  # (L, D)
        dim = embeds.shape[-1]
        image_pos = (ids == IMAGE_TOKEN_ID).nonzero().reshape(-1)
        n_image = 0 if image_tokens is None else image_tokens.numel() // dim
        if image_tokens is not None and image_tokens.shape[-1] != dim:
            raise InputError("image_tokens", f"feature size {image_tokens.shape[-1]} != hidden size {dim}")
        if image_pos.numel() != n_image:
            raise InputError(
                "prompt", f"{image_pos.numel()} <|image|> tokens in the prompt for {n_image} image features"
            )
        if image_tokens is not None and n_image:
            embeds[image_pos] = image_tokens.reshape(-1, dim).to(embeds.dtype)
        starts = region_run_starts(ids)
        n_regions = 0 if region_tokens is None else int(region_tokens.shape[0])
        if region_tokens is not None and tuple(region_tokens.shape[1:]) != (REGION_TOKENS, dim):
            raise InputError(
                "region_tokens", f"expected (R, {REGION_TOKENS}, {dim}), got {tuple(region_tokens.shape)}"
            )
        if len(starts) != n_regions:
            raise InputError(
                "prompt",
                f"{len(starts)} region placeholder runs of {REGION_TOKENS} in the prompt for {n_regions} regions",
            )
        for start, feats in zip(starts, region_tokens if region_tokens is not None else []):
            embeds[start : start + REGION_TOKENS] = feats.to(embeds.dtype)
        return embeds[None]

    # -- language model ----------------------------------------------------------------------------------
    def forward(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        past_key_values: Any = None,
        use_cache: bool = False,
        logits_to_keep: int = 0,
    ) -> Any:
        """Run the LLM on embeddings; returns transformers' causal-LM output (``.logits``, ``.past_key_values``).

        ``logits_to_keep``: logits of only the last that many positions (0: all). A 3000-token prompt's full
        logits over 128262 entries take 1.5 GB in float32, so prefills keep 1.
        """
        if attention_mask is None:
            past = 0 if past_key_values is None else past_key_values.get_seq_length()
            attention_mask = torch.ones(
                inputs_embeds.shape[0],
                past + inputs_embeds.shape[1],
                dtype=torch.long,
                device=inputs_embeds.device,
            )
        return self.mllm(
            inputs_embeds=inputs_embeds.to(self.dtype),
            attention_mask=attention_mask,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **{CACHE_KWARG: past_key_values},
        )

    @torch.no_grad()
    def prefill(self, prefix_embeds: torch.Tensor) -> PrefixCache:
        """Run a shared prompt prefix once; :meth:`generate` with ``prefix=`` reuses its KV cache.

        Args:
            prefix_embeds: ``(1, L, D)`` embeddings of the prefix (e.g. everything up to the question).
        """
        from transformers import DynamicCache

        if prefix_embeds.dim() != 3 or prefix_embeds.shape[0] != 1:
            raise InputError("prefix_embeds", f"expected (1, L, D), got {tuple(prefix_embeds.shape)}")
        cache = DynamicCache(config=text_config(self.mllm.config))
        self.forward(prefix_embeds, past_key_values=cache, use_cache=True, logits_to_keep=1)
        return PrefixCache(embeds=prefix_embeds.to(self.dtype), cache=cache)

    @torch.no_grad()
    def generate(
        self,
        inputs_embeds: torch.Tensor,
        *,
        prefix: PrefixCache | None = None,
        streamer: Any = None,
        **generate_kwargs: Any,
    ) -> torch.Tensor:
        """Decode from embeddings (greedy unless ``do_sample=True`` is passed).

        Args:
            inputs_embeds: ``(1, L, D)``; with ``prefix``, only the part after the prefix.
            prefix: a :class:`PrefixCache` from :meth:`prefill`; its cache is copied, not changed.
            streamer: a transformers streamer (e.g. ``TextIteratorStreamer``) receiving the new tokens.
            **generate_kwargs: passed to transformers' ``generate`` (``max_new_tokens``, ``eos_token_id``, …).

        Returns:
            ``(1, n)`` new token ids.
        """
        if inputs_embeds.dim() != 3 or inputs_embeds.shape[0] != 1:
            raise InputError("inputs_embeds", f"expected (1, L, D), got {tuple(inputs_embeds.shape)}")
        embeds = inputs_embeds.to(device=self.device, dtype=self.dtype)
        kwargs: dict[str, Any] = {"do_sample": False, "num_beams": 1}
        kwargs.update(generate_kwargs)
        if prefix is not None:
            embeds = torch.cat([prefix.embeds.to(embeds.device), embeds], dim=1)
            kwargs[CACHE_KWARG] = copy.deepcopy(prefix.cache)
        attention_mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
        out = self.mllm.generate(
            inputs_embeds=embeds, attention_mask=attention_mask, streamer=streamer, use_cache=True, **kwargs
        )
        sequences = out.sequences if hasattr(out, "sequences") else out
        return sequences

    @torch.no_grad()
    def generate_batch(
        self,
        inputs_embeds: Sequence[torch.Tensor],
        *,
        prefixes: Sequence[PrefixCache | None] | None = None,
        max_new_tokens: int | Sequence[int] = 1024,
        eos_token_id: int | Sequence[int] | None = None,
        on_token: Callable[[int, int, bool], bool | None] | None = None,
    ) -> list[list[int]]:
        """Greedy decoding of several prompts at once; row ``i`` gets the tokens that :meth:`generate` would
        give it alone, up to float rounding (identical tokens unless two logits are within rounding).

        Row ``i`` continues ``prefixes[i]`` (its KV cache is copied into the batch, never changed; ``None``:
        no prefix) with ``inputs_embeds[i]``. Rows are laid out as ``[left pad | prefix | pad | suffix]``:
        the prefixes left-padded to the longest, the suffixes left-padded to the longest, pads masked out of
        attention and skipped by the RoPE positions (row ``i``'s positions are ``0 .. P_i + S_i - 1`` as
        alone). Rows sharing one :class:`PrefixCache` share its padded copy's construction. Each row stops at
        an EOS token (kept, as :meth:`generate` keeps it) or at its own ``max_new_tokens``; finished rows
        leave the batch.

        Args:
            inputs_embeds: per row ``(1, S_i, D)`` with ``S_i >= 1``; with a prefix, only the part after it.
            prefixes: per row a :class:`PrefixCache` from :meth:`prefill`, or ``None``.
            max_new_tokens: one limit for all rows, or one per row.
            eos_token_id: the token id(s) that end a row (``None``: rows run to their limit).
            on_token: ``on_token(row, token_id, last)`` is called with each new token of each row as it is
                chosen (the rows of one step in row order; ``last``: the row ends with this token, at an EOS
                or its limit); returning ``False`` stops the row there (it leaves the batch at once and keeps
                the tokens it has). The hook for per-row streaming, early answers and cancellation.

        Returns:
            Per row, the new token ids.
        """
        from transformers import DynamicCache

        n = len(inputs_embeds)
        prefixes = list(prefixes) if prefixes is not None else [None] * n
        limits = (
            [int(max_new_tokens)] * n if isinstance(max_new_tokens, int) else [int(m) for m in max_new_tokens]
        )
        if len(prefixes) != n or len(limits) != n:
            raise InputError("prefixes", f"{len(prefixes)} prefixes and {len(limits)} limits for {n} rows")
        if n == 0:
            return []
        for e in inputs_embeds:
            if e.dim() != 3 or e.shape[0] != 1 or e.shape[1] < 1:
                raise InputError(
                    "inputs_embeds", f"expected (1, S, D) with S >= 1 per row, got {tuple(e.shape)}"
                )
        if min(limits) < 1:
            raise InputError("max_new_tokens", f"must be >= 1, got {min(limits)}")
        if eos_token_id is None:
            eos: set[int] = set()
        elif isinstance(eos_token_id, int):
            eos = {int(eos_token_id)}
        else:
            eos = {int(t) for t in eos_token_id}
        dev, dt = self.device, self.dtype
        plen = [0 if p is None else p.length for p in prefixes]
        slen = [int(e.shape[1]) for e in inputs_embeds]
        pmax, smax = max(plen), max(slen)

        # The prefixes' KV caches, left-padded to pmax: (n, H_kv, pmax, d) per layer.
        cache = DynamicCache(config=text_config(self.mllm.config))
        if pmax:
            layers = next(p for p in prefixes if p is not None).cache.layers
            for li in range(len(layers)):
                padded: dict[
                    int, tuple[torch.Tensor, torch.Tensor]
                ] = {}  # id(prefix) -> (1, H, pmax, d) K, V
                ks, vs = [], []
                for p in prefixes:
                    if id(p) not in padded:
                        if p is None:
                            ref = layers[li].keys
                            k = v = ref.new_zeros(1, ref.shape[1], pmax, ref.shape[3])
                        else:
                            k, v = p.cache.layers[li].keys, p.cache.layers[li].values  # (1, H, P_i, d)
                            pad = pmax - k.shape[2]
                            if pad:
                                k = torch.cat([k.new_zeros(1, k.shape[1], pad, k.shape[3]), k], dim=2)
                                v = torch.cat([v.new_zeros(1, v.shape[1], pad, v.shape[3]), v], dim=2)
                        padded[id(p)] = (k, v)
                    ks.append(padded[id(p)][0])
                    vs.append(padded[id(p)][1])
                cache.update(torch.cat(ks).to(dev), torch.cat(vs).to(dev), li)

        # Suffixes left-padded to smax; mask and positions skip every pad.
        dim = inputs_embeds[0].shape[-1]
        embeds = torch.zeros(n, smax, dim, device=dev, dtype=dt)  # (n, smax, D)
        mask = torch.zeros(n, pmax + smax, dtype=torch.long, device=dev)  # (n, pmax + smax)
        positions = torch.zeros(n, smax, dtype=torch.long, device=dev)  # (n, smax)
        for i, e in enumerate(inputs_embeds):
            embeds[i, smax - slen[i] :] = e[0].to(device=dev, dtype=dt)
            mask[i, pmax - plen[i] : pmax] = 1
            mask[i, pmax + smax - slen[i] :] = 1
            positions[i, smax - slen[i] :] = torch.arange(plen[i], plen[i] + slen[i], device=dev)
        next_pos = torch.tensor([p + s for p, s in zip(plen, slen)], device=dev)  # (n,)

        cache_kw = _cache_kwarg(self.mllm)  # "cache" (transformers 5) or "past_key_values" (4.x)
        out = self.mllm(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=positions,
            **{cache_kw: cache},
            use_cache=True,
            logits_to_keep=1,
        )
        tokens: list[list[int]] = [[] for _ in range(n)]
        rows = list(range(n))  # batch row -> request index
        while True:
            # Greedy as transformers' generate: argmax of the last position's logits in float32.
            nxt = out.logits[:, -1, :].float().argmax(dim=-1)  # (b,)
            keep = []
            for j, (r, t) in enumerate(zip(rows, nxt.tolist())):
                tokens[r].append(t)
                last = t in eos or len(tokens[r]) >= limits[r]
                if on_token is not None and on_token(r, t, last) is False:
                    last = True
                if not last:
                    keep.append(j)
            if not keep:
                break
            if len(keep) < len(rows):
                idx = torch.tensor(keep, device=dev)
                cache.batch_select_indices(idx)
                mask, next_pos, nxt = mask[idx], next_pos[idx], nxt[idx]
                rows = [rows[j] for j in keep]
            mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
            step = self.get_input_embeddings()(nxt)[:, None]  # (b, 1, D)
            out = self.mllm(
                inputs_embeds=step,
                attention_mask=mask,
                position_ids=next_pos[:, None],
                **{cache_kw: cache},
                use_cache=True,
                logits_to_keep=1,
            )
            next_pos = next_pos + 1
        return tokens


def _cache_kwarg(module: nn.Module) -> str:
    """The KV-cache keyword of ``module.forward``: ``cache`` in transformers 5 (``past_key_values`` deprecated),
    ``past_key_values`` in 4.x."""
    import inspect

    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"


def _square_side(n: int) -> int:
    side = round(n**0.5)
    if side * side != n:
        raise InputError("features", f"{n} tokens per tile is not a square")
    return side


def merge_tiles(tiles: torch.Tensor, ncw: int, nch: int) -> torch.Tensor:
    """Stitch per-tile tokens into one feature map (``modeling_gar.py:GARModel._merge``).

    Args:
        tiles: ``(ncw·nch, 256, D)`` high-res tile tokens, row-major (tile ``r·ncw + c`` at row r, column c).
        ncw: tiles across; nch: tiles down.

    Returns:
        ``(1, D, 16·nch, 16·ncw)``.
    """
    n, t, d = tiles.shape
    if n != ncw * nch:
        raise InputError("tiles", f"{n} tiles for a {ncw}x{nch} grid")
    side = _square_side(t)
    grid = tiles.reshape(nch, ncw, side, side, d)  # (nch, ncw, h, w, D)
    return grid.permute(4, 0, 2, 1, 3).reshape(1, d, nch * side, ncw * side)


def region_run_starts(input_ids: torch.Tensor) -> list[int]:
    """Start positions of the 256-token region placeholder runs, in order of appearance.

    A maximal run of one placeholder id must have a length that is a multiple of 256; it holds
    ``length / 256`` regions (consecutive frames of one object in a video prompt).
    """
    ids = input_ids.reshape(-1).tolist()
    region_ids = set(REGION_TOKEN_IDS)
    starts: list[int] = []
    i = 0
    while i < len(ids):
        if ids[i] in region_ids:
            j = i
            while j < len(ids) and ids[j] == ids[i]:
                j += 1
            length = j - i
            if length % REGION_TOKENS:
                raise InputError(
                    "prompt",
                    f"a run of {length} region placeholders (id {ids[i]}) at {i} is not a multiple of {REGION_TOKENS}",
                )
            starts.extend(range(i, j, REGION_TOKENS))
            i = j
        else:
            i += 1
    return starts


def roi_boxes(
    boxes: torch.Tensor, feat_h: int, feat_w: int, roi_mode: RoiMode = "official"
) -> tuple[list[list[float]], float]:
    """The boxes and ``spatial_scale`` that the replay passes to roi_align, in double precision.

    Args:
        boxes: ``(N, 4)`` normalised ``(x0, y0, x1, y1)`` as the official code builds them
            (``x_min/W, y_min/H, x_max/W, y_max/H``, max inclusive).
        feat_h, feat_w: size of the feature map (16·nch, 16·ncw; 16×16 for a frame).
        roi_mode: ``"official"`` (feature-map box, then ``spatial_scale = 1/28`` again) or ``"corrected"``
            (canvas-pixel box, ``spatial_scale = 1/28`` once).

    Returns:
        (list of ``[x0, y0, x1, y1]`` for roi_align, spatial_scale).
    """
    if roi_mode not in ROI_MODES:
        raise InputError("roi_mode", f"must be one of {ROI_MODES}, got {roi_mode!r}")
    orig_h, orig_w = feat_h * FEAT_STRIDE, feat_w * FEAT_STRIDE
    spatial_scale = feat_w / orig_w  # 1/28, computed as the official code does
    out = []
    for x1, y1, x2, y2 in boxes.tolist():
        canvas = [x1 * orig_w, y1 * orig_h, x2 * orig_w, y2 * orig_h]  # box in canvas pixels
        if roi_mode == "official":
            out.append([c * spatial_scale for c in canvas])  # box in feature cells, scaled again by roi_align
        else:
            out.append(canvas)
    return out, spatial_scale


def replay_regions(
    feature_maps: torch.Tensor,
    boxes: torch.Tensor | Sequence[Sequence[float]],
    frame_index: torch.Tensor | Sequence[int] | None = None,
    roi_mode: RoiMode = "official",
) -> torch.Tensor:
    """RoI-aligned feature replay: 256 tokens per box from the feature map of its frame.

    Args:
        feature_maps: ``(T, D, h, w)`` feature maps (an image: its stitched ``(1, D, 16·nch, 16·ncw)`` map;
            a video: :attr:`FrameFeatures.maps`).
        boxes: ``(N, 4)`` normalised boxes ``(x_min/W, y_min/H, x_max/W, y_max/H)`` (see
            :func:`garvideo.model.processing.mask_box`).
        frame_index: ``(N,)`` index into ``feature_maps`` of each box (default: all 0).
        roi_mode: ``"official"`` (default, the released checkpoints' double scaling) or ``"corrected"``.

    Returns:
        ``(N, 256, D)`` in the dtype of ``feature_maps`` (roi_align runs in float32, as officially).
    """
    if feature_maps.dim() != 4:
        raise InputError("feature_maps", f"expected (T, D, h, w), got shape {tuple(feature_maps.shape)}")
    boxes_t = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4)
    n = boxes_t.shape[0]
    if frame_index is None:
        idx = torch.zeros(n, dtype=torch.long)
    else:
        idx = torch.as_tensor(frame_index, dtype=torch.long).reshape(-1)
    if idx.numel() != n:
        raise InputError("frame_index", f"{idx.numel()} frame indices for {n} boxes")
    t = feature_maps.shape[0]
    if n and (int(idx.min()) < 0 or int(idx.max()) >= t):
        raise InputError("frame_index", f"frame indices must lie in [0, {t})")
    if n and not torch.isfinite(boxes_t).all():
        raise InputError("boxes", "boxes must be finite")
    d, feat_h, feat_w = feature_maps.shape[1:]
    if n == 0:
        return feature_maps.new_zeros((0, ROI_OUTPUT[0] * ROI_OUTPUT[1], d))
    rois, scale = roi_boxes(boxes_t, feat_h, feat_w, roi_mode)
    rois_t = torch.tensor(
        [[float(i)] + r for i, r in zip(idx.tolist(), rois)], dtype=torch.float32, device=feature_maps.device
    )  # (N, 5) = (frame, x0, y0, x1, y1), float32 as the official torch.tensor(...)
    pooled = torchvision.ops.roi_align(
        feature_maps.float(),
        rois_t,
        output_size=ROI_OUTPUT,
        spatial_scale=scale,
        sampling_ratio=ROI_SAMPLING_RATIO,
        aligned=True,
    )  # (N, D, 16, 16)
    return pooled.permute(0, 2, 3, 1).flatten(1, 2).to(feature_maps.dtype)  # (N, 256, D)


def num_image_tokens(num_tiles: int) -> int:
    """``<|image|>`` tokens for ``num_tiles`` tiles (256 each)."""
    return TOKENS_PER_TILE * num_tiles
