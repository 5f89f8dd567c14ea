"""Prompts from text (garvideo.trackers.prompts): object order, and errors that name the library field."""

import numpy as np
import pytest

from garvideo.cli._errors import error_line
from garvideo.errors import InputError
from garvideo.trackers import StaticTracker, build_prompts, parse_box, parse_points
from garvideo.trackers.prompts import require_sam2


def test_build_prompts_orders_masks_then_points_then_boxes():
    mask = np.zeros((8, 8), bool)
    mask[2:5, 2:5] = True
    prompts = build_prompts([mask], points=["1,2;3,4,0"], boxes=["0,0,4,4"], frame=3)
    assert [(p.obj_id, p.kind, p.frame) for p in prompts] == [(1, "mask", 3), (2, "points", 3), (3, "box", 3)]
    np.testing.assert_array_equal(prompts[1].points, [[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(prompts[1].labels, [1, 0])
    assert prompts[2].box == (0.0, 0.0, 4.0, 4.0)


@pytest.mark.parametrize(
    ("points", "boxes", "field", "problem"),
    [
        (["1,2", "a,b"], [], "points", "#2: point 'a,b' is not x,y[,label] numbers"),
        (["1,2,0"], [], "points", "#1: give at least one positive point (label 1)"),
        ([], ["0,0,4,4", "4,4,1,1"], "box", "#2: box '4,4,1,1' is empty (need x1 > x0 and y1 > y0)"),
    ],
)
def test_build_prompts_errors_name_the_field_and_the_entry(points, boxes, field, problem):
    with pytest.raises(InputError) as exc:
        build_prompts([], points=points, boxes=boxes)
    assert (exc.value.source, exc.value.problem) == (field, problem)


def test_parsers_default_to_the_field_names():
    with pytest.raises(InputError) as exc:
        parse_points("1")
    assert exc.value.source == "points"
    with pytest.raises(InputError) as exc:
        parse_box("1,2,3")
    assert exc.value.source == "box"


def test_points_without_sam2_name_both_fields_and_the_cli_restores_the_flags():
    prompts = build_prompts([], points=["1,2"])
    with pytest.raises(InputError) as exc:
        require_sam2(StaticTracker(), prompts)
    assert exc.value.source == "points/box"
    assert "point and box prompts need SAM 2 but the tracker is static" in exc.value.problem
    assert error_line(exc.value).startswith("error: --points/--box: point and box prompts need SAM 2")
    require_sam2(StaticTracker(), build_prompts([np.ones((4, 4), bool)]))  # masks only: fine
