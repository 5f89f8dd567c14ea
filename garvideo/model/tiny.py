"""A tiny, randomly initialised GAR in the official on-disk layout, for tests and smoke runs.

Same architecture and geometry as GAR-1B (PE ViT with 14-pixel patches on 448×448 tiles, cls token,
projector with 2×2 pooling → 256 tokens per tile, Llama with tied embeddings and the Llama-3 rope, the
full 128262-entry vocabulary so every special token id is real), only narrow and shallow. The tokenizer is
built locally with ``tokenizers``: byte-level pieces, filler entries up to id 127999, then the Llama-3
special tokens at their real ids (``<|begin_of_text|>`` 128000, ``<|image|>`` 128002,
``<|start_header_id|>`` 128006, ``<|eot_id|>`` 128009, ``<|reserved_special_token_k|>`` …) and GAR's
``<Prompt0..4>``, ``<NO_Prompt>`` from 128256. :func:`garvideo.model.loading.load_gar` loads it exactly
like a real checkpoint.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Union

import torch

from garvideo.model.configuration import RANDOM_INIT_KEY, GarConfig, gar_config_dict
from garvideo.model.prompts import VISUAL_PROMPT_TOKENS

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

LLAMA3_VOCAB = 128000  # regular tokens before the special ones
LLAMA3_SPECIAL = 256  # 128000 … 128255
_BYTE_PIECES = 512  # the byte alphabet and the few merges of the tiny tokenizer come first (ids < 512)


def llama3_special_tokens() -> list[str]:
    """The 256 special tokens of PerceptionLM's Llama-3 tokenizer, in id order from 128000.

    (transformers ``perception_lm/convert_perception_lm_weights_to_hf.py``: ``DEFAULT_SPECIAL_TOKENS``.)
    """
    tokens = [
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|image|>",
        "<|video|>",
        "<|reserved_special_token_2|>",
        "<|reserved_special_token_3|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|reserved_special_token_4|>",
        "<|eot_id|>",
    ] + [f"<|reserved_special_token_{i}|>" for i in range(5, 256 - 5)]
    assert len(tokens) == LLAMA3_SPECIAL
    return tokens


def build_tiny_tokenizer() -> Any:
    """A byte-level tokenizer with the real special-token ids (no download)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    # Merges for a few frequent pieces keep prompts short; fillers take the remaining ids (never produced).
    merges: list[tuple[str, str]] = []
    for word in ("the", "Ġthe", "in", "Ġa", "re", "on", "er", "an", "Ġo", "Ġi"):
        pieces = list(word) if not word.startswith("Ġ") else ["Ġ"] + list(word[1:])
        cur = pieces[0]
        for nxt in pieces[1:]:
            merged = cur + nxt
            if merged not in vocab:
                merges.append((cur, nxt))
                vocab[merged] = len(vocab)
            cur = merged
    i = 0
    while len(vocab) < LLAMA3_VOCAB:
        vocab[f"tok{i}"] = len(vocab)
        i += 1
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in llama3_special_tokens()])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in VISUAL_PROMPT_TOKENS])
    # PerceptionLM's post-processor prepends <|begin_of_text|> (Llama3Converter.update_post_processor).
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single="<|begin_of_text|> $A",
                pair="<|begin_of_text|>:0 $A:0 <|begin_of_text|>:1 $B:1",
                special_tokens=[("<|begin_of_text|>", LLAMA3_VOCAB)],
            ),
        ]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|end_of_text|>",
        model_max_length=11520,
        clean_up_tokenization_spaces=False,
    )
    return fast


def tiny_config_dict(
    *, vocab_size: int = LLAMA3_VOCAB + LLAMA3_SPECIAL + len(VISUAL_PROMPT_TOKENS)
) -> dict[str, Any]:
    """The official ``config.json`` layout (GARConfig around a PerceptionLM config) with tiny sizes."""
    return gar_config_dict(
        vision_width=64,
        vision_depth=2,
        vision_heads=2,
        hidden_size=32,
        intermediate_size=64,
        num_layers=2,
        num_heads=2,
        num_kv_heads=1,
        head_dim=16,
        vocab_size=vocab_size,
    )


