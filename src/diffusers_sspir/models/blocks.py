"""The paper's branch layout (`branch_type="transformer"`): whole transformers around Stable Diffusion's own.

As in the authors' code, each new branch is a diffusers [`~diffusers.Transformer2DModel`] (GroupNorm → `proj_in` →
self-attention → cross-attention → GEGLU feed-forward → `proj_out` → + residual) added to the blocks of the UNet and
ControlNet, in this order within each layer:

| block | per layer |
|---|---|
| down blocks with attention, mid block | ResNet → **image transformer** → SD transformer |
| up blocks with attention | ResNet → **image transformer** → SD transformer → **pixel transformer** |
| up blocks without attention (SD-1.5's up block 0) | ResNet → **pixel transformer** |

The image transformers' cross-attention attends to the refined image tokens; the pixel transformers' to the
ControlNet residual of the skip connection that the layer consumes, flattened to tokens. Those cross-attention layers
are `DualPriorAttention` layers (`attention.py`): the blocks hand each branch the whole `DualPriorInputs`, and the
layer's `DualPriorAttnProcessor` takes the tokens it attends to out of it. The branches live in
`image_attentions` / `pixel_attentions` lists beside SD's `attentions`, under the same names as in the authors'
checkpoints, and SD's own parameters keep their stock names. Their `proj_out` starts at zero, so an untrained model
computes exactly what Stable Diffusion computes.

The block classes below are diffusers' blocks with those lists; `forward` is adapted from diffusers 0.42's
`diffusers.models.unets.unet_2d_blocks` (same loop, plus the branch calls).
"""

import torch
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from diffusers.models.unets.unet_2d_blocks import (
    CrossAttnDownBlock2D,
    CrossAttnUpBlock2D,
    UNetMidBlock2DCrossAttn,
    UpBlock2D,
)
from diffusers.utils.torch_utils import apply_freeu
from torch import nn

from .attention import DualPriorInputs


def zero_init_transformer(transformer: Transformer2DModel) -> Transformer2DModel:
    """Sets `proj_out` of `transformer` to zero: the branch returns its input unchanged until trained."""
    nn.init.zeros_(transformer.proj_out.weight)
    nn.init.zeros_(transformer.proj_out.bias)
    return transformer


class _DualPriorBlockMixin:
    """The branch calls shared by the SSP-IR blocks. A block has `image_attentions` and `pixel_attentions`, one
    transformer per layer (or `None`); the branches' cross-attention layers are [`DualPriorAttention`] layers, which
    take their tokens (the image tokens, or the ControlNet residual of the layer's skip connection) out of the
    [`DualPriorInputs`] they are handed."""

    image_attentions: nn.ModuleList | None
    pixel_attentions: nn.ModuleList | None

    @classmethod
    def extend(
        cls,
        block: nn.Module,
        image_attentions: list[Transformer2DModel] | None = None,
        pixel_attentions: list[Transformer2DModel] | None = None,
    ) -> nn.Module:
        """Turns the stock diffusers `block` into this class in place (as `torch.nn.utils.parametrize` does, so SD's
        weights keep their names) with the given branches, and returns it."""
        stock = cls.__bases__[-1]
        if type(block) is not stock:
            raise TypeError(f"{cls.__name__} extends a {stock.__name__}, got {type(block).__name__}.")
        block.__class__ = cls
        # instance attributes, not class defaults: torch finds submodules only when normal lookup fails
        block.image_attentions = block.pixel_attentions = None
        if image_attentions is not None:
            block.image_attentions = nn.ModuleList(image_attentions)
        if pixel_attentions is not None:
            block.pixel_attentions = nn.ModuleList(pixel_attentions)
        return block

    def _resnet(self, resnet: nn.Module, hidden_states: torch.Tensor, temb: torch.Tensor | None) -> torch.Tensor:
        if torch.is_grad_enabled() and self.gradient_checkpointing:
            return self._gradient_checkpointing_func(resnet, hidden_states, temb)
        return resnet(hidden_states, temb)

    def _image_branch(self, layer: int, hidden_states: torch.Tensor, inputs: DualPriorInputs, kwargs) -> torch.Tensor:
        if self.image_attentions is None or inputs.image_embeds is None:
            return hidden_states
        return self._branch(self.image_attentions[layer], hidden_states, inputs, kwargs)

    def _pixel_branch(self, layer: int, hidden_states: torch.Tensor, inputs: DualPriorInputs, kwargs) -> torch.Tensor:
        if self.pixel_attentions is None or inputs.pixel_embeds is None:
            return hidden_states
        return self._branch(self.pixel_attentions[layer], hidden_states, inputs, kwargs)

    @staticmethod
    def _branch(branch: Transformer2DModel, hidden_states: torch.Tensor, inputs: DualPriorInputs, kwargs):
        # the whole conditioning goes in: the branch's DualPriorAttention layer takes its own tokens out of it
        return branch(hidden_states, encoder_hidden_states=inputs, cross_attention_kwargs=kwargs, return_dict=False)[0]

    @staticmethod
    def _text(attn, hidden_states, inputs: DualPriorInputs, kwargs, attention_mask, encoder_attention_mask):
        if encoder_attention_mask is None:
            encoder_attention_mask = inputs.text_mask  # (batch, tokens): the transformer turns it into a bias
        return attn(
            hidden_states,
            encoder_hidden_states=inputs.text_embeds,
            cross_attention_kwargs=kwargs,
            attention_mask=attention_mask,
            encoder_attention_mask=encoder_attention_mask,
            return_dict=False,
        )[0]

    def _pop_skip(self, hidden_states, res_hidden_states_tuple):
        """Pops the next skip connection and concatenates it, with FreeU where enabled (as diffusers' up blocks)."""
        res_hidden_states = res_hidden_states_tuple[-1]
        if all(getattr(self, name, None) for name in ("s1", "s2", "b1", "b2")):
            hidden_states, res_hidden_states = apply_freeu(
                self.resolution_idx, hidden_states, res_hidden_states, s1=self.s1, s2=self.s2, b1=self.b1, b2=self.b2
            )
        return torch.cat([hidden_states, res_hidden_states], dim=1), res_hidden_states_tuple[:-1]


