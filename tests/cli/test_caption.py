"""`caption_folder` and `sspir caption`: captions/<stem>.txt, batches, resuming, failures; the example script."""

import runpy
import sys
from pathlib import Path

import PIL.Image
import pytest

from diffusers_sspir.captioners import FixedCaptioner, caption_folder
from diffusers_sspir.testing import make_tiny_llava

from .files import write_16bit, write_broken, write_broken_png, write_image, write_rotated_jpeg

EXAMPLE = Path(__file__).parents[2] / "examples" / "caption_images.py"


class RecordingCaptioner:
    """Captions each image with its size and records the batch sizes and seeds it was called with."""

    def __init__(self):
        self.batches, self.seeds = [], []

    def __call__(self, images: list[PIL.Image.Image], generator_seed: int | None = None) -> list[str]:
        self.batches.append(len(images))
        self.seeds.append(generator_seed)
        return [f"{image.width}x{image.height}" for image in images]


def test_caption_folder_batches_and_resumes(tmp_path):
    for i in range(5):
        write_image(tmp_path / f"{i}.png", 8, 10 + i)
    captioner = RecordingCaptioner()
    result = caption_folder(tmp_path, captioner, batch_size=2, generator_seed=7, progress=False)
    assert captioner.batches == [2, 2, 1] and captioner.seeds == [7, 7, 7]
    assert result.output_dir == tmp_path / "captions" and len(result.captioned) == 5 and not result.failed
    assert (tmp_path / "captions" / "3.txt").read_text() == "13x8"

    (tmp_path / "captions" / "3.txt").unlink()
    again = caption_folder(tmp_path, captioner, batch_size=2, progress=False)
    assert [p.name for p in again.captioned] == ["3.png"] and len(again.skipped) == 4
    assert captioner.batches[-1] == 1

    everything = caption_folder(tmp_path, FixedCaptioner("x"), output_dir=tmp_path / "other", overwrite=True)
    assert len(everything.captioned) == 5 and (tmp_path / "other" / "0.txt").read_text() == "x"


def test_caption_folder_reports_failures_and_goes_on(tmp_path):
    write_image(tmp_path / "a.png")
    write_broken(tmp_path / "b.png")
    for i in range(2):
        write_image(tmp_path / f"c{i}.png")

    def captioner(images):
        if len(images) == 1:  # the batch [a] (b is unreadable) fails; [c0, c1] works
            raise RuntimeError("out of memory")
        return ["ok"] * len(images)

    result = caption_folder(tmp_path, captioner, batch_size=2, progress=False)
    assert sorted(p.name for p in result.captioned) == ["c0.png", "c1.png"]
    assert "cannot read the image" in result.failed[tmp_path / "b.png"]
    assert "RuntimeError: out of memory" in result.failed[tmp_path / "a.png"]
    assert sorted(p.name for p in (tmp_path / "captions").iterdir()) == ["c0.txt", "c1.txt"]


def test_caption_folder_records_a_broken_png_and_captions_the_rest(tmp_path):
    write_broken_png(tmp_path / "broken.png")  # Pillow raises SyntaxError while decoding it
    write_image(tmp_path / "good.png")
    result = caption_folder(tmp_path, FixedCaptioner("x"), batch_size=2, progress=False)
    assert [p.name for p in result.captioned] == ["good.png"]
    assert "cannot read the image (broken PNG file" in result.failed[tmp_path / "broken.png"]


def test_caption_folder_reads_images_as_the_commands_do(tmp_path):
    """16-bit images scaled to 8 bits (not clipped to white), EXIF orientation applied."""
    write_16bit(tmp_path / "deep.png", 128 * 257)
    write_rotated_jpeg(tmp_path / "turned.jpg", 10, 20)
    seen = {}

    def captioner(images):
        for image in images:
            seen[image.size] = (image.mode, image.getpixel((0, 0)))
        return ["x"] * len(images)

    result = caption_folder(tmp_path, captioner, progress=False)
    assert len(result.captioned) == 2 and not result.failed
    assert seen[(16, 16)] == ("RGB", (128, 128, 128))
    assert (10, 20) in seen  # stored 20 wide and 10 high, shown upright


def test_caption_folder_refuses_shared_stems_and_bad_captioners(tmp_path):
    write_image(tmp_path / "a.png")
    write_image(tmp_path / "a.jpg")
    with pytest.raises(ValueError, match="same name stem"):
        caption_folder(tmp_path, FixedCaptioner("x"))
    (tmp_path / "a.jpg").unlink()
    result = caption_folder(tmp_path, lambda images: "not a list", progress=False)
    assert "one string each" in result.failed[tmp_path / "a.png"]


