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
