"""SSP-IR's dual-prior cross-attention: the conditioning it reads, the layers that attend to a prior, their processor.

- [`DualPriorInputs`]: the text tokens, image tokens and ControlNet residuals (pixel tokens) that the SSP-IR models
  hand down where Stable Diffusion hands down `encoder_hidden_states`.
- [`DualPriorAttention`]: a diffusers `Attention` layer that attends to one of them (`attends_to`). Both branch kinds
  are built of these layers: in the paper's kind (`branch_type="transformer"`, see `blocks.py`) the cross-attention of
  every image and pixel transformer; in the light kind (`branch_type="attention"`) Stable Diffusion's own text
  cross-attention (`attn2`) together with the small image and pixel attentions it carries.
- [`DualPriorAttnProcessor`]: the processor of every such layer, in the idiom of diffusers'
  `IPAdapterAttnProcessor2_0` (the processor of IP-Adapter's decoupled image cross-attention). It takes the layer's
  tokens out of `DualPriorInputs` and computes the attention with a stock diffusers processor, its *kernel*. diffusers'
  switches (`set_attn_processor`, `set_default_attn_processor`, QKV fusion, attention slicing, xformers) give each
  layer a stock processor; a `DualPriorAttention` layer keeps its prior by taking that processor as its new kernel.

The light kind's layer computes, on the normalised hidden state `h` (each step sees the stream as the previous steps
left it, and the layer returns the sum of the updates, which `BasicTransformerBlock` adds to the residual stream):

1. image cross-attention (`image_attn`): keys/values are the refined CLIP image tokens (new, trainable);
2. text cross-attention: SD's own `attn2` with the text tokens (frozen);
3. in the UNet's up blocks only, pixel attention (`pixel_norm` + `pixel_attn`): keys/values are the ControlNet
   residual of the skip connection that the block consumes, flattened to tokens (new, trainable).

Every branch's output projection starts at zero, so an untrained model reproduces Stable Diffusion exactly. The weights
are the layers' own parameters (the processor holds none), so they save and load as the model's.
"""

from dataclasses import dataclass

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch import nn

ATTENDS_TO = ("image", "pixel", "text")
"""What a [`DualPriorAttention`] layer attends to: the image tokens, one ControlNet residual, or the text tokens (SD's
own cross-attention, carrying the light branches)."""


