"""LoRA fine-tuning of a saved SSP-IR pipeline: only adapters train, and the pipeline's loaders bring them back."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from diffusers_sspir import SSPIRPipeline
from diffusers_sspir.models import is_branch_parameter
from diffusers_sspir.training.train_sspir_lora import lora_target_modules, main

from .helpers import common_args, make_hq_folder, save_sspir, smooth_image


def restore(pipe):
    return pipe(
        smooth_image(5, 16), prompt="a photo", num_inference_steps=2, output_type="np",
        generator=torch.Generator().manual_seed(0),
    ).images  # fmt: skip


@pytest.fixture(scope="module")
def sspir_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sspir") / "model"
    save_sspir(folder)
    return folder


def test_lora_run_saves_adapters_that_the_pipeline_loads(tmp_path, sspir_folder):
    data = make_hq_folder(tmp_path / "data", count=2)
    output = tmp_path / "lora"
    main(["--pretrained_sspir", str(sspir_folder), *common_args(data, output), "--rank", "4",
          "--learning_rate", "1e-2", "--train_controlnet_lora"])  # fmt: skip

    unet_layers = load_file(output / "pytorch_lora_weights.safetensors")
    assert unet_layers and all("lora" in key for key in unet_layers)
    assert not any(is_branch_parameter(key) for key in unet_layers)  # branches are not adapted by default
    assert list((output / "controlnet").glob("*.safetensors"))
    checkpoint = load_file(output / "checkpoint-2" / "trainable.safetensors")
    assert checkpoint and all("lora_" in key for key in checkpoint)  # nothing but adapters trained

    base = SSPIRPipeline.from_pretrained(sspir_folder)
    before = restore(base)
    base.load_lora_weights(output, adapter_name="domain")
    base.controlnet.load_lora_adapter(output / "controlnet", adapter_name="domain")
    adapted = restore(base)
    assert np.abs(adapted - before).max() > 1e-4
    base.fuse_lora(components=["unet", "controlnet"])
    base.unload_lora_weights()
    np.testing.assert_allclose(restore(base), adapted, atol=1e-4)


def test_lora_on_branches_adapts_the_branch_projections(tmp_path, sspir_folder):
    data = make_hq_folder(tmp_path / "data", count=1)
    output = tmp_path / "lora"
    main(["--pretrained_sspir", str(sspir_folder), *common_args(data, output), "--rank", "2",
          "--lora_on_branches", "--lora_target_modules", "to_k,to_v"])  # fmt: skip
    keys = load_file(output / "pytorch_lora_weights.safetensors")
    assert any(is_branch_parameter(key) and ".attn2.to_k" in key for key in keys)
    assert not any("to_q" in key or "to_out" in key for key in keys)


@pytest.mark.parametrize(
    "names, on_branches, matches, rejects",
    [
        ("to_q,to_out.0", False, ["down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_q", "up.attn1.to_out.0"],
         ["up.attn2.image_attn.to_q", "up.attn1.to_out", "up_blocks.1.pixel_attentions.0.proj_in",
          "down_blocks.0.image_attentions.0.transformer_blocks.0.attn1.to_q"]),
        ("to_q", True, ["up.attn2.image_attn.to_q", "a.attn1.to_q",
                        "up_blocks.1.pixel_attentions.0.transformer_blocks.0.attn2.to_q"], ["a.attn1.to_qk"]),
    ],
)  # fmt: skip
def test_target_module_pattern(names, on_branches, matches, rejects):
    import re

    pattern = lora_target_modules(names, on_branches)
    assert all(re.fullmatch(pattern, name) for name in matches)
    assert not any(re.fullmatch(pattern, name) for name in rejects)


def test_empty_target_modules_are_refused():
    with pytest.raises(ValueError, match="--lora_target_modules"):
        lora_target_modules(" , ", False)


def test_an_intermediate_checkpoint_exports_to_lora_files_and_the_raw_file_is_refused(tmp_path, sspir_folder):
    from diffusers_sspir.training.export import main as export

    data = make_hq_folder(tmp_path / "data", count=1)
    output = tmp_path / "lora"
    main(["--pretrained_sspir", str(sspir_folder), *common_args(data, output, steps=2), "--rank", "2",
          "--learning_rate", "1e-2"])  # fmt: skip
    pipe = SSPIRPipeline.from_pretrained(sspir_folder)
    with pytest.raises(ValueError, match="is a training checkpoint, not a LoRA file: export it"):
        pipe.load_lora_weights(output / "checkpoint-2")
    with pytest.raises(ValueError, match="is a training checkpoint"):
        pipe.load_lora_weights(output / "checkpoint-2", weight_name="trainable.safetensors")
    assert export([str(output / "checkpoint-2"), "--output", str(tmp_path / "exported")]) == 0
    final, exported = (load_file(p / "pytorch_lora_weights.safetensors") for p in (output, tmp_path / "exported"))
    assert final.keys() == exported.keys()  # the checkpoint at the last step is the finished run
    for key in final:
        torch.testing.assert_close(exported[key], final[key], rtol=0, atol=0)
    assert export([str(output / "checkpoint-2"), "--output", str(tmp_path / "exported")]) == 2  # no overwrite
