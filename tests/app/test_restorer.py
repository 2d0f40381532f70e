"""`DemoRestorer`, the web demo's logic without a browser: uploads (bad files, odd modes, size limits), Describe and
Restore with a tiny random pipeline."""

import numpy as np
import PIL.Image
import pytest

from diffusers_sspir import FixedCaptioner, SSPIRPipeline
from diffusers_sspir.app import DemoRestorer, Limits, RestoreSettings, Upload
from diffusers_sspir.testing import make_sspir_components

from ..cli.files import random_array, write_16bit, write_broken, write_broken_png, write_image


@pytest.fixture(scope="module")
def pipe():
    pipe = SSPIRPipeline(**make_sspir_components())
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture
def restorer(pipe, tmp_path):
    pipe.captioner = None
    return DemoRestorer(pipe, Limits(max_input_pixels=64 * 64, max_output_pixels=64 * 64), work_dir=tmp_path)


def upload(height: int = 16, width: int = 16) -> Upload:
    return Upload(PIL.Image.fromarray(random_array(height, width)))


def test_an_rgb_upload_is_read_as_it_is(restorer, tmp_path):
    read = restorer.read_upload(write_image(tmp_path / "a.png"))
    assert read.image.mode == "RGB" and read.notes == []
    np.testing.assert_array_equal(np.asarray(read.image), random_array(16, 16))


def write_cmyk(path):
    PIL.Image.fromarray(random_array(16, 16)).convert("CMYK").save(path)
    return path


def write_rgba(path):
    PIL.Image.fromarray(np.dstack([random_array(16, 16), np.zeros((16, 16), np.uint8)])).save(path)
    return path


def write_animated(path):
    frames = [PIL.Image.fromarray(random_array(16, 16, seed)) for seed in range(3)]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    return path


def write_float_tiff(path):
    """A 32-bit float TIFF (PIL mode F) with values in [0, 1], as scientific cameras write them."""
    PIL.Image.fromarray(np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16), mode="F").save(path)
    return path


def test_a_float_upload_is_read_by_its_range_as_the_pipeline_reads_it(restorer, tmp_path):
    from diffusers_sspir.image_ops import to_tensor_batch

    path = write_float_tiff(tmp_path / "float.tif")
    read = np.asarray(restorer.read_upload(path).image)
    (tensor,) = to_tensor_batch(PIL.Image.open(path))
    expected = tensor.mul(255).round().byte().permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(read, expected)  # not all zeros: 0 .. 255 along the ramp
    assert read.min() == 0 and read.max() == 255


@pytest.mark.parametrize(
    "name, write, note",
    [
        ("gray16.png", lambda p: write_16bit(p, 65535), "16-bit image: scaled to 8 bits"),
        ("cmyk.jpg", write_cmyk, "CMYK image: converted to RGB"),
        ("alpha.png", write_rgba, "alpha channel is dropped"),
        ("animated.gif", write_animated, "animated image of 3 frames: the first frame is used"),
        ("float.tif", write_float_tiff, "float image: scaled to 8 bits"),
    ],
)
def test_odd_uploads_become_rgb_and_say_how(restorer, tmp_path, name, write, note):
    read = restorer.read_upload(write(tmp_path / name))
    assert read.image.mode == "RGB" and read.image.size == (16, 16)
    assert any(note in line for line in read.notes), read.notes


@pytest.mark.parametrize("write", [write_broken, write_broken_png], ids=["not-an-image", "truncated"])
def test_broken_uploads_are_refused_with_the_reason(restorer, tmp_path, write):
    with pytest.raises(ValueError, match="cannot read the image"):
        restorer.read_upload(write(tmp_path / "broken.png"))


def test_a_large_upload_is_refused_from_its_header(restorer, tmp_path, monkeypatch):
    path = write_image(tmp_path / "big.png", 65, 64)
    monkeypatch.setattr(PIL.Image.Image, "load", lambda self: pytest.fail("decoded a refused image"))
    with pytest.raises(ValueError, match=r"64x65 = 4,160 pixels; this demo takes at most 4,096 \(its --max-input"):
        restorer.read_upload(path)


