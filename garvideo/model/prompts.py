"""Every piece of prompt text garvideo sends to GAR, in one place.

Facts taken from the official code (github Haochen-Wang409/Grasp-Any-Region) are cited inline; the text
itself is garvideo's own code.

Tokens
------
* ``<Prompt0>`` … ``<Prompt4>`` and ``<NO_Prompt>`` are added after the Llama-3 vocabulary, ids 128256 …
  128261 (``models/grasp_any_region.py:GraspAnyRegion._add_special_tokens``; the prompt-id of a token is
  its id − 128256, ``evaluation/eval_dataset.py``).
* Region *k*'s placeholder is ``<|reserved_special_token_{k+2}|>`` (ids 128004, 128005, 128008, 128010,
  128011: ``hf_models/configuration_gar.py:GARConfig.crop_tokens_ids``), repeated
  :data:`REGION_TOKENS` = 256 times; the RoI-aligned features replace those 256 copies.
* ``<|image|>`` (id 128002) stands for the global image tokens: 256 per 448×448 tile (thumbnail first,
  then the high-res tiles), expanded by :func:`expand_image_tokens`.

Chat template (PerceptionLM)
----------------------------
PerceptionLM's template (transformers ``perception_lm/convert_perception_lm_weights_to_hf.py``,
``CHAT_TEMPLATE``) renders one user turn with an image as::

    <|begin_of_text|><|start_header_id|>system<|end_header_id|>\\n\\n{DEFAULT_SYSTEM_MESSAGE}<|eot_id|>
    <|start_header_id|>user<|end_header_id|>\\n\\n<|image|>{text stripped}<|eot_id|>
    <|start_header_id|>assistant<|end_header_id|>\\n\\n

(no newlines between the pieces; they are shown here for reading). The official evaluation renders this
string and then calls the processor, whose Llama-3 tokenizer post-processor prepends
``<|begin_of_text|>`` once more, so the official inference input starts with two BOS tokens
(``evaluation/eval_dataset.py``: ``apply_chat_template(tokenize=False)`` then ``processor(text=...)``).
garvideo tokenizes the same way by default (see :mod:`garvideo.model.processing`).

Image prompts (``evaluation/eval_dataset.py``)
----------------------------------------------
Two conventions, chosen by what is asked:

* **describe** (caption convention; ``evaluation/eval_dataset.py:SingleRegionCaptionDataset``, used by
  ``evaluation/DLC-Bench/inference.py`` and the README demo, default ``prompt_token="<Prompt1>"``): a single
  region is ``<Prompt1>`` with crop token 128005::

    There are some objects I am curious about: <Prompt1>;\\n<Prompt1>: [R1 × 256]Describe this masked region in detail.

* **ask** (GAR-Bench VQA convention; ``evaluation/GAR-Bench/inference.py`` with
  ``eval_dataset.py:MultiRegionDataset``, the questions of ``GAR-Bench-VQA.json``): region *k* is
  ``<Prompt{k}>`` with crop token ``REGION_TOKEN_IDS[k]``, so a single region is ``<Prompt0>`` / 128004
  (:func:`prompt_indices` with ``ask=True``).

Multi-region (``MultiRegionDataset``), regions in ascending prompt order. Deliberate departure: the
official code iterates a Python ``set`` of the ``<PromptK>`` strings, whose order depends on the process's
string hashing; ``region_order="python-set"`` of :func:`build_multi_region_prompt` reproduces that (same
order as the official code in the same process, e.g. with the same ``PYTHONHASHSEED``)::

    There are some objects I am curious about: <Prompt0>; <Prompt1>; \\n<Prompt0>: [R0 × 256]\\n<Prompt1>: [R1 × 256]\\n\\n{question}

Multiple choice (``GAR-Bench/inference.py``, ``--mode vqa``)::

    Question: {question}\\nOptions:\\n{option 1}\\n{option 2}…\\nAnswer with the correct option's letter directly.

A region whose mask is empty is left out of the object list and gets no placeholder: GAR was trained to
answer ``<PromptK> is not in the image.`` when asked about a prompt that has no region
(``datasets/GraspAnyRegion_Dataset.py``, the ``none_prompt`` branch).

Video prompts (garvideo's layout)
---------------------------------
The official code has a video replay branch (``models/modeling/modeling_perception_lm.py``,
``prepare_inputs_for_generation(feature_replay_video=True)``): every frame is one 448×448 tile whose 256
global tokens fill the ``<|image|>`` placeholders in frame order, and frame *t*'s region tokens are
RoI-aligned from that frame's own 16×16 map. The repository ships no video prompt text, so garvideo lays
the video prompt out like the image multi-region prompt, with each object's per-frame region tokens
concatenated in time order (frames where the object is absent contribute nothing)::

    <|image|> × (T·256)   (in the user turn, before the text, as for an image)
    There are some objects I am curious about: <Prompt0>; <Prompt1>; \\n<Prompt0>: [R0,f0 × 256][R0,f2 × 256]…\\n<Prompt1>: …\\n\\n{instruction}

and, for a single object described, like the single-region caption prompt (``<Prompt1>``, no blank line;
a single object asked about is ``<Prompt0>`` in the multi-region layout, as for an image)::

    There are some objects I am curious about: <Prompt1>;\\n<Prompt1>: [R1,f0 × 256][R1,f1 × 256]…{instruction}

When an object is absent on some keyframes (it contributes no region tokens there), the prompt says so in
one sentence before the instruction, keyframes counted from 1 (omitted when every object is visible on
every keyframe, so the common case keeps the image layout exactly)::

    <Prompt0> is not visible in frames 3, 7 of 8.

Object *k* always uses region *k*'s placeholder token; the splice (``GarModel.embed_prompt``) replaces
runs of 256 placeholders in order of appearance, so the per-frame runs of one object are told apart by
position. What the model sees after the splice does not depend on the placeholder ids.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

from garvideo.errors import InputError

#: Number of regions GAR-1B/8B support (``GARConfig.prompt_numbers``).
MAX_REGIONS = 5
#: Token ids of the first added token (Llama-3's vocabulary has 128256 entries).
PROMPT_TOKEN_BASE_ID = 128256
#: ``<Prompt0>`` … ``<Prompt4>``, ``<NO_Prompt>``, in id order from 128256.
VISUAL_PROMPT_TOKENS: tuple[str, ...] = tuple(f"<Prompt{i}>" for i in range(MAX_REGIONS)) + ("<NO_Prompt>",)
#: Prompt id of ``<NO_Prompt>`` in the prompt-id map (128261 − 128256).
NO_PROMPT_ID = MAX_REGIONS
#: Region placeholder token ids, region k → ``<|reserved_special_token_{k+2}|>`` (GARConfig.crop_tokens_ids).
REGION_TOKEN_IDS: tuple[int, ...] = (128004, 128005, 128008, 128010, 128011)
#: Placeholder copies per region (16×16 RoI-aligned tokens).
REGION_TOKENS = 256
#: Global tokens per 448×448 tile (32×32 patches pooled 2×2).
TOKENS_PER_TILE = 256
#: RoI box arithmetic for region replay: the released checkpoints' (``"official"``) or ``"corrected"``
#: (:func:`garvideo.model.replay_regions`); here, beside the other layout constants, so settings can check it
#: without importing torch.
ROI_MODES: tuple[str, ...] = ("official", "corrected")
IMAGE_TOKEN = "<|image|>"
IMAGE_TOKEN_ID = 128002
BOS_TOKEN = "<|begin_of_text|>"
EOT_TOKEN = "<|eot_id|>"
#: PerceptionLM's default system message (its chat template, see the module docstring).
DEFAULT_SYSTEM_MESSAGE = (
    "You are a helpful language and vision assistant. You are able to understand the visual content "
    "that the user provides, and assist the user with a variety of tasks using natural language."
)
#: Instruction of the single-region caption prompt (``evaluation/eval_dataset.py``).
DESCRIBE_INSTRUCTION = "Describe this masked region in detail."
#: Suffix of multiple-choice questions (``evaluation/GAR-Bench/inference.py``).
MC_SUFFIX = "Answer with the correct option's letter directly."
OBJECTS_INTRO = "There are some objects I am curious about: "
#: Prompt index of the only region of a single-region *describe* prompt (the official caption prompt,
#: ``SingleRegionCaptionDataset``, uses <Prompt1>).
SINGLE_REGION_PROMPT_INDEX = 1
#: Prompt index of the only region of a single-region *question* (GAR-Bench VQA, ``MultiRegionDataset``).
SINGLE_REGION_ASK_INDEX = 0
#: Region orders of :func:`build_multi_region_prompt`: garvideo's ascending order, or the official
#: Python-``set`` iteration order.
REGION_ORDERS = ("ascending", "python-set")

_PROMPT_RE = re.compile(r"<Prompt(\d+)>")


def prompt_token(index: int) -> str:
    """``<Prompt{index}>`` for a region index in ``[0, 5)``."""
    _check_index(index)
    return f"<Prompt{index}>"


def region_placeholder(index: int) -> str:
    """The placeholder token string of region ``index``: ``<|reserved_special_token_{index+2}|>``."""
    _check_index(index)
    return f"<|reserved_special_token_{index + 2}|>"


def _check_index(index: int) -> None:
    if not 0 <= int(index) < MAX_REGIONS:
        raise InputError("regions", f"region index {index} is out of range [0, {MAX_REGIONS})")


def prompt_indices(num_regions: int, *, ask: bool = False) -> list[int]:
    """Prompt indices garvideo uses for ``num_regions`` regions.

    ``0..n-1`` (the GAR-Bench convention), except a single region described (``ask=False``), which is
    ``[1]``: the official single-region caption prompt uses ``<Prompt1>``. A single region asked about
    (``ask=True``) is ``[0]``, as in GAR-Bench VQA.
    """
    if not 1 <= num_regions <= MAX_REGIONS:
        raise InputError("masks", f"expected 1 to {MAX_REGIONS} regions, got {num_regions}")
    if num_regions == 1:
        return [SINGLE_REGION_ASK_INDEX if ask else SINGLE_REGION_PROMPT_INDEX]
    return list(range(num_regions))


def referenced_prompts(text: str) -> list[int]:
    """Sorted distinct ``<PromptK>`` indices mentioned in ``text``."""
    return sorted({int(m) for m in _PROMPT_RE.findall(text)})


def check_references(text: str, indices: Sequence[int], *, source: str = "question") -> None:
    """Raise if ``text`` mentions a ``<PromptK>`` that is not one of the regions' prompt indices."""
    unknown = sorted(set(referenced_prompts(text)) - set(indices))
    if unknown:
        have = ", ".join(prompt_token(i) for i in indices)
        raise InputError(
            source,
            f"mentions {', '.join(f'<Prompt{k}>' for k in unknown)} but the regions are {have}"
            + (f" (a single region is <Prompt{indices[0]}>)" if len(indices) == 1 else ""),
        )


