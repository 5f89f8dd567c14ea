"""Loading GAR checkpoints (official layout) and the bundle the rest of garvideo uses.

A model folder in the official layout holds ``config.json`` (a GARConfig), ``model.safetensors`` or
``model-0000k-of-0000n.safetensors`` shards with ``model.safetensors.index.json``, the tokenizer files and
``preprocessor_config.json``. garvideo reads them without ``trust_remote_code``: its own classes use the
official state-dict keys (``mllm.*``, ``mask_patch_embedding.weight``) and loading fails loudly on
missing or unexpected keys. The tiny test model (:func:`garvideo.model.tiny.make_tiny_model`) is loaded by
exactly this code.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import torch

from garvideo.errors import InputError, ModelUnavailableError
from garvideo.model.configuration import DEFAULT_MODEL, GAR_1B_HUB_ID, GAR_8B_HUB_ID, GarConfig
from garvideo.model.modeling import (
    FrameFeatures,
    GarModel,
    PrefixCache,
    RoiMode,
    _parameters_on_meta,
    replay_regions,
)
from garvideo.model.processing import FrameInputs, GarProcessor, ImageInputs
from garvideo.model.prompts import (
    MAX_REGIONS,
    build_image_prompt,
    clean_answer,
    format_multiple_choice,
)

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
#: Environment variable naming the default model (hub id or folder).
MODEL_ENV = "GARVIDEO_MODEL"
WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


# -- resolving where the weights are ------------------------------------------------------------------------
def _how_to_get_weights(name: str) -> str:
    return (
        f"GAR weights for {name!r} are not available offline. Download them once while online with "
        f"`hf download {name}` (released: {GAR_1B_HUB_ID}, {GAR_8B_HUB_ID}), or download the "
        f"folder elsewhere and pass it with --model DIR (or set {MODEL_ENV}=DIR). For a quick smoke test "
        "without weights: `garvideo make-tiny-model DIR` then --model DIR"
    )


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/", "~"))


def resolve_model_dir(model: PathLike | None = None) -> tuple[Path, str]:
    """Find the local folder of a model: an existing folder, or a hub id (cache first, then download).

    Args:
        model: a folder or a hub id; default: ``$GARVIDEO_MODEL`` or ``HaochenWang/GAR-1B``.

    Returns:
        (folder, resolved name).

    Raises:
        ModelUnavailableError: a hub id that is neither cached nor downloadable (offline).
        InputError: a path that does not exist and is not a hub id.
    """
    name = os.fspath(model) if model is not None else os.environ.get(MODEL_ENV) or DEFAULT_MODEL
    path = Path(name).expanduser()
    if path.is_dir():
        return path, str(path)
    if not _looks_like_hub_id(name):
        raise InputError(name, "no such model folder (and not a hub id like HaochenWang/GAR-1B)")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - transformers depends on huggingface_hub
        raise ModelUnavailableError(_how_to_get_weights(name)) from exc
    patterns = ["*.json", "*.safetensors", "tokenizer*", "*.txt", "*.model"]
    try:
        folder = snapshot_download(repo_id=name, allow_patterns=patterns, local_files_only=True)
        return Path(folder), name
    except Exception as exc:  # noqa: BLE001 - not cached: try the network below
        logger.debug("%s not in the local cache (%s); trying the hub", name, type(exc).__name__)
    from garvideo.hub import hub_offline, hub_unreachable

    unreachable = "offline (HF_HUB_OFFLINE)" if hub_offline() else hub_unreachable()
    if unreachable is not None:
        raise ModelUnavailableError(f"{_how_to_get_weights(name)} ({unreachable})")
    try:
        folder = snapshot_download(repo_id=name, allow_patterns=patterns)
    except Exception as exc:
        raise ModelUnavailableError(f"{_how_to_get_weights(name)} ({type(exc).__name__})") from exc
    return Path(folder), name


#: ``--dtype`` values besides the names in ``_DTYPES``.
DTYPE_AUTO = "auto"
#: Environment variable naming the default dtype (``auto`` when unset; the test suite pins float32).
DTYPE_ENV = "GARVIDEO_DTYPE"
#: /proc/cpuinfo flags of native bf16 arithmetic: x86 AVX512-BF16 and AMX-BF16, Arm's BF16 extension.
_CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU computes bf16 natively (``avx512_bf16`` or ``amx_bf16`` on x86, ``bf16`` on Arm), read
    from ``/proc/cpuinfo`` (``cpuinfo``: its text, for tests); ``False`` where it cannot be read."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features") and _CPU_BF16_FLAGS & set(value.split()):
            return True
    return False


def auto_dtype(device: torch.device) -> tuple[torch.dtype, str]:
    """What ``--dtype auto`` picks on ``device``, and why.

    bf16 on CUDA when the GPU supports it; on CPU, bf16 when the CPU has native bf16 arithmetic (on an
    AVX512-BF16/AMX CPU, ``bench/model.py`` measured the vision tower 1.98x and prefill 1.77x faster in bf16,
    ``bench/dtype_llm.py`` prefill 1.48x and decode 1.60x; README "Measured"), float32 otherwise (bf16
    without hardware support is emulated and slower).
    """
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, "CUDA with bf16"
        return torch.float32, "CUDA without bf16 support"
    if device.type == "cpu":
        if cpu_has_native_bf16():
            return torch.bfloat16, "CPU with native bf16 (avx512_bf16/amx_bf16)"
        return torch.float32, "CPU without native bf16"
    return torch.float32, f"{device.type} device"


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """The model dtype for ``dtype`` on ``device``.

    ``None``: ``$GARVIDEO_DTYPE`` when set, else ``"auto"``. ``"auto"``: :func:`auto_dtype` (bf16 on CUDA and on
    CPUs with native bf16, else float32; the choice is logged). Otherwise a torch dtype or one of
    ``float32``/``fp32``/``bfloat16``/``bf16``/``float16``/``fp16``.
    """
    source = "dtype"
    if dtype is None:
        env = os.environ.get(DTYPE_ENV)
        dtype, source = (env, DTYPE_ENV) if env else (DTYPE_AUTO, source)
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == DTYPE_AUTO:
        chosen, why = auto_dtype(device)
        logger.info("--dtype auto: %s (%s)", str(chosen).replace("torch.", ""), why)
        return chosen
    if dtype not in _DTYPES:
        raise InputError(source, f"must be auto or one of {sorted(_DTYPES)}, got {dtype!r}")
    return _DTYPES[dtype]


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError("device", f"bad device {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device", "CUDA requested but not available")
    return dev


# -- weights --------------------------------------------------------------------------------------------------
def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a model folder (single file or shards from the index)."""
    index = folder / WEIGHTS_INDEX_NAME
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (OSError, KeyError, json.JSONDecodeError) as exc:
            raise InputError(index, f"bad weights index: {exc}") from exc
        files = [folder / f for f in sorted(set(weight_map.values()))]
    elif (folder / WEIGHTS_NAME).is_file():
        files = [folder / WEIGHTS_NAME]
    else:
        raise InputError(folder, f"no {WEIGHTS_NAME} or {WEIGHTS_INDEX_NAME} in the model folder")
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise InputError(folder, f"missing weight shards: {', '.join(missing)}")
    return files


