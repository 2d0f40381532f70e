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
"""Tiling geometry: where the tiles of a large latent start, and the Gaussian weights that blend them."""

from __future__ import annotations

import math

import torch

from ._common import _describe

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


def map_tiles(
    fn,
    image: torch.Tensor | tuple[torch.Tensor, ...],
    tile: int,
    halo: int,
    scales: tuple[int, ...],
    multiple: int = 1,
) -> tuple[torch.Tensor, ...]:
    r"""
    Evaluate a local operator over non-overlapping tiles of `image`, each read with a margin of `halo` pixels, so
    that the working memory is bounded by the tile, not the image.

    `fn` maps a `(B, C, h, w)` crop to a tuple of tensors, the `k`-th of spatial size `(h / scales[k], w / scales[k])`
    (a convolution stack with strides, a blur). Each tile's output is cropped to the tile's own cells and written
    into outputs allocated once at full size. The result equals `fn(image)` exactly when `fn`'s receptive field
    reaches at most `halo` pixels and `fn` treats borders the same way wherever it is evaluated: at the image's
    borders tiles see the real border, elsewhere the margin holds real pixels.

    Args:
        fn (`Callable[[torch.Tensor], tuple[torch.Tensor, ...]]`): the operator.
        image (`torch.Tensor` or `tuple[torch.Tensor, ...]`): `(B, C, H, W)`, with `H` and `W` multiples of
            `multiple`; several tensors of one spatial size are cropped alike and passed to `fn` as arguments.
        tile (`int`): side of a tile's own cells, a positive multiple of `multiple`.
        halo (`int`): margin read around each tile, a multiple of `multiple`, >= 0.
        scales (`tuple[int, ...]`): how much smaller each of `fn`'s outputs is than its input.
        multiple (`int`, defaults to 1): alignment of every crop; must be a multiple of every scale (for strided
            convolutions: their total stride).

    Returns:
        `tuple[torch.Tensor, ...]`: `fn`'s outputs for the whole image.
    """
    images = image if isinstance(image, tuple) else (image,)
    height, width = images[0].shape[-2:]
    if any(other.shape[-2:] != images[0].shape[-2:] for other in images):
        raise ValueError(f"The tensors must have one spatial size, got {[tuple(x.shape) for x in images]}.")
    for name, value in (("tile", tile), ("halo", halo), ("height", height), ("width", width)):
        if value % multiple:
            raise ValueError(f"`{name}` ({value}) must be a multiple of {multiple}.")
    if tile <= 0 or halo < 0:
        raise ValueError(f"`tile` must be > 0 and `halo` >= 0, got tile={tile}, halo={halo}.")
    if any(multiple % scale for scale in scales):
        raise ValueError(f"`multiple` ({multiple}) must be a multiple of every scale in {scales}.")
    if height <= tile and width <= tile:
        return tuple(fn(*images))
    outputs: list[torch.Tensor] | None = None
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            bottom, right = min(top + tile, height), min(left + tile, width)
            read_top, read_left = max(top - halo, 0), max(left - halo, 0)
            read_bottom, read_right = min(bottom + halo, height), min(right + halo, width)
            results = fn(*(x[..., read_top:read_bottom, read_left:read_right] for x in images))
            if outputs is None:
                outputs = [
                    result.new_empty((*result.shape[:-2], height // scale, width // scale))
                    for result, scale in zip(results, scales)
                ]
            for output, result, scale in zip(outputs, results, scales):
                output[..., top // scale : bottom // scale, left // scale : right // scale] = result[
                    ...,
                    (top - read_top) // scale : (bottom - read_top) // scale,
                    (left - read_left) // scale : (right - read_left) // scale,
                ]
    return tuple(outputs)