def _placeholders(index: int, runs: int) -> str:
    return region_placeholder(index) * (REGION_TOKENS * runs)


def build_single_region_prompt(
    instruction: str = DESCRIBE_INSTRUCTION, *, index: int = SINGLE_REGION_PROMPT_INDEX, runs: int = 1
) -> str:
    """The single-region prompt text (user-turn text, without the chat template).

    Args:
        instruction: what to do with the region (default: the official caption instruction).
        index: prompt index of the region (official: 1).
        runs: number of 256-token region runs (1 for an image; one per frame where the object is visible
            for a video). ``0`` means the region is absent: no placeholder, and the object is left out of
            the object list (GAR answers ``<PromptK> is not in the image.``).
    """
    token = prompt_token(index)
    if runs < 0:
        raise InputError("runs", f"must be >= 0, got {runs}")
    if runs == 0:
        return f"{token}: {instruction}"
    return f"{OBJECTS_INTRO}{token};\n{token}: {_placeholders(index, runs)}{instruction}"


def build_multi_region_prompt(
    question: str,
    runs: Sequence[int],
    *,
    indices: Sequence[int] | None = None,
    region_order: str = "ascending",
) -> str:
    """The multi-region prompt text (user-turn text, without the chat template).

    Args:
        question: the question or instruction, usually mentioning ``<PromptK>`` tokens.
        runs: for each region, the number of 256-token region runs (1 per image; per video, the number of
            frames where the object is visible; 0 = absent, left out of the object list).
        indices: prompt index of each region (default ``0..n-1``), in the order regions are listed.
        region_order: ``"ascending"`` (garvideo: the order of ``indices``) or ``"python-set"`` (the
            official ``MultiRegionDataset``: iteration order of a ``set`` of the ``<PromptK>`` strings, which
            depends on this process's string hashing; for exact comparisons with the official code).
    """
    if indices is None:
        indices = list(range(len(runs)))
    if len(indices) != len(runs):
        raise InputError("regions", f"{len(indices)} prompt indices for {len(runs)} regions")
    if not 1 <= len(runs) <= MAX_REGIONS:
        raise InputError("masks", f"expected 1 to {MAX_REGIONS} regions, got {len(runs)}")
    if len(set(indices)) != len(indices):
        raise InputError("regions", "prompt indices must be distinct")
    if region_order not in REGION_ORDERS:
        raise InputError("region_order", f"expected one of {', '.join(REGION_ORDERS)}, got {region_order!r}")
    present = [(i, r) for i, r in zip(indices, runs) if r > 0]
    if region_order == "python-set":
        # Official: ``set(re.findall(r"<Prompt\d+>", question))``, iterated. A set's order depends on the
        # hash seed *and* on insertion order (collisions), so build it exactly that way. Regions the
        # question does not mention (the official code asserts there are none) follow in ascending order.
        official = list(set(re.findall(r"<Prompt\d+>", question)))
        rank = {token: n for n, token in enumerate(official)}
        present.sort(key=lambda ir: rank.get(prompt_token(ir[0]), len(official) + ir[0]))
    objects = OBJECTS_INTRO + "".join(f"{prompt_token(i)}; " for i, _ in present)
    lines = "".join(f"{prompt_token(i)}: {_placeholders(i, r)}\n" for i, r in present)
    return f"{objects}\n{lines}\n{question}"


