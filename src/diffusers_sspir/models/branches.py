"""Adds SSP-IR's dual-prior branches to a diffusers UNet or ControlNet, in either branch kind.

- `branch_type="transformer"` (the paper's, the default): whole transformers before/after SD's, see `blocks.py`.
- `branch_type="attention"` (light): one attention per branch inside SD's cross-attention layers, see
  `attention.py`.

Both start at zero output and keep Stable Diffusion's own parameters under their stock names.
"""

from diffusers.models.attention_processor import CROSS_ATTENTION_PROCESSORS, Attention, AttnProcessor
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from torch import nn

from ..defaults import BRANCH_TYPES
from ._utils import place_like
from .attention import DualPriorAttention, dual_prior_kernel
from .blocks import SSPIR_BLOCKS, zero_init_transformer

# Parameter-name parts that only the branches' parameters have: transformer kind, then light kind.
BRANCH_KEY_MARKERS = (".image_attentions.", ".pixel_attentions.", ".image_attn.", ".pixel_norm.", ".pixel_attn.")


def is_branch_parameter(name: str) -> bool:
    """Whether the parameter (or state-dict key) `name` of an SSP-IR UNet or ControlNet belongs to a dual-prior
    branch rather than to Stable Diffusion's own layers."""
    return any(marker in name for marker in BRANCH_KEY_MARKERS)


def check_branch_type(branch_type: str) -> None:
    if branch_type not in BRANCH_TYPES:
        raise ValueError(
            f"`branch_type` must be one of {BRANCH_TYPES} ('transformer': the paper's layout, 'attention': the light "
            f"one), got {branch_type!r}."
        )


def skip_channels(model: nn.Module) -> list[int]:
    """Channels of each skip connection of a diffusers UNet (= of each ControlNet down residual), in order."""
    channels = [model.conv_in.out_channels]
    for block in model.down_blocks:
        channels += [resnet.out_channels for resnet in block.resnets]
        if block.downsamplers is not None:
            channels.append(block.downsamplers[0].out_channels)
    return channels


def _up_block_skips(model: nn.Module) -> list[list[int]]:
    """For each up block, the indices (into the ControlNet residuals) of the skip connections its layers consume;
    the UNet pops them from the end."""
    consumed, total, result = 0, len(skip_channels(model)), []
    for block in getattr(model, "up_blocks", None) or []:
        result.append([total - 1 - (consumed + layer) for layer in range(len(block.resnets))])
        consumed += len(block.resnets)
    return result


def _attending(branch: Transformer2DModel, attends_to: str, pixel_index: int | None = None) -> Transformer2DModel:
    """`branch` with its cross-attention layers made [`DualPriorAttention`] layers attending to `attends_to`."""
    for attn in _cross_attention_layers(branch):
        DualPriorAttention.extend(attn, attends_to, pixel_index)
    return branch


def _branch_like(
    transformer: Transformer2DModel, cross_attention_dim: int, attends_to: str, pixel_index: int | None = None
) -> Transformer2DModel:
    """A zero-initialised transformer configured as SD's `transformer`, attending to `cross_attention_dim` tokens of
    the prior `attends_to`."""
    config = {key: value for key, value in transformer.config.items() if not key.startswith("_")}
    branch = Transformer2DModel.from_config({**config, "cross_attention_dim": cross_attention_dim})
    return place_like(_attending(zero_init_transformer(branch), attends_to, pixel_index), transformer)


def _heads_per_up_block(config) -> list[int]:
    heads = config.num_attention_heads or config.attention_head_dim  # SD-1.5 names its head count this way
    heads = [heads] * len(config.block_out_channels) if isinstance(heads, int) else list(heads)
    return heads[::-1]


def _stock_type_error(model: nn.Module, block: nn.Module) -> ValueError:
    return ValueError(
        f"{type(model).__name__} has a {type(block).__name__}, which the SSP-IR transformer branches do not support; "
        f"supported blocks: {sorted(stock.__name__ for stock in SSPIR_BLOCKS)} and blocks without attention."
    )


def _install_transformer_branches(
    model: nn.Module, image_embed_dim: int | None, pixel_attention: bool, up_block_0_pixel_heads: int | None
) -> None:
    def image_branches(block):
        if image_embed_dim is None:
            return None
        return [_branch_like(attn, image_embed_dim, "image") for attn in block.attentions]

    for block in [*model.down_blocks, model.mid_block]:
        if getattr(block, "attentions", None) is None or image_embed_dim is None:
            continue
        if type(block) not in SSPIR_BLOCKS:
            raise _stock_type_error(model, block)
        SSPIR_BLOCKS[type(block)].extend(block, image_attentions=image_branches(block))

    for index, (block, skips) in enumerate(zip(getattr(model, "up_blocks", None) or [], _up_block_skips(model))):
        channels = [skip_channels(model)[skip] for skip in skips]
        if getattr(block, "attentions", None) is not None:
            if type(block) not in SSPIR_BLOCKS:
                raise _stock_type_error(model, block)
            pixel = None
            if pixel_attention:
                pixel = [
                    _branch_like(attn, width, "pixel", skip)
                    for attn, width, skip in zip(block.attentions, channels, skips)
                ]
            if pixel is not None or image_embed_dim is not None:
                SSPIR_BLOCKS[type(block)].extend(block, image_branches(block), pixel)
        elif pixel_attention:
            if type(block) not in SSPIR_BLOCKS:
                raise _stock_type_error(model, block)
            width = block.resnets[0].out_channels
            heads = up_block_0_pixel_heads or _heads_per_up_block(model.config)[index]
            if width % heads:
                raise ValueError(f"`up_block_0_pixel_heads` ({heads}) must divide the block's width {width}.")
            config = model.config
            pixel = [
                place_like(
                    _attending(
                        zero_init_transformer(
                            Transformer2DModel(
                                num_attention_heads=heads,
                                attention_head_dim=width // heads,
                                in_channels=width,
                                cross_attention_dim=skip_width,
                                norm_num_groups=config.norm_num_groups,
                                use_linear_projection=config.use_linear_projection,
                                upcast_attention=config.upcast_attention,
                            )
                        ),
                        "pixel",
                        skip,
                    ),
                    block,
                )
                for skip_width, skip in zip(channels, skips)
            ]
            SSPIR_BLOCKS[type(block)].extend(block, pixel_attentions=pixel)


