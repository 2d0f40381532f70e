"""`diffusers_sspir.files`: the image reader and the atomic writer that the commands and `caption_folder` share."""

from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from diffusers_sspir.files import read_image, read_rgb8, write_atomic

from .files import random_array, write_16bit, write_broken, write_broken_png, write_image, write_rotated_jpeg


def test_read_rgb8_scales_16_bit_and_turns_images_upright(tmp_path):
    deep = read_rgb8(write_16bit(tmp_path / "deep.png", 200 * 257 + 100))
    assert deep.dtype == np.uint8 and deep.shape == (16, 16, 3) and (deep == 200).all()
    assert read_image(write_rotated_jpeg(tmp_path / "turned.jpg", 10, 20)).size == (10, 20)
    rgba = np.dstack([random_array(8, 8), np.zeros((8, 8), np.uint8)])
    PIL.Image.fromarray(rgba).save(tmp_path / "alpha.png")
    np.testing.assert_array_equal(read_rgb8(tmp_path / "alpha.png"), rgba[..., :3])


@pytest.mark.parametrize("write", [write_broken, write_broken_png])
def test_read_image_raises_one_value_error(tmp_path, write):
    with pytest.raises(ValueError, match="cannot read the image"):
        read_image(write(tmp_path / "bad.png"))


@pytest.mark.parametrize("content", ["a caption\n", PIL.Image.new("RGB", (4, 3), "red")])
def test_write_atomic_writes_text_and_png(tmp_path, content):
    write_atomic(tmp_path / "out", content)
    if isinstance(content, str):
        assert (tmp_path / "out").read_text(encoding="utf-8") == content
    else:
        assert PIL.Image.open(tmp_path / "out").format == "PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.parametrize("error", [KeyboardInterrupt, OSError])
@pytest.mark.parametrize("content", ["text", PIL.Image.new("RGB", (4, 3))])
def test_write_atomic_leaves_nothing_when_interrupted(tmp_path, monkeypatch, content, error):
    (tmp_path / "out").write_text("before")

    def half_written(self, *args, **kwargs):
        Path(self if isinstance(self, Path) else args[0]).write_bytes(b"half")
        raise error

    if isinstance(content, str):
        monkeypatch.setattr(Path, "write_text", half_written)
    else:
        monkeypatch.setattr(PIL.Image.Image, "save", half_written)
    with pytest.raises(error):
        write_atomic(tmp_path / "out", content)
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (tmp_path / "out").read_text() == "before"


def test_images_above_the_pixel_limit_are_refused_before_decoding(tmp_path, monkeypatch):
    path = write_image(tmp_path / "big.png", 100, 80)
    monkeypatch.setenv("SSPIR_MAX_INPUT_PIXELS", "5000")
    with pytest.raises(ValueError, match=r"80x100 = 8,000 pixels, above the limit of 5,000; set SSPIR_MAX_INPUT"):
        read_image(path)
    monkeypatch.setenv("SSPIR_MAX_INPUT_PIXELS", "0")  # no limit
    assert read_image(path).size == (80, 100)
    monkeypatch.setenv("SSPIR_MAX_INPUT_PIXELS", "lots")
    with pytest.raises(ValueError, match="must be a whole number of pixels"):
        read_image(path)


def test_the_pixel_limit_governs_pillows_own_bomb_check_too(tmp_path, monkeypatch):
    path = write_image(tmp_path / "big.png", 100, 80)
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow alone would refuse 8,000 pixels (> 2 x 1,000)
    monkeypatch.setenv("SSPIR_MAX_INPUT_PIXELS", "0")  # no limit: none at all
    assert read_image(path).size == (80, 100)
    monkeypatch.delenv("SSPIR_MAX_INPUT_PIXELS")  # the library's default (40 MP)
    assert read_image(path).size == (80, 100)
    monkeypatch.setenv("SSPIR_MAX_INPUT_PIXELS", "5000")  # refused by this library's rule, with its message
    with pytest.raises(ValueError, match="8,000 pixels, above the limit of 5,000"):
        read_image(path)
    assert PIL.Image.MAX_IMAGE_PIXELS == 1000  # Pillow's setting is back as it was


def test_a_bad_pixel_limit_is_refused_before_anything_loads(sspir, tmp_path, model_dir, monkeypatch):
    monkeypatch.setenv("SSPIR_MAX_INPUT_PIXELS", "abc")
    loaded = []
    monkeypatch.setattr("diffusers_sspir.cli.restore.load_pipeline", lambda args: loaded.append(1))
    run = sspir("restore", write_image(tmp_path / "a.png"), "-o", tmp_path / "out", "--model", model_dir)
    assert run.code == 2 and "SSPIR_MAX_INPUT_PIXELS='abc': must be a whole number" in run.err
    assert not loaded and not (tmp_path / "out").exists()


def test_sspir_restore_reports_a_too_large_image_and_goes_on(sspir, tmp_path, model_dir, monkeypatch):
    small, big = write_image(tmp_path / "in" / "a.png"), write_image(tmp_path / "in" / "b.png", 100, 100)
    monkeypatch.setenv("SSPIR_MAX_INPUT_PIXELS", "5000")
    run = sspir("restore", small, big, "-o", tmp_path / "out", "--model", model_dir, "--steps", "1", "--upscale", "2")
    assert run.code == 1 and "b.png: cannot read the image: 100x100 = 10,000 pixels, above the limit" in run.err
    assert (tmp_path / "out" / "a.png").is_file() and not (tmp_path / "out" / "b.png").exists()
