"""The token budget: what a keyframe costs, how many keyframes fit the context, and the check that a request's
prompt plus its new tokens fits (nothing is ever truncated).

:class:`TokenBudget` counts with the loaded model's context length and tokenizer
(:meth:`TokenBudget.for_bundle`), or with GAR-1B's defaults before a model is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from garvideo.errors import InputError
from garvideo.model.prompts import REGION_TOKENS, TOKENS_PER_TILE, build_video_prompt

if TYPE_CHECKING:
    from garvideo.model import GarBundle

__all__ = [
    "DEFAULT_CONTEXT_LENGTH",
    "DEFAULT_MAX_NEW_TOKENS",
    "QUESTION_RESERVE",
    "TokenBudget",
    "frame_cost",
]

#: GAR-1B's context (``text_config.max_position_embeddings``), used until a model is loaded.
DEFAULT_CONTEXT_LENGTH = 11520
#: New tokens generated unless a call says otherwise (also reserved in the token budget).
DEFAULT_MAX_NEW_TOKENS = 512
#: Tokens reserved in the budget for the instruction / question text (options included).
QUESTION_RESERVE = 256
#: Prompt-text tokens assumed (template, object list) when no model is loaded to count them.
_TEXT_OVERHEAD_GUESS = 128


def frame_cost(num_objects: int) -> int:
    """Prompt positions one keyframe costs: 256 global tokens plus 256 region tokens per object."""
    return TOKENS_PER_TILE + REGION_TOKENS * num_objects


@dataclass(frozen=True)
class TokenBudget:
    """The context a prompt must fit and how its text is counted.

    Attributes:
        context_length: the model's context in positions (``max_position_embeddings``).
        count_tokens: the number of tokens of a prompt text (the model's tokenizer); ``None`` before a model
            is loaded: the text is then assumed to cost ``_TEXT_OVERHEAD_GUESS`` tokens.
    """

    context_length: int = DEFAULT_CONTEXT_LENGTH
    count_tokens: Callable[[str], int] | None = None

    @classmethod
    def for_bundle(cls, bundle: GarBundle | None) -> TokenBudget:
        """The budget of a loaded model (its context and tokenizer), or the defaults for ``None``."""
        if bundle is None:
            return cls()
        text_config = bundle.model.mllm.config.text_config
        context = int(getattr(text_config, "max_position_embeddings", None) or DEFAULT_CONTEXT_LENGTH)

        def count(text: str) -> int:
            return int(bundle.tokenize(text).shape[1])  # (1, L) -> L

        return cls(context, count)

    def text_overhead(self, num_objects: int) -> int:
        """Prompt-text tokens besides the image and region tokens (template, object list)."""
        if self.count_tokens is None:
            return _TEXT_OVERHEAD_GUESS
        text = build_video_prompt(1, [[True]] * num_objects, "")
        return self.count_tokens(text) - frame_cost(num_objects)

    def max_keyframes(self, num_objects: int, max_new_tokens: int) -> int:
        """The most keyframes that fit the context with ``num_objects`` objects (the budget rule).

        ``K · (256 + 256 · objects) + text + QUESTION_RESERVE + max_new_tokens <= context``.

        Args:
            num_objects: the objects of the clip (1 to 5).
            max_new_tokens: the new tokens reserved.

        Returns:
            K (0 when not even one keyframe fits).
        """
        room = self.context_length - self.text_overhead(num_objects) - QUESTION_RESERVE - max_new_tokens
        return max(0, room // frame_cost(num_objects))

    def check_request(self, prompt_length: int, max_new_tokens: int, source: str) -> None:
        """Refuse a request whose prompt plus ``max_new_tokens`` exceeds the context (nothing is truncated).

        Args:
            prompt_length: the prompt's tokens.
            max_new_tokens: the request's new tokens.
            source: the field the error names (``question`` for a question, ``max_new_tokens`` for a describe
                request).

        Raises:
            InputError: the request does not fit.
        """
        if prompt_length + max_new_tokens > self.context_length:
            raise InputError(
                source,
                f"the prompt ({prompt_length} tokens) plus {max_new_tokens} new tokens exceeds the model's "
                f"{self.context_length}-position context; use fewer keyframes (num_frames), fewer objects, a "
                "shorter question or fewer new tokens (nothing is truncated)",
            )