def _cross_attention_layers(block: nn.Module) -> list[Attention]:
    return [
        module
        for name, module in block.named_modules()
        if isinstance(module, Attention) and module.is_cross_attention and name.endswith("attn2")
    ]


def _install_attention_branches(model: nn.Module, image_embed_dim: int | None, pixel_attention: bool) -> None:
    for block in [*model.down_blocks, model.mid_block]:
        for attn in _cross_attention_layers(block):
            DualPriorAttention.extend(attn, "text").add_light_branches(image_embed_dim)
    for block, skips in zip(getattr(model, "up_blocks", None) or [], _up_block_skips(model)):
        channels = skip_channels(model)
        for layer, transformer in enumerate(getattr(block, "attentions", None) or []):
            pixel = {"pixel_embed_dim": channels[skips[layer]], "pixel_index": skips[layer]} if pixel_attention else {}
            for attn in _cross_attention_layers(transformer):
                DualPriorAttention.extend(attn, "text").add_light_branches(image_embed_dim, **pixel)


def install_dual_prior_branches(
    model: nn.Module,
    branch_type: str = "transformer",
    image_embed_dim: int | None = 512,
    pixel_attention: bool = False,
    up_block_0_pixel_heads: int | None = None,
) -> None:
    """Adds SSP-IR's zero-initialised dual-prior branches to a diffusers `UNet2DConditionModel` or `ControlNetModel`
    (or subclass), in place.

    Args:
        model (`torch.nn.Module`): the UNet or ControlNet.
        branch_type (`str`, defaults to `"transformer"`): `"transformer"` (the paper's) or `"attention"` (light).
        image_embed_dim (`int`, *optional*, defaults to 512): width of the image tokens; `None` adds no image branch.
        pixel_attention (`bool`, defaults to `False`): add pixel branches in the up blocks (UNet only).
        up_block_0_pixel_heads (`int`, *optional*): heads of the pixel transformers in up blocks without SD
            attention (SD-1.5's up block 0); `None` uses the block's own head count, as every other branch. The
            authors' code uses 1 (see docs/architecture.md). Transformer kind only.
    """
    check_branch_type(branch_type)
    if pixel_attention and getattr(model, "up_blocks", None) is None:
        raise ValueError(f"Pixel attention needs up blocks, which {type(model).__name__} does not have.")
    if branch_type == "transformer":
        _install_transformer_branches(model, image_embed_dim, pixel_attention, up_block_0_pixel_heads)
    else:
        _install_attention_branches(model, image_embed_dim, pixel_attention)


class DualPriorBranchesMixin:
    """What the SSP-IR UNet and ControlNet add to diffusers' models: a checkpoint without the branch weights is
    refused, and `set_default_attn_processor` counts [`DualPriorAttnProcessor`] as the cross-attention processor it
    is."""

    def set_default_attn_processor(self) -> None:
        r"""
        Gives every attention layer diffusers' default `AttnProcessor`, as the stock models' method does; the
        dual-prior layers take it as the kernel of their [`DualPriorAttnProcessor`], so they keep their priors.
        (The stock method refuses any processor class it does not know, `DualPriorAttnProcessor` among them.)
        """
        kernels = {type(dual_prior_kernel(processor)) for processor in self.attn_processors.values()}
        if not kernels <= set(CROSS_ATTENTION_PROCESSORS):
            raise ValueError(
                f"Cannot call `set_default_attn_processor` when attention processors are of type "
                f"{sorted(kernel.__name__ for kernel in kernels - set(CROSS_ATTENTION_PROCESSORS))}: diffusers' "
                "default processor is for plain cross-attention only."
            )
        self.set_attn_processor(AttnProcessor())

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        r"""
        Loads a saved SSP-IR model as diffusers' `from_pretrained` does, and refuses a checkpoint without the SSP-IR
        branch weights (such as a stock Stable Diffusion UNet), whose branches diffusers would leave uninitialised.
        """
        output_loading_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(pretrained_model_name_or_path, output_loading_info=True, **kwargs)
        missing = [key for key in info["missing_keys"] if is_branch_parameter(key)]
        if missing:
            raise OSError(
                f"{pretrained_model_name_or_path} has no weights for the SSP-IR branches of a "
                f"branch_type={model.config.branch_type!r} {cls.__name__} (e.g. {missing[0]}): it is not a saved "
                f"{cls.__name__} of that kind. Build SSP-IR from a Stable Diffusion checkpoint with "
                "`SSPIRPipeline.from_stable_diffusion`, or convert an authors' checkpoint with "
                "`scripts/convert_sspir_research_checkpoint.py`."
            )
        return (model, info) if output_loading_info else model
