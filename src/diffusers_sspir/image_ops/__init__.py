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
"""Image helpers of the SSP-IR pipeline, one module per job: input conversion (`inputs`), resizing and padding
(`resize`), colour correction (`color_fix`) and tiling geometry (`tiling`).

Everything here works on plain `torch.Tensor`s in the `[0, 1]` range with a `(B, C, H, W)` or `(C, H, W)` layout and
has no dependency beyond `torch`, `numpy`, `PIL` and diffusers' logging.
"""

from .color_fix import COLOR_FIX_METHODS, adain_color_fix, apply_color_fix, wavelet_color_fix
from .inputs import ACCEPTED_IMAGE_TYPES, RANGE_TOLERANCE, to_tensor_batch
from .resize import PAD_MODES, pad_to_multiple, upscale_bicubic
from .tiling import gaussian_weights, map_tiles, tile_starts

__all__ = [
    "ACCEPTED_IMAGE_TYPES",
    "COLOR_FIX_METHODS",
    "PAD_MODES",
    "RANGE_TOLERANCE",
    "adain_color_fix",
    "apply_color_fix",
    "gaussian_weights",
    "map_tiles",
    "pad_to_multiple",
    "tile_starts",
    "to_tensor_batch",
    "upscale_bicubic",
    "wavelet_color_fix",
]
