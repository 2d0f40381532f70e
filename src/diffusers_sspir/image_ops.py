# Copyright 2025 The diffusers-sspir authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Image conversion, padding, colour correction and tiling helpers for the SSP-IR pipeline.

Everything here works on plain `torch.Tensor`s in the `[0, 1]` range with a `(B, C, H, W)` or `(C, H, W)` layout and
has no dependency beyond `torch`, `numpy`, `PIL` and diffusers' logging.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch
import torch.nn.functional as F
from diffusers.utils import logging

logger = logging.get_logger(__name__)

__all__ = [
    "adain_color_fix",
    "apply_color_fix",
    "gaussian_weights",
    "pad_to_multiple",
    "tile_starts",
    "to_tensor_batch",
    "wavelet_color_fix",
]

# Float inputs may overshoot `[0, 1]` by this much (resampling, JPEG round trips, fp16) before they are rejected;
# anything within the tolerance is clamped.
RANGE_TOLERANCE = 1e-3

ACCEPTED_IMAGE_TYPES = (
    "a `PIL.Image.Image`, a `np.ndarray` of shape (H, W) or (H, W, C) (uint8, uint16, bool or float in [0, 1]), "
    "a `torch.Tensor` of shape (C, H, W) or (B, C, H, W) (float in [0, 1] or uint8), or a list of these"
)
COLOR_FIX_METHODS = ("wavelet", "adain", None)
PAD_MODES = ("reflect", "replicate", "constant")

_PIL_16_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_FLOAT_DTYPES_NEEDING_UPCAST = (torch.float16, torch.bfloat16)


# ---------------------------------------------------------------------------------------------------------------------
# Input conversion
# ---------------------------------------------------------------------------------------------------------------------


