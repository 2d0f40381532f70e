"""LoRA on an SSP-IR pipeline: UNet and text encoder through the pipeline loader, ControlNet through its adapter
methods, with the dual-prior processors installed."""

import numpy as np
import peft
import pytest
import torch
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

from diffusers_sspir import DualPriorAttnProcessor, SSPIRPipeline

from .test_pipeline_sspir import call_kwargs, make_pipe

ATTENTION = ["to_q", "to_k", "to_v", "to_out.0"]


def lora_config(**kwargs):
    return LoraConfig(r=4, lora_alpha=4, target_modules=ATTENTION, init_lora_weights=False, **kwargs)


def run(pipe):
    return pipe(**call_kwargs()).images


def transformers_peft_supported() -> bool:
    """transformers' own PEFT integration (used by diffusers for text-encoder LoRA) pins a minimum peft version."""
    from packaging.version import Version
    from transformers.integrations import peft as transformers_peft

    return Version(peft.__version__) >= Version(transformers_peft.MIN_PEFT_VERSION)


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
    # LoRA layers also wrap the branches' projections, and the processors stay installed.
    unet_state = get_peft_model_state_dict(pipe.unet)
    assert any(".processor.image_attn." in key for key in unet_state)
    assert len(pipe.unet._dual_prior_processors()) == 4
    SSPIRPipeline.save_lora_weights(tmp_path, unet_lora_layers=unet_state, text_encoder_lora_layers=text_layers)
    assert (tmp_path / "pytorch_lora_weights.safetensors").is_file()

    fresh = make_pipe()
    fresh.load_lora_weights(tmp_path)
    assert all(isinstance(p, DualPriorAttnProcessor) for p in fresh.unet._dual_prior_processors().values())
    np.testing.assert_allclose(run(fresh), with_lora, atol=1e-5)

    fresh.fuse_lora()
    fresh.unload_lora_weights()
    np.testing.assert_allclose(run(fresh), with_lora, atol=1e-4)


def test_lora_scale_through_cross_attention_kwargs(tmp_path):
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
