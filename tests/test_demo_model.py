"""The bundled demo model: complete, small, loads through the public path, and restores a held-out photo crop as it
did when it shipped (a regression guard on the weights and the inference path)."""

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from diffusers_sspir import SSPIRPipeline, demo_model_path
from diffusers_sspir.cli import main as sspir
from diffusers_sspir.defaults import CALL_DEFAULTS
from diffusers_sspir.files import read_rgb8
from diffusers_sspir.image_ops import upscale_bicubic
from diffusers_sspir.metrics import niqe, psnr

# A crop of scikit-image's `coffee` photo (CC0), held out of the demo model's training; LQ made by `sspir degrade`.
HELD_OUT = Path(__file__).parent / "assets" / "demo_holdout"
COMPONENTS = ("vae", "text_encoder", "tokenizer", "unet", "controlnet", "structure_processor", "image_encoder",
              "feature_extractor", "image_refiner", "scheduler")  # fmt: skip


@pytest.fixture(scope="module")
def pipe():
    pipe = SSPIRPipeline.from_pretrained(demo_model_path())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def bicubic(low_quality: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    image = torch.from_numpy(low_quality.copy()).permute(2, 0, 1)[None].float() / 255
    return (upscale_bicubic(image, size).clamp(0, 1)[0].permute(1, 2, 0) * 255).round().byte().numpy()


def test_bundled_model_is_complete_small_and_safetensors_only():
    folder = Path(demo_model_path())
    for name in COMPONENTS:
        assert any((folder / name).iterdir()), name
    weights = list(folder.rglob("*.safetensors"))
    assert len(weights) == 7
    assert sum(path.stat().st_size for path in weights) <= 30 * 2**20
    assert not [path for path in folder.rglob("*") if path.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl")]
    # No trace of the machine it was trained on.
    configs = [path.read_text() for path in folder.rglob("*.json")]
    assert configs and not [text for text in configs if "_name_or_path" in text or "/tmp" in text]


def test_restores_a_held_out_crop_as_measured_when_it_shipped(pipe):
    """A regression guard on the shipped weights and the inference path: with its recommended settings the demo
    model restores this crop at the PSNR-Y and NIQE measured when it shipped (24.33 dB, NIQE 7.49; bicubic 24.01 dB,
    its structure prior 24.27 dB, the ground truth's NIQE 8.30) and reproducibly for a given generator."""
    low_quality, ground_truth = read_rgb8(HELD_OUT / "lq" / "coffee.png"), read_rgb8(HELD_OUT / "gt" / "coffee.png")
    result = pipe(low_quality, generator=torch.Generator().manual_seed(0), output_type="np")
    restored = (result.images[0] * 255).round().astype(np.uint8)
    assert restored.shape == ground_truth.shape
    psnr_y = psnr(restored, ground_truth, 4, y_channel=True)
    baseline = psnr(bicubic(low_quality, ground_truth.shape[:2]), ground_truth, 4, y_channel=True)
    assert abs(psnr_y - 24.33) < 0.05 and psnr_y > baseline, f"PSNR-Y {psnr_y:.2f} dB, 24.33 dB when it shipped"
    assert abs(niqe(restored, crop_border=4) - 7.49) < 0.05  # the texture decoder's naturalness
    structure = (result.structure_images[0] * 255).round().astype(np.uint8)
    assert abs(psnr(structure, ground_truth, 4, y_channel=True) - 24.27) < 0.05
    # Reproducible for a given generator.
    again = pipe(low_quality, generator=torch.Generator().manual_seed(0), output_type="np").images[0]
    np.testing.assert_array_equal(result.images[0], again)


def test_the_model_carries_its_recommended_settings(pipe):
    """Tuned on the validation_new split (docs/demo_model.md): two steps, no classifier-free guidance (its text path
    is inert), restoration guidance towards the structure prior at every step."""
    tuned = {"num_inference_steps": 2, "guidance_scale": 1.0, "restoration_guidance_scale": 0.3,
             "restoration_guidance_decay": 0.0}  # fmt: skip
    assert pipe.recommended_settings == {**CALL_DEFAULTS, **tuned}
    assert pipe.structure_processor.config.residual_blocks == 6


def test_readme_main_job_restores_the_sample(tmp_path, capsys):
    """`sspir restore assets/ladybird_lq.png -o restored/`, as the README gives it."""
    sample = Path(__file__).parents[1] / "assets" / "ladybird_lq.png"
    assert sspir(["restore", str(sample), "-o", str(tmp_path / "restored")]) == 0
    assert "bundled demo model" in capsys.readouterr().out
    restored = PIL.Image.open(tmp_path / "restored" / "ladybird_lq.png")
    assert restored.size == (512, 512)
    assert not np.array_equal(np.asarray(restored.resize((128, 128))), read_rgb8(sample))


def test_sspir_restore_uses_the_bundled_model_without_model(tmp_path, capsys):
    assert sspir(["restore", str(HELD_OUT / "lq" / "coffee.png"), "-o", str(tmp_path), "--steps", "2"]) == 0
    assert "bundled demo model" in capsys.readouterr().out
    assert PIL.Image.open(tmp_path / "coffee.png").size == PIL.Image.open(HELD_OUT / "gt" / "coffee.png").size


def test_generic_loader_reads_the_bundled_model_offline(monkeypatch):
    """diffusers' own loader, as a user of `DiffusionPipeline` calls it, with every network connection refused."""
    import socket

    from diffusers import DiffusionPipeline

    from diffusers_sspir.pipelines.pipeline_sspir import CUSTOM_PIPELINE_STUB

    def refuse(*args, **kwargs):
        raise AssertionError("network access while loading a local folder")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    folder = Path(demo_model_path())
    assert (folder / "pipeline_sspir.py").read_text() == CUSTOM_PIPELINE_STUB  # what save_pretrained writes
    pipe = DiffusionPipeline.from_pretrained(folder, custom_pipeline="pipeline_sspir", trust_remote_code=True)
    assert type(pipe).__name__ == "SSPIRPipeline" and type(pipe.unet).__name__ == "SSPIRUNet2DConditionModel"


def test_cli_applies_the_pipelines_tiling_rule_for_the_models_vae(tmp_path, capsys):
    """The bundled model's VAE downsamples 4x: tiles of 48 output pixels are valid for it (the pipeline's rule, which
    the CLI applies once the model is loaded), and 20 is refused with the pipeline's own message."""
    image = str(HELD_OUT / "lq" / "coffee.png")
    assert (
        sspir(["restore", image, "-o", str(tmp_path), "--steps", "1", "--tile-size", "48", "--tile-overlap", "16"])
        == 0
    )
    assert sspir(["restore", image, "-o", str(tmp_path / "b"), "--steps", "1", "--tile-size", "20"]) == 2
    assert (
        "--tile-size must be a multiple of 4 >= 32 (output pixels) for this model, got 20" in capsys.readouterr().err
    )