def test_a_large_output_is_refused_before_the_pipeline_runs(restorer, monkeypatch):
    monkeypatch.setattr(SSPIRPipeline, "__call__", lambda *a, **k: pytest.fail("ran the pipeline"))
    with pytest.raises(ValueError, match=r"gives 80x80 = 6,400 pixels.*upscale of at most 4 or a smaller image"):
        restorer.restore(upload(), RestoreSettings(upscale=5))
    with pytest.raises(ValueError, match="`upscale` must be a finite number > 0 and <= 16"):
        restorer.describe(upload(), upscale=0)


def test_describe_gives_the_captioners_text_or_nothing(restorer):
    assert restorer.describe(upload(), upscale=2) == ""
    restorer.pipe.captioner = FixedCaptioner("a stone bridge")
    assert restorer.has_captioner and restorer.describe(upload(), upscale=2) == "a stone bridge"


def test_restore_uses_the_reviewed_caption_and_reports_progress(restorer):
    restorer.pipe.captioner = FixedCaptioner("what the captioner says")
    steps = []
    settings = RestoreSettings(caption="an edited caption", added_prompt="sharp", upscale=2, steps=2, seed=3)
    result = restorer.restore(upload(), settings, progress=lambda step, total: steps.append((step, total)))
    assert steps == [(1, 2), (2, 2)]
    assert result.prompt == "an edited caption, sharp"
    assert result.image.size == result.bicubic.size == result.structure.size == (32, 32)
    assert result.png.parent.parent == restorer.work_dir and result.png.suffix == ".png"
    np.testing.assert_array_equal(np.asarray(PIL.Image.open(result.png)), np.asarray(result.image))
    assert "16x16 → 32x32" in result.summary and "seed 3" in result.summary
    again = restorer.restore(upload(), settings)
    np.testing.assert_array_equal(np.asarray(again.image), np.asarray(result.image))  # the seed decides
    assert list(restorer.work_dir.glob("*/*.png")) == [again.png]  # the previous PNG is gone
    assert restorer.restore(upload(), RestoreSettings(upscale=2, steps=1)).prompt.startswith("what the captioner")


def test_restore_takes_the_clis_scheduler_names_and_puts_the_models_back(restorer):
    model_scheduler = restorer.pipe.scheduler
    result = restorer.restore(upload(), RestoreSettings(upscale=2, steps=2, scheduler="euler"))
    assert "(euler, seed 0)" in result.summary
    assert restorer.pipe.scheduler is model_scheduler


@pytest.mark.parametrize(
    "settings, message",
    [
        (RestoreSettings(steps=2.5), "`steps` must be an integer, got 2.5"),
        (RestoreSettings(seed=-1), "`seed` must be an integer >= 0, got -1"),
        (RestoreSettings(guidance_scale=1000), "`guidance_scale` must be a finite number >= 0 and <= 100"),
        (RestoreSettings(strength=0), "`strength`"),
        (RestoreSettings(color_fix="sepia"), "colour fix must be one of wavelet, adain, none"),
        (RestoreSettings(tile_size=60, steps=1), "`tile_size` must be a multiple of 8"),
        (RestoreSettings(scheduler="warp"), "unknown"),
    ],
)
def test_bad_settings_get_the_pipelines_message(restorer, settings, message):
    settings.upscale = 2
    with pytest.raises(ValueError, match=message):
        restorer.restore(upload(), settings)
    assert restorer.pipe.scheduler is restorer.model_scheduler


def test_a_restoration_the_device_cannot_hold_is_refused(restorer, monkeypatch):
    monkeypatch.setattr("diffusers_sspir.pipelines.pipeline_sspir.available_memory", lambda device: 1024)
    monkeypatch.delenv("SSPIR_SKIP_MEMORY_CHECK", raising=False)
    with pytest.raises(MemoryError, match="tile_size=512"):
        restorer.restore(upload(), RestoreSettings(upscale=2, steps=1))
