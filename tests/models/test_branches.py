"""Dual-prior branches of both kinds: exact equivalence with Stable Diffusion when untrained, gradient flow, the
layout, and diffusers' own attention switches (no SSP-IR code in between)."""

import logging

import pytest
import torch
from diffusers import ControlNetModel
from diffusers.models.attention_processor import AttnProcessor, SlicedAttnProcessor
from diffusers.models.transformers.transformer_2d import Transformer2DModel

from diffusers_sspir import (
    DualPriorAttention,
    DualPriorAttnProcessor,
    SSPIRControlNetModel,
    SSPIRUNet2DConditionModel,
    testing,
)
from diffusers_sspir.models import is_branch_parameter
from diffusers_sspir.models.attention import dual_prior_kernel
from diffusers_sspir.models.blocks import SSPIRCrossAttnDownBlock2D

KINDS = pytest.mark.parametrize("branch_type", testing.BRANCH_TYPES)


def unet_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    residuals = tuple(torch.randn(2, c, s, s, generator=g) for c, s in ((8, 16), (8, 16), (8, 8), (16, 8)))
    return dict(
        sample=torch.randn(2, 4, 16, 16, generator=g),
        timestep=torch.tensor(500),
        encoder_hidden_states=torch.randn(2, 7, 16, generator=g),
        down_block_additional_residuals=residuals,
        mid_block_additional_residual=torch.randn(2, 16, 8, 8, generator=g),
    )


def image_embeds(seed=1):
    return torch.randn(2, 5, testing.IMAGE_EMBED_DIM, generator=torch.Generator().manual_seed(seed))


def controlnet_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        sample=torch.randn(2, 4, 16, 16, generator=g),
        timestep=torch.tensor(500),
        encoder_hidden_states=torch.randn(2, 7, 16, generator=g),
        controlnet_cond=torch.randn(2, 8, 16, 16, generator=g),
        image_embeds=image_embeds(),
        return_dict=False,
    )


@KINDS
@torch.no_grad()
def test_untrained_unet_equals_stock_unet_exactly(branch_type):
    stock = testing.make_stable_diffusion_components()["unet"]
    sspir = SSPIRUNet2DConditionModel.from_stable_diffusion_unet(
        stock, branch_type=branch_type, image_embed_dim=testing.IMAGE_EMBED_DIM
    )
    assert any(is_branch_parameter(name) for name in sspir.state_dict())
    inputs = unet_inputs()
    expected = stock(**inputs).sample
    torch.testing.assert_close(sspir(**inputs, image_embeds=image_embeds()).sample, expected, rtol=0, atol=0)


@KINDS
@torch.no_grad()
def test_untrained_controlnet_equals_stock_controlnet_exactly(branch_type):
    stock_unet = testing.make_stable_diffusion_components()["unet"]
    sspir_unet = SSPIRUNet2DConditionModel.from_stable_diffusion_unet(
        stock_unet, branch_type=branch_type, image_embed_dim=testing.IMAGE_EMBED_DIM
    )
    sspir = SSPIRControlNetModel.from_unet(sspir_unet)
    assert sspir.config.branch_type == branch_type
    stock = ControlNetModel.from_unet(stock_unet)
    stock.controlnet_cond_embedding = torch.nn.Identity()  # the stock model fed the same features
    for module in (sspir, stock):  # give the zero convolutions values so that the residuals are not all zero
        torch.manual_seed(3)
        for param in module.controlnet_down_blocks.parameters():
            param.normal_()
    features = torch.randn(2, 8, 16, 16)
    sample, t, text = torch.randn(2, 4, 16, 16), torch.tensor(500), torch.randn(2, 7, 16)
    expected = stock(sample, t, text, features).down_block_res_samples
    actual = sspir(sample, t, text, features, image_embeds=image_embeds()).down_block_res_samples
    assert any(r.abs().max() > 0 for r in expected)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=0, atol=0)


@KINDS
def test_sd_parameters_keep_their_stock_names(branch_type):
    stock = testing.make_stable_diffusion_components()["unet"]
    sspir = testing.make_sspir_components(branch_type=branch_type)["unet"]
    sd_keys = {key for key in sspir.state_dict() if not is_branch_parameter(key)}
    assert sd_keys == set(stock.state_dict())


