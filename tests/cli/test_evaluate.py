"""`sspir evaluate`: values against scikit-image and by hand, CSV/JSON, pairing, failures, NIQE with and without
ground truth, pyiqa guard."""

import csv
import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from .files import random_array, write_16bit, write_broken, write_image


def write_pair(tmp_path, stem, offset=None, seed=0, size=(24, 28)):
    """A GT image and a prediction: GT + `offset` grey levels, or another random image."""
    gt = np.clip(random_array(*size, seed=seed), 20, 200)  # room for offsets up to 55
    pred = gt + np.uint8(offset) if offset is not None else random_array(*size, seed=seed + 100)
    for folder, array in (("gt", gt), ("pred", pred)):
        (tmp_path / folder).mkdir(exist_ok=True)
        PIL.Image.fromarray(array).save(tmp_path / folder / f"{stem}.png")
    return pred, gt


def read_json(path):
    return json.loads(path.read_text())


def test_values_match_references_and_files_are_written(sspir, tmp_path):
    try:  # scikit-image imports its submodules lazily: their own needs (scipy) show only here
        from skimage.metrics import peak_signal_noise_ratio, structural_similarity
    except ImportError as error:
        pytest.skip(f"the independent PSNR/SSIM reference is scikit-image: {error}")
    write_pair(tmp_path, "offset5", offset=5)
    pred, gt = write_pair(tmp_path, "random", seed=1)
    run = sspir("evaluate", "--pred", tmp_path / "pred", "--gt", tmp_path / "gt", "--crop-border", 2)
    assert run.code == 0, run.err
    report = read_json(tmp_path / "pred" / "metrics.json")
    assert report["metrics"] == ["psnr", "psnr_y", "ssim", "ssim_y"] and report["count"] == 2

    offset = report["images"]["offset5"]  # by hand: MSE = 25 in RGB, (5 * 219 / 255)^2 in Y
    assert offset["psnr"] == pytest.approx(20 * math.log10(255 / 5), abs=1e-10)
    assert offset["psnr_y"] == pytest.approx(20 * math.log10(255 / (5 * 219 / 255)), abs=1e-10)

    inner = (slice(2, -2), slice(2, -2))  # scikit-image on the same cropped region
    values = report["images"]["random"]
    assert values["psnr"] == pytest.approx(peak_signal_noise_ratio(gt[inner], pred[inner], data_range=255), abs=1e-10)
    expected_ssim = structural_similarity(pred[inner], gt[inner], gaussian_weights=True, sigma=1.5,
                                          use_sample_covariance=False, data_range=255, channel_axis=-1)  # fmt: skip
    assert values["ssim"] == pytest.approx(expected_ssim, abs=1e-10)
    assert report["mean"]["psnr"] == pytest.approx((offset["psnr"] + values["psnr"]) / 2)

    with open(tmp_path / "pred" / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["image"] for row in rows] == ["offset5", "random", "mean"]
    assert float(rows[1]["ssim"]) == pytest.approx(values["ssim"])
    table = run.out.splitlines()
    assert table[0].split() == ["image", "psnr", "psnr_y", "ssim", "ssim_y"]
    assert table[1].split()[:2] == ["offset5", f"{offset['psnr']:.4f}"] and table[3].startswith("mean")


def test_unpaired_size_mismatch_and_unreadable_are_reported(sspir, tmp_path):
    write_pair(tmp_path, "good", offset=3)
    write_image(tmp_path / "pred" / "small.png", 10, 12)
    write_image(tmp_path / "gt" / "small.png", 20, 24)
    write_broken(tmp_path / "pred" / "broken.png")
    write_image(tmp_path / "gt" / "broken.png")
    write_image(tmp_path / "pred" / "extra.png")
    write_image(tmp_path / "gt" / "lonely.png")
    run = sspir("evaluate", "--pred", tmp_path / "pred", "--gt", tmp_path / "gt")
    assert run.code == 1
    assert "size mismatch: pred 12x10, gt 24x20" in run.out and "cannot read the image" in run.out
    assert "1 in --pred without a partner: extra.png" in run.err and "lonely.png" in run.err
    report = read_json(tmp_path / "pred" / "metrics.json")
    assert list(report["images"]) == ["good"] and set(report["failed"]) == {"small", "broken"}
    assert report["unpaired"] == {"pred": ["extra.png"], "gt": ["lonely.png"]}