@dataclass(frozen=True)
class DualPriorInputs:
    """The conditioning that the SSP-IR models hand down to their blocks and cross-attention layers.

    SSP-IR models pass this object where Stable Diffusion passes `encoder_hidden_states`; [`DualPriorAttnProcessor`]
    and the SSP-IR blocks unpack it, and Stable Diffusion's own layers only ever see the text tokens.

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


class DualPriorAttnProcessor:
    r"""
    The attention processor of SSP-IR's dual-prior cross-attention: the processor of every [`DualPriorAttention`]
    layer, in both branch kinds.

    The layer receives the whole conditioning, [`DualPriorInputs`], as `encoder_hidden_states`. The processor takes
    the tokens that the layer attends to (`attn.attends_to`) and computes the attention with `processor`:

    - `"image"`: the refined image tokens (no mask: every image token is real);
    - `"pixel"`: the ControlNet residual number `attn.pixel_index`, flattened to tokens;
    - `"text"`: the text tokens (masked by `DualPriorInputs.text_mask`), with the layer's light branches around it:
      `attn.image_attn` before and `attn.pixel_attn` after (see the module docstring), each computed by its own
      processor.

    Args:
        processor (*optional*, defaults to `AttnProcessor2_0()`):
            The kernel: any diffusers attention processor for plain cross-attention (`AttnProcessor2_0`,
            `AttnProcessor`, `FusedAttnProcessor2_0`, `SlicedAttnProcessor`, `XFormersAttnProcessor`, ...). A
            `DualPriorAttnProcessor` given here is unwrapped to its kernel; a processor with weights of its own
            (an `nn.Module`, such as IP-Adapter's) is refused.
    """

    def __init__(self, processor=None):
        if isinstance(processor, DualPriorAttnProcessor):
            processor = processor.processor
        if isinstance(processor, nn.Module):
            raise TypeError(
                f"{type(processor).__name__} holds weights of its own, which a DualPriorAttnProcessor would hide from "
                "the model (they would not save, load or move with it); the kernel of a dual-prior layer must be a "
                "stock processor without weights, such as AttnProcessor2_0."
            )
        self.processor = AttnProcessor2_0() if processor is None else processor

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.processor).__name__})"

    def attend(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Cross-attention of `attn` from `hidden_states` to `tokens`, computed by the kernel."""
        if temb is not None:  # not every stock kernel takes `temb` (SlicedAttnProcessor does not)
            return self.processor(attn, hidden_states, tokens, attention_mask, temb=temb)
        return self.processor(attn, hidden_states, tokens, attention_mask)

    def __call__(
        self,
        attn: "DualPriorAttention",
        hidden_states: torch.Tensor,
        encoder_hidden_states: "DualPriorInputs | torch.Tensor | None" = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        inputs = DualPriorInputs.wrap(encoder_hidden_states)
        if attn.attends_to == "image":
            if inputs.image_embeds is None:
                raise ValueError(f"{type(attn).__name__} attends to the image tokens, but none were given.")
            return self.attend(attn, hidden_states, inputs.image_embeds, temb=temb)
        if attn.attends_to == "pixel":
            if inputs.pixel_embeds is None:
                raise ValueError(f"{type(attn).__name__} attends to the ControlNet residuals, but none were given.")
            return self.attend(attn, hidden_states, inputs.pixel_tokens(attn.pixel_index), temb=temb)

        if attention_mask is None:
            attention_mask = inputs.text_bias(hidden_states.dtype)  # the text step only: the branches see no padding
        # The branches act like blocks applied one after another on the residual stream (image → text → pixel),
        # each seeing the stream as the previous ones left it; the layer returns the sum of their updates.
        update = None
        if attn.image_attn is not None and inputs.image_embeds is not None:
            update = attn.image_attn(hidden_states, encoder_hidden_states=inputs)
            hidden_states = hidden_states + update

        text = self.attend(attn, hidden_states, inputs.text_embeds, attention_mask, temb)
        update = text if update is None else update + text

        if attn.pixel_attn is not None and inputs.pixel_embeds is not None:
            query = attn.pixel_norm(hidden_states + text)
            update = update + attn.pixel_attn(query, encoder_hidden_states=inputs)
        return update


class DualPriorAttention(Attention):
    r"""
    A diffusers cross-attention layer of SSP-IR that attends to a prior: `attends_to` is `"image"`, `"pixel"` (with
    `pixel_index`, the ControlNet residual it reads) or `"text"` (Stable Diffusion's own `attn2`, carrying the light
    branches `image_attn` and `pixel_norm` + `pixel_attn`, or `None` where it has none).

    Its processor is always a [`DualPriorAttnProcessor`]: `set_processor` with any other processor (as diffusers'
    `set_attn_processor`, `set_default_attn_processor`, `fuse_qkv_projections`, `set_attention_slice` and the xformers
    switch do) makes it the kernel of a new `DualPriorAttnProcessor`, so no switch drops a prior.
    """

    attends_to: str
    pixel_index: int | None
    image_attn: "DualPriorAttention | None"
    pixel_norm: nn.LayerNorm | None
    pixel_attn: "DualPriorAttention | None"

    @classmethod
    def extend(cls, attn: Attention, attends_to: str, pixel_index: int | None = None) -> "DualPriorAttention":
        """Turns the stock cross-attention layer `attn` into a `DualPriorAttention` in place (as
        `torch.nn.utils.parametrize` does, so its weights keep their names) and returns it; its processor becomes the
        kernel of its `DualPriorAttnProcessor`.

        Args:
            attn (`Attention`): a cross-attention layer of a diffusers UNet, ControlNet or transformer.
            attends_to (`str`): `"image"`, `"pixel"` or `"text"`.
            pixel_index (`int`, *optional*): with `attends_to="pixel"` (and only then), the index of the ControlNet
                residual it reads, in the ControlNet's tuple of down residuals.
        """
        if type(attn) is not Attention or not attn.is_cross_attention:
            raise TypeError(f"Expected a diffusers cross-attention layer (Attention), got {type(attn).__name__}.")
        if attends_to not in ATTENDS_TO:
            raise ValueError(f"`attends_to` must be one of {ATTENDS_TO}, got {attends_to!r}.")
        if (attends_to == "pixel") != (pixel_index is not None):
            raise ValueError(
                f"`pixel_index` ({pixel_index}) is given with attends_to='pixel' and only then (got {attends_to!r})."
            )
        attn.__class__ = cls
        # instance attributes, not class defaults: torch finds submodules only when normal lookup fails
        attn.attends_to, attn.pixel_index = attends_to, pixel_index
        attn.image_attn = attn.pixel_norm = attn.pixel_attn = None
        attn.set_processor(attn.processor)
        return attn

    def add_light_branches(
        self, image_embed_dim: int | None, pixel_embed_dim: int | None = None, pixel_index: int | None = None
    ) -> "DualPriorAttention":
        """Gives a `"text"` layer the light kind's zero-initialised branches, with the layer's heads and head width.

        Args:
            image_embed_dim (`int`, *optional*): width of the image tokens; `None` builds no image branch.
            pixel_embed_dim (`int`, *optional*): channels of the ControlNet residual used as pixel tokens; `None`
                builds no pixel branch.
            pixel_index (`int`, *optional*): index of that residual in the ControlNet's tuple of down residuals;
                required with `pixel_embed_dim`.
        """
        if self.attends_to != "text":
            raise ValueError(f"Light branches go on a layer that attends to the text, not to {self.attends_to!r}.")
        if (pixel_embed_dim is None) != (pixel_index is None):
            raise ValueError(
                f"`pixel_embed_dim` ({pixel_embed_dim}) and `pixel_index` ({pixel_index}) must be given together."
            )
        hidden_size, heads = self.to_q.in_features, self.heads
        head_dim = self.to_q.out_features // heads
        device, dtype = self.to_q.weight.device, self.to_q.weight.dtype

        def branch(width: int, attends_to: str, index: int | None = None) -> DualPriorAttention:
            attention = Attention(hidden_size, cross_attention_dim=width, heads=heads, dim_head=head_dim)
            attention = DualPriorAttention.extend(zero_init_output(attention), attends_to, index)
            return attention.to(device=device, dtype=dtype)

        if image_embed_dim is not None:
            self.image_attn = branch(image_embed_dim, "image")
        if pixel_embed_dim is not None:
            self.pixel_norm = nn.LayerNorm(hidden_size, device=device, dtype=dtype)
            self.pixel_attn = branch(pixel_embed_dim, "pixel", pixel_index)
        return self

    def set_processor(self, processor) -> None:
        """Sets the processor, as a [`DualPriorAttnProcessor`] around `processor` unless it is one already."""
        if not isinstance(processor, DualPriorAttnProcessor):
            processor = DualPriorAttnProcessor(processor)
        super().set_processor(processor)


def dual_prior_kernel(processor):
    """The stock processor that computes a layer's attention: `processor` itself, or a [`DualPriorAttnProcessor`]'s
    kernel."""
    return processor.processor if isinstance(processor, DualPriorAttnProcessor) else processor
