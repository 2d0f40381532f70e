"""The trainable part of SSP-IR's forward pass as one module, so that accelerate prepares (and, on several GPUs,
wraps in DistributedDataParallel) a single model."""

import re

import torch
from torch import nn

from ..models import (
    ImageTokenRefiner,
    SSPIRControlNetModel,
    SSPIRUNet2DConditionModel,
    StructureProcessor,
    is_branch_parameter,
)

# Stable Diffusion's own text cross-attention projections (`attn2.to_q/k/v/out`); the branches' are excluded by name.
TEXT_ATTENTION = re.compile(r"\.attn2\.to_(q|k|v|out)\.")


class SSPIRTrainingModule(nn.Module):
    r"""
    Structure processor → ControlNet → UNet, with the refine layer on the CLIP image tokens: the noise prediction of
    [`~diffusers_sspir.SSPIRPipeline.predict_noise`] plus the structure processor's RGB outputs, for training.

    The frozen encoders (VAE, text encoder, CLIP vision) run outside this module, under `torch.no_grad()`.
    """

    def __init__(
        self,
        unet: SSPIRUNet2DConditionModel,
        controlnet: SSPIRControlNetModel,
        structure_processor: StructureProcessor,
        image_refiner: ImageTokenRefiner,
    ):
        super().__init__()
        self.unet = unet
        self.controlnet = controlnet
        self.structure_processor = structure_processor
        self.image_refiner = image_refiner

    @classmethod
    def from_pipeline(cls, pipe) -> "SSPIRTrainingModule":
        """The trainable part of an [`~diffusers_sspir.SSPIRPipeline`], sharing its models (not copies)."""
        return cls(pipe.unet, pipe.controlnet, pipe.structure_processor, pipe.image_refiner)

    def forward(
        self,
        noisy_latents: torch.Tensor,
        timesteps: torch.Tensor,
        text_embeds: torch.Tensor,
        clip_tokens: torch.Tensor,
        low_quality: torch.Tensor,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        r"""
        Args:
            noisy_latents (`torch.Tensor`): `(batch, 4, h, w)`.
            timesteps (`torch.Tensor`): `(batch,)` training timesteps.
            text_embeds (`torch.Tensor`): text tokens of the captions.
            clip_tokens (`torch.Tensor`): CLIP patch tokens of the upscaled low-quality images
                ([`~diffusers_sspir.SSPIRPipeline.clip_image_tokens`]).
            low_quality (`torch.Tensor`): the upscaled low-quality images `(batch, 3, 8h, 8w)` in `[0, 1]`.

        Returns:
            `tuple`: the UNet's prediction and the structure processor's RGB outputs (finest first).
        """
        structure = self.structure_processor(low_quality.to(self.structure_processor.dtype))
        image_embeds = self.image_refiner(clip_tokens.to(self.image_refiner.dtype))
        priors = dict(encoder_hidden_states=text_embeds, image_embeds=image_embeds, return_dict=False)
        down, mid = self.controlnet(noisy_latents, timesteps, controlnet_cond=structure.features, **priors)
        prediction = self.unet(
            noisy_latents, timesteps, down_block_additional_residuals=down, mid_block_additional_residual=mid, **priors
        )[0]
        return prediction, structure.rgb


class RestorerTrainingModule(nn.Module):
    r"""
    The structure processor's full-resolution restorer alone (the research code's `use_srresnet` preprocessor), for
    pretraining the structure prior for fidelity before or after a joint run, as BasicSR trains MSRResNet for PSNR:
    nothing else of SSP-IR runs. Its parameter names are those of [`SSPIRTrainingModule`], so its checkpoints load
    into the full model.
    """

    def __init__(self, structure_processor: StructureProcessor):
        super().__init__()
        if structure_processor.preprocessor is None:
            raise ValueError(
                "The structure processor has no full-resolution restorer to train (its config has "
                f"residual_blocks={structure_processor.config.get('residual_blocks', 0)})."
            )
        self.structure_processor = structure_processor

    @classmethod
    def from_pipeline(cls, pipe) -> "RestorerTrainingModule":
        """The restorer of an [`~diffusers_sspir.SSPIRPipeline`]'s structure processor (shared, not copied)."""
        return cls(pipe.structure_processor)

    def forward(self, low_quality: torch.Tensor) -> tuple[torch.Tensor]:
        r"""
        Args:
            low_quality (`torch.Tensor`): the upscaled low-quality images `(batch, 3, height, width)` in `[0, 1]`.

        Returns:
            `tuple`: the restorer's RGB prediction, as the first (finest) of the structure processor's outputs.
        """
        return (self.structure_processor.preprocessor(low_quality.to(self.structure_processor.dtype)),)


def select_restorer_parameters(module: RestorerTrainingModule) -> dict[str, nn.Parameter]:
    """Freezes the structure processor but for its restorer. Returns the trainable parameters by name."""
    module.requires_grad_(False)
    module.structure_processor.preprocessor.requires_grad_(True)
    return trainable_parameters(module)


def select_full_training_parameters(
    module: SSPIRTrainingModule, train_unet: bool = False, freeze_text_attention: bool = False
) -> dict[str, nn.Parameter]:
    """Freezes everything, then unfreezes what SSP-IR trains: the ControlNet, the structure processor, the refine
    layer and the UNet's dual-prior branches. Returns the trainable parameters by name.

    Args:
        module (`SSPIRTrainingModule`): the model.
        train_unet (`bool`, defaults to `False`): train all of the UNet, not only its branches (a model trained from
            scratch, or a whole-UNet domain fine-tune).
        freeze_text_attention (`bool`, defaults to `False`): keep the text cross-attention projections
            (`attn2.to_q/k/v/out`) of the UNet and the ControlNet as loaded, so whatever they compute (nothing, when
            their output projection is zero) stays as it was.
    """
    module.requires_grad_(False)
    for part in (module.controlnet, module.structure_processor, module.image_refiner):
        part.requires_grad_(True)
    for name, parameter in module.unet.named_parameters():
        if train_unet or is_branch_parameter(name):
            parameter.requires_grad_(True)
    if freeze_text_attention:
        for part in (module.unet, module.controlnet):
            for name, parameter in part.named_parameters():
                if TEXT_ATTENTION.search(name) and not is_branch_parameter(name):
                    parameter.requires_grad_(False)
    return trainable_parameters(module)


def trainable_parameters(module: nn.Module) -> dict[str, nn.Parameter]:
    """The parameters of `module` that require gradients, by name."""
    return {name: parameter for name, parameter in module.named_parameters() if parameter.requires_grad}
