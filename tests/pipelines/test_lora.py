"""LoRA on an SSP-IR pipeline: UNet and text encoder through the pipeline loader, ControlNet through its adapter
methods, with the dual-prior branches in place; Stable Diffusion LoRAs (kohya format) load into the SSP-IR UNet."""

import numpy as np
import pytest
import torch
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

from diffusers_sspir import SSPIRPipeline, SSPIRUNet2DConditionModel
from diffusers_sspir.models import is_branch_parameter

from .test_pipeline_sspir import call_kwargs, make_pipe

ATTENTION = ["to_q", "to_k", "to_v", "to_out.0"]


def lora_config(**kwargs):
    return LoraConfig(r=4, lora_alpha=4, target_modules=ATTENTION, init_lora_weights=False, **kwargs)


def run(pipe):
    return pipe(**call_kwargs()).images


def transformers_peft_supported() -> bool:
    """transformers' own PEFT integration (`text_encoder.add_adapter`) pins a minimum peft version."""
    from diffusers_sspir.compat import text_encoder_lora_problem

    return text_encoder_lora_problem() is None


@pytest.mark.parametrize("with_text_encoder", [False, True], ids=["unet", "unet+text_encoder"])
def test_unet_and_text_encoder_lora_round_trip(tmp_path, with_text_encoder):
    if with_text_encoder and not transformers_peft_supported():
        pytest.skip("this transformers release needs a newer peft for text-encoder adapters than is installed")
    pipe = make_pipe()
    base = run(pipe)
    torch.manual_seed(0)
    pipe.unet.add_adapter(lora_config())
    text_layers = None
    if with_text_encoder:
        pipe.text_encoder.add_adapter(
            LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        )
        text_layers = get_peft_model_state_dict(pipe.text_encoder)
    with_lora = run(pipe)
    assert np.abs(with_lora - base).max() > 1e-4
    # LoRA layers also wrap the branches' projections.
    unet_state = get_peft_model_state_dict(pipe.unet)
    assert any(is_branch_parameter(key) for key in unet_state)
    SSPIRPipeline.save_lora_weights(tmp_path, unet_lora_layers=unet_state, text_encoder_lora_layers=text_layers)
    assert (tmp_path / "pytorch_lora_weights.safetensors").is_file()

    fresh = make_pipe()
    fresh.load_lora_weights(tmp_path)
    np.testing.assert_allclose(run(fresh), with_lora, atol=1e-5)

    fresh.fuse_lora()
    fresh.unload_lora_weights()
    np.testing.assert_allclose(run(fresh), with_lora, atol=1e-4)


def test_lora_scale_through_cross_attention_kwargs(tmp_path):
    if not transformers_peft_supported():
        pytest.skip("this transformers release needs a newer peft for text-encoder adapters than is installed")
    pipe = make_pipe()
    base = run(pipe)
    torch.manual_seed(0)
    pipe.unet.add_adapter(lora_config())
    pipe.text_encoder.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj"], init_lora_weights=False))
    SSPIRPipeline.save_lora_weights(
        tmp_path,
        unet_lora_layers=get_peft_model_state_dict(pipe.unet),
        text_encoder_lora_layers=get_peft_model_state_dict(pipe.text_encoder),
    )
    fresh = make_pipe()
    fresh.load_lora_weights(tmp_path, adapter_name="domain")
    scaled_off = fresh(**call_kwargs(cross_attention_kwargs={"scale": 0.0})).images
    np.testing.assert_allclose(scaled_off, base, atol=1e-5)  # scale 0 switches off UNet and text-encoder LoRA
    full = fresh(**call_kwargs(cross_attention_kwargs={"scale": 1.0})).images
    assert np.abs(full - base).max() > 1e-4


def test_controlnet_lora_round_trip_and_pipeline_adapter_controls(tmp_path):
    pipe = make_pipe()
    base = run(pipe)
    torch.manual_seed(0)
    pipe.unet.add_adapter(lora_config())
    pipe.controlnet.add_adapter(lora_config())
    with_lora = run(pipe)
    SSPIRPipeline.save_lora_weights(tmp_path / "unet", unet_lora_layers=get_peft_model_state_dict(pipe.unet))
    pipe.controlnet.save_lora_adapter(tmp_path / "controlnet")
    assert list((tmp_path / "controlnet").glob("*.safetensors"))

    fresh = make_pipe()
    fresh.load_lora_weights(tmp_path / "unet", adapter_name="domain")
    fresh.controlnet.load_lora_adapter(tmp_path / "controlnet", adapter_name="domain")
    np.testing.assert_allclose(run(fresh), with_lora, atol=1e-5)
    # The pipeline's adapter controls reach the ControlNet too.
    assert fresh.get_list_adapters() == {"unet": ["domain"], "controlnet": ["domain"]}
    fresh.set_adapters(["domain"], [0.0])
    np.testing.assert_allclose(run(fresh), base, atol=1e-5)
    fresh.set_adapters(["domain"], [1.0])
    fresh.disable_lora()
    np.testing.assert_allclose(run(fresh), base, atol=1e-5)
    fresh.enable_lora()
    fresh.fuse_lora(components=["unet", "controlnet"])
    fresh.unload_lora_weights()
    np.testing.assert_allclose(run(fresh), with_lora, atol=1e-5)  # fused weights stay after unloading the adapters

    unloaded = make_pipe()
    unloaded.load_lora_weights(tmp_path / "unet", adapter_name="domain")
    unloaded.controlnet.load_lora_adapter(tmp_path / "controlnet", adapter_name="domain")
    unloaded.unload_lora_weights()
    np.testing.assert_allclose(run(unloaded), base, atol=1e-5)