def test_sspir_caption_fixed(sspir, tmp_path):
    write_image(tmp_path / "a.png")
    write_image(tmp_path / "b.png")
    run = sspir("caption", tmp_path, "--captioner", "fixed:a cat")
    assert run.code == 0 and "captioned 2" in run.out
    assert (tmp_path / "captions" / "b.txt").read_text() == "a cat"
    run = sspir("caption", tmp_path, "--captioner", "fixed:a dog")
    assert run.code == 0 and "skipped 2" in run.out
    assert (tmp_path / "captions" / "b.txt").read_text() == "a cat"
    run = sspir("caption", tmp_path, "--captioner", "fixed:a dog", "--output", tmp_path / "mine", "--overwrite")
    assert run.code == 0 and (tmp_path / "mine" / "a.txt").read_text() == "a dog"


def test_sspir_caption_goes_on_after_a_broken_png(sspir, tmp_path):
    write_broken_png(tmp_path / "a.png")
    write_image(tmp_path / "b.png")
    run = sspir("caption", tmp_path, "--captioner", "fixed:a cat")
    assert run.code == 1 and "captioned 1, failed 1:" in run.out and "a.png: cannot read the image" in run.out
    assert (tmp_path / "captions" / "b.txt").read_text() == "a cat"


def test_sspir_caption_with_a_vision_language_model(sspir, tmp_path):
    llava = make_tiny_llava(tmp_path / "llava")
    write_image(tmp_path / "images" / "a.png", 20, 24)
    write_broken(tmp_path / "images" / "b.png")
    run = sspir("caption", tmp_path / "images", "--captioner", llava, "--max-new-tokens", 4, "--device", "cpu")
    assert run.code == 1 and "captioned 1" in run.out and "b.png" in run.out
    assert (tmp_path / "images" / "captions" / "a.txt").read_text().strip()


@pytest.mark.parametrize(
    "args,message",
    [
        (("{tmp}/missing", "--captioner", "fixed:x"), "no such folder"),
        (("{tmp}/empty", "--captioner", "fixed:x"), "holds no images"),
        (("{tmp}", "--captioner", "none"), "nothing to caption with"),
        (("{tmp}", "--captioner", "{tmp}/no-model"), "no-model: no such folder"),
        (("{tmp}", "--captioner", "{tmp}"), "cannot load a vision-language model"),
    ],
)
def test_sspir_caption_errors(sspir, tmp_path, args, message):
    write_image(tmp_path / "a.png")
    (tmp_path / "empty").mkdir()
    run = sspir("caption", *(arg.format(tmp=tmp_path) for arg in args))
    assert run.code == 2 and message in run.err and len(run.err.strip().splitlines()) == 1


def test_example_script(tmp_path, monkeypatch, capsys):
    write_image(tmp_path / "a.png")
    monkeypatch.setattr(sys, "argv", ["caption_images.py", str(tmp_path), "--captioner", "fixed:a wall"])
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    assert (tmp_path / "captions" / "a.txt").read_text() == "a wall"
    assert "captioned 1" in capsys.readouterr().out
    for spec, message in (("fixed:  ", "fixed:TEXT needs a text"), ("none", "nothing to caption with")):
        monkeypatch.setattr(sys, "argv", ["caption_images.py", str(tmp_path), "--captioner", spec])
        with pytest.raises(SystemExit, match=message):  # the same spelling and rules as `sspir caption`
            runpy.run_path(str(EXAMPLE), run_name="__main__")


def test_captioner_specs():
    from diffusers_sspir.captioners import FixedCaptioner, captioner_from_spec, parse_captioner_spec

    assert parse_captioner_spec("none") == ("none", "")
    assert parse_captioner_spec("fixed: a cat") == ("fixed", " a cat")
    assert parse_captioner_spec("org/model") == ("model", "org/model")
    assert captioner_from_spec("none") is None
    assert isinstance(captioner_from_spec("fixed:a cat", device="cpu"), FixedCaptioner)
    with pytest.raises(ValueError, match="fixed:TEXT needs a text"):
        captioner_from_spec("fixed:")


@pytest.mark.parametrize("name, expected", [("gt", "captions"), ("lq", "captions"), ("photos", "photos/captions")])
def test_default_caption_folder_follows_the_training_layout(tmp_path, name, expected):
    from diffusers_sspir.captioners import default_caption_dir

    assert default_caption_dir(tmp_path / name) == tmp_path / expected


def test_fixed_captioner_needs_a_text(sspir, tmp_path):
    write_image(tmp_path / "in" / "a.png")
    run = sspir("caption", tmp_path / "in", "--captioner", "fixed:   ")
    assert run.code == 2 and "--captioner fixed:TEXT needs a text after 'fixed:'" in run.err
    assert not (tmp_path / "in" / "captions").exists()
