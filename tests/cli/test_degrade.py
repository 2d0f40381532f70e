"""`sspir degrade`: gt/ and lq/ pairs, sizes, crops, per-image seeds, skip/overwrite, failures."""

import numpy as np
import PIL.Image

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
    (tmp_path / "pairs" / "lq" / "a.png").write_bytes(b"marker")
    run = sspir("degrade", tmp_path / "hq", "-o", tmp_path / "pairs")
    assert "skipped 1" in run.out and (tmp_path / "pairs" / "lq" / "a.png").read_bytes() == b"marker"
    (tmp_path / "pairs" / "gt" / "a.png").unlink()  # half a pair: only the missing half is written
    sspir("degrade", tmp_path / "hq", "-o", tmp_path / "pairs")
    assert (tmp_path / "pairs" / "gt" / "a.png").is_file()
    assert (tmp_path / "pairs" / "lq" / "a.png").read_bytes() == b"marker"
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
