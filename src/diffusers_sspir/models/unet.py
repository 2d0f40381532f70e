"""The Stable Diffusion UNet carrying SSP-IR's dual-prior attention."""

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401  (diffusers' pipeline loader looks it up here)
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel, UNet2DConditionOutput

from ._utils import extend_init_signature, keyword, place_like
from .attention import DualPriorAttentionMixin, DualPriorInputs, install_dual_prior_processors


class SSPIRUNet2DConditionModel(DualPriorAttentionMixin, UNet2DConditionModel):
    r"""
    The Stable Diffusion [`~diffusers.UNet2DConditionModel`] with SSP-IR's dual-prior attention installed on its
    cross-attention layers (image branch everywhere, pixel branch in the up blocks).

    Takes every argument of `UNet2DConditionModel` (same defaults), plus:

    Args:
        image_embed_dim (`int`, *optional*, defaults to 512):
            Width of the refined image tokens; `None` builds the UNet without image branches.
        pixel_attention (`bool`, defaults to `True`):
            Whether the up blocks attend to the ControlNet residual of their skip connection.

    The new branches start at zero output: built from a Stable Diffusion config and loaded with its weights
    (see `SSPIRPipeline.from_stable_diffusion`), the model computes exactly what the stock UNet computes.
    """

    @register_to_config
    @extend_init_signature(
        UNet2DConditionModel.__init__,
        image_embed_dim=keyword(512, "int | None"),
        pixel_attention=keyword(True, "bool"),
    )
    def __init__(self, *, image_embed_dim: int | None = 512, pixel_attention: bool = True, **unet_kwargs):
        super().__init__(**unet_kwargs)
        install_dual_prior_processors(self, image_embed_dim=image_embed_dim, pixel_attention=pixel_attention)

    @classmethod
    def from_stable_diffusion_unet(
        cls, unet: UNet2DConditionModel, image_embed_dim: int | None = 512, pixel_attention: bool = True
    ) -> "SSPIRUNet2DConditionModel":
        r"""
        Builds an SSP-IR UNet from a stock Stable Diffusion UNet: same config and weights, new branches at zero.

        The model is built from the config (not through `from_pretrained`, which would leave the branches that the
        checkpoint lacks uninitialised) and receives the stock weights; the result computes exactly what `unet`
        computes until the branches are trained.

        Args:
            unet (`UNet2DConditionModel`): the Stable Diffusion UNet.
            image_embed_dim (`int`, *optional*, defaults to 512): width of the image tokens.
            pixel_attention (`bool`, defaults to `True`): pixel attention in the up blocks.
        """
        config = {k: v for k, v in unet.config.items() if not k.startswith("_")}
        config.update(image_embed_dim=image_embed_dim, pixel_attention=pixel_attention)
        model = place_like(cls.from_config(config), unet)
        result = model.load_state_dict(unet.state_dict(), strict=False)
        not_branches = [key for key in result.missing_keys if ".processor." not in key]
        if result.unexpected_keys or not_branches:
            raise ValueError(
                f"{type(unet).__name__} does not match an SSP-IR UNet built from its config: unexpected keys "
                f"{result.unexpected_keys[:5]}, missing keys {not_branches[:5]}."
            )
        return model.train(unet.training)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        image_embeds: torch.Tensor | None = None,
        down_block_additional_residuals: tuple[torch.Tensor, ...] | None = None,
        mid_block_additional_residual: torch.Tensor | None = None,
        **kwargs,
    ) -> UNet2DConditionOutput | tuple:
        r"""
        The UNet forward pass with SSP-IR's priors.

        Args:
            sample (`torch.Tensor`): noisy latents `(batch, 4, height, width)`.
            timestep (`torch.Tensor | float | int`): denoising timestep.
            encoder_hidden_states (`torch.Tensor`): text tokens `(batch, tokens, cross_attention_dim)`.
            image_embeds (`torch.Tensor`, *optional*): refined image tokens `(batch, tokens, image_embed_dim)`;
                without them the image branches are skipped.
            down_block_additional_residuals (`tuple[torch.Tensor]`, *optional*): the ControlNet's down residuals.
                They are added to the skip connections as in any ControlNet pipeline and, with `pixel_attention`,
                are also the keys/values of the up blocks' pixel attention.
            mid_block_additional_residual (`torch.Tensor`, *optional*): the ControlNet's mid-block residual.
            **kwargs: any other argument of `UNet2DConditionModel.forward`.
        """
        pixel_embeds = None
        if self.config.pixel_attention and down_block_additional_residuals is not None:
            pixel_embeds = tuple(down_block_additional_residuals)
        conditioning = DualPriorInputs(encoder_hidden_states, image_embeds, pixel_embeds)
        return super().forward(
            sample,
            timestep,
            conditioning,
            down_block_additional_residuals=down_block_additional_residuals,
            mid_block_additional_residual=mid_block_additional_residual,
            **kwargs,
        )