def format_multiple_choice(question: str, options: Sequence[str]) -> str:
    """The GAR-Bench multiple-choice question text.

    Options are used as given when they already start with a letter label such as ``(A)`` or ``A.``;
    otherwise they are labelled ``A. …``, ``B. …`` in order, the form of the GAR-Bench VQA choices
    (``evaluation/GAR-Bench/annotations/GAR-Bench-VQA.json``: ``"A. <Prompt0>"``) and of the README demo.
    """
    if len(options) < 2:
        raise InputError("options", f"need at least 2 options, got {len(options)}")
    if len(options) > len(string.ascii_uppercase):
        raise InputError("options", f"at most 26 options, got {len(options)}")
    labelled = re.compile(r"^\s*\(?[A-Z][).:]")
    lines = [
        opt.strip() if labelled.match(opt) else f"{string.ascii_uppercase[i]}. {opt.strip()}"
        for i, opt in enumerate(options)
    ]
    return (
        f"Question: {question.strip()}\nOptions:" + "".join(f"\n{line}" for line in lines) + f"\n{MC_SUFFIX}"
    )


def apply_chat_template(
    user_text: str, *, num_image_tokens: int, system_message: str = DEFAULT_SYSTEM_MESSAGE
) -> str:
    """Render one user turn with an image through PerceptionLM's chat template.

    Args:
        user_text: the user text (stripped, as the template's ``| trim`` does).
        num_image_tokens: number of ``<|image|>`` copies (256 per tile; 0 for a text-only turn).
        system_message: the system message (PerceptionLM's default unless given).
    """
    if num_image_tokens < 0:
        raise InputError("num_image_tokens", f"must be >= 0, got {num_image_tokens}")
    return (
        f"{BOS_TOKEN}<|start_header_id|>system<|end_header_id|>\n\n{system_message.strip()}{EOT_TOKEN}"
        f"<|start_header_id|>user<|end_header_id|>\n\n{IMAGE_TOKEN * num_image_tokens}{user_text.strip()}"
        f"{EOT_TOKEN}<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def build_image_prompt(
    num_tiles: int,
    num_regions: int,
    question: str | None = None,
    present: Sequence[bool] | None = None,
    *,
    region_order: str = "ascending",
) -> str:
    """The whole templated prompt for one image.

    Args:
        num_tiles: tiles of the image (thumbnail included), 256 ``<|image|>`` tokens each.
        num_regions: 1 to 5.
        question: ``None`` → describe (single region: the official caption prompt; several regions:
            "Describe <Prompt0>, <Prompt1>, … in detail."); otherwise the question, asked with the
            multi-region layout (GAR-Bench: a single region is ``<Prompt0>``; mention it as ``<Prompt0>``).
        present: per region, whether its mask is non-empty (default: all present).
        region_order: see :func:`build_multi_region_prompt`.
    """
    indices = prompt_indices(num_regions, ask=question is not None)
    present = [True] * num_regions if present is None else list(present)
    if len(present) != num_regions:
        raise InputError("masks", f"{len(present)} presence flags for {num_regions} regions")
    runs = [1 if p else 0 for p in present]
    if question is None and num_regions == 1:
        text = build_single_region_prompt(runs=runs[0])
    else:
        if question is None:
            question = "Describe " + ", ".join(prompt_token(i) for i in indices) + " in detail."
        check_references(question, indices)
        text = build_multi_region_prompt(question, runs, indices=indices, region_order=region_order)
    return apply_chat_template(text, num_image_tokens=TOKENS_PER_TILE * num_tiles)