@KINDS
def test_gradients_reach_every_branch_parameter(branch_type):
    unet = testing.make_sspir_components(trained=True, branch_type=branch_type)["unet"]
    branch_params = {n: p for n, p in unet.named_parameters() if is_branch_parameter(n)}
    assert branch_params
    out = unet(**unet_inputs(), image_embeds=image_embeds()).sample
    out.square().mean().backward()
    missing = [n for n, p in branch_params.items() if p.grad is None or p.grad.abs().max() == 0]
    assert not missing, missing


def test_transformer_layout_follows_the_research_code():
    unet = testing.make_sspir_components()["unet"]
    # image transformer before SD's in every block with attention; pixel transformers in every up block (after SD's,
    # or after each ResNet where the block has no attention), consuming the skips from the end
    assert len(unet.down_blocks[0].image_attentions) == 1 and type(unet.down_blocks[1]).__name__ == "DownBlock2D"
    assert len(unet.mid_block.image_attentions) == 1
    assert len(unet.up_blocks[0].pixel_attentions) == 2 and unet.up_blocks[0].image_attentions is None
    assert len(unet.up_blocks[1].image_attentions) == 2 and len(unet.up_blocks[1].pixel_attentions) == 2

    def pixel_indices(block):
        return [t.transformer_blocks[0].attn2.pixel_index for t in block.pixel_attentions]

    assert pixel_indices(unet.up_blocks[0]) == [3, 2] and pixel_indices(unet.up_blocks[1]) == [1, 0]
    # K/V width = the consumed skip's channels (the research code sizes up block 0 from out_channels: its bug B1)
    widths = [t.transformer_blocks[0].attn2.to_k.in_features for t in unet.up_blocks[0].pixel_attentions]
    assert widths == [16, 8]
    assert all(isinstance(t, Transformer2DModel) for t in unet.up_blocks[1].image_attentions)
    heads = {t.transformer_blocks[0].attn1.heads for t in unet.up_blocks[0].pixel_attentions}
    assert heads == {4}  # the block's own head count by default
    research = SSPIRUNet2DConditionModel(**testing.UNET_CONFIG, image_embed_dim=12, up_block_0_pixel_heads=1)
    assert {t.transformer_blocks[0].attn1.heads for t in research.up_blocks[0].pixel_attentions} == {1}
    controlnet = testing.make_sspir_components()["controlnet"]
    assert len(controlnet.down_blocks[0].image_attentions) == 1 and len(controlnet.mid_block.image_attentions) == 1


def test_attention_layout_puts_branches_on_cross_attention_layers():
    unet = testing.make_sspir_components(branch_type="attention")["unet"]
    layers = {n: m for n, m in unet.named_modules() if isinstance(m, DualPriorAttention) and m.attends_to == "text"}
    pixel = {name: layer.pixel_attn.pixel_index for name, layer in layers.items() if layer.pixel_attn is not None}
    assert pixel == {
        "up_blocks.1.attentions.0.transformer_blocks.0.attn2": 1,
        "up_blocks.1.attentions.1.transformer_blocks.0.attn2": 0,
    }
    assert all(layer.image_attn is not None for layer in layers.values())
    assert len(layers) == 4


def test_bad_branch_settings_are_refused():
    with pytest.raises(ValueError, match="`branch_type` must be one of"):
        SSPIRUNet2DConditionModel(**testing.UNET_CONFIG, branch_type="lora")
    with pytest.raises(ValueError, match="must divide the block's width 16"):
        SSPIRUNet2DConditionModel(**testing.UNET_CONFIG, up_block_0_pixel_heads=3)
    stock = testing.make_stable_diffusion_components()["unet"]
    attn2 = stock.down_blocks[0].attentions[0].transformer_blocks[0].attn2
    with pytest.raises(ValueError, match="`attends_to` must be one of"):
        DualPriorAttention.extend(attn2, "caption")
    with pytest.raises(ValueError, match="`pixel_index` \\(None\\) is given with attends_to='pixel' and only then"):
        DualPriorAttention.extend(attn2, "pixel")
    with pytest.raises(TypeError, match="Expected a diffusers cross-attention layer"):
        DualPriorAttention.extend(stock.down_blocks[0].attentions[0].transformer_blocks[0].attn1, "text")
    with pytest.raises(ValueError, match="must be given together"):
        DualPriorAttention.extend(attn2, "text").add_light_branches(4, pixel_embed_dim=8)
    with pytest.raises(TypeError, match="holds weights of its own"):
        DualPriorAttnProcessor(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="extends a CrossAttnDownBlock2D, got DownBlock2D"):
        SSPIRCrossAttnDownBlock2D.extend(stock.down_blocks[1])


