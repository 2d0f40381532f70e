"""`diffusers_sspir.files`: the image reader and the atomic writer that the commands and `caption_folder` share."""

from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from diffusers_sspir.files import read_image, read_rgb8, write_atomic

from .files import random_array, write_16bit, write_broken, write_broken_png, write_rotated_jpeg


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