@pytest.mark.parametrize("model", ["unet", "controlnet"])
def test_lora_keeps_working_after_kernel_switch(model):
    pipe = make_pipe()
    torch.manual_seed(0)
    getattr(pipe, model).add_adapter(lora_config())
    expected = run(pipe)
    getattr(pipe, model).set_default_attn_processor()
    np.testing.assert_allclose(run(pipe), expected, atol=1e-5)


def write_kohya_lora(unet, path, seed=0):
    """A LoRA for the Stable Diffusion layers of `unet` in kohya's sd-scripts key format (`lora_unet_<module>` with
    `lora_down`/`lora_up`/`alpha`), as SD-1.5 LoRAs (e.g. LCM-LoRA) are shared."""
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, module in unet.named_modules():
        if is_branch_parameter(name + ".") or not isinstance(module, torch.nn.Linear):
            continue
        if name.split(".")[-1] not in ("to_q", "to_k", "to_v", "0") or "attentions" not in name:
            continue
        key = "lora_unet_" + name.replace(".", "_")
        tensors[f"{key}.lora_down.weight"] = torch.randn(2, module.in_features, generator=generator) * 0.5
        tensors[f"{key}.lora_up.weight"] = torch.randn(module.out_features, 2, generator=generator) * 0.5
        tensors[f"{key}.alpha"] = torch.tensor(2.0)
    save_file(tensors, path)
    return tensors


@pytest.mark.parametrize("branch_type", ["transformer", "attention"])
def test_stable_diffusion_kohya_lora_loads_into_the_sspir_unet(tmp_path, branch_type):
    """An SD-1.5 LoRA (kohya keys) changes an untrained SSP-IR UNet exactly as it changes Stable Diffusion's."""
    from diffusers import StableDiffusionPipeline

    from diffusers_sspir import testing

    sd_components = testing.make_stable_diffusion_components()
    stock = StableDiffusionPipeline(
        **sd_components, safety_checker=None, feature_extractor=None, image_encoder=None, requires_safety_checker=False
    )
    unet = SSPIRUNet2DConditionModel.from_stable_diffusion_unet(
        sd_components["unet"], branch_type=branch_type, image_embed_dim=testing.IMAGE_EMBED_DIM
    )
    components = testing.make_sspir_components(trained=False, branch_type=branch_type)
    pipe = SSPIRPipeline(**{**components, "unet": unet})
    tensors = write_kohya_lora(stock.unet, tmp_path / "kohya.safetensors")
    assert len(tensors) > 10

    generator = torch.Generator().manual_seed(0)
    inputs = dict(
        sample=torch.randn(1, 4, 16, 16, generator=generator),
        timestep=torch.tensor(300),
        encoder_hidden_states=torch.randn(1, 7, 16, generator=generator),
    )
    with torch.no_grad():
        before = stock.unet(**inputs).sample
    for target in (stock, pipe):
        target.load_lora_weights(tmp_path, weight_name="kohya.safetensors")
    with torch.no_grad():
        expected = stock.unet(**inputs).sample
        actual = pipe.unet(**inputs, image_embeds=torch.randn(1, 5, testing.IMAGE_EMBED_DIM)).sample
    assert (expected - before).abs().max() > 1e-3  # the LoRA does something
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)


def test_saved_text_encoder_lora_loads_whatever_the_peft_version(tmp_path):
    """Loading goes through diffusers' own peft injection, which works even where transformers' `add_adapter`
    refuses the installed peft (the combination `sspir info` reports)."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from safetensors.torch import load_file

    pipe = make_pipe()
    torch.manual_seed(0)
    pipe.unet.add_adapter(lora_config())
    SSPIRPipeline.save_lora_weights(tmp_path, unet_lora_layers=get_peft_model_state_dict(pipe.unet))
    state = load_file(tmp_path / "pytorch_lora_weights.safetensors")
    generator = torch.Generator().manual_seed(1)
    for name, module in pipe.text_encoder.named_modules():
        if name.endswith("self_attn.q_proj"):
            state[f"text_encoder.{name}.lora_A.weight"] = torch.randn(4, module.in_features, generator=generator)
            state[f"text_encoder.{name}.lora_B.weight"] = torch.randn(module.out_features, 4, generator=generator)
    fresh = make_pipe()
    base = run(fresh)
    fresh.load_lora_weights(convert_state_dict_to_diffusers(state))
    assert "default_0" in str(fresh.get_list_adapters())
    assert fresh.get_list_adapters().get("text_encoder")
    assert np.abs(run(fresh) - base).max() > 1e-4