def build_video_prompt(
    num_frames: int, objects_present: Sequence[Sequence[bool]], instruction: str | None = None
) -> str:
    """The whole templated prompt for a clip of ``num_frames`` keyframes (one 448×448 tile each).

    Args:
        num_frames: number of keyframes T (each contributes 256 ``<|image|>`` tokens, in frame order).
        objects_present: ``objects_present[k][t]`` — object k visible (non-empty mask) on keyframe t.
            1 to 5 objects; each inner list has length T.
        instruction: the question or instruction (``None`` → describe). For several objects, refer to them
            as ``<Prompt0>``, ``<Prompt1>``, …; a single object is ``<Prompt0>`` when asked about and
            ``<Prompt1>`` when described (:func:`prompt_indices`).

    Returns:
        The templated prompt text. Its region placeholders come object by object, and within an object
        frame by frame (only frames where it is present), 256 tokens per run — the order
        :meth:`GarModel.embed_prompt` fills them in.
    """
    if num_frames < 1:
        raise InputError("num_frames", f"must be >= 1, got {num_frames}")
    n = len(objects_present)
    indices = prompt_indices(n, ask=instruction is not None)
    for k, flags in enumerate(objects_present):
        if len(flags) != num_frames:
            raise InputError("objects_present", f"object {k} has {len(flags)} flags for {num_frames} frames")
    runs = [sum(bool(f) for f in flags) for flags in objects_present]
    note = absence_note(objects_present, indices)
    if instruction is None and n == 1:
        text = build_single_region_prompt(
            instruction=f"\n{note}\n{DESCRIBE_INSTRUCTION}" if note else DESCRIBE_INSTRUCTION, runs=runs[0]
        )
    else:
        if instruction is None:
            instruction = "Describe " + ", ".join(prompt_token(i) for i in indices) + " in detail."
        check_references(instruction, indices, source="instruction")
        text = build_multi_region_prompt(
            f"{note}\n{instruction}" if note else instruction, runs, indices=indices
        )
    return apply_chat_template(text, num_image_tokens=TOKENS_PER_TILE * num_frames)