def read_state_dict(folder: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """All tensors of a model folder's safetensors files."""
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for path in weight_files(folder):
        try:
            state.update(load_file(str(path), device=str(device)))
        except Exception as exc:  # noqa: BLE001 - SafetensorError (cut or not safetensors), OSError
            detail = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise InputError(path, f"unreadable safetensors file, truncated or corrupt ({detail})") from None
    return state


def load_state_dict_strict(model: GarModel, state: dict[str, torch.Tensor], *, source: PathLike) -> None:
    """Assign checkpoint tensors to ``model``; fail on missing, unexpected or mis-shaped keys.

    With tied word embeddings, either ``mllm.lm_head.weight`` or the input embedding may be absent.
    """
    expected = model.state_dict()
    embed_key = "mllm.model.language_model.embed_tokens.weight"
    head_key = "mllm.lm_head.weight"
    state = dict(state)
    if model.tied_embeddings:
        if head_key not in state and embed_key in state:
            state[head_key] = state[embed_key]
        if embed_key not in state and head_key in state:
            state[embed_key] = state[head_key]
        if (
            head_key in state
            and embed_key in state
            and state[head_key] is not state[embed_key]
            and state[head_key].shape == state[embed_key].shape
            and not torch.equal(state[head_key], state[embed_key])
        ):
            # transformers 4.56 would share one tensor here too; a checkpoint with two different tensors and
            # a tying text config is inconsistent, and its lm_head is dropped.
            logger.warning(
                "%s: the text config ties the LM head to the input embedding, but the checkpoint's "
                "%s differs from %s; using the embedding for both",
                source,
                head_key,
                embed_key,
            )
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        raise InputError(source, "checkpoint does not match the GAR architecture: " + "; ".join(parts))
    bad = [k for k in expected if tuple(expected[k].shape) != tuple(state[k].shape)]
    if bad:
        k = bad[0]
        raise InputError(
            source,
            f"{len(bad)} tensors have the wrong shape (e.g. {k}: {tuple(state[k].shape)} in the checkpoint, "
            f"{tuple(expected[k].shape)} expected)",
        )
    model.load_state_dict(state, strict=True, assign=True)
    model.tie_weights()


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Construct modules with ``dtype`` as torch's default dtype (restored afterwards)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


#: dtype of the buffers computed at construction (timm's PE rope table, Llama's ``inv_freq``).
BUFFER_DTYPE = torch.float32


def build_model(config: GarConfig, *, empty: bool = False, dtype: torch.dtype = torch.float32) -> GarModel:
    """Construct a :class:`GarModel`.

    Args:
        config: the GAR configuration.
        empty: leave the parameters on the meta device (loading assigns the checkpoint's tensors, which
            fixes their dtype); the non-persistent buffers are computed for real, in float32. That is the
            official dtype: transformers 4.56's ``from_pretrained(torch_dtype=bf16)`` only sets the default
            dtype while constructing (no blanket cast), timm 1.0.19's ``RotaryEmbeddingCat`` builds its
            sin/cos table with ``build_rotary_pos_embed(dtype=torch.float32)`` whatever the default
            (``timm/layers/pos_embed_sincos.py``), and Llama's ``inv_freq`` is float32 explicitly. The
            installed timm builds the table in the *default* dtype, hence float32 here. The PE attention
            applies the rope in float32 and casts back (``eva.py``: ``apply_rot_embed_cat(...).type_as(v)``).
        dtype: parameter dtype when ``empty`` is False (the tiny model, tests).
    """
    if empty:
        with _default_dtype(BUFFER_DTYPE), _parameters_on_meta():
            return GarModel(config)
    with _default_dtype(dtype):
        return GarModel(config)


def load_model(folder: PathLike, *, dtype: torch.dtype, device: torch.device) -> GarModel:
    """Load :class:`GarModel` from a model folder (the one code path for real and tiny checkpoints)."""
    folder = Path(folder)
    config = GarConfig.from_pretrained(folder)
    model = build_model(config, empty=True, dtype=dtype)
    state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in read_state_dict(folder).items()}
    load_state_dict_strict(model, state, source=folder)
    del state
    model = model.to(device=device)  # parameters are already in dtype; buffers keep theirs
    model.tie_weights()
    model.eval()
    meta = [n for n, p in model.named_parameters() if p.device.type == "meta"]
    if meta:  # pragma: no cover - load_state_dict_strict already checked the keys
        raise InputError(folder, f"parameters left unloaded: {', '.join(meta[:3])}")
    return model


