"""Dual-prior attention: exact equivalence when untrained, gradient flow, and the diffusers attention switches."""

import logging

import pytest
import tiny
import torch
from diffusers import ControlNetModel
from diffusers.models.attention_processor import (
    AttnProcessor,
    AttnProcessor2_0,
    FusedAttnProcessor2_0,
    IPAdapterAttnProcessor2_0,
    SlicedAttnProcessor,
)

from diffusers_sspir import DualPriorAttnProcessor, SSPIRControlNetModel, SSPIRUNet2DConditionModel


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
    return torch.randn(2, 5, tiny.IMAGE_EMBED_DIM, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def test_untrained_unet_equals_stock_unet_exactly():
    stock = tiny.make_stable_diffusion_components()["unet"]
    sspir = SSPIRUNet2DConditionModel.from_stable_diffusion_unet(stock, image_embed_dim=tiny.IMAGE_EMBED_DIM)
    inputs = unet_inputs()
    expected = stock(**inputs).sample
    torch.testing.assert_close(sspir(**inputs, image_embeds=image_embeds()).sample, expected, rtol=0, atol=0)


@torch.no_grad()
def test_untrained_controlnet_equals_stock_controlnet_exactly():
    stock_unet = tiny.make_stable_diffusion_components()["unet"]
    sspir_unet = SSPIRUNet2DConditionModel.from_stable_diffusion_unet(stock_unet, image_embed_dim=tiny.IMAGE_EMBED_DIM)
    sspir = SSPIRControlNetModel.from_unet(sspir_unet)
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


def test_gradients_reach_every_branch_parameter():
    unet = tiny.make_sspir_components(trained=False)["unet"]
    branch_params = {n: p for n, p in unet.named_parameters() if ".processor." in n}
    assert branch_params
    with torch.no_grad():  # non-zero outputs, as after the first training steps
        for name, param in branch_params.items():
            if "to_out" in name:
                param.normal_(std=0.1)
    out = unet(**unet_inputs(), image_embeds=image_embeds()).sample
    out.square().mean().backward()
    missing = [n for n, p in branch_params.items() if p.grad is None or p.grad.abs().max() == 0]
    assert not missing, missing


def test_branches_receive_the_right_pixel_residual():
    unet = tiny.make_sspir_components()["unet"]
    processors = unet._dual_prior_processors()
    pixel = {name: p.pixel_index for name, p in processors.items() if p.pixel_attn is not None}
    # Two up-block attentions, consuming the skips from the end: layer 0 → skip 1, layer 1 → skip 0.
    assert pixel == {
        "up_blocks.1.attentions.0.transformer_blocks.0.attn2": 1,
        "up_blocks.1.attentions.1.transformer_blocks.0.attn2": 0,
    }
    assert all(p.pixel_attn is None for n, p in processors.items() if not n.startswith("up_blocks"))
    assert all(p.image_attn is not None for p in processors.values())


@pytest.fixture
def trained_unet():
    return tiny.make_sspir_components()["unet"]


def forward(model):
    with torch.no_grad():
        return model(**unet_inputs(), image_embeds=image_embeds()).sample


def branch_state(model):
    return {k: v.clone() for k, v in model.state_dict().items() if ".processor." in k}


@pytest.mark.parametrize(
    "switch",
    [
        pytest.param(lambda m: m.set_default_attn_processor(), id="set_default_attn_processor"),
        pytest.param(lambda m: m.set_attn_processor(AttnProcessor2_0()), id="set_attn_processor(AttnProcessor2_0)"),
        pytest.param(lambda m: m.set_attn_processor(AttnProcessor()), id="set_attn_processor(AttnProcessor)"),
        pytest.param(lambda m: m.set_attn_processor(dict(m.attn_processors)), id="set_attn_processor(dict)"),
        pytest.param(lambda m: m.fuse_qkv_projections(), id="fuse_qkv_projections"),
        pytest.param(lambda m: m.set_attention_slice(1), id="set_attention_slice"),
        pytest.param(
            lambda m: m.set_use_memory_efficient_attention_xformers(False), id="disable_xformers_memory_efficient"
        ),
    ],
)
def test_switches_keep_the_branches(trained_unet, switch):
    expected, state = forward(trained_unet), branch_state(trained_unet)
    switch(trained_unet)
    assert len(trained_unet._dual_prior_processors()) == 4
    for key, value in state.items():
        torch.testing.assert_close(trained_unet.state_dict()[key], value, rtol=0, atol=0)
    torch.testing.assert_close(forward(trained_unet), expected, rtol=1e-4, atol=1e-5)


def test_kernel_switch_reaches_the_branches(trained_unet):
    trained_unet.set_attn_processor(AttnProcessor())
    for processor in trained_unet._dual_prior_processors().values():
        assert isinstance(processor.kernel, AttnProcessor)
        assert all(isinstance(branch.processor, AttnProcessor) for branch in processor.branches)
    trained_unet.set_attention_slice(1)
    assert all(isinstance(p.kernel, SlicedAttnProcessor) for p in trained_unet._dual_prior_processors().values())


def test_fuse_then_unfuse_restores_kernels(trained_unet):
    expected = forward(trained_unet)
    trained_unet.fuse_qkv_projections()
    assert all(isinstance(p.kernel, FusedAttnProcessor2_0) for p in trained_unet._dual_prior_processors().values())
    trained_unet.unfuse_qkv_projections()
    assert all(isinstance(p.kernel, AttnProcessor2_0) for p in trained_unet._dual_prior_processors().values())
    torch.testing.assert_close(forward(trained_unet), expected, rtol=1e-5, atol=1e-6)


def test_processor_with_weights_on_a_dual_prior_layer_raises(trained_unet):
    ip_adapter = IPAdapterAttnProcessor2_0(hidden_size=8, cross_attention_dim=16)
    with pytest.raises(ValueError, match="would discard the SSP-IR image/pixel attention branches"):
        trained_unet.set_attn_processor(ip_adapter)
    assert len(trained_unet._dual_prior_processors()) == 4


def test_attn_processors_lists_the_layers_of_the_stock_model(trained_unet):
    stock = tiny.make_stable_diffusion_components()["unet"]
    assert trained_unet.attn_processors.keys() == stock.attn_processors.keys()
    with pytest.raises(ValueError, match="one processor per key"):
        trained_unet.set_attn_processor({"down_blocks.0": AttnProcessor()})


def test_no_log_output_per_forward(trained_unet, caplog):
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.enable_propagation()
    try:
        with caplog.at_level(logging.DEBUG):
            forward(trained_unet)
            forward(trained_unet)
    finally:
        diffusers_logging.disable_propagation()
    assert not caplog.records, [r.getMessage() for r in caplog.records]


def test_processor_rejects_a_kernel_with_weights():
    with pytest.raises(ValueError, match="cannot be the attention kernel"):
        DualPriorAttnProcessor(8, 2, 4, image_embed_dim=4, kernel=torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="must be given together"):
        DualPriorAttnProcessor(8, 2, 4, pixel_embed_dim=8)


@pytest.mark.parametrize("name", ["unet", "controlnet"])
def test_gradient_checkpointing_gives_the_same_gradients(name):
    def gradients(checkpointing):
        model = tiny.make_sspir_components()[name].train()
        if checkpointing:
            model.enable_gradient_checkpointing()
        if name == "unet":
            out = model(**unet_inputs(), image_embeds=image_embeds()).sample
        else:
            residuals = model(
                torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0)), torch.tensor(500),
                torch.randn(2, 7, 16, generator=torch.Generator().manual_seed(1)), torch.ones(2, 8, 16, 16),
                image_embeds=image_embeds(),
            ).down_block_res_samples  # fmt: skip
            out = torch.cat([r.flatten() for r in residuals])
        out.square().mean().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if ".processor." in n and p.grad is not None}

    plain, checkpointed = gradients(False), gradients(True)
    assert plain.keys() == checkpointed.keys() and plain
    for key in plain:
        torch.testing.assert_close(checkpointed[key], plain[key], rtol=1e-4, atol=1e-6)


