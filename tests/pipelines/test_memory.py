"""Any size within memory: tiled stages give the untiled result, and a request that cannot fit is refused before
anything is allocated."""

import numpy as np
import pytest
import torch

from diffusers_sspir import SSPIRPipeline, StructureProcessor, memory, testing
from diffusers_sspir.image_ops import upscale_bicubic
from diffusers_sspir.pipelines import pipeline_sspir

from .test_pipeline_sspir import call_kwargs, make_image, make_pipe


@pytest.fixture(scope="module")
def pipe():
    return make_pipe()


def test_tiled_structure_prior_equals_the_untiled_one(pipe):
    """The structure processor runs in tiles with a margin of its receptive field: its image is the same."""
    kwargs = call_kwargs(image=make_image(40, 44), upscale=4, num_inference_steps=1)
    whole = pipe(**kwargs).structure_images[0]
    tiled = pipe(**{**kwargs, "generator": torch.Generator().manual_seed(0)}, tile_size=64).structure_images[0]
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_estimate_grows_with_the_image_and_tiling_bounds_it(pipe):
    small = pipe.estimate_peak_memory(1, 512, 512)
    large = pipe.estimate_peak_memory(1, 2048, 2048)
    assert 15 * small < large <= 16 * small  # the untiled stages grow with the pixel count
    tiled = pipe.estimate_peak_memory(1, 2048, 2048, tile_size=256)
    images = 8 * 3 * 2048 * 2048 * 4  # the full-size images every call keeps
    assert images < tiled < images + (large - images) / 4
    assert pipe.estimate_peak_memory(2, 512, 512) == 2 * small
    assert pipe.estimate_peak_memory(1, 512, 512, classifier_free_guidance=False) <= small


def test_a_request_that_cannot_fit_is_refused_before_allocating(pipe, monkeypatch):
    monkeypatch.setattr(pipeline_sspir, "available_memory", lambda device: 1000)

    def allocate(*args, **kwargs):
        raise AssertionError("the image was upscaled before the memory check")

    monkeypatch.setattr(pipeline_sspir, "upscale_bicubic", allocate)  # refused from the sizes alone
    with pytest.raises(MemoryError, match=r"about .* but the cpu device has 1000 B available: pass `tile_size=512`"):
        pipe(**call_kwargs())
    with pytest.raises(MemoryError, match="pass a smaller `tile_size`"):
        pipe(**call_kwargs(tile_size=64))


def test_the_check_can_be_skipped_and_unknown_memory_is_not_checked(pipe, monkeypatch):
    expected = pipe(**call_kwargs()).images
    monkeypatch.setattr(pipeline_sspir, "available_memory", lambda device: 1000)
    monkeypatch.setenv(memory.SKIP_MEMORY_CHECK_VARIABLE, "1")
    np.testing.assert_array_equal(pipe(**call_kwargs()).images, expected)
    monkeypatch.delenv(memory.SKIP_MEMORY_CHECK_VARIABLE)
    monkeypatch.setattr(pipeline_sspir, "available_memory", lambda device: None)
    np.testing.assert_array_equal(pipe(**call_kwargs()).images, expected)


def test_available_memory_of_the_host():
    available = memory.available_memory("cpu")
    assert available is None or 0 < available
    assert memory.available_memory("meta") is None
    assert memory.format_bytes(1536 * 2**20) == "1.5 GiB"
    assert memory.format_bytes(1000) == "1000 B"


def test_a_full_resolution_restorer_gives_the_structure_image_and_tiles_exactly(tmp_path):
    """With a restorer the structure image is the restorer's full-resolution output (no upsampling), the same tiled,
    and the processor's config round-trips through save/load."""
    components = testing.make_sspir_components(0)
    plain = components["structure_processor"]
    processor = StructureProcessor(
        block_out_channels=tuple(plain.config.block_out_channels),
        conditioning_embedding_channels=plain.config.conditioning_embedding_channels,
        residual_blocks=2,
        residual_channels=4,
    )
    processor.load_state_dict(plain.state_dict(), strict=False)
    torch.manual_seed(1)
    torch.nn.init.normal_(processor.preprocessor.conv_last.weight, std=0.05)
    pipe = SSPIRPipeline(**{**components, "structure_processor": processor.eval()})
    pipe.set_progress_bar_config(disable=True)
    kwargs = call_kwargs(image=make_image(40, 44), upscale=4, num_inference_steps=1)
    out = pipe(**kwargs)
    upscaled = upscale_bicubic(torch.from_numpy(make_image(40, 44)).permute(2, 0, 1)[None], (160, 176))
    with torch.no_grad():
        expected = processor.preprocessor(upscaled.float()).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(out.structure_images[0], expected, atol=1e-6)
    tiled = pipe(**{**kwargs, "generator": torch.Generator().manual_seed(0)}, tile_size=64).structure_images[0]
    np.testing.assert_allclose(tiled, out.structure_images[0], atol=1e-5)
    assert pipe.estimate_peak_memory(1, 512, 512) >= make_pipe().estimate_peak_memory(1, 512, 512)

    pipe.save_pretrained(tmp_path / "model")
    loaded = SSPIRPipeline.from_pretrained(tmp_path / "model")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.structure_processor.config.residual_blocks == 2
    again = loaded(**call_kwargs(image=make_image(40, 44), upscale=4, num_inference_steps=1))
    np.testing.assert_array_equal(again.images, out.images)