def forward(unet, controlnet):
    with torch.no_grad():
        down, mid = controlnet(**controlnet_inputs())
        inputs = {**unet_inputs(), "down_block_additional_residuals": down, "mid_block_additional_residual": mid}
        return unet(**inputs, image_embeds=image_embeds()).sample


def processor_types(model) -> set[str]:
    """The kernels computing the model's attention: stock processors, and those inside the DualPriorAttnProcessors."""
    return {type(dual_prior_kernel(processor)).__name__ for processor in model.attn_processors.values()}


def prior_layers(model, branch_type) -> set[str]:
    """The processor names of the layers that attend to a prior (image or pixel tokens)."""
    names = model.attn_processors
    if branch_type == "attention":  # SD's attn2 carries the branches, which are attention layers too
        return {name for name in names if ".attn2." in name or name.endswith("attn2.processor")}
    return {name for name in names if "_attentions." in name and name.endswith("attn2.processor")}


def check_dual_prior_processors(model, branch_type) -> None:
    """Every layer that attends to a prior has a DualPriorAttnProcessor, and no other layer has one."""
    dual = {name for name, p in model.attn_processors.items() if isinstance(p, DualPriorAttnProcessor)}
    assert dual and dual == prior_layers(model, branch_type)


SWITCHES = {
    "set_default_attn_processor": (lambda m: m.set_default_attn_processor(), {"AttnProcessor"}),
    "set_attn_processor(AttnProcessor)": (lambda m: m.set_attn_processor(AttnProcessor()), {"AttnProcessor"}),
    "set_attn_processor(dict)": (lambda m: m.set_attn_processor(dict(m.attn_processors)), {"AttnProcessor2_0"}),
    "set_attn_processor(stock dict)": (
        lambda m: m.set_attn_processor({name: AttnProcessor() for name in m.attn_processors}),
        {"AttnProcessor"},
    ),
    "fuse_qkv_projections": (lambda m: m.fuse_qkv_projections(), {"FusedAttnProcessor2_0"}),
    "set_attention_slice": (lambda m: m.set_attention_slice(1), {"SlicedAttnProcessor"}),
    "disable_xformers": (lambda m: m.set_use_memory_efficient_attention_xformers(False), {"AttnProcessor2_0"}),
}


@KINDS
@pytest.mark.parametrize("switch", SWITCHES, ids=list(SWITCHES))
def test_diffusers_switches_reach_every_attention_and_keep_the_priors(branch_type, switch):
    components = testing.make_sspir_components(branch_type=branch_type, trained=True)
    unet, controlnet = components["unet"], components["controlnet"]
    expected = forward(unet, controlnet)
    apply, processors = SWITCHES[switch]
    for model in (unet, controlnet):
        apply(model)
        assert processor_types(model) == processors  # SD's layers and the branches alike
        check_dual_prior_processors(model, branch_type)  # the priors are still attended to
    torch.testing.assert_close(forward(unet, controlnet), expected, rtol=1e-4, atol=1e-5)


@KINDS
def test_the_priors_change_the_output_after_a_switch(branch_type):
    """A switch that dropped a prior would give the same output with and without it (trained branches)."""
    components = testing.make_sspir_components(branch_type=branch_type, trained=True)
    unet = components["unet"]
    unet.set_attention_slice(1)
    inputs = unet_inputs()
    with torch.no_grad():
        with_image = unet(**inputs, image_embeds=image_embeds()).sample
        without_image = unet(**inputs).sample
        without_pixel = unet(**{**inputs, "down_block_additional_residuals": None}, image_embeds=image_embeds()).sample
    assert (with_image - without_image).abs().max() > 1e-3
    assert (with_image - without_pixel).abs().max() > 1e-3


