"""Prompt assembly: a describe / ask request on a prepared clip -> token ids, with the shared prefix marked."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from garvideo.errors import InputError
from garvideo.model.prompts import (
    IMAGE_TOKEN_ID,
    REGION_TOKEN_IDS,
    build_video_prompt,
    format_multiple_choice,
    prompt_indices,
    prompt_token,
    video_region_order,
)
from garvideo.pipeline.prepared import PreparedClip

if TYPE_CHECKING:
    from garvideo.model import GarBundle

__all__ = ["PromptInputs", "build_prompt_inputs", "check_question", "rewrite_object_refs"]

_OBJECT_REF = re.compile(r"<object(\d+)>")


def check_question(question: str | None, options: Sequence[str] | None) -> list[str] | None:
    """Check an ask request (``question=None``: a describe request, no options allowed); the options as strings.

    Raises:
        InputError: an empty question, fewer than 2 options, options without a question.
    """
    if question is None:
        if options is not None:
            raise InputError("options", "options need a question")
        return None
    if not isinstance(question, str) or not question.strip():
        raise InputError("question", "the question is empty")
    if options is None:
        return None
    out = [str(o) for o in options]
    if len(out) < 2:
        raise InputError("options", f"a multiple-choice question needs at least 2 options, got {len(out)}")
    return out


def rewrite_object_refs(question: str, num_objects: int) -> str:
    """Replace ``<objectK>`` in a question by the prompt token of object K (``<PromptK>``; a single object
    asked about is ``<Prompt0>``, as :func:`garvideo.model.prompts.prompt_indices` with ``ask=True`` assigns).

    Raises:
        InputError: a reference to an object that was not given.
    """
    indices = prompt_indices(num_objects, ask=True)

    def sub(m: re.Match[str]) -> str:
        k = int(m.group(1))
        if k >= num_objects:
            raise InputError(
                "question",
                f"refers to <object{k}> but only {num_objects} object(s) were given (<object0>"
                + (f"..<object{num_objects - 1}>)" if num_objects > 1 else ")"),
            )
        return prompt_token(indices[k])

    return _OBJECT_REF.sub(sub, question)


@dataclass
class PromptInputs:
    """The model input of one request (see :meth:`GarVideo.prompt_inputs`).

    Attributes:
        text: the templated prompt text.
        input_ids: ``(1, L)`` token ids.
        prefix_length: tokens up to and including the last image/region placeholder: the part shared by
            every question on the clip.
        region_order: the ``(object, keyframe position)`` of each 256-token region run, in prompt order.
    """

    text: str
    input_ids: torch.Tensor
    prefix_length: int
    region_order: list[tuple[int, int]]

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[1])


def build_prompt_inputs(
    bundle: GarBundle, clip: PreparedClip, question: str | None = None, options: Sequence[str] | None = None
) -> PromptInputs:
    """The token ids of a describe (``question=None``) or ask request on ``clip``.

    The question's ``<objectK>`` references become the objects' prompt tokens; with ``options``, the
    question is put in the model's multiple-choice format (:func:`format_multiple_choice`). Only the
    clip's keyframes and presence are read: the clip need not be encoded.

    Args:
        bundle: the loaded model (its tokenizer).
        clip: the prepared clip.
        question: the question (objects as ``<objectK>``), ``None`` for a describe request.
        options: the options of a multiple-choice question (checked by :func:`check_question`).

    Returns:
        The prompt's text, ``(1, L)`` ids, prefix length and region order.

    Raises:
        InputError: a reference to an object that was not given.
    """
    instruction = None
    if question is not None:
        instruction = rewrite_object_refs(question, clip.num_objects)
        if options is not None:
            instruction = format_multiple_choice(instruction, list(options))
    text = build_video_prompt(len(clip.frames), clip.present, instruction)
    ids = bundle.tokenize(text)  # (1, L)
    special = torch.tensor((IMAGE_TOKEN_ID,) + tuple(REGION_TOKEN_IDS))
    where = torch.isin(ids[0], special).nonzero().reshape(-1)
    prefix_length = int(where[-1]) + 1 if where.numel() else 0
    return PromptInputs(text, ids, prefix_length, video_region_order(clip.present))
