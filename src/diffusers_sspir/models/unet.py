"""The Stable Diffusion UNet carrying SSP-IR's dual-prior branches."""

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401  (diffusers' pipeline loader looks it up here)
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel, UNet2DConditionOutput

from ._utils import extend_init_signature, keyword, place_like
from .attention import DualPriorInputs
from .branches import DualPriorBranchesMixin, install_dual_prior_branches, is_branch_parameter


class SSPIRUNet2DConditionModel(DualPriorBranchesMixin, UNet2DConditionModel):
    r"""
    The Stable Diffusion [`~diffusers.UNet2DConditionModel`] with SSP-IR's dual-prior branches: an image branch
    (attending to the refined CLIP image tokens) in every block with cross-attention, and a pixel branch (attending to
    the ControlNet residual of the skip connection) in the up blocks.

    Takes every argument of `UNet2DConditionModel` (same defaults), plus:

    Args:
        branch_type (`str`, defaults to `"transformer"`):
            `"transformer"`: the paper's layout, a whole transformer per branch before (image) and after (pixel) SD's
            own, and pixel transformers after each ResNet of up blocks without attention; `"attention"`: the light
            layout, one attention per branch inside SD's cross-attention layers. See docs/architecture.md.
        image_embed_dim (`int`, *optional*, defaults to 512):
            Width of the refined image tokens; `None` builds the UNet without image branches.
        pixel_attention (`bool`, defaults to `True`):
            Whether the up blocks attend to the ControlNet residual of their skip connection.
        up_block_0_pixel_heads (`int`, *optional*):
            Heads of the pixel transformers in up blocks without SD attention (SD-1.5's up block 0). `None` (the
            default) gives them the block's own head count, like every other branch; the authors' code has 1, which
            converted research checkpoints keep. Transformer kind only.

    The new branches start at zero output: built from a Stable Diffusion config and loaded with its weights
    (see `SSPIRPipeline.from_stable_diffusion`), the model computes exactly what the stock UNet computes. Stable
    Diffusion's own parameters keep their stock names, so Stable Diffusion LoRAs load into it.
    """

    @register_to_config
    @extend_init_signature(
        UNet2DConditionModel.__init__,
        branch_type=keyword("transformer", "str"),
        image_embed_dim=keyword(512, "int | None"),
        pixel_attention=keyword(True, "bool"),
        up_block_0_pixel_heads=keyword(None, "int | None"),
    )
    def __init__(
        self,
        *,
        branch_type: str = "transformer",
        image_embed_dim: int | None = 512,
        pixel_attention: bool = True,
        up_block_0_pixel_heads: int | None = None,
        **unet_kwargs,
    ):
        super().__init__(**unet_kwargs)
        install_dual_prior_branches(
            self,
            branch_type=branch_type,
            image_embed_dim=image_embed_dim,
            pixel_attention=pixel_attention,
            up_block_0_pixel_heads=up_block_0_pixel_heads,
        )

    @classmethod
    def from_stable_diffusion_unet(
        cls,
        unet: UNet2DConditionModel,
        branch_type: str = "transformer",
        image_embed_dim: int | None = 512,
        pixel_attention: bool = True,
        up_block_0_pixel_heads: int | None = None,
    ) -> "SSPIRUNet2DConditionModel":
        r"""
        Builds an SSP-IR UNet from a stock Stable Diffusion UNet: same config and weights, new branches at zero.

        The model is built from the config (not through `from_pretrained`, which would leave the branches that the
        checkpoint lacks uninitialised) and receives the stock weights; the result computes exactly what `unet`
        computes until the branches are trained.

        Args:
            unet (`UNet2DConditionModel`): the Stable Diffusion UNet.
            branch_type (`str`, defaults to `"transformer"`): `"transformer"` (the paper's) or `"attention"` (light).
            image_embed_dim (`int`, *optional*, defaults to 512): width of the image tokens.
            pixel_attention (`bool`, defaults to `True`): pixel branches in the up blocks.
            up_block_0_pixel_heads (`int`, *optional*): see the class docstring.
        """
        config = {k: v for k, v in unet.config.items() if not k.startswith("_")}
        config.update(
            branch_type=branch_type,
            image_embed_dim=image_embed_dim,
            pixel_attention=pixel_attention,
            up_block_0_pixel_heads=up_block_0_pixel_heads,
        )
        model = place_like(cls.from_config(config), unet)
        result = model.load_state_dict(unet.state_dict(), strict=False)
        not_branches = [key for key in result.missing_keys if not is_branch_parameter(key)]
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
        encoder_attention_mask: torch.Tensor | None = None,
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
                are also the keys/values of the up blocks' pixel branches.
            mid_block_additional_residual (`torch.Tensor`, *optional*): the ControlNet's mid-block residual.
            encoder_attention_mask (`torch.Tensor`, *optional*): `(batch, text tokens)`, 1 for the tokens to attend
                to, 0 for padding; applied to Stable Diffusion's text cross-attention only (the branches attend to
                image and pixel tokens).
            **kwargs: any other argument of `UNet2DConditionModel.forward`.
        """
        pixel_embeds = None
        if self.config.pixel_attention and down_block_additional_residuals is not None:
            pixel_embeds = tuple(down_block_additional_residuals)
        conditioning = DualPriorInputs(encoder_hidden_states, image_embeds, pixel_embeds, encoder_attention_mask)
        return super().forward(
            sample,
            timestep,
            conditioning,
            down_block_additional_residuals=down_block_additional_residuals,
            mid_block_additional_residual=mid_block_additional_residual,
            **kwargs,
        )
