"""`sspir degrade`: gt/ and lq/ pairs, sizes, crops, per-image seeds, skip/overwrite, failures."""

import numpy as np
import PIL.Image
import pytest

from diffusers_sspir.cli.degrade import image_seed

from .files import write_broken, write_image


def read(path):
    return np.asarray(PIL.Image.open(path))


def test_pairs_have_the_right_sizes_and_gt_is_mod_cropped(sspir, tmp_path):
    source = write_image(tmp_path / "hq" / "a.png", 34, 41)
    write_image(tmp_path / "hq" / "b.jpg", 32, 32, seed=1)
    run = sspir("degrade", tmp_path / "hq", "-o", tmp_path / "pairs", "--scale", 4, "--seed", 3)
    assert run.code == 0 and "made 2" in run.out
    assert PIL.Image.open(tmp_path / "pairs" / "gt" / "a.png").size == (40, 32)
    assert PIL.Image.open(tmp_path / "pairs" / "lq" / "a.png").size == (10, 8)
    np.testing.assert_array_equal(read(tmp_path / "pairs" / "gt" / "a.png"), read(source)[:32, :40])
    assert PIL.Image.open(tmp_path / "pairs" / "lq" / "b.png").size == (8, 8)


def test_center_crop(sspir, tmp_path):
    source = write_image(tmp_path / "hq" / "a.png", 30, 40)
    assert sspir("degrade", tmp_path / "hq", "-o", tmp_path / "pairs", "--scale", 2, "--crop", 16).code == 0
    np.testing.assert_array_equal(read(tmp_path / "pairs" / "gt" / "a.png"), read(source)[7:23, 12:28])
    assert PIL.Image.open(tmp_path / "pairs" / "lq" / "a.png").size == (8, 8)


def test_seeds_are_per_image_and_reproducible(sspir, tmp_path):
    write_image(tmp_path / "one" / "a.png", 32, 32)
    write_image(tmp_path / "two" / "a.png", 32, 32)
    write_image(tmp_path / "two" / "b.png", 32, 32, seed=1)  # adding an image does not change the others
    for folder in ("one", "two"):
        assert sspir("degrade", tmp_path / folder, "-o", tmp_path / f"{folder}-pairs", "--seed", 5).code == 0
    assert sspir("degrade", tmp_path / "one", "-o", tmp_path / "other-seed", "--seed", 6).code == 0
    lq = read(tmp_path / "one-pairs" / "lq" / "a.png")
    np.testing.assert_array_equal(lq, read(tmp_path / "two-pairs" / "lq" / "a.png"))
    assert not np.array_equal(lq, read(tmp_path / "other-seed" / "lq" / "a.png"))
    assert image_seed(5, "a") == image_seed(5, "a") != image_seed(5, "b") != image_seed(6, "b")


def test_skip_overwrite_and_failures(sspir, tmp_path):
    write_image(tmp_path / "hq" / "a.png", 32, 32)
    write_image(tmp_path / "hq" / "tiny.png", 2, 2)
    write_broken(tmp_path / "hq" / "bad.png")
    run = sspir("degrade", tmp_path / "hq", "-o", tmp_path / "pairs")
    assert run.code == 1 and "made 1" in run.out and "failed 2" in run.out
    assert "smaller than --scale 4" in run.out and "cannot read the image" in run.out
    PIL.Image.new("RGB", (3, 3), "red").save(tmp_path / "pairs" / "lq" / "a.png")
    marker = (tmp_path / "pairs" / "lq" / "a.png").read_bytes()
    run = sspir("degrade", tmp_path / "hq", "-o", tmp_path / "pairs")
    assert "skipped 1" in run.out and (tmp_path / "pairs" / "lq" / "a.png").read_bytes() == marker
    (tmp_path / "pairs" / "gt" / "a.png").unlink()  # half a pair: only the missing half is written
    sspir("degrade", tmp_path / "hq", "-o", tmp_path / "pairs")
    assert (tmp_path / "pairs" / "gt" / "a.png").is_file()
    assert (tmp_path / "pairs" / "lq" / "a.png").read_bytes() == marker
    sspir("degrade", tmp_path / "hq", "-o", tmp_path / "pairs", "--overwrite")
    assert PIL.Image.open(tmp_path / "pairs" / "lq" / "a.png").size == (8, 8)