def _describe(value: Any) -> str:
    """Short, bounded description of an arbitrary value for error messages."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} of type `{type(value).__module__}.{type(value).__qualname__}`"


def _check_spatial_size(height: int, width: int, name: str) -> None:
    if height == 0 or width == 0:
        raise ValueError(f"`{name}` has an empty spatial size (height={height}, width={width}); both must be >= 1.")


def _to_three_channels(x: torch.Tensor, name: str, layout: str) -> torch.Tensor:
    """Map a `(C, H, W)` tensor with 1, 3 or 4 channels to 3 channels (replicate grey, drop alpha)."""
    channels = x.shape[0]
    if channels == 3:
        return x
    if channels == 1:
        return x.expand(3, -1, -1)
    if channels == 4:
        return x[:3]
    raise ValueError(
        f"`{name}` has {channels} channels (layout {layout}, shape {tuple(x.shape)}); accepted channel counts are "
        "1 (grayscale), 3 (RGB) and 4 (RGBA, alpha is dropped)."
    )


def _check_float_range(x: torch.Tensor, name: str) -> torch.Tensor:
    """Reject non-finite or out-of-range float data, clamp values within `RANGE_TOLERANCE` of `[0, 1]`."""
    if x.numel() == 0:
        return x
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"`{name}` contains NaN or infinite values; expected finite floats in [0, 1].")
    lo, hi = float(x.min()), float(x.max())
    if lo < -RANGE_TOLERANCE or hi > 1.0 + RANGE_TOLERANCE:
        hint = " It looks like a [-1, 1] image: map it with `(x + 1) / 2` first." if lo < -RANGE_TOLERANCE else ""
        hint = " It looks like a [0, 255] image: divide by 255 first." if hi > 2.0 else hint
        raise ValueError(
            f"`{name}` has float values in [{lo:.4g}, {hi:.4g}]; float images must lie in [0, 1] "
            f"(tolerance {RANGE_TOLERANCE}).{hint}"
        )
    return x.clamp(0.0, 1.0)


EXIF_ORIENTATION = 0x0112


def _pil_to_tensor(image: PIL.Image.Image, name: str) -> torch.Tensor:
    if image.getexif().get(EXIF_ORIENTATION, 1) != 1:
        # Turned upright as its EXIF says (phone photos), exactly as `diffusers_sspir.files.read_image` reads files.
        image = PIL.ImageOps.exif_transpose(image)
    if getattr(image, "n_frames", 1) > 1:
        logger.warning(f"`{name}` is an animated image of {image.n_frames} frames; only its current frame is used.")
    width, height = image.size
    _check_spatial_size(height, width, name)
    mode = image.mode
    if mode in _PIL_16_BIT_MODES:
        # `convert("RGB")` would clip 16-bit data to 8 bits, so scale through numpy instead.
        array = np.asarray(image).astype(np.float32) / 65535.0
        array = np.clip(array, 0.0, 1.0)
    elif mode == "F":
        array = np.asarray(image).astype(np.float32)
        return _to_three_channels(_check_float_range(torch.from_numpy(array)[None], name), name, "PIL 'F'")
    elif mode in ("L", "RGB"):
        array = np.asarray(image).astype(np.float32) / 255.0
    elif mode == "1":
        array = np.asarray(image).astype(np.float32)
    else:  # "P", "PA", "LA", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", ... -> RGB, alpha dropped.
        array = np.asarray(image.convert("RGB")).astype(np.float32) / 255.0
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    tensor = tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)
    return _to_three_channels(tensor, name, f"PIL mode {mode!r}")


def _numpy_to_tensor(array: np.ndarray, name: str) -> torch.Tensor:
    if array.ndim == 2:
        array = array[:, :, None]
    elif array.ndim != 3:
        raise ValueError(
            f"`{name}` is a numpy array of shape {array.shape} ({array.ndim} dims); accepted shapes are (H, W), "
            "(H, W, C) and (B, H, W, C) with C in {1, 3, 4}."
        )
    height, width, channels = array.shape
    _check_spatial_size(height, width, name)
    if channels not in (1, 3, 4):
        raise ValueError(
            f"`{name}` is a numpy array of shape {array.shape} with {channels} channels in the last axis; accepted "
            "shapes are (H, W) and (H, W, C) with C in {1, 3, 4} (channels-last)."
        )
    if array.dtype == np.uint8:
        tensor = torch.from_numpy(array.astype(np.float32) / 255.0)
    elif array.dtype == np.uint16:
        tensor = torch.from_numpy(array.astype(np.float32) / 65535.0)
    elif array.dtype == np.bool_:
        tensor = torch.from_numpy(array.astype(np.float32))
    elif np.issubdtype(array.dtype, np.floating):
        tensor = _check_float_range(torch.from_numpy(array.astype(np.float32)), name)
    else:
        raise TypeError(
            f"`{name}` is a numpy array of dtype {array.dtype}; accepted dtypes are uint8 (0-255), uint16 (0-65535), "
            "bool and floating point in [0, 1]."
        )
    return _to_three_channels(tensor.permute(2, 0, 1).contiguous(), name, "(H, W, C)")


def _torch_to_tensors(tensor: torch.Tensor, name: str) -> list[torch.Tensor]:
    tensor = tensor.detach()
    if tensor.ndim == 3:
        tensor = tensor[None]
    elif tensor.ndim != 4:
        raise ValueError(
            f"`{name}` is a tensor of shape {tuple(tensor.shape)} ({tensor.ndim} dims); accepted shapes are "
            "(C, H, W) and (B, C, H, W) with C in {1, 3, 4}."
        )
    batch, _, height, width = tensor.shape
    if batch == 0:
        raise ValueError(f"`{name}` is a tensor of shape {tuple(tensor.shape)} with an empty batch; expected B >= 1.")
    _check_spatial_size(height, width, name)
    if tensor.dtype == torch.uint8:
        tensor = tensor.to(torch.float32) / 255.0
    elif tensor.dtype == torch.bool:
        tensor = tensor.to(torch.float32)
    elif tensor.is_floating_point():
        tensor = _check_float_range(tensor.to(torch.float32), name)
    else:
        raise TypeError(
            f"`{name}` is a tensor of dtype {tensor.dtype}; accepted dtypes are floating point in [0, 1], uint8 "
            "(0-255) and bool."
        )
    return [_to_three_channels(sample, name, "(C, H, W)").contiguous() for sample in tensor]


def _convert_one(image: Any, name: str) -> list[torch.Tensor]:
    if isinstance(image, PIL.Image.Image):
        return [_pil_to_tensor(image, name)]
    if isinstance(image, np.ndarray):
        if image.ndim == 4:  # a channels-last batch (B, H, W, C), as diffusers' image processor accepts
            return [_numpy_to_tensor(item, f"{name}[{i}]") for i, item in enumerate(image)]
        return [_numpy_to_tensor(image, name)]
    if isinstance(image, torch.Tensor):
        return _torch_to_tensors(image, name)
    if image is None:
        raise ValueError(f"`{name}` is None; expected {ACCEPTED_IMAGE_TYPES}.")
    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        raise TypeError(
            f"`{name}` is {_describe(image)}; file paths are not accepted, load the image first (for example with "
            f"`diffusers.utils.load_image` or `PIL.Image.open`). Expected {ACCEPTED_IMAGE_TYPES}."
        )
    raise TypeError(f"`{name}` is {_describe(image)}; expected {ACCEPTED_IMAGE_TYPES}.")


def to_tensor_batch(image: Any, argument_name: str = "image") -> list[torch.Tensor]:
    r"""
    Convert user-facing image inputs to a list of RGB float tensors.

    Conversions performed (no rejection): PIL images carrying an EXIF orientation are turned upright first (as
    `diffusers_sspir.files.read_image` reads files; an animated image gives its current frame, with a warning); RGBA /
    LA / PA inputs lose their alpha channel (for PIL through
    `PIL.Image.Image.convert("RGB")`, for arrays and tensors the 4th channel is dropped, no compositing), grayscale
    inputs (PIL `"L"`/`"1"`, `(H, W)` or single-channel arrays and tensors) are replicated to 3 channels, palette
    (`"P"`) and other PIL modes are converted to RGB, 16-bit data (PIL `"I;16*"` / `"I"` modes, `np.uint16` arrays)
    is divided by 65535, `np.uint8` arrays and `torch.uint8` tensors by 255. Float data may exceed `[0, 1]` by at
    most `1e-3` and is then clamped. Images in a list may have different sizes; each is returned separately.

    Args:
        image (`PIL.Image.Image`, `np.ndarray`, `torch.Tensor` or `list` of these):
            The input. Numpy arrays are channels-last `(H, W)` or `(H, W, C)`; tensors are channels-first `(C, H, W)`
            or `(B, C, H, W)` (a batched tensor contributes `B` entries). `C` must be 1, 3 or 4. File paths (`str`)
            are not accepted.
        argument_name (`str`, *optional*, defaults to `"image"`):
            Name of the user-facing argument, used in error messages (list elements are reported as `name[i]`).

    Returns:
        `list[torch.Tensor]`: One `float32` tensor of shape `(3, H, W)` with values in `[0, 1]` per image. Tensors
        keep their device; PIL and numpy inputs give CPU tensors.

    Raises:
        `ValueError`: For `None`, an empty list, an empty image (0 height or width), an unsupported channel count or
            number of dimensions, or float values outside `[0, 1]` (beyond the tolerance) or non-finite.
        `TypeError`: For objects that are not images (for example `str`, `int`) or unsupported dtypes.
    """
    if image is None:
        raise ValueError(f"`{argument_name}` is None; expected {ACCEPTED_IMAGE_TYPES}.")
    if isinstance(image, (list, tuple)):
        if len(image) == 0:
            raise ValueError(f"`{argument_name}` is an empty {type(image).__name__}; expected at least one image.")
        tensors: list[torch.Tensor] = []
        for index, item in enumerate(image):
            item_name = f"{argument_name}[{index}]"
            if isinstance(item, (list, tuple)):
                raise TypeError(
                    f"`{item_name}` is a nested {type(item).__name__}; expected a flat list of images, each "
                    f"{ACCEPTED_IMAGE_TYPES.removesuffix(', or a list of these')}."
                )
            tensors.extend(_convert_one(item, item_name))
        return tensors
    return _convert_one(image, argument_name)


# ---------------------------------------------------------------------------------------------------------------------
# Padding
# ---------------------------------------------------------------------------------------------------------------------


def upscale_bicubic(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of `(batch, 3, h, w)` images in `[0, 1]` to `size`, clamped to `[0, 1]`: how SSP-IR upscales the
    low-quality input before every prior, at inference and in training alike."""
    return F.interpolate(images, size=size, mode="bicubic", align_corners=False).clamp(0, 1)


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "reflect") -> tuple[torch.Tensor, tuple[int, int]]:
    r"""
    Pad a batch at the bottom and right so that its height and width are multiples of `multiple`.

    Undo with `x_padded[..., : x_padded.shape[-2] - pad_h, : x_padded.shape[-1] - pad_w]` (or crop to the original
    size). `"reflect"` padding requires the pad to be smaller than the side it reflects; when it is not (tiny images),
    that side falls back to `"replicate"` padding.

    Args:
        x (`torch.Tensor`):
            Batch of shape `(B, C, H, W)`.
        multiple (`int`):
            Positive integer the padded height and width must be divisible by (for example 8 or 64).
        mode (`str`, *optional*, defaults to `"reflect"`):
            One of `"reflect"`, `"replicate"` or `"constant"` (zeros).

    Returns:
        `tuple[torch.Tensor, tuple[int, int]]`: The padded tensor (the input itself when no padding is needed) and
        `(pad_h, pad_w)`, the number of rows added at the bottom and columns added at the right.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        got = f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else _describe(x)
        raise ValueError(f"`x` must be a 4D `torch.Tensor` of shape (B, C, H, W), got {got}.")
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise ValueError(f"`multiple` must be a positive integer, got {multiple!r}.")
    if mode not in PAD_MODES:
        raise ValueError(f"`mode` must be one of {PAD_MODES}, got {mode!r}.")
    height, width = x.shape[-2:]
    pad_h = (-height) % multiple
    pad_w = (-width) % multiple
    if pad_w:
        w_mode = "replicate" if mode == "reflect" and pad_w >= width else mode
        x = F.pad(x, (0, pad_w, 0, 0), mode=w_mode)
    if pad_h:
        h_mode = "replicate" if mode == "reflect" and pad_h >= height else mode
        x = F.pad(x, (0, 0, 0, pad_h), mode=h_mode)
    return x, (pad_h, pad_w)


# ---------------------------------------------------------------------------------------------------------------------
# Colour correction
# ---------------------------------------------------------------------------------------------------------------------


def _check_image_pair(image: torch.Tensor, source: torch.Tensor, same_spatial: bool) -> None:
    for name, value in (("image", image), ("source", source)):
        if not isinstance(value, torch.Tensor) or value.ndim != 4:
            got = f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else _describe(value)
            raise ValueError(f"`{name}` must be a 4D `torch.Tensor` of shape (B, C, H, W), got {got}.")
    if source.shape[0] not in (1, image.shape[0]) or source.shape[1] != image.shape[1]:
        raise ValueError(
            f"`source` of shape {tuple(source.shape)} does not match `image` of shape {tuple(image.shape)}; it needs "
            "the same number of channels and the same batch size (or batch size 1)."
        )
    if same_spatial and source.shape[-2:] != image.shape[-2:]:
        raise ValueError(
            f"`source` spatial size {tuple(source.shape[-2:])} differs from `image` spatial size "
            f"{tuple(image.shape[-2:])}; resize it first or use `apply_color_fix`, which resizes bicubically."
        )


def _wavelet_blur(x: torch.Tensor, dilation: int) -> torch.Tensor:
    """One "a trous" step: 3x3 binomial kernel with the given dilation and replicate padding."""
    channels = x.shape[1]
    kernel = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]], dtype=x.dtype, device=x.device) / 16.0
    kernel = kernel[None, None].expand(channels, 1, 3, 3)
    x = F.pad(x, (dilation, dilation, dilation, dilation), mode="replicate")
    return F.conv2d(x, kernel, groups=channels, dilation=dilation)


def _wavelet_decomposition(x: torch.Tensor, levels: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Split `x` into `(high, low)` with `high + low == x` using `levels` dilated blurs (dilation `2**i`)."""
    low = x
    for level in range(levels):
        low = _wavelet_blur(low, 2**level)
    return x - low, low