class SSPIRCrossAttnDownBlock2D(_DualPriorBlockMixin, CrossAttnDownBlock2D):
    """diffusers' `CrossAttnDownBlock2D` with an image transformer before each SD transformer."""

    def forward(
        self,
        hidden_states: torch.Tensor,
        temb: torch.Tensor | None = None,
        encoder_hidden_states: "DualPriorInputs | torch.Tensor | None" = None,
        attention_mask: torch.Tensor | None = None,
        cross_attention_kwargs: dict | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        additional_residuals: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        inputs = DualPriorInputs.wrap(encoder_hidden_states)
        output_states = ()
        for layer, (resnet, attn) in enumerate(zip(self.resnets, self.attentions)):
            hidden_states = self._resnet(resnet, hidden_states, temb)
            hidden_states = self._image_branch(layer, hidden_states, inputs, cross_attention_kwargs)
            hidden_states = self._text(
                attn, hidden_states, inputs, cross_attention_kwargs, attention_mask, encoder_attention_mask
            )
            # diffusers adds T2I-Adapter residuals to the output of the last layer
            if layer == len(self.resnets) - 1 and additional_residuals is not None:
                hidden_states = hidden_states + additional_residuals
            output_states = output_states + (hidden_states,)

        if self.downsamplers is not None:
            for downsampler in self.downsamplers:
                hidden_states = downsampler(hidden_states)
            output_states = output_states + (hidden_states,)
        return hidden_states, output_states


class SSPIRUNetMidBlock2DCrossAttn(_DualPriorBlockMixin, UNetMidBlock2DCrossAttn):
    """diffusers' `UNetMidBlock2DCrossAttn` with an image transformer before each SD transformer."""

    def forward(
        self,
        hidden_states: torch.Tensor,
        temb: torch.Tensor | None = None,
        encoder_hidden_states: "DualPriorInputs | torch.Tensor | None" = None,
        attention_mask: torch.Tensor | None = None,
        cross_attention_kwargs: dict | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        inputs = DualPriorInputs.wrap(encoder_hidden_states)
        hidden_states = self.resnets[0](hidden_states, temb)
        for layer, (attn, resnet) in enumerate(zip(self.attentions, self.resnets[1:])):
            hidden_states = self._image_branch(layer, hidden_states, inputs, cross_attention_kwargs)
            hidden_states = self._text(
                attn, hidden_states, inputs, cross_attention_kwargs, attention_mask, encoder_attention_mask
            )
            hidden_states = self._resnet(resnet, hidden_states, temb)
        return hidden_states


class _UpBlockForward:
    """The forward pass of both SSP-IR up blocks (with and without SD attention)."""

    def forward(
        self,
        hidden_states: torch.Tensor,
        res_hidden_states_tuple: tuple[torch.Tensor, ...],
        temb: torch.Tensor | None = None,
        encoder_hidden_states: "DualPriorInputs | torch.Tensor | None" = None,
        cross_attention_kwargs: dict | None = None,
        upsample_size: int | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        inputs = DualPriorInputs.wrap(encoder_hidden_states)
        attentions = getattr(self, "attentions", None) or [None] * len(self.resnets)
        for layer, (resnet, attn) in enumerate(zip(self.resnets, attentions)):
            hidden_states, res_hidden_states_tuple = self._pop_skip(hidden_states, res_hidden_states_tuple)
            hidden_states = self._resnet(resnet, hidden_states, temb)
            if attn is not None:
                hidden_states = self._image_branch(layer, hidden_states, inputs, cross_attention_kwargs)
                hidden_states = self._text(
                    attn, hidden_states, inputs, cross_attention_kwargs, attention_mask, encoder_attention_mask
                )
            hidden_states = self._pixel_branch(layer, hidden_states, inputs, cross_attention_kwargs)

        if self.upsamplers is not None:
            for upsampler in self.upsamplers:
                hidden_states = upsampler(hidden_states, upsample_size)
        return hidden_states


class SSPIRCrossAttnUpBlock2D(_UpBlockForward, _DualPriorBlockMixin, CrossAttnUpBlock2D):
    """diffusers' `CrossAttnUpBlock2D` with an image transformer before and a pixel transformer after each SD
    transformer."""


class SSPIRUpBlock2D(_UpBlockForward, _DualPriorBlockMixin, UpBlock2D):
    """diffusers' `UpBlock2D` (no SD attention) with a pixel transformer after each ResNet. It declares
    `has_cross_attention`, so the UNet hands it the conditioning."""

    has_cross_attention = True


SSPIR_BLOCKS = {
    block.__bases__[-1]: block
    for block in (SSPIRCrossAttnDownBlock2D, SSPIRUNetMidBlock2DCrossAttn, SSPIRCrossAttnUpBlock2D, SSPIRUpBlock2D)
}
