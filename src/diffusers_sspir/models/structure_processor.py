"""The structure processor of SSP-IR: the pixel-level prior that conditions the ControlNet."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from ..image_ops.tiling import map_tiles
from ._utils import check_config, conv_parameters

# The paper's trunk widths; one stride-2 stage per pair, three for Stable Diffusion's 8x VAE.
STRUCTURE_PROCESSOR_WIDTHS = (16, 32, 96, 256)


@dataclass
class StructureProcessorOutput(BaseOutput):
    """
    Args:
        features (`torch.Tensor`):
            The structure prior for the ControlNet, `(batch, conditioning_embedding_channels, height / 8, width / 8)`
            for the default three stride-2 stages.
        rgb (`tuple[torch.Tensor, ...]`):
            The RGB predictions of the high-quality image, finest first (1/2, 1/4, 1/8 of the input size by default;
            with the full-resolution restorer, its output first),
            in the value range of the input (`[0, 1]`); trained with L1 and FFT-L1 losses against the downscaled
            ground truth.
    """

    features: torch.Tensor
    rgb: tuple[torch.Tensor, ...]


class ResidualBlock(nn.Module):
    """`x + conv(relu(conv(x)))`, 3×3 convolutions without normalisation (EDSR's and MSRResNet's block)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class ResidualRestorer(nn.Module):
    """
    A full-resolution restoration network ahead of the structure processor's trunk: MSRResNet at scale 1 (the
    research code's `use_srresnet` preprocessor), `image + conv_last(lrelu(conv_hr(body(lrelu(conv_first(image))))))`
    with leaky ReLUs of slope 0.1. Its convolutions start as MSRResNet's (Kaiming normal scaled by 0.1) except
    `conv_last`, which starts at zero: an untrained restorer passes the image through unchanged, so it can be added
    to a trained structure processor without changing what that computes.
    """

    def __init__(self, channels: int, num_blocks: int, image_channels: int = 3):
        super().__init__()
        self.conv_first = nn.Conv2d(image_channels, channels, kernel_size=3, padding=1)
        self.body = nn.Sequential(*(ResidualBlock(channels) for _ in range(num_blocks)))
        self.conv_hr = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.conv_last = nn.Conv2d(channels, image_channels, kernel_size=3, padding=1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
                module.weight.data.mul_(0.1)
                nn.init.zeros_(module.bias)
        nn.init.zeros_(self.conv_last.weight)

    @property
    def receptive_field(self) -> int:
        """Pixels an output value sees on each side: one per 3×3 convolution."""
        return sum(module.kernel_size[0] // 2 for module in self.modules() if isinstance(module, nn.Conv2d))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        hidden = self.body(F.leaky_relu(self.conv_first(image), 0.1))
        return image + self.conv_last(F.leaky_relu(self.conv_hr(hidden), 0.1))


class StructureProcessor(ModelMixin, ConfigMixin):
    r"""
    SSP-IR's pixel-level structure processor.

    A small convolutional trunk on the upscaled low-quality image: `conv_in` to `block_out_channels[0]`, then one
    stage per further width, each a 3×3 convolution followed by a stride-2 3×3 convolution to the next width (SiLU
    after each). After each stride-2 stage an RGB head predicts the clean image at that scale. A zero-initialised
    output convolution maps the last stage to the ControlNet's input width, so an untrained processor adds nothing to
    the ControlNet's input.

    With `residual_blocks > 0` a [`ResidualRestorer`] (MSRResNet at scale 1, the research code's `use_srresnet`
    option, off in the paper's released configuration) first restores the image at full resolution; its output feeds
    the trunk and is the finest RGB prediction, so the structure prior has the input's full resolution. It costs
    `2 * residual_blocks + 3` convolutions of `residual_channels` at the image's size.

    Args:
        in_channels (`int`, defaults to 3): channels of the input image.
        block_out_channels (`tuple[int, ...]`, defaults to `(16, 32, 96, 256)`): widths of the trunk.
        conditioning_embedding_channels (`int`, defaults to 320): output width, the ControlNet's
            `block_out_channels[0]`.
        rgb_channels (`int`, defaults to 3): channels of each RGB head.
        residual_blocks (`int`, defaults to 0): residual blocks of the full-resolution restorer; 0 builds none.
        residual_channels (`int`, defaults to 64): width of the full-resolution restorer (the research code's 64,
            with 8 blocks).
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        block_out_channels: tuple[int, ...] = STRUCTURE_PROCESSOR_WIDTHS,
        conditioning_embedding_channels: int = 320,
        rgb_channels: int = 3,
        residual_blocks: int = 0,
        residual_channels: int = 64,
    ):
        super().__init__()
        if len(block_out_channels) < 2:
            raise ValueError(f"`block_out_channels` needs at least two widths, got {block_out_channels}.")
        counts = {"in_channels": (in_channels, 1), "rgb_channels": (rgb_channels, 1),
                  "conditioning_embedding_channels": (conditioning_embedding_channels, 1),
                  "residual_blocks": (residual_blocks, 0), "residual_channels": (residual_channels, 1),
                  **{f"block_out_channels[{i}]": (w, 1) for i, w in enumerate(block_out_channels)}}  # fmt: skip
        widths = [in_channels, *block_out_channels]
        check_config(type(self).__name__, counts, lambda: (
            sum(2 * conv_parameters(a, b) for a, b in zip(widths, widths[1:]))  # each stage and its RGB head, roughly
            + conv_parameters(block_out_channels[-1], conditioning_embedding_channels)
            + (2 * residual_blocks + 3) * conv_parameters(residual_channels, residual_channels)
        ))  # fmt: skip
        if residual_blocks and rgb_channels != in_channels:
            raise ValueError(
                f"The full-resolution restorer predicts the input image: `rgb_channels` ({rgb_channels}) must equal "
                f"`in_channels` ({in_channels}) when `residual_blocks` > 0."
            )
        self.preprocessor = (
            ResidualRestorer(residual_channels, residual_blocks, in_channels) if residual_blocks else None
        )
        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], kernel_size=3, padding=1)
        self.stages = nn.ModuleList()
        self.rgb_heads = nn.ModuleList()
        for channels_in, channels_out in zip(block_out_channels[:-1], block_out_channels[1:]):
            self.stages.append(
                nn.Sequential(
                    nn.Conv2d(channels_in, channels_in, kernel_size=3, padding=1),
                    nn.SiLU(),
                    nn.Conv2d(channels_in, channels_out, kernel_size=3, padding=1, stride=2),
                    nn.SiLU(),
                )
            )
            self.rgb_heads.append(nn.Conv2d(channels_out, rgb_channels, kernel_size=3, padding=1))
        self.conv_out = nn.Conv2d(block_out_channels[-1], conditioning_embedding_channels, kernel_size=3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @property
    def downscale_factor(self) -> int:
        """How much smaller than the input the features are (8 by default)."""
        return 2 ** len(self.stages)

    @property
    def receptive_field(self) -> int:
        """How far (in input pixels) an output value can see from its own position: the margin tiles need to give
        exactly the untiled result (23 for the default widths, plus the restorer's `2 * residual_blocks + 3`)."""
        ahead = self.preprocessor.receptive_field if self.preprocessor is not None else 0
        reach, stride, heads = 0, 1, [0]
        for module in [self.conv_in, *(layer for stage in self.stages for layer in stage), self.conv_out]:
            if isinstance(module, nn.Conv2d):
                reach += (module.kernel_size[0] // 2) * module.dilation[0] * stride
                stride *= module.stride[0]
                if module.stride[0] > 1:  # an RGB head reads this stage's output
                    heads.append(reach + (self.rgb_heads[0].kernel_size[0] // 2) * stride)
        return ahead + max(reach, *heads)

    def forward(
        self, image: torch.Tensor, return_dict: bool = True, tile_size: int | None = None
    ) -> StructureProcessorOutput | tuple:
        r"""
        Args:
            image (`torch.Tensor`): the upscaled low-quality image `(batch, in_channels, height, width)` in `[0, 1]`;
                height and width must be multiples of [`downscale_factor`].
            return_dict (`bool`, defaults to `True`): return a [`StructureProcessorOutput`] instead of a tuple.
            tile_size (`int`, *optional*): process images larger than this in tiles of this side (a multiple of
                [`downscale_factor`]), each read with a margin of [`receptive_field`], so that memory is bounded
                by the tile; the result equals the untiled one.
        """
        height, width = image.shape[-2:]
        if height % self.downscale_factor or width % self.downscale_factor:
            raise ValueError(
                f"StructureProcessor input size {height}x{width} must be a multiple of {self.downscale_factor}; pad "
                "the image first (the pipeline does this for you)."
            )
        if tile_size is not None and max(height, width) > tile_size:
            factor = self.downscale_factor
            if isinstance(tile_size, bool) or not isinstance(tile_size, int) or tile_size % factor or tile_size < 1:
                raise ValueError(f"`tile_size` must be a positive multiple of {factor}, got {tile_size!r}.")
            halo = -(-self.receptive_field // factor) * factor
            scales = (
                factor,
                *([1] if self.preprocessor is not None else []),
                *(2 ** (k + 1) for k in range(len(self.stages))),
            )

            def flat(crop: torch.Tensor) -> tuple[torch.Tensor, ...]:
                features, rgb = self(crop, return_dict=False)
                return (features, *rgb)

            features, *rgb = map_tiles(flat, image, tile_size, halo, scales, multiple=factor)
            if not return_dict:
                return features, tuple(rgb)
            return StructureProcessorOutput(features=features, rgb=tuple(rgb))
        rgb = []
        if self.preprocessor is not None:
            image = self.preprocessor(image)
            rgb.append(image)
        hidden = F.silu(self.conv_in(image))
        for stage, head in zip(self.stages, self.rgb_heads):
            hidden = stage(hidden)
            rgb.append(head(hidden))
        features = self.conv_out(hidden)
        if not return_dict:
            return features, tuple(rgb)
        return StructureProcessorOutput(features=features, rgb=tuple(rgb))