def test_never_overwrites_without_asking_and_output_prefix(sspir, tmp_path):
    write_pair(tmp_path, "a", offset=0)
    assert sspir("evaluate", "--pred", tmp_path / "pred", "--gt", tmp_path / "gt").code == 0
    assert read_json(tmp_path / "pred" / "metrics.json")["images"]["a"]["psnr"] == "inf"  # identical images

    run = sspir("evaluate", "--pred", tmp_path / "pred", "--gt", tmp_path / "gt")
    assert run.code == 2 and "--overwrite" in run.err
    assert sspir("evaluate", "--pred", tmp_path / "pred", "--gt", tmp_path / "gt", "--overwrite").code == 0

    run = sspir("evaluate", "--pred", tmp_path / "pred", "--gt", tmp_path / "gt", "--output", tmp_path / "res" / "x4")
    assert run.code == 0 and (tmp_path / "res" / "x4.csv").is_file() and (tmp_path / "res" / "x4.json").is_file()


@pytest.mark.parametrize(
    "args,message",
    [
        (("--metrics", "psnr,lpips"), "other names are pyiqa metrics, and pyiqa is not installed"),
        (("--metrics", "psnrr"), "--metrics psnrr: not built in (psnr, ssim, niqe are)"),
        (("--metrics", "psnr,psnr"), "named twice"),
        (("--crop-border", "20"), "leaves nothing"),
    ],
)
def test_errors(sspir, tmp_path, monkeypatch, args, message):
    monkeypatch.setitem(sys.modules, "pyiqa", None)  # as if not installed
    write_pair(tmp_path, "a", offset=1)
    run = sspir("evaluate", "--pred", tmp_path / "pred", "--gt", tmp_path / "gt", *args)
    assert run.code in (1, 2) and message in run.out + run.err


def test_no_pairs_is_an_error(sspir, tmp_path):
    write_image(tmp_path / "pred" / "a.png")
    write_image(tmp_path / "gt" / "b.png")
    run = sspir("evaluate", "--pred", tmp_path / "pred", "--gt", tmp_path / "gt")
    assert run.code == 2 and "no image has a partner" in run.err


def test_pyiqa_metrics_when_installed(sspir, tmp_path, monkeypatch):
    """A stand-in pyiqa module: full-reference metrics get (pred, gt), no-reference ones get pred, in [0, 1]."""
    import torch

    class Metric:
        def __init__(self, mode):
            self.metric_mode, self.device = mode, torch.device("cpu")

        def __call__(self, *images):
            assert all(x.shape[:2] == (1, 3) and 0 <= x.min() and x.max() <= 1 for x in images)
            return torch.tensor([[float(images[0].mean() - images[-1].mean()) if len(images) == 2 else 0.5]])

    fake = types.SimpleNamespace(
        list_models=lambda: ["lpips", "musiq"],
        create_metric=lambda name, device: Metric("FR" if name == "lpips" else "NR"),
    )
    monkeypatch.setitem(sys.modules, "pyiqa", fake)
    write_pair(tmp_path, "a", offset=51)
    run = sspir("evaluate", "--pred", tmp_path / "pred", "--gt", tmp_path / "gt", "--metrics", "lpips,musiq,psnr",
                "--device", "cpu")  # fmt: skip
    assert run.code == 0, run.err
    values = read_json(tmp_path / "pred" / "metrics.json")["images"]["a"]
    assert values["lpips"] == pytest.approx(0.2, abs=1e-6) and values["musiq"] == 0.5 and "psnr_y" in values
    run = sspir("evaluate", "--pred", tmp_path / "pred", "--gt", tmp_path / "gt", "--metrics", "fancy", "--overwrite")
    assert run.code == 2 and "fancy unknown to pyiqa" in run.err


