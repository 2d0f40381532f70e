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
"""Resizing and padding: the bicubic upscale SSP-IR applies before every prior, and padding to the model's multiple."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._common import _describe

PAD_MODES = ("reflect", "replicate", "constant")


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