def _upcast(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in _FLOAT_DTYPES_NEEDING_UPCAST else x


def wavelet_color_fix(image: torch.Tensor, source: torch.Tensor, levels: int = 5) -> torch.Tensor:
    r"""
    Wavelet colour correction (StableSR `wavelet_reconstruction`): high frequencies of `image`, low of `source`.

    Both inputs are decomposed with `levels` iterations of a dilated ("a trous") 3x3 binomial blur
    (`[[1, 2, 1], [2, 4, 2], [1, 2, 1]] / 16`, dilation `2**i`, replicate padding); the result is
    `image - low(image) + low(source)`. A constant per-channel colour cast between `image` and `source` is removed
    exactly. The output is not clamped: the caller clamps to its value range.

    Args:
        image (`torch.Tensor`):
            Restored image of shape `(B, C, H, W)` whose detail is kept.
        source (`torch.Tensor`):
            Reference of shape `(B, C, H, W)` (or `(1, C, H, W)`) with the same spatial size, whose colour is kept.
        levels (`int`, *optional*, defaults to 5):
            Number of decomposition levels; more levels keep less of the source (only coarser colour).

    Returns:
        `torch.Tensor`: Tensor of the same shape, dtype and device as `image`.
    """
    _check_image_pair(image, source, same_spatial=True)
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise ValueError(f"`levels` must be a positive integer, got {levels!r}.")
    dtype = image.dtype
    image_f = _upcast(image)
    source_f = _upcast(source).to(device=image.device, dtype=image_f.dtype)
    high, _ = _wavelet_decomposition(image_f, levels)
    _, low = _wavelet_decomposition(source_f, levels)
    return (high + low).to(dtype)


def adain_color_fix(image: torch.Tensor, source: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    r"""
    AdaIN colour correction: match the per-sample, per-channel mean and standard deviation of `image` to `source`.

    Computes `(image - mean(image)) / sqrt(var(image) + eps) * sqrt(var(source) + eps) + mean(source)` with
    population statistics over the spatial dimensions. The output is not clamped: the caller clamps.

    Args:
        image (`torch.Tensor`):
            Restored image of shape `(B, C, H, W)`.
        source (`torch.Tensor`):
            Reference of shape `(B, C, H', W')` (or `(1, C, H', W')`); the spatial size may differ since only its
            statistics are used.
        eps (`float`, *optional*, defaults to 1e-5):
            Added to the variances for numerical stability (flat channels).

    Returns:
        `torch.Tensor`: Tensor of the same shape, dtype and device as `image`.
    """
    _check_image_pair(image, source, same_spatial=False)
    dtype = image.dtype
    image_f = _upcast(image)
    source_f = _upcast(source).to(device=image.device, dtype=image_f.dtype)
    image_var, image_mean = torch.var_mean(image_f, dim=(-2, -1), keepdim=True, correction=0)
    source_var, source_mean = torch.var_mean(source_f, dim=(-2, -1), keepdim=True, correction=0)
    normalized = (image_f - image_mean) / torch.sqrt(image_var + eps)
    return (normalized * torch.sqrt(source_var + eps) + source_mean).to(dtype)


def apply_color_fix(image: torch.Tensor, source: torch.Tensor, method: str | None) -> torch.Tensor:
    r"""
    Apply a colour correction method, resizing `source` to the size of `image` first when they differ.

    Args:
        image (`torch.Tensor`):
            Restored image of shape `(B, C, H, W)`.
        source (`torch.Tensor`):
            Reference (usually the low-quality input) of shape `(B, C, H', W')` or `(1, C, H', W')`; resized
            bicubically (`align_corners=False`) to `(H, W)` when `(H', W') != (H, W)`.
        method (`str` or `None`):
            `"wavelet"` (see [`wavelet_color_fix`]), `"adain"` (see [`adain_color_fix`]) or `None` (returns `image`
            unchanged).

    Returns:
        `torch.Tensor`: The corrected image, same shape, dtype and device as `image`. Not clamped: bicubic resizing
        and both methods can leave the `[0, 1]` range, so the caller must clamp.
    """
    if method not in COLOR_FIX_METHODS:
        raise ValueError(f"`method` must be one of {COLOR_FIX_METHODS}, got {method!r}.")
    if method is None:
        return image
    _check_image_pair(image, source, same_spatial=False)
    if source.shape[-2:] != image.shape[-2:]:
        source_dtype = source.dtype
        source = F.interpolate(_upcast(source), size=tuple(image.shape[-2:]), mode="bicubic", align_corners=False).to(
            source_dtype
        )
    if method == "wavelet":
        return wavelet_color_fix(image, source)
    return adain_color_fix(image, source)


# ---------------------------------------------------------------------------------------------------------------------
# Tiling
# ---------------------------------------------------------------------------------------------------------------------

# Floor for tile weights so that blended weight sums never reach zero, even with a very small `sigma_ratio`.
_MIN_TILE_WEIGHT = 1e-6


def gaussian_weights(
    height: int,
    width: int,
    sigma_ratio: float = 0.3,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    r"""
    Separable 2D Gaussian weight map for blending overlapping tiles (MultiDiffusion / PASD / SeeSR style).

    The Gaussian is centred on the tile (at `((height - 1) / 2, (width - 1) / 2)`) with standard deviations
    `sigma_ratio * height` and `sigma_ratio * width`, normalised so that its maximum is exactly 1 and floored at
    `1e-6` so that it is strictly positive everywhere.

    Args:
        height (`int`):
            Tile height, >= 1.
        width (`int`):
            Tile width, >= 1.
        sigma_ratio (`float`, *optional*, defaults to 0.3):
            Standard deviation as a fraction of the tile side; must be > 0.
        device (`torch.device` or `str`, *optional*):
            Device of the result.
        dtype (`torch.dtype`, *optional*):
            Floating point dtype of the result, `torch.float32` by default.

    Returns:
        `torch.Tensor`: Weights of shape `(height, width)`.
    """
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    if not isinstance(sigma_ratio, (int, float)) or not math.isfinite(sigma_ratio) or sigma_ratio <= 0:
        raise ValueError(f"`sigma_ratio` must be a finite number > 0, got {sigma_ratio!r}.")
    dtype = dtype if dtype is not None else torch.float32

    def profile(size: int) -> torch.Tensor:
        coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
        sigma = sigma_ratio * size
        exponent = -0.5 * (coords / sigma) ** 2
        # Normalise in log space so that a tiny sigma cannot underflow everything to 0 (and 0 / 0).
        return torch.exp(exponent - exponent.max())

    weights = torch.outer(profile(height), profile(width)).clamp_min(_MIN_TILE_WEIGHT)
    return weights.to(device=device, dtype=dtype)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    r"""
    Start offsets of tiles covering `[0, length)` exactly, with at least `overlap` overlap between neighbours.

    Uses the smallest number of tiles `n = ceil((length - tile) / (tile - overlap)) + 1` and spreads them evenly
    (integer offsets), so the first tile starts at 0, the last one ends exactly at `length`, and consecutive tiles
    overlap by `overlap` or slightly more. When `length <= tile` a single tile at 0 is returned (the caller clips it
    to `length`).

    Args:
        length (`int`):
            Size of the axis to cover, >= 1.
        tile (`int`):
            Tile size, >= 1.
        overlap (`int`):
            Minimum overlap between consecutive tiles, `0 <= overlap < tile`.

    Returns:
        `list[int]`: Strictly increasing start offsets.
    """
    for name, value in (("length", length), ("tile_size", tile), ("tile_overlap", overlap)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an integer, got {_describe(value)}.")
    if tile <= 0:
        raise ValueError(f"tile_size ({tile}) must be a positive integer.")
    if overlap < 0:
        raise ValueError(f"tile_overlap ({overlap}) must be >= 0.")
    if overlap >= tile:
        raise ValueError(f"tile_overlap ({overlap}) must be smaller than tile_size ({tile}).")
    if length < 1:
        raise ValueError(f"length ({length}) must be a positive integer.")
    if length <= tile:
        return [0]
    span = length - tile
    stride = tile - overlap
    intervals = -(-span // stride)  # ceil(span / stride) >= 1
    return [index * span // intervals for index in range(intervals + 1)]
