"""Checks of argument values shared by the pipeline, the command line and the training scripts, in one torch-free
module: each raises `ValueError` naming the argument, the value and what is accepted."""

import math
import numbers

from .defaults import COLOR_FIX_NAMES, INTEGER_SETTINGS, MAX_SEED, POSITIVE_SETTINGS, RANGES


def is_number(value) -> bool:
    """A real number that is not a bool (`True` is an `int` in Python)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_integer(name: str, value, minimum: int | None = None, maximum: int | None = None) -> int:
    """`value` as an `int`, if it is an integer in `[minimum, maximum]`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"`{name}` must be an integer, got {value!r}.")
    if minimum is not None and value < minimum or maximum is not None and value > maximum:
        bounds = " and ".join(
            part
            for part in (
                f">= {minimum}" if minimum is not None else "",
                f"<= {maximum}" if maximum is not None else "",
            )
            if part
        )
        raise ValueError(f"`{name}` must be an integer {bounds}, got {value!r}.")
    return int(value)


def check_whole_number(name: str, value, minimum: int | None = None, maximum: int | None = None) -> int:
    """[`check_integer`] for values that web forms and sliders give as floats: `20.0` is the integer 20, `20.5` is
    refused."""
    if is_number(value) and math.isfinite(value) and float(value).is_integer():
        value = int(value)
    return check_integer(name, value, minimum, maximum)


def check_finite(
    name: str, value, above: float | None = None, minimum: float | None = None, maximum: float | None = None
) -> float:
    """`value` as a `float`, if it is a finite number (greater than `above`, in `[minimum, maximum]`, when given)."""
    ok = is_number(value) and math.isfinite(value)
    ok = ok and (above is None or value > above) and (minimum is None or value >= minimum)
    if not ok or maximum is not None and value > maximum:
        bounds = [f"> {above:g}" if above is not None else "", f">= {minimum:g}" if minimum is not None else "",
                  f"<= {maximum:g}" if maximum is not None else ""]  # fmt: skip
        requirement = " and ".join(b for b in bounds if b)
        raise ValueError(f"`{name}` must be a finite number{' ' + requirement if requirement else ''}, got {value!r}.")
    return float(value)


def check_setting(name: str, value) -> float:
    """`value` checked against the range of setting `name` in `diffusers_sspir.defaults.RANGES`."""
    low, high = RANGES[name]
    if name in POSITIVE_SETTINGS:
        return check_finite(name, value, above=low, maximum=high)
    return check_finite(name, value, minimum=low, maximum=high)


def check_call_setting(name: str, value):
    """`value` checked as the call setting `name` of `diffusers_sspir.defaults.CALL_DEFAULTS`: an integer in its
    `INTEGER_SETTINGS` range, or a number in its `RANGES` range."""
    if name in INTEGER_SETTINGS:
        low, high = INTEGER_SETTINGS[name]
        return check_integer(name, value, minimum=low, maximum=high)
    return check_setting(name, value)


def check_seed(name: str, value) -> int:
    """A seed `torch.Generator.manual_seed` accepts: an integer in `[0, 2**63 - 1]`."""
    return check_integer(name, value, minimum=0, maximum=MAX_SEED)


def check_tiling(tile_size, tile_overlap, factor: int | None = None) -> None:
    """The tiling rule of the pipeline: `tile_size` output pixels, a multiple of the VAE's downscaling `factor` and at
    least 8 latent pixels, and `tile_overlap` a multiple of `factor` smaller than `tile_size`. With `factor=None`
    (before a model is loaded) only what holds for every model is checked."""
    if tile_size is None:
        if tile_overlap is not None:
            raise ValueError(f"`tile_overlap` ({tile_overlap!r}) needs `tile_size`; pass both to denoise in tiles.")
        return
    check_integer("tile_size", tile_size, minimum=1)
    overlap = check_integer("tile_overlap", 0 if tile_overlap is None else tile_overlap, minimum=0)
    if overlap >= tile_size:
        raise ValueError(f"`tile_overlap` ({tile_overlap!r}) must be smaller than `tile_size` ({tile_size}).")
    if factor is None:
        return
    smallest = 8 * factor
    if tile_size < smallest or tile_size % factor:
        raise ValueError(
            f"`tile_size` must be a multiple of {factor} >= {smallest} (output pixels) for this model, got "
            f"{tile_size!r}."
        )
    if overlap % factor:
        raise ValueError(
            f"`tile_overlap` ({tile_overlap!r}) must be a multiple of {factor}, >= 0 and smaller than `tile_size` "
            f"({tile_size})."
        )


def color_fix_from_name(name: str) -> str | None:
    """The pipeline's `color_fix` argument for one of `COLOR_FIX_NAMES` as the command line and the web demo name
    them (`"none"` is `None`)."""
    if name not in COLOR_FIX_NAMES:
        raise ValueError(f"colour fix must be one of {', '.join(COLOR_FIX_NAMES)}, got {name!r}.")
    return None if name == "none" else name