@KINDS
def test_fuse_then_unfuse_restores_the_processors(branch_type):
    components = testing.make_sspir_components(branch_type=branch_type, trained=True)
    unet, controlnet = components["unet"], components["controlnet"]
    expected = forward(unet, controlnet)
    for model in (unet, controlnet):
        model.fuse_qkv_projections()  # diffusers' own ControlNetModel (0.42) would leave its layers unfused
        assert processor_types(model) == {"FusedAttnProcessor2_0"}
        check_dual_prior_processors(model, branch_type)
    torch.testing.assert_close(forward(unet, controlnet), expected, rtol=1e-4, atol=1e-5)
    for model in (unet, controlnet):
        model.unfuse_qkv_projections()
        assert processor_types(model) == {"AttnProcessor2_0"}
        check_dual_prior_processors(model, branch_type)
    torch.testing.assert_close(forward(unet, controlnet), expected, rtol=1e-4, atol=1e-5)


@KINDS
def test_attn_processors_lists_sd_layers_and_branches(branch_type):
    stock = testing.make_stable_diffusion_components()["unet"]
    unet = testing.make_sspir_components(branch_type=branch_type)["unet"]
    assert set(stock.attn_processors) < set(unet.attn_processors)
    check_dual_prior_processors(unet, branch_type)
    unet.set_attn_processor({name: SlicedAttnProcessor(1) for name in unet.attn_processors})
    assert processor_types(unet) == {"SlicedAttnProcessor"}
    check_dual_prior_processors(unet, branch_type)


@KINDS
@pytest.mark.parametrize("name", ["unet", "controlnet"])
def test_dual_prior_processors_after_save_and_load(branch_type, name, tmp_path):
    model = testing.make_sspir_components(branch_type=branch_type, trained=True)[name]
    model.save_pretrained(tmp_path)
    loaded = type(model).from_pretrained(tmp_path)
    check_dual_prior_processors(loaded, branch_type)
    assert all(
        torch.equal(value, loaded.state_dict()[key]) for key, value in model.state_dict().items()
    )  # the branches' weights are the model's, not the processor's


def test_a_processor_with_weights_is_refused_as_a_kernel():
    """IP-Adapter's processors hold weights: wrapped, they would leave the model's state dict unseen."""
    from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0

    unet = testing.make_sspir_components()["unet"]
    with pytest.raises(TypeError, match="IPAdapterAttnProcessor2_0 holds weights of its own"):
        unet.set_attn_processor(IPAdapterAttnProcessor2_0(hidden_size=16, cross_attention_dim=16))


@KINDS
def test_no_log_output_per_forward(branch_type, caplog):
    from diffusers.utils import logging as diffusers_logging

    components = testing.make_sspir_components(branch_type=branch_type)
    diffusers_logging.enable_propagation()
    try:
        with caplog.at_level(logging.DEBUG):
            forward(components["unet"], components["controlnet"])
    finally:
        diffusers_logging.disable_propagation()
    assert not caplog.records, [r.getMessage() for r in caplog.records]


@KINDS
@pytest.mark.parametrize("name", ["unet", "controlnet"])
def test_gradient_checkpointing_gives_the_same_gradients(branch_type, name):
    def gradients(checkpointing):
        model = testing.make_sspir_components(branch_type=branch_type)[name].train()
        if checkpointing:
            model.enable_gradient_checkpointing()
        if name == "unet":
            out = model(**unet_inputs(), image_embeds=image_embeds()).sample
        else:
            out = torch.cat([r.flatten() for r in model(**controlnet_inputs())[0]])
        out.square().mean().backward()
        return {
            n: p.grad.clone() for n, p in model.named_parameters() if is_branch_parameter(n) and p.grad is not None
        }

    plain, checkpointed = gradients(False), gradients(True)
    assert plain.keys() == checkpointed.keys() and plain
    for key in plain:
        torch.testing.assert_close(checkpointed[key], plain[key], rtol=1e-4, atol=1e-6)


@KINDS
def test_torch_compile_fullgraph_gives_the_same_output(branch_type):
    components = testing.make_sspir_components(branch_type=branch_type)
    unet, controlnet = components["unet"], components["controlnet"]
    expected = forward(unet, controlnet)
    for model in (unet, controlnet):
        model.compile(fullgraph=True, backend="eager")  # dynamo traces the branches; no C++ compiler needed
    torch.testing.assert_close(forward(unet, controlnet), expected, rtol=1e-5, atol=1e-6)
