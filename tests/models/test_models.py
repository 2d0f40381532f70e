"""Save/load, determinism and dtype checks shared by every SSP-IR model class (one table of cases)."""

import json

import pytest
import torch

from diffusers_sspir import (
    ImageTokenRefiner,
    SSPIRControlNetModel,
    SSPIRUNet2DConditionModel,
    StructureProcessor,
    testing,
)


def unet_case():
    model = testing.make_sspir_components()["unet"]
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    residuals = tuple(torch.randn(2, c, s, s) for c, s in ((8, 16), (8, 16), (8, 8), (16, 8)))
    inputs = dict(
        sample=x,
        timestep=torch.tensor(10),
        encoder_hidden_states=torch.randn(2, 7, 16),
        image_embeds=torch.randn(2, 5, testing.IMAGE_EMBED_DIM),
        down_block_additional_residuals=residuals,
        mid_block_additional_residual=torch.randn(2, 16, 8, 8),
    )
    return model, inputs, lambda out: out.sample


def controlnet_case():
    model = testing.make_sspir_components()["controlnet"]
    inputs = dict(
        sample=torch.randn(2, 4, 16, 16),
        timestep=torch.tensor(10),
        encoder_hidden_states=torch.randn(2, 7, 16),
        controlnet_cond=torch.randn(2, 8, 16, 16),
        image_embeds=torch.randn(2, 5, testing.IMAGE_EMBED_DIM),
    )
    return model, inputs, lambda out: torch.cat([r.flatten() for r in out.down_block_res_samples])


def structure_case():
    model = testing.make_sspir_components()["structure_processor"]
    return (
        model,
        dict(image=torch.rand(2, 3, 32, 24)),
        lambda out: torch.cat([out.features.flatten(), out.rgb[0].flatten()]),
    )


def refiner_case():
    model = ImageTokenRefiner(in_dim=16, hidden_dim=16, out_dim=12)
    return model, dict(image_tokens=torch.randn(2, 5, 16)), lambda out: out


CASES = {
    "unet": (SSPIRUNet2DConditionModel, unet_case),
    "controlnet": (SSPIRControlNetModel, controlnet_case),
    "structure_processor": (StructureProcessor, structure_case),
    "image_refiner": (ImageTokenRefiner, refiner_case),
}
# Explicit per-class tolerances for the bf16 round trip (outputs are O(1)).
BF16_ATOL = {"unet": 0.25, "controlnet": 0.25, "structure_processor": 0.1, "image_refiner": 0.1}


@pytest.fixture(params=sorted(CASES))
def case(request):
    torch.manual_seed(0)
    cls, build = CASES[request.param]
    model, inputs, select = build()
    return request.param, cls, model.eval(), inputs, select


def test_save_load_round_trip(case, tmp_path):
    name, cls, model, inputs, select = case
    model.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    loaded = cls.from_pretrained(tmp_path).eval()
    assert public_config(loaded) == public_config(model)
    with torch.no_grad():
        torch.testing.assert_close(select(loaded(**inputs)), select(model(**inputs)), rtol=0, atol=0)


def test_loads_from_pipeline_subfolder(case, tmp_path):
    name, cls, model, inputs, select = case
    model.save_pretrained(tmp_path / name)
    loaded = cls.from_pretrained(tmp_path, subfolder=name).eval()
    with torch.no_grad():
        torch.testing.assert_close(select(loaded(**inputs)), select(model(**inputs)), rtol=0, atol=0)


def test_deterministic(case):
    name, cls, model, inputs, select = case
    with torch.no_grad():
        torch.testing.assert_close(select(model(**inputs)), select(model(**inputs)), rtol=0, atol=0)


def test_bf16_round_trip(case):
    name, cls, model, inputs, select = case
    with torch.no_grad():
        reference = select(model(**inputs))
        half = model.to(torch.bfloat16)
        assert all(p.dtype == torch.bfloat16 for p in half.parameters())
        cast = {k: _cast(v, torch.bfloat16) for k, v in inputs.items()}
        out = select(half(**cast))
        assert out.dtype == torch.bfloat16
        torch.testing.assert_close(out.float(), reference, rtol=0.1, atol=BF16_ATOL[name])
        back = select(half.to(torch.float32)(**inputs))
    assert back.dtype == torch.float32


def public_config(model):
    return json.loads(json.dumps({k: v for k, v in model.config.items() if not k.startswith("_")}))


def _cast(value, dtype):
    if isinstance(value, torch.Tensor) and value.is_floating_point() and value.ndim > 0:
        return value.to(dtype)
    if isinstance(value, tuple):
        return tuple(_cast(v, dtype) for v in value)
    return value


def test_stock_checkpoint_is_refused_with_a_pointer_to_from_stable_diffusion(tmp_path):
    testing.make_stable_diffusion_components()["unet"].save_pretrained(tmp_path)
    with pytest.raises(OSError, match="from_stable_diffusion"):
        SSPIRUNet2DConditionModel.from_pretrained(tmp_path)
    model, info = SSPIRUNet2DConditionModel.from_pretrained(
        _saved(testing.make_sspir_components()["unet"], tmp_path / "sspir"), output_loading_info=True
    )
    assert not info["missing_keys"] and isinstance(model, SSPIRUNet2DConditionModel)


def _saved(model, path):
    model.save_pretrained(path)
    return path
