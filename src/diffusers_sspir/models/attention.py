"""Dual-prior attention: SSP-IR's image and pixel cross-attention branches as a diffusers attention processor.

In every cross-attention layer (`attn2` of each `BasicTransformerBlock`) of the SSP-IR UNet and ControlNet the
normalised hidden state goes through, in order (each step sees the state as the previous steps updated it, and the
layer returns the sum of the three updates to the residual stream):

1. image cross-attention: keys/values are the refined CLIP image tokens (new, trainable);
2. text cross-attention: SD's own `attn2` projections with the text tokens (frozen);
3. in the UNet's up blocks only, pixel attention: keys/values are the ControlNet residual of the skip connection
   that the block consumes, flattened to tokens (new, trainable).

Each new branch is a small diffusers [`~diffusers.models.attention_processor.Attention`] module whose output
projection starts at zero, so an untrained SSP-IR model reproduces Stable Diffusion exactly. The attention math of
all three steps is delegated to one *kernel* processor (`AttnProcessor2_0`, i.e. SDPA, by default); swapping the
kernel keeps the branches.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0, FusedAttnProcessor2_0
from diffusers.utils import logging
from torch import nn

from ._utils import place_like

logger = logging.get_logger(__name__)


@dataclass(frozen=True)
class DualPriorInputs:
    """The conditioning that the SSP-IR models hand to their cross-attention layers.

    SSP-IR models pass this object where Stable Diffusion passes `encoder_hidden_states`; the
    [`DualPriorAttnProcessor`] of each cross-attention layer unpacks it.

    Args:
        text_embeds (`torch.Tensor`): text tokens, `(batch, tokens, cross_attention_dim)`.
        image_embeds (`torch.Tensor`, *optional*): refined image tokens, `(batch, tokens, image_embed_dim)`.
        pixel_embeds (`tuple[torch.Tensor, ...]`, *optional*): ControlNet residuals, one per UNet skip connection,
            each `(batch, channels, height, width)`.
    """

    text_embeds: torch.Tensor
    image_embeds: torch.Tensor | None = None
    pixel_embeds: tuple[torch.Tensor, ...] | None = None


def _zero_init_output(attention: Attention) -> Attention:
    nn.init.zeros_(attention.to_out[0].weight)
    nn.init.zeros_(attention.to_out[0].bias)
    return attention


def is_kernel_processor(processor) -> bool:
    """Whether `processor` only computes attention (holds no weights of its own), so it can serve as a kernel."""
    if isinstance(processor, DualPriorAttnProcessor):
        return False
    if isinstance(processor, nn.Module):
        return next(processor.parameters(), None) is None
    return callable(processor)


class DualPriorAttnProcessor(nn.Module):
    """Attention processor for SSP-IR's cross-attention layers: image branch, SD text attention, pixel branch.

    The processor owns the weights of the new branches, so it is a `torch.nn.Module` that becomes a submodule of the
    `Attention` layer it is installed on (like diffusers' IP-Adapter processors); the weights are saved and loaded
    with the model.

    Args:
        hidden_size (`int`): width of the layer's query (`attn.to_q.in_features`).
        num_heads (`int`): attention heads of the branches (the layer's own head count).
        head_dim (`int`): width of each head.
        image_embed_dim (`int`, *optional*): width of the image tokens; `None` disables the image branch.
        pixel_embed_dim (`int`, *optional*): channels of the ControlNet residual used as pixel tokens; `None`
            disables the pixel branch.
        pixel_index (`int`, *optional*): index, in the ControlNet's tuple of down residuals, of the residual that
            matches this layer's skip connection. Required with `pixel_embed_dim`.
        kernel (*optional*): the processor that computes attention for all three steps; defaults to
            `AttnProcessor2_0` (scaled dot-product attention).
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        head_dim: int,
        image_embed_dim: int | None = None,
        pixel_embed_dim: int | None = None,
        pixel_index: int | None = None,
        kernel=None,
    ):
        super().__init__()
        if (pixel_embed_dim is None) != (pixel_index is None):
            raise ValueError(
                f"`pixel_embed_dim` ({pixel_embed_dim}) and `pixel_index` ({pixel_index}) must be given together."
            )
        self.image_attn = None
        self.pixel_norm = None
        self.pixel_attn = None
        self.pixel_index = pixel_index
        if image_embed_dim is not None:
            self.image_attn = _zero_init_output(
                Attention(hidden_size, cross_attention_dim=image_embed_dim, heads=num_heads, dim_head=head_dim)
            )
        if pixel_embed_dim is not None:
            self.pixel_norm = nn.LayerNorm(hidden_size)
            self.pixel_attn = _zero_init_output(
                Attention(hidden_size, cross_attention_dim=pixel_embed_dim, heads=num_heads, dim_head=head_dim)
            )
        self.set_kernel(kernel if kernel is not None else AttnProcessor2_0())

    @classmethod
    def for_layer(
        cls,
        attn: Attention,
        image_embed_dim: int | None,
        pixel_embed_dim: int | None = None,
        pixel_index: int | None = None,
    ) -> "DualPriorAttnProcessor":
        """Builds a processor sized for the cross-attention layer `attn`, reusing its current processor as kernel."""
        kernel = attn.processor if is_kernel_processor(attn.processor) else None
        processor = cls(
            hidden_size=attn.to_q.in_features,
            num_heads=attn.heads,
            head_dim=attn.to_q.out_features // attn.heads,
            image_embed_dim=image_embed_dim,
            pixel_embed_dim=pixel_embed_dim,
            pixel_index=pixel_index,
            kernel=kernel,
        )
        return place_like(processor, attn)

    @property
    def branches(self) -> list[Attention]:
        """The new attention branches this processor owns."""
        return [branch for branch in (self.image_attn, self.pixel_attn) if branch is not None]

    def set_kernel(self, kernel) -> None:
        """Makes `kernel` (e.g. `AttnProcessor()`, `AttnProcessor2_0()`, `FusedAttnProcessor2_0()`) compute the
        attention of the text step and of every branch."""
        if not is_kernel_processor(kernel):
            raise ValueError(
                f"{type(kernel).__name__} cannot be the attention kernel of a DualPriorAttnProcessor: a kernel is a "
                "processor without weights of its own, such as AttnProcessor2_0 or AttnProcessor."
            )
        # Stored outside `_modules` so that a kernel never shows up in the state dict.
        self.__dict__["kernel"] = kernel
        for branch in self.branches:
            branch.set_processor(kernel)

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: "DualPriorInputs | torch.Tensor | None" = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if isinstance(encoder_hidden_states, DualPriorInputs):
            inputs = encoder_hidden_states
        else:
            inputs = DualPriorInputs(text_embeds=encoder_hidden_states)

        # The branches act like blocks applied one after another on the residual stream (image → text → pixel),
        # each seeing the stream as the previous ones left it; the layer returns the sum of their updates.
        update = None
        if self.image_attn is not None and inputs.image_embeds is not None:
            update = self.image_attn(hidden_states, encoder_hidden_states=inputs.image_embeds)
            hidden_states = hidden_states + update

        kernel_kwargs = {} if temb is None else {"temb": temb}  # not every kernel takes `temb`
        text = self.kernel(attn, hidden_states, inputs.text_embeds, attention_mask, **kernel_kwargs)
        update = text if update is None else update + text

        if self.pixel_attn is not None and inputs.pixel_embeds is not None:
            pixel_tokens = inputs.pixel_embeds[self.pixel_index].flatten(2).transpose(1, 2)
            query = self.pixel_norm(hidden_states + text)
            update = update + self.pixel_attn(query, encoder_hidden_states=pixel_tokens)
        return update

    def extra_repr(self) -> str:
        return f"kernel={type(self.kernel).__name__}, pixel_index={self.pixel_index}"


def _skip_channels(unet: nn.Module) -> list[int]:
    """Channels of each skip connection of a diffusers UNet (= of each ControlNet down residual), in order."""
    channels = [unet.conv_in.out_channels]
    for block in unet.down_blocks:
        channels += [resnet.out_channels for resnet in block.resnets]
        if block.downsamplers is not None:
            channels.append(block.downsamplers[0].out_channels)
    return channels


def _cross_attention_layers(block: nn.Module) -> list[Attention]:
    return [
        module
        for name, module in block.named_modules()
        if isinstance(module, Attention) and module.is_cross_attention and name.endswith("attn2")
    ]


def install_dual_prior_processors(
    model: nn.Module, image_embed_dim: int | None, pixel_attention: bool = False
) -> None:
    """Installs a [`DualPriorAttnProcessor`] on every cross-attention layer of a diffusers UNet or ControlNet.

    Args:
        model (`torch.nn.Module`): a `UNet2DConditionModel` or `ControlNetModel` (or subclass).
        image_embed_dim (`int`, *optional*): width of the image tokens; `None` disables the image branch.
        pixel_attention (`bool`, defaults to `False`): add pixel attention in the up blocks (UNet only).
    """
    for block in model.down_blocks:
        for attn in _cross_attention_layers(block):
            attn.set_processor(DualPriorAttnProcessor.for_layer(attn, image_embed_dim))
    if getattr(model, "mid_block", None) is not None:
        for attn in _cross_attention_layers(model.mid_block):
            attn.set_processor(DualPriorAttnProcessor.for_layer(attn, image_embed_dim))

    up_blocks = getattr(model, "up_blocks", None)
    if up_blocks is None:
        if pixel_attention:
            raise ValueError(f"Pixel attention needs up blocks, which {type(model).__name__} does not have.")
        return
    skip_channels = _skip_channels(model)
    consumed = 0  # skip connections used by earlier up-block layers; the UNet pops them from the end
    for block in up_blocks:
        attentions = getattr(block, "attentions", None) or [None] * len(block.resnets)
        for layer, transformer in enumerate(attentions):
            skip_index = len(skip_channels) - 1 - (consumed + layer)
            if transformer is None:
                continue
            for attn in _cross_attention_layers(transformer):
                pixel_kwargs = {}
                if pixel_attention:
                    pixel_kwargs = {"pixel_embed_dim": skip_channels[skip_index], "pixel_index": skip_index}
                attn.set_processor(DualPriorAttnProcessor.for_layer(attn, image_embed_dim, **pixel_kwargs))
        consumed += len(block.resnets)


class DualPriorAttentionMixin:
    """Keeps diffusers' attention switches from silently dropping SSP-IR's trained attention branches.

    Mixed into the SSP-IR UNet and ControlNet. With it:

    - `attn_processors` lists one processor per attention layer of the model (the branches' internal attention
      modules are part of their `DualPriorAttnProcessor`, not separate layers);
    - `set_attn_processor` with a kernel processor (`AttnProcessor2_0()`, `AttnProcessor()`, `XFormersAttnProcessor()`,
      ...) installs it as the kernel of the dual-prior layers and as the processor of the others; a processor with
      weights of its own on a dual-prior layer raises instead of discarding the branches;
    - `set_default_attn_processor`, `fuse_qkv_projections`/`unfuse_qkv_projections`, `set_attention_slice` and
      `set_use_memory_efficient_attention_xformers` (the pipeline's `enable_attention_slicing`,
      `enable_xformers_memory_efficient_attention`, ...) keep the branches.
    """

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        r"""
        Loads a saved SSP-IR model as diffusers' `from_pretrained` does, and refuses a checkpoint without the SSP-IR
        branch weights (such as a stock Stable Diffusion UNet), whose branches diffusers would leave uninitialised.
        """
        output_loading_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(pretrained_model_name_or_path, output_loading_info=True, **kwargs)
        missing = [key for key in info["missing_keys"] if ".processor." in key]
        if missing:
            raise OSError(
                f"{pretrained_model_name_or_path} has no SSP-IR attention-branch weights (e.g. {missing[0]}): it is "
                f"not a saved {cls.__name__}. Build SSP-IR from a Stable Diffusion checkpoint with "
                "`SSPIRPipeline.from_stable_diffusion` (or `SSPIRUNet2DConditionModel.from_stable_diffusion_unet`)."
            )
        return (model, info) if output_loading_info else model

    def _attention_layers(self) -> dict[str, Attention]:
        layers = {}

        def collect(prefix: str, module: nn.Module) -> None:
            if hasattr(module, "set_processor"):
                layers[prefix] = module
            for name, child in module.named_children():
                if isinstance(child, DualPriorAttnProcessor):
                    continue
                collect(f"{prefix}.{name}" if prefix else name, child)

        collect("", self)
        return layers

    def _dual_prior_processors(self) -> dict[str, DualPriorAttnProcessor]:
        return {
            name: layer.processor
            for name, layer in self._attention_layers().items()
            if isinstance(layer.processor, DualPriorAttnProcessor)
        }

    @property
    def attn_processors(self) -> dict:
        return {f"{name}.processor": layer.get_processor() for name, layer in self._attention_layers().items()}

    def set_attn_processor(self, processor) -> None:
        layers = self._attention_layers()
        if isinstance(processor, dict):
            if len(processor) != len(layers):
                raise ValueError(
                    f"A dict of {len(processor)} processors was passed, but {type(self).__name__} has {len(layers)} "
                    "attention layers; pass one processor per key of `model.attn_processors`."
                )
            processors = {name: processor[f"{name}.processor"] for name in layers}
        else:
            processors = dict.fromkeys(layers, processor)

        for name, layer in layers.items():
            new = processors[name]
            current = layer.processor
            if isinstance(current, DualPriorAttnProcessor) and new is not current:
                if isinstance(new, DualPriorAttnProcessor):
                    layer.set_processor(new)
                elif is_kernel_processor(new):
                    current.set_kernel(new)
                else:
                    raise ValueError(
                        f"Cannot set {type(new).__name__} on `{name}`: it would discard the SSP-IR image/pixel "
                        "attention branches of that layer. Pass a kernel processor without weights (e.g. "
                        "AttnProcessor2_0()) to change how attention is computed, or a DualPriorAttnProcessor."
                    )
            else:
                layer.set_processor(new)

    def set_default_attn_processor(self) -> None:
        self.set_attn_processor(AttnProcessor())

    def fuse_qkv_projections(self) -> None:
        layers = self._attention_layers()
        self._unfused_processors = {name: layer.processor for name, layer in layers.items()}
        self._unfused_kernels = {name: proc.kernel for name, proc in self._dual_prior_processors().items()}
        super().fuse_qkv_projections()
        # diffusers' ControlNetModel (0.42) fuses only `AttentionModuleMixin` layers, not the `Attention` layers it is
        # built of: fuse those (and the branches inside the processors) as UNet2DConditionModel does.
        unfused = [
            m for m in self.modules() if isinstance(m, Attention) and not getattr(m, "fused_projections", False)
        ]
        if unfused:
            for module in unfused:
                module.fuse_projections(fuse=True)
            self.set_attn_processor(FusedAttnProcessor2_0())

    def unfuse_qkv_projections(self) -> None:
        super().unfuse_qkv_projections()
        layers = self._attention_layers()
        for name, processor in getattr(self, "_unfused_processors", {}).items():
            layers[name].set_processor(processor)
        processors = self._dual_prior_processors()
        for name, kernel in getattr(self, "_unfused_kernels", {}).items():
            processors[name].set_kernel(kernel)
        self._unfused_processors, self._unfused_kernels = {}, {}

    def _with_branches_hidden(self, switch: Callable[[], None]) -> None:
        """Runs a diffusers switch that sets processors per `Attention` module (attention slicing, xformers) with the
        dual-prior processors taken off their layers, then puts them back with the new processor as their kernel."""
        layers = self._attention_layers()
        duals = {name: layers[name].processor for name in self._dual_prior_processors()}
        for name, dual in duals.items():
            layers[name].set_processor(dual.kernel)
        try:
            switch()
        finally:
            for name, dual in duals.items():
                kernel = layers[name].processor
                layers[name].set_processor(dual)
                dual.set_kernel(kernel)

    def set_attention_slice(self, slice_size) -> None:
        switch = super().set_attention_slice
        self._with_branches_hidden(lambda: switch(slice_size))

    def set_use_memory_efficient_attention_xformers(self, valid: bool, attention_op: Callable | None = None) -> None:
        switch = super().set_use_memory_efficient_attention_xformers
        self._with_branches_hidden(lambda: switch(valid, attention_op))
