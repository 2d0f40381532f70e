"""The refine layer of SSP-IR's implicit semantic prior: CLIP image tokens → image tokens for the UNet."""

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ._utils import check_config


class ImageTokenRefiner(ModelMixin, ConfigMixin):
    r"""
    Maps the CLIP vision encoder's patch tokens to the image tokens attended to by the dual-prior attention.

    `num_blocks` blocks of Linear(`in_dim` → `hidden_dim`) + LayerNorm + LeakyReLU, then Linear(→ `out_dim`).
    The defaults are the paper's: 1024 → 1024 → 1024 → 512 for CLIP ViT-L/14.

    Args:
        in_dim (`int`, defaults to 1024): width of the CLIP vision tokens.
        hidden_dim (`int`, defaults to 1024): width of the hidden blocks.
        out_dim (`int`, defaults to 512): width of the image tokens (the UNet's `image_embed_dim`).
        num_blocks (`int`, defaults to 2): number of hidden blocks.
        negative_slope (`float`, defaults to 0.01): slope of the LeakyReLU.
    """

    @register_to_config
    def __init__(
        self,
        in_dim: int = 1024,
        hidden_dim: int = 1024,
        out_dim: int = 512,
        num_blocks: int = 2,
        negative_slope: float = 0.01,
    ):
        super().__init__()
        counts = {"in_dim": (in_dim, 1), "hidden_dim": (hidden_dim, 1), "out_dim": (out_dim, 1),
                  "num_blocks": (num_blocks, 0)}  # fmt: skip
        check_config(type(self).__name__, counts, lambda: (
            (in_dim + 3) * hidden_dim + max(num_blocks - 1, 0) * (hidden_dim + 3) * hidden_dim
            + ((hidden_dim if num_blocks else in_dim) + 1) * out_dim
        ))  # fmt: skip
        layers = []
        width = in_dim
        for _ in range(num_blocks):
            layers += [nn.Linear(width, hidden_dim), nn.LayerNorm(hidden_dim), nn.LeakyReLU(negative_slope)]
            width = hidden_dim
        layers.append(nn.Linear(width, out_dim))
        self.layers = nn.Sequential(*layers)

    def forward(self, image_tokens: torch.Tensor) -> torch.Tensor:
        r"""
        Args:
            image_tokens (`torch.Tensor`): CLIP patch tokens without the class token, `(batch, tokens, in_dim)`.

        Returns:
            `torch.Tensor`: image tokens `(batch, tokens, out_dim)`.
        """
        if image_tokens.shape[-1] != self.config.in_dim:
            raise ValueError(
                f"`image_tokens` must have {self.config.in_dim} features (the refiner's `in_dim`), got "
                f"{image_tokens.shape[-1]}; does the image encoder's hidden_size match?"
            )
        return self.layers(image_tokens)
