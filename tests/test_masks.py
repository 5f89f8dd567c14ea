"""garvideo.masks: every input format, the boundary checks, RLE, id maps and boxes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from garvideo.errors import InputError
from garvideo.masks import (
    load_mask,
    load_masks,
    mask_to_box,
    masks_to_id_map,
    rle_decode,
    rle_encode,
    save_id_map,
    union_mask,
)


@pytest.fixture
def two_objects():
    a = np.zeros((12, 16), bool)
    a[2:5, 3:9] = True
    b = np.zeros((12, 16), bool)
    b[7:11, 10:15] = True
    return a, b


def test_binary_png_0_255(tmp_path, two_objects):
    a, _ = two_objects
    Image.fromarray(a.astype(np.uint8) * 255).save(tmp_path / "m.png")
    (m,) = load_mask(tmp_path / "m.png", (12, 16))
    np.testing.assert_array_equal(m, a)


def test_mode_1_png(tmp_path, two_objects):
    a, _ = two_objects
    Image.fromarray(a).convert("1").save(tmp_path / "m.png")
    (m,) = load_mask(tmp_path / "m.png")
    np.testing.assert_array_equal(m, a)


def test_id_png_gives_objects_in_id_order(tmp_path, two_objects):
    a, b = two_objects
    save_id_map(tmp_path / "ids.png", [a, b], ids=[3, 1])  # a has id 3, b has id 1
    masks = load_mask(tmp_path / "ids.png")
    assert len(masks) == 2
    np.testing.assert_array_equal(masks[0], b)
    np.testing.assert_array_equal(masks[1], a)


def test_palette_png(tmp_path, two_objects):
    a, b = two_objects
    im = Image.fromarray(masks_to_id_map([a, b]), mode="L").convert("P")
    im.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (256 * 3 - 9))
    im.save(tmp_path / "pal.png")
    assert Image.open(tmp_path / "pal.png").mode == "P"
    masks = load_mask(tmp_path / "pal.png")
    assert [m.sum() for m in masks] == [a.sum(), b.sum()]


def test_soft_matte_is_binarised_at_half(tmp_path):
    v = np.zeros((4, 4), np.uint8)
    v[0, :] = 255
    v[1, :] = 200  # kept
    v[2, :] = 127  # dropped
    v[3, 0] = 40  # dropped (a soft edge, not an id: the image has values above 32)
    Image.fromarray(v).save(tmp_path / "soft.png")
    (m,) = load_mask(tmp_path / "soft.png")
    assert m[:2].all() and not m[2:].any()


def test_rgb_colour_mask_one_object_per_colour(tmp_path, two_objects):
    a, b = two_objects
    rgb = np.zeros((12, 16, 3), np.uint8)
    rgb[a] = (255, 0, 0)
    rgb[b] = (0, 255, 0)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    masks = load_mask(tmp_path / "rgb.png")
    assert sorted(m.sum() for m in masks) == sorted([a.sum(), b.sum()])


def test_npy_2d_3d_float(tmp_path, two_objects):
    a, b = two_objects
    np.save(tmp_path / "bool.npy", a)
    np.save(tmp_path / "ids.npy", masks_to_id_map([a, b]).astype(np.int32))
    np.save(tmp_path / "stack.npy", np.stack([a, b]))
    np.save(tmp_path / "prob.npy", a.astype(np.float32) * 0.9)
    np.testing.assert_array_equal(load_mask(tmp_path / "bool.npy")[0], a)
    assert len(load_mask(tmp_path / "ids.npy")) == 2
    assert len(load_mask(tmp_path / "stack.npy")) == 2
    np.testing.assert_array_equal(load_mask(tmp_path / "prob.npy")[0], a)


def test_coco_rle_json_string_and_list_counts(tmp_path, two_objects):
    a, b = two_objects
    rle = rle_encode(a)
    assert isinstance(rle["counts"], str) and rle["size"] == [12, 16]
    (tmp_path / "one.json").write_text(json.dumps(rle))
    np.testing.assert_array_equal(load_mask(tmp_path / "one.json")[0], a)
    # uncompressed (list) counts, column-major runs starting with background
    flat = a.flatten(order="F").astype(int)
    counts, cur, run = [], 0, 0
    for v in flat:
        if v == cur:
            run += 1
        else:
            counts.append(run)
            cur, run = v, 1
    counts.append(run)
    (tmp_path / "list.json").write_text(json.dumps({"size": [12, 16], "counts": counts}))
    np.testing.assert_array_equal(load_mask(tmp_path / "list.json")[0], a)
    (tmp_path / "many.json").write_text(json.dumps([{"segmentation": rle}, rle_encode(b)]))
    assert len(load_mask(tmp_path / "many.json")) == 2


def test_rle_round_trip_random():
    rng = np.random.default_rng(0)
    m = rng.random((33, 47)) > 0.6
    np.testing.assert_array_equal(rle_decode(rle_encode(m)), m)


@pytest.mark.parametrize(
    "rle, problem",
    [
        ({"counts": "abc"}, "malformed COCO RLE"),
        ({"size": [4], "counts": "abc"}, "size must be"),
        ({"size": [2, 2], "counts": [1, 2]}, "sum to 4"),
        ({"size": [2, 2], "counts": 5}, "string or a list"),
    ],
)
def test_malformed_rle(rle, problem):
    with pytest.raises(InputError, match=problem) as e:
        rle_decode(rle, source="ann.json")
    assert str(e.value).startswith("ann.json: ")


def test_size_mismatch_and_resize(tmp_path, two_objects):
    a, _ = two_objects
    Image.fromarray(a.astype(np.uint8) * 255).save(tmp_path / "m.png")
    with pytest.raises(InputError) as e:
        load_mask(tmp_path / "m.png", (24, 32))
    msg = str(e.value)
    assert "m.png" in msg and "16x12" in msg and "32x24" in msg and "--resize-masks" in msg
    (m,) = load_mask(tmp_path / "m.png", (24, 32), resize=True)
    assert m.shape == (24, 32) and m.sum() == 4 * a.sum()


def test_empty_mask_is_an_error_unless_allowed(tmp_path):
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "e.png")
    with pytest.raises(InputError, match="e.png: mask is empty"):
        load_mask(tmp_path / "e.png")
    (m,) = load_mask(tmp_path / "e.png", allow_empty=True)
    assert m.shape == (5, 5) and not m.any()


@pytest.mark.parametrize(
    "name, content, problem",
    [
        ("missing.png", None, "no such mask file"),
        ("bad.png", b"not a png", "unreadable mask image"),
        ("bad.npy", b"nope", "unreadable .npy"),
        ("bad.json", b"{not json", "not a valid JSON"),
    ],
)
def test_unreadable_files(tmp_path, name, content, problem):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(InputError, match=problem) as e:
        load_mask(tmp_path / name)
    assert name in str(e.value)


def test_npy_bad_shape_and_nan(tmp_path):
    np.save(tmp_path / "4d.npy", np.zeros((1, 1, 2, 2)))
    with pytest.raises(InputError, match="2-D"):
        load_mask(tmp_path / "4d.npy")
    arr = np.ones((3, 3), np.float32)
    arr[0, 0] = np.nan
    np.save(tmp_path / "nan.npy", arr)
    with pytest.raises(InputError, match="NaN"):
        load_mask(tmp_path / "nan.npy")


def test_load_masks_flattens_objects(tmp_path, two_objects):
    a, b = two_objects
    save_id_map(tmp_path / "ids.png", [a, b])
    Image.fromarray(a.astype(np.uint8) * 255).save(tmp_path / "a.png")
    assert len(load_masks([tmp_path / "ids.png", tmp_path / "a.png"], (12, 16))) == 3


def test_box_union_and_id_map(two_objects):
    a, b = two_objects
    assert mask_to_box(a) == (3, 2, 9, 5)
    assert mask_to_box(np.zeros((3, 3), bool)) is None
    assert union_mask([a, b]).sum() == a.sum() + b.sum()
    ids = masks_to_id_map([a, b])
    assert set(np.unique(ids)) == {0, 1, 2}
    with pytest.raises(ValueError):
        masks_to_id_map([a], ids=[300])


def test_rle_size_check(two_objects):
    a, _ = two_objects
    assert rle_decode(rle_encode(a), size=(12, 16)).shape == (12, 16)
    with pytest.raises(InputError, match=r"^ann.json: mask is 16x12 but the video frames are 32x24$"):
        rle_decode(rle_encode(a), source="ann.json", size=(24, 32))