def test_argument_errors(sspir, tmp_path):
    write_image(tmp_path / "hq" / "a.png")
    run = sspir("degrade", tmp_path / "hq", "-o", tmp_path / "pairs", "--crop", 10)
    assert run.code == 2 and "multiple of --scale 4" in run.err
    run = sspir("degrade", tmp_path / "missing", "-o", tmp_path / "pairs")
    assert run.code == 2 and "no such folder" in run.err
    run = sspir("degrade", tmp_path / "hq", "-o", tmp_path / "hq")
    assert run.code == 2 and "is the input folder" in run.err


@pytest.mark.parametrize("overwrite", [(), ("--overwrite",)])
@pytest.mark.parametrize("output", ["pairs", "pairs/gt/..", "pairs/lq/.."])
def test_refuses_when_an_output_folder_is_the_input_folder(sspir, tmp_path, monkeypatch, output, overwrite):
    """`degrade pairs/gt -o pairs` would replace pairs/gt/a.png by its crop and put b.png next to b.jpg."""
    monkeypatch.chdir(tmp_path)
    write_image(tmp_path / "pairs" / "gt" / "a.png", 34, 41)
    write_image(tmp_path / "pairs" / "gt" / "b.jpg", 32, 32, seed=1)
    (tmp_path / "pairs" / "lq").mkdir()
    before = {p.name: p.read_bytes() for p in (tmp_path / "pairs" / "gt").iterdir()}
    run = sspir("degrade", "pairs/gt", "-o", output, "--scale", 3, *overwrite)
    assert run.code == 2 and "gt/ folder is the input folder" in run.err and len(run.err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in (tmp_path / "pairs" / "gt").iterdir()} == before
    assert not any((tmp_path / "pairs" / "lq").iterdir())


def test_refuses_when_an_output_file_is_an_input(sspir, tmp_path):
    """An input that is a link to a file where a pair goes."""
    write_image(tmp_path / "pairs" / "gt" / "a.png", 32, 32)
    (tmp_path / "hq").mkdir()
    (tmp_path / "hq" / "a.png").symlink_to(tmp_path / "pairs" / "gt" / "a.png")
    before = (tmp_path / "pairs" / "gt" / "a.png").read_bytes()
    run = sspir("degrade", tmp_path / "hq", "-o", tmp_path / "pairs", "--overwrite")
    assert run.code == 2 and "would replace the input" in run.err
    assert (tmp_path / "pairs" / "gt" / "a.png").read_bytes() == before


def test_an_interrupted_write_leaves_no_partial_file(sspir, tmp_path, monkeypatch):
    write_image(tmp_path / "hq" / "a.png", 32, 32)
    save = PIL.Image.Image.save

    def interrupted(image, path, *args, **kwargs):
        save(image, path, *args, **kwargs)  # the temporary file is complete, the rename has not happened
        raise KeyboardInterrupt

    monkeypatch.setattr(PIL.Image.Image, "save", interrupted)
    run = sspir("degrade", tmp_path / "hq", "-o", tmp_path / "pairs")
    assert run.code == 130
    assert sorted((tmp_path / "pairs").rglob("*")) == [tmp_path / "pairs" / "gt", tmp_path / "pairs" / "lq"]


def test_gt_usm_writes_the_sharpened_ground_truth_and_its_degradation(sspir, tmp_path):
    import torch

    from diffusers_sspir.data.degradations import RealESRGANDegradation, usm_sharpen

    source = write_image(tmp_path / "hq" / "a.png", 48, 48)
    run = sspir("degrade", tmp_path / "hq", "-o", tmp_path / "pairs", "--gt-usm", "--seed", 2)
    assert run.code == 0 and "made 1" in run.out
    original = torch.from_numpy(read(source).copy()).permute(2, 0, 1)[None].float() / 255
    sharpened = (usm_sharpen(original)[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    np.testing.assert_array_equal(read(tmp_path / "pairs" / "gt" / "a.png"), sharpened)
    assert not np.array_equal(sharpened, read(source))
    lq = RealESRGANDegradation()(usm_sharpen(original), generator=torch.Generator().manual_seed(image_seed(2, "a")))
    np.testing.assert_array_equal(read(tmp_path / "pairs" / "lq" / "a.png"),
                                  (lq[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy())  # fmt: skip
