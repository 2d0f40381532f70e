"""Dual-prior attention of the light branch kind (`branch_type="attention"`).

Each cross-attention layer (`attn2` of every `BasicTransformerBlock`) of the UNet and ControlNet becomes a
[`DualPriorAttention`]: Stable Diffusion's own text cross-attention, unchanged and under its stock parameter names,
with up to two small attention branches around it. The normalised hidden state goes through, in order (each step
sees the state as the previous steps updated it, and the layer returns the sum of the updates):

1. image cross-attention: keys/values are the refined CLIP image tokens (new, trainable);
2. text cross-attention: SD's own `attn2` with the text tokens (frozen);
3. in the UNet's up blocks only, pixel attention: keys/values are the ControlNet residual of the skip connection
   that the block consumes, flattened to tokens (new, trainable).

The branches are ordinary diffusers [`~diffusers.models.attention_processor.Attention`] submodules whose output
projections start at zero, so an untrained model reproduces Stable Diffusion exactly. Each of the three attentions is
computed by its own module's processor, so diffusers' switches (`set_attn_processor`, QKV fusion, attention slicing,
xformers) reach all of them unchanged.

The paper's layout (`branch_type="transformer"`, whole transformers before and after SD's) is in `blocks.py`.
"""

from dataclasses import dataclass

import torch
from diffusers.models.attention_processor import Attention
from torch import nn


@dataclass(frozen=True)
class DualPriorInputs:
    """The conditioning that the SSP-IR models hand down to their blocks and cross-attention layers.

    SSP-IR models pass this object where Stable Diffusion passes `encoder_hidden_states`; the SSP-IR blocks (paper
    kind) or [`DualPriorAttention`] layers (light kind) unpack it, and Stable Diffusion's own layers only ever see
    the text tokens.

    Args:
        text_embeds (`torch.Tensor`): text tokens, `(batch, tokens, cross_attention_dim)`.
        image_embeds (`torch.Tensor`, *optional*): refined image tokens, `(batch, tokens, image_embed_dim)`.
        pixel_embeds (`tuple[torch.Tensor, ...]`, *optional*): ControlNet residuals, one per UNet skip connection,
            each `(batch, channels, height, width)`.
        text_mask (`torch.Tensor`, *optional*): `(batch, tokens)`, 1 for the text tokens to attend to and 0 for
            padding (prompts of different lengths in one batch); `None` attends to every token.
    """

    text_embeds: torch.Tensor
    image_embeds: torch.Tensor | None = None
    pixel_embeds: tuple[torch.Tensor, ...] | None = None
    text_mask: torch.Tensor | None = None

    @classmethod
    def wrap(cls, encoder_hidden_states: "DualPriorInputs | torch.Tensor | None") -> "DualPriorInputs":
        """`encoder_hidden_states` as given by an SSP-IR model, or plain text tokens as given by diffusers code."""
        if isinstance(encoder_hidden_states, cls):
            return encoder_hidden_states
        return cls(text_embeds=encoder_hidden_states)

    def text_bias(self, dtype: torch.dtype) -> torch.Tensor | None:
        """`text_mask` as the additive attention bias diffusers' attention layers take, `(batch, 1, tokens)`."""
        if self.text_mask is None:
            return None
        return ((1 - self.text_mask.to(dtype)) * -10000.0).unsqueeze(1)

    def pixel_tokens(self, index: int) -> torch.Tensor:
        """The ControlNet residual of skip connection `index` as tokens, `(batch, height * width, channels)`."""
        return self.pixel_embeds[index].flatten(2).transpose(1, 2)


def zero_init_output(attention: Attention) -> Attention:
    """Sets the output projection of `attention` to zero, so that the branch adds nothing until trained."""
    nn.init.zeros_(attention.to_out[0].weight)
    nn.init.zeros_(attention.to_out[0].bias)
    return attention


