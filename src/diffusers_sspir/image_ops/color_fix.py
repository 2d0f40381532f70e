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
"""Colour correction of a restoration towards its input: wavelet (low frequencies of the input) or AdaIN."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..defaults import COLOR_FIX_METHODS
from ._common import _describe
from .tiling import map_tiles

_FLOAT_DTYPES_NEEDING_UPCAST = (torch.float16, torch.bfloat16)


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


def wavelet_color_fix(
    image: torch.Tensor, source: torch.Tensor, levels: int = 5, tile_size: int | None = None
) -> torch.Tensor:
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
        tile_size (`int`, *optional*):
            Correct images larger than this in tiles of this side, each read with the blur's reach (`2**levels - 1`
            pixels) around it, so that memory is bounded by the tile; the result equals the untiled one.

    Returns:
        `torch.Tensor`: Tensor of the same shape, dtype and device as `image`.
    """
    _check_image_pair(image, source, same_spatial=True)
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise ValueError(f"`levels` must be a positive integer, got {levels!r}.")
    if tile_size is not None and (isinstance(tile_size, bool) or not isinstance(tile_size, int) or tile_size < 1):
        raise ValueError(f"`tile_size` must be a positive integer or None, got {tile_size!r}.")
    source = source.expand_as(image) if source.shape[0] != image.shape[0] else source

    source = source.to(image.device)

    def fix(image_crop: torch.Tensor, source_crop: torch.Tensor) -> tuple[torch.Tensor]:
        image_f = _upcast(image_crop)
        high, _ = _wavelet_decomposition(image_f, levels)
        _, low = _wavelet_decomposition(_upcast(source_crop).to(image_f.dtype), levels)
        return ((high + low).to(image.dtype),)

    if tile_size is None:
        return fix(image, source)[0]
    return map_tiles(fix, (image, source), tile_size, 2**levels - 1, (1,))[0]


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


def apply_color_fix(
    image: torch.Tensor, source: torch.Tensor, method: str | None, tile_size: int | None = None, levels: int = 5
) -> torch.Tensor:
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
        tile_size (`int`, *optional*): passed to [`wavelet_color_fix`] (AdaIN works per pixel on global statistics
            and needs no tiles).
        levels (`int`, *optional*, defaults to 5): the wavelet's levels (see [`wavelet_color_fix`]); fewer keep more
            of `source`. AdaIN has none.

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
        return wavelet_color_fix(image, source, levels=levels, tile_size=tile_size)
    return adain_color_fix(image, source)