def make_tiny_model(out_dir: PathLike, seed: int = 0, *, max_num_tiles: int = 4) -> Path:
    """Write a tiny random GAR (a few MB) to ``out_dir`` in the official layout; returns the folder.

    Args:
        out_dir: folder to create (or overwrite the model files in).
        seed: random seed of the weights (same seed → same files' tensors).
        max_num_tiles: the processor's tile limit (small keeps tests fast).

    The mask patch embedding gets small random weights (not zeros), so that masks change the outputs of
    the tiny model as they do in a trained one.
    """
    from garvideo.model.loading import build_model, save_model
    from garvideo.model.processing import GarProcessor, PerceptionLMImageProcessor

    out = Path(out_dir)
    config_dict = tiny_config_dict()
    config_dict[RANDOM_INIT_KEY] = True  # the marker tools and the web demo read (GarBundle.random_weights)
    config = GarConfig.from_dict(config_dict)
    with torch.random.fork_rng(devices=[]):  # transformers' own initialisation draws from the global RNG
        model = build_model(config)
    with torch.no_grad():
        _seeded_init(model, int(seed))
        # With tied embeddings, greedy decoding of a random model tends to pick whitespace or special
        # tokens, which decode to an empty string. Shrinking those rows makes the tiny model emit
        # visible (meaningless) text, so smoke runs and demos show that generation happened.
        emb = model.get_input_embeddings().weight  # (vocab, D)
        emb[:_BYTE_PIECES].mul_(0.01)
        emb[LLAMA3_VOCAB:].mul_(0.01)
    model = model.to(torch.bfloat16)
    model.tie_weights()
    image_processor = PerceptionLMImageProcessor(
        vision_input_type="thumb+tile",
        tile_size=448,
        max_num_tiles=int(max_num_tiles),
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    processor = GarProcessor(image_processor, build_tiny_tokenizer())
    save_model(model, processor, out)
    logger.info("wrote a tiny GAR to %s", out)
    return out


def _seeded_init(model: torch.nn.Module, seed: int) -> None:
    """Give every parameter values drawn from ``seed`` alone, by name, in sorted order.

    transformers' own initialisation differs between releases (4.56 and 5.x give different tensors for
    the same seed), so the tiny model would too, and the golden values made with the official code
    (``tests/golden``) would only hold under one of them. The scheme follows what they both do: LayerNorm
    and RMSNorm weights 1, biases 0, PE's layer-scale ``gamma_*`` 0.1, every other tensor (matrices,
    convolutions, the class token, position and token embeddings, the mask patch embedding)
    N(0, 0.02^2). Tied weights (the LM head) are drawn once.
    """
    gen = torch.Generator().manual_seed(seed)
    for name, p in sorted(model.named_parameters()):
        leaf = name.rsplit(".", 1)[-1]
        if leaf.startswith("gamma_"):
            p.fill_(0.1)
        elif leaf == "bias":
            p.zero_()
        elif p.dim() == 1:
            p.fill_(1.0)
        else:
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32).mul_(0.02).to(p.dtype))


def lively_bundle(bundle: Any, scale: float = 16.0) -> Any:
    """A copy of a tiny :class:`~garvideo.model.GarBundle` with its LLM's matrices scaled by ``scale``.

    The plain tiny model repeats one token, which would hide a wrong position or mask in decoding; scaled,
    its greedy text varies from token to token. For tests and benchmarks that compare decoding paths.
    """
    import copy
    import dataclasses

    model = copy.deepcopy(bundle.model)
    with torch.no_grad():
        for name, p in model.mllm.model.language_model.named_parameters():
            if p.dim() == 2 and "embed" not in name:
                p.mul_(scale)
    return dataclasses.replace(bundle, model=model)