def test_output_with_a_trailing_separator_is_a_folder(sspir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_pair(tmp_path, "a", offset=1)
    assert sspir("evaluate", "--pred", "pred", "--gt", "gt", "--output", "res/").code == 0
    assert (tmp_path / "res" / "metrics.csv").is_file() and (tmp_path / "res" / "metrics.json").is_file()
    assert not (tmp_path / "res.csv").exists()
    run = sspir("evaluate", "--pred", "pred", "--gt", "gt", "--output", "res")  # an existing folder, no separator
    assert run.code == 2 and "res/metrics.csv, res/metrics.json: the metrics file already exists" in run.err
    assert sspir("evaluate", "--pred", "pred", "--gt", "gt", "--output", "x4").code == 0  # a prefix
    assert (tmp_path / "x4.csv").is_file()


def test_an_interrupted_write_leaves_no_file_and_the_rerun_works(sspir, tmp_path, monkeypatch):
    write_pair(tmp_path, "a", offset=1)
    write_text = Path.write_text

    def interrupted(self, text, *args, **kwargs):
        write_text(self, text[: len(text) // 2], *args, **kwargs)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(Path, "write_text", interrupted)
        assert sspir("evaluate", "--pred", tmp_path / "pred", "--gt", tmp_path / "gt").code == 130
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["a.png"]  # nothing half-written, no .partial
    assert sspir("evaluate", "--pred", tmp_path / "pred", "--gt", tmp_path / "gt").code == 0
    assert read_json(tmp_path / "pred" / "metrics.json")["count"] == 1


def test_any_error_of_a_pair_is_reported_and_the_others_go_on(sspir, tmp_path, monkeypatch):
    import torch

    class Metric:
        metric_mode, device = "NR", torch.device("cpu")

        def __call__(self, image):
            if image.mean() > 0.5:
                raise RuntimeError("CUDA out of memory")
            return torch.tensor(0.5)

    fake = types.SimpleNamespace(list_models=lambda: ["musiq"], create_metric=lambda name, device: Metric())
    monkeypatch.setitem(sys.modules, "pyiqa", fake)
    write_pair(tmp_path, "dark", offset=0)  # grey levels 20..200: mean below 0.5
    for folder in ("pred", "gt"):
        PIL.Image.new("RGB", (24, 28), "white").save(tmp_path / folder / "bright.png")
    run = sspir(
        "evaluate", "--pred", tmp_path / "pred", "--gt", tmp_path / "gt", "--metrics", "musiq", "--device", "cpu"
    )
    assert run.code == 1 and "CUDA out of memory" in run.out
    report = read_json(tmp_path / "pred" / "metrics.json")
    assert list(report["images"]) == ["dark"] and "CUDA out of memory" in report["failed"]["bright"]


def test_16_bit_ground_truth_is_read_as_8_bit(sspir, tmp_path):
    write_16bit(tmp_path / "gt" / "a.png", 100 * 257, 24, 24)
    (tmp_path / "pred").mkdir()
    PIL.Image.new("RGB", (24, 24), (100, 100, 100)).save(tmp_path / "pred" / "a.png")
    assert sspir("evaluate", "--pred", tmp_path / "pred", "--gt", tmp_path / "gt").code == 0
    assert read_json(tmp_path / "pred" / "metrics.json")["images"]["a"]["psnr"] == "inf"


def test_identical_pairs_are_reported_and_left_out_of_the_psnr_mean(sspir, tmp_path):
    write_pair(tmp_path, "a", offset=0)  # identical: PSNR inf
    write_pair(tmp_path, "b", offset=8)
    run = sspir("evaluate", "--pred", tmp_path / "pred", "--gt", tmp_path / "gt")
    assert run.code == 0
    assert "identical: 1 pairs are pixel-identical (PSNR inf), left out of the PSNR means: a" in run.out
    report = read_json(tmp_path / "pred" / "metrics.json")
    assert report["identical"] == ["a"] and report["mean"]["psnr"] == report["images"]["b"]["psnr"] != "inf"
    assert report["mean"]["ssim"] == pytest.approx((report["images"]["a"]["ssim"] + report["images"]["b"]["ssim"]) / 2)


def write_niqe_images(folder, sizes):
    """Random RGB images, blurred a little by a 2x bilinear upscale, of `name: (height, width)`; their arrays."""
    arrays = {}
    for seed, (name, (height, width)) in enumerate(sizes.items()):
        small = PIL.Image.fromarray(random_array(height // 2, width // 2, seed=seed))
        image = small.resize((width, height), PIL.Image.Resampling.BILINEAR)
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{name}.png")
        arrays[name] = np.asarray(image)
    return arrays


def test_niqe_without_ground_truth(sspir, tmp_path):
    from diffusers_sspir.metrics import niqe

    arrays = write_niqe_images(tmp_path / "pred", {"a": (200, 208), "b": (210, 301), "small": (100, 300)})
    run = sspir("evaluate", "--pred", tmp_path / "pred", "--metrics", "niqe")
    assert run.code == 1, run.err  # "small" is 92x292 after the 4-pixel border: one 96x96 block
    report = read_json(tmp_path / "pred" / "metrics.json")
    assert report["gt"] is None and report["metrics"] == ["niqe"] and report["count"] == 2
    for name in ("a", "b"):
        assert report["images"][name]["niqe"] == niqe(arrays[name], crop_border=4)
    assert report["mean"]["niqe"] == pytest.approx((report["images"]["a"]["niqe"] + report["images"]["b"]["niqe"]) / 2)
    assert "needs at least two" in report["failed"]["small"] and "got 92x292" in report["failed"]["small"]
    assert report["unpaired"] == {"pred": [], "gt": []} and report["identical"] == []
    assert run.out.splitlines()[0].split() == ["image", "niqe"]
    assert "2 images evaluated, 1 failed" in run.out

    run = sspir("evaluate", "--pred", tmp_path / "pred", "--metrics", "niqe", "--crop-border", 0, "--overwrite")
    assert read_json(tmp_path / "pred" / "metrics.json")["images"]["a"]["niqe"] == niqe(arrays["a"])
    assert run.code == 0 and "small" not in read_json(tmp_path / "pred" / "metrics.json")["failed"]


def test_niqe_with_ground_truth_and_the_other_metrics(sspir, tmp_path):
    from diffusers_sspir.metrics import niqe

    pred = write_niqe_images(tmp_path / "pred", {"a": (200, 208), "extra": (200, 208)})
    write_niqe_images(tmp_path / "gt", {"a": (200, 208)})
    run = sspir("evaluate", "--pred", tmp_path / "pred", "--gt", tmp_path / "gt", "--metrics", "psnr,ssim,niqe")
    assert run.code == 0, run.err
    report = read_json(tmp_path / "pred" / "metrics.json")
    assert report["metrics"] == ["psnr", "psnr_y", "ssim", "ssim_y", "niqe"] and report["gt"] == str(tmp_path / "gt")
    assert report["images"]["a"]["niqe"] == niqe(pred["a"], crop_border=4) and report["images"]["a"]["psnr"] == "inf"
    assert report["unpaired"] == {"pred": ["extra.png"], "gt": []}  # with --gt, only pairs are scored
    assert run.out.splitlines()[0].split() == ["image", "psnr", "psnr_y", "ssim", "ssim_y", "niqe"]

    # niqe alone does not read the ground truth: a partner of another size is no failure
    PIL.Image.new("RGB", (8, 8)).save(tmp_path / "gt" / "a.png")
    run = sspir("evaluate", "--pred", tmp_path / "pred", "--gt", tmp_path / "gt", "--metrics", "niqe", "--overwrite")
    assert run.code == 0, run.out
    assert read_json(tmp_path / "pred" / "metrics.json")["images"] == {"a": {"niqe": niqe(pred["a"], crop_border=4)}}


@pytest.mark.parametrize(
    "metrics,message",
    [
        (
            "psnr,ssim",
            "--metrics psnr,ssim: full-reference metrics (psnr, ssim) need the ground truth: pass --gt DIR, or",
        ),
        ("niqe,ssim", "--metrics niqe,ssim: full-reference metrics (ssim) need"),
        ("niqe,lpips", "--metrics niqe,lpips: full-reference metrics (lpips) need the ground truth: pass --gt DIR."),
    ],
)
def test_full_reference_metrics_need_the_ground_truth(sspir, tmp_path, monkeypatch, metrics, message):
    import torch

    class Metric:
        metric_mode, device = "FR", torch.device("cpu")

    fake = types.SimpleNamespace(list_models=lambda: ["lpips"], create_metric=lambda name, device: Metric())
    monkeypatch.setitem(sys.modules, "pyiqa", fake)
    write_niqe_images(tmp_path / "pred", {"a": (200, 208)})
    run = sspir("evaluate", "--pred", tmp_path / "pred", "--metrics", metrics, "--device", "cpu")
    assert run.code == 2 and message in run.err
    assert not (tmp_path / "pred" / "metrics.json").exists()


def test_no_images_without_ground_truth_is_an_error(sspir, tmp_path):
    (tmp_path / "pred").mkdir()
    run = sspir("evaluate", "--pred", tmp_path / "pred", "--metrics", "niqe")
    assert run.code == 2 and f"--pred {tmp_path / 'pred'}: no images." in run.err