def absence_note(objects_present: Sequence[Sequence[bool]], indices: Sequence[int]) -> str:
    """The sentence(s) telling the model on which keyframes (1-based) each object is not visible.

    Returns ``""`` when every object is visible on every keyframe.
    """
    sentences = []
    for index, flags in zip(indices, objects_present):
        missing = [t + 1 for t, p in enumerate(flags) if not p]
        if not missing:
            continue
        token, total = prompt_token(index), len(flags)
        if len(missing) == total:
            sentences.append(f"{token} is not visible in any of the {total} frames.")
        else:
            frames = ", ".join(str(t) for t in missing)
            sentences.append(
                f"{token} is not visible in frame{'s' if len(missing) > 1 else ''} {frames} of {total}."
            )
    return " ".join(sentences)


def video_region_order(objects_present: Sequence[Sequence[bool]]) -> list[tuple[int, int]]:
    """The ``(object, frame)`` pairs in the order their region runs appear in :func:`build_video_prompt`."""
    return [(k, t) for k, flags in enumerate(objects_present) for t, p in enumerate(flags) if p]


def clean_answer(text: str) -> str:
    """Strip whitespace and a trailing ``<|eot_id|>`` from decoded output (``GAR-Bench/inference.py``)."""
    text = text.strip()
    if text.endswith(EOT_TOKEN):
        text = text[: -len(EOT_TOKEN)].rstrip()
    return text