def test_controlnet_fuse_qkv_projections_fuses_and_unfuses():
    from tiny import make_sspir_components

    controlnet = make_sspir_components()["controlnet"]
    generator = torch.Generator().manual_seed(0)
    inputs = dict(
        sample=torch.randn(1, 4, 8, 8, generator=generator),
        timestep=torch.tensor([10]),
        encoder_hidden_states=torch.randn(1, 5, 16, generator=generator),
        controlnet_cond=torch.randn(1, 8, 8, 8, generator=generator),
        image_embeds=torch.randn(1, 3, 12, generator=generator),
        return_dict=False,
    )
    expected = controlnet(**inputs)
    controlnet.fuse_qkv_projections()  # diffusers' own ControlNetModel (0.42) leaves its Attention layers unfused
    assert all(isinstance(p.kernel, FusedAttnProcessor2_0) for p in controlnet._dual_prior_processors().values())
    assert all(isinstance(layer.processor, (FusedAttnProcessor2_0, DualPriorAttnProcessor))
               for layer in controlnet._attention_layers().values())  # fmt: skip
    fused = controlnet(**inputs)
    controlnet.unfuse_qkv_projections()
    assert all(isinstance(p.kernel, AttnProcessor2_0) for p in controlnet._dual_prior_processors().values())
    layers = controlnet._attention_layers().values()
    assert not any(isinstance(layer.processor, FusedAttnProcessor2_0) for layer in layers)
    for outputs in (fused, controlnet(**inputs)):
        torch.testing.assert_close(outputs[1], expected[1], rtol=1e-4, atol=1e-5)
