"""Prompt texts (official image prompts, garvideo's video layout) and agreement with transformers' PerceptionLM."""

from __future__ import annotations

import re

import pytest
import torch

from garvideo.errors import InputError
from garvideo.model import (
    apply_chat_template,
    build_image_prompt,
    build_multi_region_prompt,
    build_single_region_prompt,
    build_video_prompt,
    format_multiple_choice,
    load_gar,
    parse_choice,
    prompt_indices,
)
from garvideo.model.prompts import clean_answer

R1 = "<|reserved_special_token_3|>" * 256  # region 1's placeholder, 256 copies
R0 = "<|reserved_special_token_2|>" * 256
R2 = "<|reserved_special_token_4|>" * 256


def test_single_region_caption_prompt_is_official():
    assert build_single_region_prompt() == (
        "There are some objects I am curious about: <Prompt1>;\n<Prompt1>: "
        + R1
        + "Describe this masked region in detail."
    )
    assert prompt_indices(1) == [1] and prompt_indices(3) == [0, 1, 2]


def test_single_region_question_uses_the_gar_bench_convention():
    """ask with one region: <Prompt0> / crop token 128004 (GAR-Bench VQA, MultiRegionDataset)."""
    assert prompt_indices(1, ask=True) == [0] and prompt_indices(2, ask=True) == [0, 1]
    p = build_image_prompt(num_tiles=1, num_regions=1, question="What is <Prompt0>?")
    assert f"about: <Prompt0>; \n<Prompt0>: {R0}\n\nWhat is <Prompt0>?" in p and R1 not in p
    # describe keeps the caption convention
    assert f"<Prompt1>: {R1}Describe this masked region in detail." in build_image_prompt(1, 1)
    v = build_video_prompt(2, [[True, True]], "What does <Prompt0> do?")
    assert f"<Prompt0>: {R0}{R0}\n\nWhat does <Prompt0> do?" in v


def test_python_set_region_order_switch():
    """region_order="python-set" lists the regions in the order a set of their tokens iterates (official)."""
    q = "Is <Prompt0> left of <Prompt1> or <Prompt2>?"
    text = build_multi_region_prompt(q, [1, 1, 1], region_order="python-set")
    order = list(set(re.findall(r"<Prompt\d+>", q)))  # as evaluation/eval_dataset.py builds it
    assert text.startswith("There are some objects I am curious about: " + "".join(f"{t}; " for t in order))
    with pytest.raises(InputError, match="region_order"):
        build_multi_region_prompt(q, [1, 1, 1], region_order="random")


def test_multi_region_prompt_is_ordered_and_official():
    text = build_multi_region_prompt(
        "Describe <Prompt0> in detail, including the relationship with <Prompt1>.", [1, 1]
    )
    assert text == (
        "There are some objects I am curious about: <Prompt0>; <Prompt1>; \n"
        f"<Prompt0>: {R0}\n<Prompt1>: {R1}\n\n"
        "Describe <Prompt0> in detail, including the relationship with <Prompt1>."
    )


def test_absent_region_has_no_placeholder():
    text = build_multi_region_prompt("Q", [1, 0, 1])
    assert "<Prompt1>;" not in text and "<|reserved_special_token_3|>" not in text
    assert text.startswith("There are some objects I am curious about: <Prompt0>; <Prompt2>; \n")
    assert build_single_region_prompt(runs=0) == "<Prompt1>: Describe this masked region in detail."


def test_multiple_choice_format():
    q = format_multiple_choice("What colour is <Prompt0>?", ["(A) red", "(B) blue"])
    assert (
        q
        == "Question: What colour is <Prompt0>?\nOptions:\n(A) red\n(B) blue\nAnswer with the correct option's letter directly."
    )
    # Unlabelled options get GAR-Bench's "A. ..." labels (GAR-Bench-VQA.json choices).
    assert format_multiple_choice("Q?", ["red", "blue", "green"]).splitlines()[2:5] == [
        "A. red",
        "B. blue",
        "C. green",
    ]
    assert format_multiple_choice("Q?", ["A. red", "B. blue"]).splitlines()[2:4] == ["A. red", "B. blue"]
    with pytest.raises(InputError):
        format_multiple_choice("Q?", ["only"])
    assert (
        parse_choice("B", 4) == "B" and parse_choice("(c) green", 4) == "C" and parse_choice("E", 4) is None
    )
    assert parse_choice("The answer", 4) is None


def test_chat_template_matches_perception_lm():
    text = apply_chat_template("  hello  ", num_image_tokens=2)
    assert text == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "You are a helpful language and vision assistant. You are able to understand the visual content that the "
        "user provides, and assist the user with a variety of tasks using natural language.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n<|image|><|image|>hello<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_image_prompt_counts():
    p = build_image_prompt(num_tiles=5, num_regions=1)
    assert p.count("<|image|>") == 1280 and p.count("<|reserved_special_token_3|>") == 256
    with pytest.raises(InputError, match="expected 1 to 5 regions, got 6"):
        build_image_prompt(num_tiles=1, num_regions=6)


