"""Region-level video understanding: the image-trained GAR model applied zero-shot to a clip.

:class:`GarVideo` runs the pipeline::

    masks on one frame ──tracker──> masks on the keyframes ──> one 448×448 tile per keyframe, with
    that frame's union mask ──> per-frame RoI replay (frame t's map, frame t's box) ──> one prompt
    (frames' global tokens, then each object's region tokens in time order, then the instruction)
    ──> greedy generation ──> text (and the option letter for multiple choice)

* **Keyframes** come from :func:`garvideo.keyframes.select_keyframes` (default: K = 8, uniform
  segment midpoints over the clip).
* **Per-frame encoding** and **replay** are :meth:`garvideo.model.GarBundle.encode_frames` and
  :func:`garvideo.model.replay_regions`, which follow the official video branch
  (``modeling_perception_lm.py:prepare_inputs_for_generation(feature_replay_video=True)``: frame
  ``t``'s region tokens are roi_align'ed from frame ``t``'s own 16×16 map, with the official box
  arithmetic by default and ``roi_mode="corrected"`` as the option).
* **The prompt text** is :func:`garvideo.model.prompts.build_video_prompt` — the one place the
  layout is written down. An object absent on a keyframe contributes no region tokens for that
  frame and the prompt names the keyframes where it is not visible; one absent on every keyframe is
  left out of the object list, the layout GAR was trained on for a prompt that is "not in the image".
* **Token budget**: each keyframe costs 256 global tokens plus 256 per object. When K keyframes
  would not fit in the model's context (``max_position_embeddings`` of the loaded config; 11,520
  for GAR-1B) with the prompt text, a reserve for the question and ``max_new_tokens``, K is reduced
  and a note says so; a prompt is never truncated.
* **Sharing**: a :class:`PreparedClip` holds the tracking result, the keyframe features and the
  replayed regions; the KV cache of the prompt prefix (everything up to the last region token) is
  kept on the clip too, so several questions on one clip pay for it once.

Objects are ``<object0>``, ``<object1>``, … in questions, in the order of the masks; the pipeline
rewrites them to the prompt tokens of :func:`garvideo.model.prompts.prompt_indices`.

Modules, one stage each, each taking what it uses (the :class:`PipelineSettings`, a :class:`TokenBudget`,
the :class:`garvideo.model.GarBundle` / :class:`garvideo.trackers.Tracker`), never the facade:
:mod:`~garvideo.pipeline.settings` (the settings, validated once), :mod:`~garvideo.pipeline.budget` (token
budget), :mod:`~garvideo.pipeline.prepared` (:class:`PreparedClip`), :mod:`~garvideo.pipeline.clip`
(``prepare_clip``: tracking, keyframes), :mod:`~garvideo.pipeline.encoding` (``encode_clip``: keyframe
features, region replay), :mod:`~garvideo.pipeline.prompt` (``build_prompt_inputs``: token ids),
:mod:`~garvideo.pipeline.generation` (``run_request``: prefix cache, decoding),
:mod:`~garvideo.pipeline.batching` (``answer_batch``: many questions, batched),
:mod:`~garvideo.pipeline.results`, and :mod:`~garvideo.pipeline.facade` (:class:`GarVideo`, which calls
them in order).
"""

from typing import TYPE_CHECKING

from garvideo._lazy import lazy_exports

if TYPE_CHECKING:
    from garvideo.pipeline.batching import Question
    from garvideo.pipeline.budget import (
        DEFAULT_CONTEXT_LENGTH,
        DEFAULT_MAX_NEW_TOKENS,
        QUESTION_RESERVE,
        TokenBudget,
        frame_cost,
    )
    from garvideo.pipeline.facade import GarVideo
    from garvideo.pipeline.generation import StreamFn
    from garvideo.pipeline.prepared import FrameMasks, ObjectInfo, PreparedClip
    from garvideo.pipeline.prompt import PromptInputs, rewrite_object_refs
    from garvideo.pipeline.results import AnswerResult, DescribeResult
    from garvideo.pipeline.settings import PipelineSettings

# A lazy root (as garvideo.model's): ``import garvideo.pipeline.settings`` (what garvideo.options and the
# CLI's option parsing use) does not import torch; ``from garvideo.pipeline import GarVideo`` does.
_EXPORTS = {
    "Question": "batching",
    "DEFAULT_CONTEXT_LENGTH": "budget",
    "DEFAULT_MAX_NEW_TOKENS": "budget",
    "QUESTION_RESERVE": "budget",
    "TokenBudget": "budget",
    "frame_cost": "budget",
    "GarVideo": "facade",
    "StreamFn": "generation",
    "FrameMasks": "prepared",
    "ObjectInfo": "prepared",
    "PreparedClip": "prepared",
    "PromptInputs": "prompt",
    "rewrite_object_refs": "prompt",
    "AnswerResult": "results",
    "DescribeResult": "results",
    "PipelineSettings": "settings",
}

__all__ = [
    "DEFAULT_CONTEXT_LENGTH",
    "DEFAULT_MAX_NEW_TOKENS",
    "QUESTION_RESERVE",
    "AnswerResult",
    "DescribeResult",
    "FrameMasks",
    "GarVideo",
    "ObjectInfo",
    "PipelineSettings",
    "PreparedClip",
    "PromptInputs",
    "Question",
    "StreamFn",
    "TokenBudget",
    "frame_cost",
    "rewrite_object_refs",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