class DualPriorAttention(Attention):
    r"""
    A Stable Diffusion cross-attention layer (`attn2`) carrying SSP-IR's light image and pixel branches.

    Built by [`DualPriorAttention.extend`] from the stock layer, whose parameters (`to_q`, `to_k`, `to_v`, `to_out`)
    keep their names and values. New submodules: `image_attn` (keys/values: image tokens), `pixel_norm` +
    `pixel_attn` (keys/values: the ControlNet residual number `pixel_index`), each with the layer's heads.
    """

    image_attn: Attention | None
    pixel_norm: nn.LayerNorm | None
    pixel_attn: Attention | None
    pixel_index: int | None

    @classmethod
    def extend(
        cls,
        attn: Attention,
        image_embed_dim: int | None,
        pixel_embed_dim: int | None = None,
        pixel_index: int | None = None,
    ) -> "DualPriorAttention":
        """Turns the stock cross-attention layer `attn` into a `DualPriorAttention` in place and returns it.

        Args:
            attn (`Attention`): a cross-attention layer of a diffusers UNet or ControlNet.
            image_embed_dim (`int`, *optional*): width of the image tokens; `None` builds no image branch.
            pixel_embed_dim (`int`, *optional*): channels of the ControlNet residual used as pixel tokens; `None`
                builds no pixel branch.
            pixel_index (`int`, *optional*): index of that residual in the ControlNet's tuple of down residuals;
                required with `pixel_embed_dim`.
        """
        if type(attn) is not Attention:
            raise TypeError(f"Expected a diffusers Attention layer, got {type(attn).__name__}.")
        if (pixel_embed_dim is None) != (pixel_index is None):
            raise ValueError(
                f"`pixel_embed_dim` ({pixel_embed_dim}) and `pixel_index` ({pixel_index}) must be given together."
            )
        hidden_size, heads = attn.to_q.in_features, attn.heads
        head_dim = attn.to_q.out_features // heads
        device, dtype = attn.to_q.weight.device, attn.to_q.weight.dtype
        # The stock layer becomes the subclass (as torch.nn.utils.parametrize does), so SD's weights keep their names.
        attn.__class__ = cls
        attn.image_attn = attn.pixel_norm = attn.pixel_attn = None
        attn.pixel_index = pixel_index
        if image_embed_dim is not None:
            attn.image_attn = zero_init_output(
                Attention(hidden_size, cross_attention_dim=image_embed_dim, heads=heads, dim_head=head_dim)
            ).to(device=device, dtype=dtype)
        if pixel_embed_dim is not None:
            attn.pixel_norm = nn.LayerNorm(hidden_size, device=device, dtype=dtype)
            attn.pixel_attn = zero_init_output(
                Attention(hidden_size, cross_attention_dim=pixel_embed_dim, heads=heads, dim_head=head_dim)
            ).to(device=device, dtype=dtype)
        return attn

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: "DualPriorInputs | torch.Tensor | None" = None,
        attention_mask: torch.Tensor | None = None,
        **cross_attention_kwargs,
    ) -> torch.Tensor:
        inputs = DualPriorInputs.wrap(encoder_hidden_states)
        if attention_mask is None:
            attention_mask = inputs.text_bias(hidden_states.dtype)  # the text step only: the branches see no padding
        # The branches act like blocks applied one after another on the residual stream (image → text → pixel),
        # each seeing the stream as the previous ones left it; the layer returns the sum of their updates.
        update = None
        if self.image_attn is not None and inputs.image_embeds is not None:
            update = self.image_attn(hidden_states, encoder_hidden_states=inputs.image_embeds)
            hidden_states = hidden_states + update

        text = super().forward(hidden_states, inputs.text_embeds, attention_mask, **cross_attention_kwargs)
        update = text if update is None else update + text

        if self.pixel_attn is not None and inputs.pixel_embeds is not None:
            query = self.pixel_norm(hidden_states + text)
            update = update + self.pixel_attn(query, encoder_hidden_states=inputs.pixel_tokens(self.pixel_index))
        return update
