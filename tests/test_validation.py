"""The shared argument checks: one table of values per check, accepted or refused with the argument's name."""

import numpy as np
import pytest

from diffusers_sspir.validation import check_finite, check_integer, check_tiling, check_whole_number

INTEGERS = [
    (1, {}, None), (np.int64(3), {"minimum": 1}, None), (0, {"minimum": 1}, ">= 1"), (5, {"maximum": 4}, "<= 4"),
    (True, {}, "an integer"), (2.0, {}, "an integer"), ("3", {}, "an integer"),
]  # fmt: skip
FINITES = [
    (1.5, {}, None), (np.float32(2), {"above": 0}, None), (0, {"above": 0}, "> 0"), (float("nan"), {}, "finite"),
    (float("inf"), {}, "finite"), (None, {}, "finite"), (True, {}, "finite"),
]  # fmt: skip
TILES = [
    (None, None, 8, None), (64, 16, 8, None), (48, 16, 4, None), (48, None, 8, "multiple of 8 >= 64"),
    (64, 12, 8, "multiple of 8"), (64, 64, None, "smaller than `tile_size`"), (None, 8, None, "needs `tile_size`"),
    (20, None, None, None), (0, None, None, ">= 1"),
]  # fmt: skip


@pytest.mark.parametrize("value, bounds, error", INTEGERS)
def test_check_integer(value, bounds, error):
    if error is None:
        assert check_integer("steps", value, **bounds) == int(value)
    else:
        with pytest.raises(ValueError, match=f"`steps` must be an integer.*{error}|`steps` must be {error}"):
            check_integer("steps", value, **bounds)


@pytest.mark.parametrize("value, bounds, error", FINITES)
def test_check_finite(value, bounds, error):
    if error is None:
        assert check_finite("scale", value, **bounds) == float(value)
    else:
        with pytest.raises(ValueError, match=f"`scale` must be .*{error}"):
            check_finite("scale", value, **bounds)


@pytest.mark.parametrize("tile_size, tile_overlap, factor, error", TILES)
def test_check_tiling(tile_size, tile_overlap, factor, error):
    if error is None:
        check_tiling(tile_size, tile_overlap, factor)
    else:
        with pytest.raises(ValueError, match=error):
            check_tiling(tile_size, tile_overlap, factor)


@pytest.mark.parametrize(
    "value, expected",
    [(20.0, 20), (np.float32(3.0), 3), (7, 7), (2.5, "must be an integer, got 2.5"), (float("nan"), "integer"),
     (True, "integer"), (0.0, ">= 1, got 0")],
)  # fmt: skip
def test_check_whole_number_takes_integral_floats_as_forms_give_them(value, expected):
    if isinstance(expected, int):
        result = check_whole_number("steps", value, minimum=1)
        assert result == expected and type(result) is int
    else:
        with pytest.raises(ValueError, match=f"`steps` .*{expected}"):
            check_whole_number("steps", value, minimum=1)
