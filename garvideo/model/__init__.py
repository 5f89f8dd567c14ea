"""GAR (Grasp Any Region, arXiv 2510.18876): garvideo's own checkpoint-compatible implementation.

Loading::

    bundle = load_gar("HaochenWang/GAR-1B")          # or a folder, or $GARVIDEO_MODEL
    bundle.describe(image, [mask])                   # -> RegionDescription
    bundle.ask(image, [m0, m1], "What is <Prompt0> doing to <Prompt1>?")   # -> RegionAnswer

What the video pipeline uses (one 448×448 tile per keyframe, as the official video replay branch)::

    feats = bundle.encode_frames(frames, union_masks)                   # FrameFeatures: tokens (T,256,D), maps (T,D,16,16)
    regions = replay_regions(feats.maps, boxes, frame_index, "official")  # (N, 256, D)
    prompt = build_video_prompt(T, objects_present, instruction)        # text, see garvideo.model.prompts
    ids = bundle.tokenize(prompt)                                       # (1, L)
    embeds = bundle.embed_prompt(ids, feats.tokens, regions)            # (1, L, D)
    bundle.generate(embeds, max_new_tokens=256)                         # GenerationResult

Several questions on one clip share a prefix: ``prefix = bundle.prefill(embeds[:, :k])`` then
``bundle.generate(embeds_q[:, k:], prefix=prefix)`` per question.
"""

from typing import TYPE_CHECKING

from garvideo._lazy import lazy_exports

if TYPE_CHECKING:
    from garvideo.model.configuration import DEFAULT_MODEL, GAR_1B_HUB_ID, GAR_8B_HUB_ID, GarConfig
    from garvideo.model.loading import (
        MODEL_ENV,
        GarBundle,
        GenerationResult,
        RegionAnswer,
        RegionDescription,
        load_gar,
        load_model,
        parse_choice,
        resolve_model_dir,
        save_model,
    )
    from garvideo.model.modeling import (
        FEAT_STRIDE,
        FrameFeatures,
        GarModel,
        ImageFeatures,
        PrefixCache,
        RoiMode,
        merge_tiles,
        region_run_starts,
        replay_regions,
        roi_boxes,
    )
    from garvideo.model.processing import FrameInputs, GarProcessor, ImageInputs, as_binary_mask, mask_box
    from garvideo.model.prompts import (
        DESCRIBE_INSTRUCTION,
        MAX_REGIONS,
        MC_SUFFIX,
        REGION_TOKEN_IDS,
        REGION_TOKENS,
        ROI_MODES,
        TOKENS_PER_TILE,
        apply_chat_template,
        build_image_prompt,
        build_multi_region_prompt,
        build_single_region_prompt,
        build_video_prompt,
        check_references,
        format_multiple_choice,
        prompt_indices,
        prompt_token,
        referenced_prompts,
        video_region_order,
    )
    from garvideo.model.tiny import make_tiny_model

_EXPORTS = {
    "DEFAULT_MODEL": "configuration",
    "GAR_1B_HUB_ID": "configuration",
    "GAR_8B_HUB_ID": "configuration",
    "GarConfig": "configuration",
    "MODEL_ENV": "loading",
    "GarBundle": "loading",
    "GenerationResult": "loading",
    "RegionAnswer": "loading",
    "RegionDescription": "loading",
    "load_gar": "loading",
    "load_model": "loading",
    "parse_choice": "loading",
    "resolve_model_dir": "loading",
    "save_model": "loading",
    "FEAT_STRIDE": "modeling",
    "ROI_MODES": "prompts",
    "FrameFeatures": "modeling",
    "GarModel": "modeling",
    "ImageFeatures": "modeling",
    "PrefixCache": "modeling",
    "RoiMode": "modeling",
    "merge_tiles": "modeling",
    "region_run_starts": "modeling",
    "replay_regions": "modeling",
    "roi_boxes": "modeling",
    "FrameInputs": "processing",
    "GarProcessor": "processing",
    "ImageInputs": "processing",
    "as_binary_mask": "processing",
    "mask_box": "processing",
    "DESCRIBE_INSTRUCTION": "prompts",
    "MAX_REGIONS": "prompts",
    "MC_SUFFIX": "prompts",
    "REGION_TOKEN_IDS": "prompts",
    "REGION_TOKENS": "prompts",
    "TOKENS_PER_TILE": "prompts",
    "apply_chat_template": "prompts",
    "build_image_prompt": "prompts",
    "build_multi_region_prompt": "prompts",
    "build_single_region_prompt": "prompts",
    "build_video_prompt": "prompts",
    "check_references": "prompts",
    "format_multiple_choice": "prompts",
    "prompt_indices": "prompts",
    "prompt_token": "prompts",
    "referenced_prompts": "prompts",
    "video_region_order": "prompts",
    "make_tiny_model": "tiny",
}

__all__ = [
    "DEFAULT_MODEL",
    "DESCRIBE_INSTRUCTION",
    "FEAT_STRIDE",
    "GAR_1B_HUB_ID",
    "GAR_8B_HUB_ID",
    "MAX_REGIONS",
    "MC_SUFFIX",
    "MODEL_ENV",
    "REGION_TOKENS",
    "REGION_TOKEN_IDS",
    "ROI_MODES",
    "TOKENS_PER_TILE",
    "FrameFeatures",
    "FrameInputs",
    "GarBundle",
    "GarConfig",
    "GarModel",
    "GarProcessor",
    "GenerationResult",
    "ImageFeatures",
    "ImageInputs",
    "PrefixCache",
    "RegionAnswer",
    "RegionDescription",
    "RoiMode",
    "apply_chat_template",
    "as_binary_mask",
    "build_image_prompt",
    "build_multi_region_prompt",
    "build_single_region_prompt",
    "build_video_prompt",
    "check_references",
    "format_multiple_choice",
    "load_gar",
    "load_model",
    "make_tiny_model",
    "mask_box",
    "merge_tiles",
    "parse_choice",
    "prompt_indices",
    "prompt_token",
    "referenced_prompts",
    "region_run_starts",
    "replay_regions",
    "resolve_model_dir",
    "roi_boxes",
    "save_model",
    "video_region_order",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