def test_video_prompt_layout():
    p = build_video_prompt(3, [[True, True, True]])  # visible throughout: the image caption layout exactly
    assert p.count("<|image|>") == 768
    assert f"<Prompt1>: {R1}{R1}{R1}Describe this masked region in detail." in p
    p = build_video_prompt(
        3, [[True, False, True]]
    )  # absent on keyframe 2: no run there, and the prompt says so
    assert f"<Prompt1>: {R1}{R1}\n<Prompt1> is not visible in frame 2 of 3.\nDescribe this masked region" in p
    p2 = build_video_prompt(2, [[True, True], [False, True], [True, False]], "What happens?")
    assert (
        f"<Prompt0>: {R0}{R0}\n<Prompt1>: {R1}\n<Prompt2>: {R2}\n\n"
        "<Prompt1> is not visible in frame 1 of 2. <Prompt2> is not visible in frame 2 of 2.\nWhat happens?"
    ) in p2
    p3 = build_video_prompt(2, [[True, True], [False, False]], "What happens?")
    assert "<Prompt1>; " not in p3 and "<Prompt1> is not visible in any of the 2 frames." in p3
    with pytest.raises(InputError, match="object 0 has 1 flags for 2 frames"):
        build_video_prompt(2, [[True]])


def test_question_must_mention_existing_regions():
    with pytest.raises(
        InputError, match=r"mentions <Prompt1> but the regions are <Prompt0> \(a single region is <Prompt0>"
    ):
        build_image_prompt(num_tiles=1, num_regions=1, question="What is <Prompt1>?")
    with pytest.raises(InputError, match="mentions <Prompt3>"):
        build_video_prompt(2, [[True, True], [True, False]], "Where does <Prompt3> go?")
    assert "<Prompt0>: " in build_image_prompt(num_tiles=1, num_regions=1, question="What is <Prompt0>?")


def test_clean_answer():
    assert clean_answer("  A<|eot_id|>") == "A"


def test_tokenization_matches_official_inference(tiny_model_dir):
    b = load_gar(tiny_model_dir, device="cpu")
    ids = b.tokenize(build_image_prompt(num_tiles=1, num_regions=1))[0].tolist()
    # The rendered template starts with <|begin_of_text|> and the tokenizer adds one more (official eval path).
    assert ids[:3] == [128000, 128000, 128006]
    assert ids.count(128002) == 256 and ids.count(128005) == 256
    last_header = len(ids) - 1 - ids[::-1].index(128006)
    assert ids[last_header - 1] == 128009 and ids[-1] != 128009  # ... <|eot_id|><|start_header_id|>assistant


def test_image_path_agrees_with_transformers_perception_lm(tiny_model_dir):
    """Without regions and with a zero mask embedding, GAR is PerceptionLM: compare with transformers' forward."""
    b = load_gar(tiny_model_dir, device="cpu")
    with torch.no_grad():
        b.model.mask_patch_embedding.weight.zero_()
        pix = torch.randn(1, 3, 448, 448)
        ids = b.tokenize(apply_chat_template("Describe the image.", num_image_tokens=256))
        feats = b.model.image_features(pix, torch.ones(1, 448, 448, dtype=torch.bool))
        ours = b.model(b.model.embed_prompt(ids, feats), logits_to_keep=16).logits
        ref = b.model.mllm(input_ids=ids, pixel_values=pix[None], logits_to_keep=16).logits
    assert torch.allclose(ours, ref, atol=1e-5)


def test_last_mask_box_switch_reproduces_the_official_multi_region_boxes():
    """MultiRegionDataset boxes every region with the last mask (masks_np[mask_id] after a loop)."""
    import numpy as np

    from garvideo.model.processing import GarProcessor, PerceptionLMImageProcessor, mask_box

    proc = GarProcessor(PerceptionLMImageProcessor(max_num_tiles=1), tokenizer=None)
    img = np.zeros((60, 80, 3), np.uint8)
    a, b, empty = (np.zeros((60, 80), bool) for _ in range(3))
    a[5:20, 5:30] = True
    b[30:55, 40:75] = True
    own = proc.preprocess_image(img, [a, empty, b])
    assert own.boxes == [mask_box(a), None, mask_box(b)]
    official = proc.preprocess_image(img, [a, empty, b], last_mask_box=True)
    assert official.boxes == [mask_box(b), None, mask_box(b)]
    assert torch.equal(official.pixel_values, own.pixel_values)
