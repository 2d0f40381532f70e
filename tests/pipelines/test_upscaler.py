"""The stage-1 upscaler (`SSPIRPipeline.upscaler`, DiffBIR's design): an optional component that upscales the
low-quality image in place of bicubic before every prior; assigned in one line, saved and loaded with the pipeline."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from diffusers_sspir import SSPIRPipeline
from diffusers_sspir.image_ops import upscale_bicubic
from diffusers_sspir.models import RRDBNet

from .test_pipeline_sspir import call_kwargs, make_image, make_pipe


def tiny_upscaler(scale: int = 2, seed: int = 0) -> RRDBNet:
    torch.manual_seed(seed)
    return RRDBNet(scale=scale, num_features=8, num_blocks=1, growth_channels=4).eval()


def low_quality(height: int = 9, width: int = 7, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(make_image(height, width, seed)).permute(2, 0, 1)[None]


def test_without_upscaler_the_pipeline_upscales_by_bicubic():
    pipe = make_pipe()
    assert pipe.upscaler is None
    image = low_quality()
    torch.testing.assert_close(pipe.upscale(image, (18, 14)), upscale_bicubic(image, (18, 14)), rtol=0, atol=0)


def test_upscaler_output_is_what_every_prior_reads():
    """Odd sizes at scale 2 (the network needs even ones): padded, run, cropped back; clamped to [0, 1]."""
    pipe = make_pipe()
    pipe.upscaler = upscaler = tiny_upscaler(scale=2)
    image = low_quality(9, 7)
    with torch.no_grad():
        padded = F.pad(image, (0, 1, 0, 1), mode="reflect")
        expected = upscaler(padded)[..., :18, :14].clamp(0, 1)
        got = pipe.upscale(image, (18, 14))
    assert got.shape == (1, 3, 18, 14)
    torch.testing.assert_close(got, expected)

    bicubic = make_pipe()(**call_kwargs()).images
    restored = pipe(**call_kwargs(output_type="np"))
    assert restored.images.shape == bicubic.shape
    assert np.abs(restored.images - bicubic).max() > 1e-3, "the upscaler changed nothing"


def test_an_upscaler_of_another_scale_is_resized_to_the_output_size():
    pipe = make_pipe()
    pipe.upscaler = upscaler = tiny_upscaler(scale=4)
    image = low_quality(8, 8)
    with torch.no_grad():
        four = upscaler(image).clamp(0, 1)
        got = pipe.upscale(image, (16, 16))  # x2 asked of a x4 network: its output shrunk, antialiased
    expected = F.interpolate(four, size=(16, 16), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    torch.testing.assert_close(got, expected)
    assert pipe(**call_kwargs(image=make_image(8, 8), upscale=2)).images.shape == (1, 16, 16, 3)


def test_tiled_upscale_is_close_to_the_whole_image():
    pipe = make_pipe()
    pipe.upscaler = tiny_upscaler(scale=2)
    image = low_quality(40, 36, seed=1)
    with torch.no_grad():
        whole = pipe.upscale(image, (80, 72))
        tiled = pipe.upscale(image, (80, 72), tile_size=32)
    assert tiled.shape == whole.shape
    torch.testing.assert_close(tiled, whole, atol=1e-4, rtol=0)


def test_assigned_upscaler_is_saved_loaded_and_removed(tmp_path):
    pipe = make_pipe()
    pipe.upscaler = tiny_upscaler(scale=2)
    assert tuple(pipe.config.upscaler) == ("diffusers_sspir.models.rrdbnet", "RRDBNet")
    expected = pipe(**call_kwargs()).images
    pipe.save_pretrained(tmp_path / "with")
    loaded = SSPIRPipeline.from_pretrained(tmp_path / "with")
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(loaded.upscaler, RRDBNet)
    np.testing.assert_allclose(loaded(**call_kwargs()).images, expected, atol=1e-6)

    loaded.upscaler = None  # back to bicubic, and saved so
    loaded.save_pretrained(tmp_path / "without")
    again = SSPIRPipeline.from_pretrained(tmp_path / "without")
    assert again.upscaler is None


def test_a_folder_saved_before_the_upscaler_existed_loads(tmp_path):
    make_pipe().save_pretrained(tmp_path)
    index_file = tmp_path / "model_index.json"
    index = json.loads(index_file.read_text())
    del index["upscaler"]
    index_file.write_text(json.dumps(index))
    assert SSPIRPipeline.from_pretrained(tmp_path).upscaler is None


def test_batch_gives_each_image_what_it_gets_alone():
    pipe = make_pipe()
    pipe.upscaler = tiny_upscaler(scale=2)
    images = [make_image(seed=0), make_image(seed=1)]
    batch = pipe(**call_kwargs(image=images, generator=[torch.Generator().manual_seed(s) for s in (0, 1)])).images
    for k, image in enumerate(images):
        alone = pipe(**call_kwargs(image=image, generator=torch.Generator().manual_seed(k))).images
        np.testing.assert_allclose(batch[k], alone[0], atol=1e-5)


@pytest.mark.parametrize("tile_size", [None, 32])
def test_memory_estimate_counts_the_upscaler(tile_size):
    pipe = make_pipe()
    without = pipe.estimate_peak_memory(1, 512, 512, tile_size=tile_size)
    pipe.upscaler = tiny_upscaler(scale=4)
    pipe.upscaler.register_to_config(num_features=512)  # an upscaler wide enough to be the largest stage
    assert pipe.estimate_peak_memory(1, 512, 512, tile_size=tile_size) > without