def save_model(model: GarModel, processor: GarProcessor | None, folder: PathLike) -> Path:
    """Write a model folder in the official layout (config, safetensors, tokenizer, preprocessor config)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(folder)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if model.tied_embeddings:
        state.pop("mllm.lm_head.weight", None)  # shared with the input embedding, stored once
    save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
    if processor is not None:
        processor.save_pretrained(folder)
    return folder


# -- results --------------------------------------------------------------------------------------------------
@dataclass
class GenerationResult:
    """Generated text with its token ids and timing."""

    text: str
    token_ids: list[int]
    seconds: float

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


@dataclass
class RegionDescription:
    """Result of :meth:`GarBundle.describe`."""

    text: str
    num_regions: int
    present: list[bool]
    token_ids: list[int] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class RegionAnswer:
    """Result of :meth:`GarBundle.ask`; ``choice`` is the option letter when options were given."""

    text: str
    question: str
    options: list[str] | None
    choice: str | None
    present: list[bool]
    token_ids: list[int] = field(default_factory=list)
    seconds: float = 0.0


def parse_choice(text: str, num_options: int) -> str | None:
    """The option letter at the start of an answer (``"B"``, ``"(B) …"``, ``"B."``), or ``None``."""
    import re

    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:num_options]
    m = re.match(r"^\s*\(?([A-Za-z])(?:\)|\.|:|\s|$)", text)
    if m and m.group(1).upper() in letters:
        return m.group(1).upper()
    return None


# -- the bundle -----------------------------------------------------------------------------------------------
@dataclass
class GarBundle:
    """A loaded GAR: model, processor, tokenizer and the resolved name; the image API and the pieces the
    video pipeline needs.

    Attributes:
        model: the :class:`GarModel` (eval mode).
        processor: the :class:`GarProcessor`.
        name: the resolved model name (hub id or folder).
        folder: the local folder the weights came from.
    """

    model: GarModel
    processor: GarProcessor
    name: str
    folder: Path

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def random_weights(self) -> bool:
        """True when the weights are random (a tiny model from ``make_tiny_model``): the text means nothing."""
        return self.model.config.random_init

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    # -- generation ----------------------------------------------------------------------------------------
    def _generate_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"max_new_tokens": 1024, "eos_token_id": self.processor.eos_token_id}
        if self.processor.pad_token_id is not None:
            out["pad_token_id"] = self.processor.pad_token_id
        out.update(kwargs)
        return out

    def generate(
        self,
        inputs_embeds: torch.Tensor,
        *,
        prefix: PrefixCache | None = None,
        on_text: Callable[[str], None] | None = None,
        streamer: Any = None,
        **generate_kwargs: Any,
    ) -> GenerationResult:
        """Decode from prepared embeddings (greedy by default; generation kwargs passed through).

        Args:
            inputs_embeds: ``(1, L, D)``; with ``prefix``, only the part after the prefix.
            prefix: a :class:`PrefixCache` from :meth:`prefill`, reused without being changed.
            on_text: called with each new piece of decoded text as it is generated.
            streamer: a transformers streamer (e.g. ``TextIteratorStreamer(bundle.tokenizer)``).
            **generate_kwargs: ``max_new_tokens`` (default 1024), ``do_sample``, ``temperature``, …
        """
        if on_text is not None and streamer is None:
            streamer = self.text_streamer(on_text)
        t0 = time.perf_counter()
        with torch.inference_mode():
            ids = self.model.generate(
                inputs_embeds, prefix=prefix, streamer=streamer, **self._generate_kwargs(generate_kwargs)
            )
        seconds = time.perf_counter() - t0
        token_ids = ids.reshape(-1).tolist()
        return GenerationResult(
            text=clean_answer(self.processor.decode(token_ids)), token_ids=token_ids, seconds=seconds
        )

    def prefill(self, prefix_embeds: torch.Tensor) -> PrefixCache:
        """KV cache of a shared prompt prefix (see :meth:`GarModel.prefill`)."""
        with torch.inference_mode():
            return self.model.prefill(prefix_embeds)

    def generate_from(
        self, prefix: PrefixCache, suffix_ids: torch.Tensor, **generate_kwargs: Any
    ) -> GenerationResult:
        """Continue a prefilled prefix with plain-text suffix ids ``(1, S)`` and decode."""
        with torch.inference_mode():
            suffix = self.model.embed_prompt(suffix_ids)
        return self.generate(suffix, prefix=prefix, **generate_kwargs)

    def generate_batch(
        self,
        inputs_embeds: Sequence[torch.Tensor],
        *,
        prefixes: Sequence[PrefixCache | None] | None = None,
        max_new_tokens: int | Sequence[int] = 1024,
        on_token: Callable[[int, int, bool], bool | None] | None = None,
    ) -> list[GenerationResult]:
        """Greedy decoding of several prompts at once (see :meth:`GarModel.generate_batch`).

        Args:
            inputs_embeds: per row ``(1, S_i, D)``; with a prefix, only the part after it.
            prefixes: per row a :class:`PrefixCache` from :meth:`prefill` (shared, not changed) or ``None``.
            max_new_tokens: one limit for all rows, or one per row.
            on_token: ``on_token(row, token_id, last)`` for each new token; ``False`` stops that row
                (:meth:`GarModel.generate_batch`).

        Returns:
            One :class:`GenerationResult` per row, in order (``seconds`` is the whole batch's).
        """
        t0 = time.perf_counter()
        with torch.inference_mode():
            rows = self.model.generate_batch(
                inputs_embeds,
                prefixes=prefixes,
                max_new_tokens=max_new_tokens,
                eos_token_id=self.processor.eos_token_id,
                on_token=on_token,
            )
        seconds = time.perf_counter() - t0
        return [self.generation_result(ids, seconds) for ids in rows]

    def generation_result(self, token_ids: Sequence[int], seconds: float) -> GenerationResult:
        """A row's :class:`GenerationResult`: its new token ids decoded into the answer text."""
        ids = [int(t) for t in token_ids]
        return GenerationResult(text=clean_answer(self.processor.decode(ids)), token_ids=ids, seconds=seconds)

    def text_streamer(self, on_text: Callable[[str], None]) -> Any:
        """A streamer (``put(ids)``, ``end()``) calling ``on_text`` with each new piece of decoded text, as
        :meth:`generate` streams with ``on_text=``."""
        return _CallbackStreamer(self.tokenizer, on_text)

    def generate_from_batch(
        self,
        prefixes: Sequence[PrefixCache | None],
        suffix_ids: Sequence[torch.Tensor],
        *,
        max_new_tokens: int | Sequence[int] = 1024,
        on_token: Callable[[int, int, bool], bool | None] | None = None,
    ) -> list[GenerationResult]:
        """:meth:`generate_batch` where row ``i`` continues ``prefixes[i]`` with plain-text ids ``suffix_ids[i]``
        ``(1, S_i)``."""
        with torch.inference_mode():
            suffixes = [self.model.embed_prompt(ids) for ids in suffix_ids]
        return self.generate_batch(
            suffixes, prefixes=prefixes, max_new_tokens=max_new_tokens, on_token=on_token
        )

    # -- pieces for the video pipeline ------------------------------------------------------------------
    def preprocess_frames(
        self, frames: Sequence[Any], union_masks: Sequence[Any] | None = None
    ) -> FrameInputs:
        return self.processor.preprocess_frames(frames, union_masks)

    def encode_frames(self, frames: Sequence[Any], union_masks: Sequence[Any] | None = None) -> FrameFeatures:
        """Encode T RGB frames (one 448×448 tile each) with each frame's union mask."""
        inputs = self.processor.preprocess_frames(frames, union_masks)
        with torch.inference_mode():
            return self.model.encode_frames(inputs.pixel_values, inputs.mask_values)

    def replay_regions(
        self,
        feature_maps: torch.Tensor,
        boxes: Any,
        frame_index: Any = None,
        roi_mode: RoiMode = "official",
    ) -> torch.Tensor:
        """See :func:`garvideo.model.modeling.replay_regions`."""
        return replay_regions(feature_maps, boxes, frame_index, roi_mode)

    def embed_prompt(
        self,
        input_ids: torch.Tensor,
        image_tokens: torch.Tensor | None = None,
        region_tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """See :meth:`GarModel.embed_prompt`."""
        with torch.inference_mode():
            return self.model.embed_prompt(input_ids, image_tokens, region_tokens)

    def tokenize(self, text: str) -> torch.Tensor:
        return self.processor.tokenize(text)

    # -- image API -----------------------------------------------------------------------------------------
    def prepare_image(
        self, image: Any, masks: Sequence[Any], question: str | None = None, *, roi_mode: RoiMode = "official"
    ) -> tuple[torch.Tensor, ImageInputs]:
        """Prompt embeddings ``(1, L, D)`` for one image, its region masks and an optional question."""
        inputs = self.processor.preprocess_image(image, masks)
        prompt = build_image_prompt(inputs.num_tiles, len(inputs.boxes), question, inputs.present)
        input_ids = self.processor.tokenize(prompt)
        with torch.inference_mode():
            feats = self.model.encode_image(inputs.pixel_values, inputs.mask_values, inputs.aspect_ratio)
            boxes = [b for b in inputs.boxes if b is not None]
            regions = replay_regions(feats.feature_map, boxes, None, roi_mode) if boxes else None
            embeds = self.model.embed_prompt(input_ids, feats.tokens, regions)
        return embeds, inputs

    def describe(
        self,
        image: Any,
        masks: Any | Sequence[Any],
        *,
        roi_mode: RoiMode = "official",
        **generate_kwargs: Any,
    ) -> RegionDescription:
        """Describe 1 to 5 regions of an image (one mask: the official caption prompt with ``<Prompt1>``).

        Args:
            image: ``(H, W, 3)`` uint8 RGB array or PIL image.
            masks: one ``(H, W)`` binary mask or a list of 1 to 5.
            roi_mode: ``"official"`` (default) or ``"corrected"`` RoI replay.
            **generate_kwargs: passed to generation (greedy by default).
        """
        masks = _as_mask_list(masks)
        embeds, inputs = self.prepare_image(image, masks, None, roi_mode=roi_mode)
        res = self.generate(embeds, **generate_kwargs)
        return RegionDescription(res.text, len(masks), inputs.present, res.token_ids, res.seconds)

    def ask(
        self,
        image: Any,
        masks: Any | Sequence[Any],
        question: str,
        options: Sequence[str] | None = None,
        *,
        roi_mode: RoiMode = "official",
        **generate_kwargs: Any,
    ) -> RegionAnswer:
        """Ask a question about 1 to 5 regions; with ``options``, a multiple-choice question.

        Refer to regions as ``<Prompt0>``, ``<Prompt1>``, … (GAR-Bench convention: a single region is
        ``<Prompt0>``, crop token 128004; :meth:`describe` uses the caption convention, ``<Prompt1>``).
        """
        if not isinstance(question, str) or not question.strip():
            raise InputError("question", "empty question")
        masks = _as_mask_list(masks)
        text = format_multiple_choice(question, options) if options is not None else question
        embeds, inputs = self.prepare_image(image, masks, text, roi_mode=roi_mode)
        res = self.generate(embeds, **generate_kwargs)
        choice = parse_choice(res.text, len(options)) if options is not None else None
        return RegionAnswer(
            res.text,
            question,
            list(options) if options is not None else None,
            choice,
            inputs.present,
            res.token_ids,
            res.seconds,
        )


def _as_mask_list(masks: Any) -> list[Any]:
    import numpy as np

    if isinstance(masks, np.ndarray) and masks.ndim == 2:
        return [masks]
    if hasattr(masks, "convert"):  # one PIL image
        return [masks]
    masks = list(masks)
    if not 1 <= len(masks) <= MAX_REGIONS:
        raise InputError("masks", f"expected 1 to {MAX_REGIONS} region masks, got {len(masks)}")
    return masks


class _CallbackStreamer:
    """A minimal transformers streamer that decodes new tokens and calls ``on_text`` with each new piece."""

    def __init__(self, tokenizer: Any, on_text: Callable[[str], None]) -> None:
        self.tokenizer = tokenizer
        self.on_text = on_text
        self.ids: list[int] = []
        self.sent = ""
        self.started = False

    def put(self, value: torch.Tensor) -> None:
        if not self.started:  # the first call carries the prompt (empty with inputs_embeds)
            self.started = True
            if value.dim() > 1 and value.shape[-1] != 1:
                return
        self.ids.extend(value.reshape(-1).tolist())
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if len(text) > len(self.sent) and not text.endswith("\ufffd"):
            self.on_text(text[len(self.sent) :])
            self.sent = text

    def end(self) -> None:
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if len(text) > len(self.sent):
            self.on_text(text[len(self.sent) :])
            self.sent = text


def load_gar(
    model: PathLike | None = None,
    *,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
    max_num_tiles: int | None = None,
) -> GarBundle:
    """Load GAR from a hub id or a local folder in the official layout.

    Args:
        model: hub id (``HaochenWang/GAR-1B`` or ``HaochenWang/GAR-8B``) or a folder; default
            ``$GARVIDEO_MODEL`` or ``HaochenWang/GAR-1B``.
        dtype: ``"auto"``/``"bfloat16"``/``"float32"``/torch dtype; default ``$GARVIDEO_DTYPE``, else ``"auto"``
            (bf16 on CUDA and on CPUs with native bf16, else float32: :func:`auto_dtype`).
        device: default CUDA when available, else CPU.
        max_num_tiles: override the processor's tile limit (e.g. to save memory).

    Raises:
        ModelUnavailableError: offline with nothing on disk (the message says how to get the weights).
        InputError: a folder that is not a GAR checkpoint (missing/unexpected keys, bad config).
    """
    folder, name = resolve_model_dir(model)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    t0 = time.perf_counter()
    gar = load_model(folder, dtype=dt, device=dev)
    processor = GarProcessor.from_pretrained(folder, max_num_tiles=max_num_tiles)
    logger.info("loaded %s (%s, %s) in %.1fs", name, dev, dt, time.perf_counter() - t0)
    return GarBundle(model=gar, processor=processor, name=name, folder=folder)
