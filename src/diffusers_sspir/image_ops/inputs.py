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
"""Input conversion: the pipeline's accepted image types (PIL, numpy, torch, lists of them) to RGB float tensors."""

from __future__ import annotations

from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch
from diffusers.utils import logging

from ._common import _describe

logger = logging.get_logger(__name__)

# Float inputs may overshoot `[0, 1]` by this much (resampling, JPEG round trips, fp16) before they are rejected;
# anything within the tolerance is clamped.
RANGE_TOLERANCE = 1e-3

ACCEPTED_IMAGE_TYPES = (
    "a `PIL.Image.Image`, a `np.ndarray` of shape (H, W) or (H, W, C) (uint8, uint16, bool or float in [0, 1]), "
    "a `torch.Tensor` of shape (C, H, W) or (B, C, H, W) (float in [0, 1] or uint8), or a list of these"
)
_PIL_16_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


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
