"""The ControlNet of SSP-IR: a copy of the UNet encoder fed with the structure prior, with dual-prior attention."""

import functools

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.models.controlnets.controlnet import ControlNetModel, ControlNetOutput
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401  (diffusers' pipeline loader looks it up here)
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from torch import nn

from ._utils import extend_init_signature, keyword, place_like
from .attention import DualPriorInputs
from .branches import DualPriorBranchesMixin, install_dual_prior_branches
from .unet import SSPIRUNet2DConditionModel


class SSPIRControlNetModel(DualPriorBranchesMixin, ControlNetModel):
    r"""
    A diffusers [`~diffusers.ControlNetModel`] whose conditioning input is the feature map of the
    [`StructureProcessor`] and whose blocks with cross-attention carry SSP-IR's image branch.

    As in the reference method, the structure features (already at latent resolution and of width
    `block_out_channels[0]`) are added to the output of `conv_in`; the stock hint encoder
    (`controlnet_cond_embedding`) is replaced by the identity and has no weights. Takes every argument of
    `ControlNetModel`, plus:

    Args:
        branch_type (`str`, defaults to `"transformer"`):
            `"transformer"` (the paper's: an image transformer before each SD transformer) or `"attention"` (light:
            an image attention inside each cross-attention layer), as the UNet's.
        image_embed_dim (`int`, *optional*, defaults to 512):
            Width of the refined image tokens; `None` builds the ControlNet without image branches.
    """

    @register_to_config
    @extend_init_signature(
        ControlNetModel.__init__,
        branch_type=keyword("transformer", "str"),
        image_embed_dim=keyword(512, "int | None"),
    )
    def __init__(self, *, branch_type: str = "transformer", image_embed_dim: int | None = 512, **controlnet_kwargs):
        super().__init__(**controlnet_kwargs)
        self.controlnet_cond_embedding = nn.Identity()
        install_dual_prior_branches(self, branch_type=branch_type, image_embed_dim=image_embed_dim)

    @classmethod
    def from_unet(cls, unet: SSPIRUNet2DConditionModel, load_weights_from_unet: bool = True) -> "SSPIRControlNetModel":
        r"""
        Builds the ControlNet from an SSP-IR UNet: same encoder configuration, and (by default) a copy of its
        `conv_in`, time embedding, down and mid blocks, including their image branches (same `branch_type`). The
        zero convolutions start at zero, so the residuals of a fresh ControlNet are zero.

        Args:
            unet (`SSPIRUNet2DConditionModel`): the UNet to copy.
            load_weights_from_unet (`bool`, defaults to `True`): copy the UNet's weights.
        """
        if not isinstance(unet, SSPIRUNet2DConditionModel):
            raise TypeError(
                f"`unet` must be an SSPIRUNet2DConditionModel, got {type(unet).__name__}; build one from a Stable "
                "Diffusion UNet with `SSPIRPipeline.from_stable_diffusion` or `SSPIRUNet2DConditionModel.from_config`."
            )
        # Reuse diffusers' config mapping and weight copy; only the constructor gains the image branch width.
        factory = functools.partial(
            cls, branch_type=unet.config.branch_type, image_embed_dim=unet.config.image_embed_dim
        )
        controlnet = ControlNetModel.from_unet.__func__(factory, unet, load_weights_from_unet=load_weights_from_unet)
        return place_like(controlnet, unet)

    def fuse_qkv_projections(self) -> None:
        r"""Fuses the query/key/value projections of every attention layer, SD's and the branches' (see
        [`~diffusers.UNet2DConditionModel.fuse_qkv_projections`]). diffusers 0.42's `ControlNetModel` fuses only its
        newer attention class, none of the layers it is built of, so this uses the UNet's implementation."""
        UNet2DConditionModel.fuse_qkv_projections(self)

    def unfuse_qkv_projections(self) -> None:
        r"""Undoes [`~SSPIRControlNetModel.fuse_qkv_projections`]."""
        UNet2DConditionModel.unfuse_qkv_projections(self)

    def load_lora_adapter(self, pretrained_model_name_or_path_or_dict, prefix: str | None = None, **kwargs) -> None:
        r"""
        Loads a LoRA saved with `save_lora_adapter` (see [`~diffusers.loaders.PeftAdapterMixin.load_lora_adapter`]).

        Differs from the inherited method in its defaults only: keys carry no prefix (`prefix=None`, as
        `save_lora_adapter` writes them) and weights are read from safetensors (`use_safetensors=True`), never
        unpickled.
        """
        kwargs.setdefault("use_safetensors", True)
        super().load_lora_adapter(pretrained_model_name_or_path_or_dict, prefix=prefix, **kwargs)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        controlnet_cond: torch.Tensor,
        image_embeds: torch.Tensor | None = None,
        conditioning_scale: float = 1.0,
        encoder_attention_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> ControlNetOutput | tuple:
        r"""
        Args:
            sample (`torch.Tensor`): noisy latents `(batch, 4, height, width)`.
            timestep (`torch.Tensor | float | int`): denoising timestep.
            encoder_hidden_states (`torch.Tensor`): text tokens.
            controlnet_cond (`torch.Tensor`): structure-prior features `(batch, block_out_channels[0], height,
                width)`, the `features` of [`StructureProcessor`].
            image_embeds (`torch.Tensor`, *optional*): refined image tokens.
            conditioning_scale (`float`, defaults to 1.0): scale of the residuals.
            encoder_attention_mask (`torch.Tensor`, *optional*): `(batch, text tokens)`, 1 for the tokens to attend
                to, 0 for padding, for the text cross-attention (diffusers' `ControlNetModel` has no such argument).
            **kwargs: any other argument of `ControlNetModel.forward`.
        """
        expected = (sample.shape[0], self.config.block_out_channels[0], *sample.shape[2:])
        if tuple(controlnet_cond.shape) != expected:
            raise ValueError(
                f"`controlnet_cond` must be the structure features of shape {expected} (batch, "
                f"block_out_channels[0], latent height, latent width), got {tuple(controlnet_cond.shape)}."
            )
        conditioning = DualPriorInputs(encoder_hidden_states, image_embeds, text_mask=encoder_attention_mask)
        return super().forward(
            sample, timestep, conditioning, controlnet_cond, conditioning_scale=conditioning_scale, **kwargs
        )
