"""`sspir info`: versions and devices, and a saved model's components read from its files."""

import re

import torch
from safetensors.torch import save_file

from diffusers_sspir.cli.info import describe_weights, weight_files


def test_versions_and_devices(sspir):
    run = sspir("info")
    assert run.code == 0
    assert f"torch {torch.__version__}" in run.out and "diffusers " in run.out and "devices: cpu" in run.out


def test_model_components_and_parameter_counts(sspir, model_dir):
    from diffusers_sspir import SSPIRPipeline

    run = sspir("info", model_dir)
    assert run.code == 0, run.err
    assert "SSPIRPipeline" in run.out
    pipe = SSPIRPipeline.from_pretrained(model_dir)
    for name in ("unet", "controlnet", "structure_processor", "vae", "text_encoder", "image_encoder"):
        module = getattr(pipe, name)
        line = next(line for line in run.out.splitlines() if line.split()[:1] == [name])
        assert type(module).__name__ in line and "float32" in line
        assert describe_weights(model_dir / name)["parameters"] == sum(p.numel() for p in module.parameters())
    models = [c for c in pipe.components.values() if isinstance(c, torch.nn.Module)]
    total = sum(p.numel() for model in models for p in model.parameters())
    assert re.search(rf"total parameters: {total:,}\b", run.out)
    assert re.search(r"tokenizer\s+CLIPTokenizer\s+transformers\s+-", run.out)


def test_weight_files_prefer_the_default_variant_and_join_shards(tmp_path):
    for name in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"):
        save_file({"w": torch.zeros(2, 3)}, tmp_path / name)
    save_file({"w": torch.zeros(2, 3, dtype=torch.float16)}, tmp_path / "model.fp16.safetensors")
    files, variant = weight_files(tmp_path)
    assert [f.name for f in files] == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert variant is None and describe_weights(tmp_path)["parameters"] == 12
    for path in files:
        path.unlink()
    weights = describe_weights(tmp_path)
    assert weights["variant"] == "fp16" and weights["dtypes"] == ["float16"] and weights["parameters"] == 6


def test_not_a_model_folder(sspir, tmp_path):
    run = sspir("info", tmp_path)
    assert run.code == 2 and "no model_index.json" in run.err
    run = sspir("info", tmp_path / "missing")
    assert run.code == 2 and "no such folder" in run.err


def test_truncated_and_garbage_weights_are_flagged_with_the_file(sspir, tmp_path, model_dir):
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    weights = copy / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # a download cut short
    run = sspir("info", copy)
    assert run.code == 2 and f"{weights}: truncated: its tensors need" in run.err
    weights.write_bytes(b"not a safetensors file at all")
    run = sspir("info", copy)
    assert run.code == 2 and f"{weights}: not a readable safetensors file" in run.err
