"""The token budget: what a keyframe costs and the defaults the budget rule reserves."""

from __future__ import annotations

__all__ = ["DEFAULT_CONTEXT_LENGTH", "DEFAULT_MAX_NEW_TOKENS", "QUESTION_RESERVE", "frame_cost"]

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
    from garvideo.model.prompts import REGION_TOKENS, TOKENS_PER_TILE

    return TOKENS_PER_TILE + REGION_TOKENS * num_objects
