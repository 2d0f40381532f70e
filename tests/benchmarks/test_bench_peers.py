"""benchmarks/bench_peers.py on two tiny images the test makes (Real-ESRGAN only where ncnn is installed)."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from ..scripts import load_script

bench = load_script("benchmarks/bench_peers.py")


def write_images(folder: Path) -> None:
    """Two smooth random 104x200 images: NIQE needs two 96x96 blocks after the 4-px border."""
    folder.mkdir()
    rng = np.random.RandomState(0)
    for index in range(2):
        small = rng.rand(13, 25, 3) * 255
        image = PIL.Image.fromarray(small.astype(np.uint8)).resize((200, 104), PIL.Image.Resampling.BICUBIC)
        image.save(folder / f"tiny_{index}.png")


def test_benchmark_scores_every_method_and_writes_its_files(tmp_path, monkeypatch):
    write_images(tmp_path / "gt")
    methods = "bicubic,realesrgan,sspir" if importlib.util.find_spec("ncnn") else "bicubic,sspir"
    output = tmp_path / "results" / "peers.json"
    argv = ["--gt_dir", str(tmp_path / "gt"), "--output", str(output), "--methods", methods,
            "--settings", "defaults", "--threads", "1", "--work_dir", str(tmp_path / "work"),
            "--figure_crops", "tiny_1.png"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["bench_peers.py", *argv])
    bench.main(argv)
    results = json.loads(output.read_text())
    rows = {(row["method"], row["setting"]): row for row in results["rows"]}
    expected = {("bicubic", "—"), ("SSP-IR demo", "defaults"), ("SSP-IR demo", "structure prior")}
    if "realesrgan" in methods:
        expected.add(("Real-ESRGAN x4plus", "—"))
    assert set(rows) == expected
    for row in rows.values():
        assert set(row["images"]) == {"tiny_0.png", "tiny_1.png"}
        assert 10 < row["mean"]["psnr_y"] < 60 and 0 < row["mean"]["ssim_y"] <= 1
        assert row["mean"]["niqe"] is None or row["mean"]["niqe"] > 0
    assert rows[("bicubic", "—")]["seconds_per_image"] > 0 and rows[("SSP-IR demo", "structure prior")][
        "seconds_per_image"] is None  # fmt: skip
    assert results["meta"]["images"] == 2 and results["meta"]["machine"]["threads"] == 1
    assert output.with_suffix(".tsv").read_text().startswith("method\tsetting\tpsnr_y")
    assert "| bicubic | — |" in output.with_suffix(".md").read_text()
    assert output.with_suffix(".png").is_file() == (importlib.util.find_spec("matplotlib") is not None)
    assert (tmp_path / "work" / "bicubic_—" / "tiny_0.png").is_file()
    crops = PIL.Image.open(tmp_path / "results" / "peers_crops.jpg")  # LQ, each method, ground truth: one row
    assert crops.width == 200 * (len(methods.split(",")) + 2) and crops.height > 104


def test_bicubic_is_the_pipelines_upscale():
    image = np.random.RandomState(1).randint(0, 256, (8, 6, 3), dtype=np.uint8)
    assert bench.bicubic(image).shape == (32, 24, 3)


def test_arguments_are_checked(tmp_path):
    (tmp_path / "gt").mkdir()
    with pytest.raises(SystemExit):
        bench.parse_args(["--gt_dir", str(tmp_path / "gt"), "--methods", "magic"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--gt_dir", str(tmp_path / "gt"), "--settings", "50 steps"])
    (tmp_path / "r.json").write_text("{}")
    with pytest.raises(SystemExit):
        bench.parse_args(["--gt_dir", str(tmp_path / "gt"), "--output", str(tmp_path / "r.json")])
    with pytest.raises(SystemExit):
        bench.parse_args(["--gt_dir", str(tmp_path / "gt"), "--output", str(tmp_path / "s.json"),
                          "--figure_crops", "absent.png"])  # fmt: skip
    args = bench.parse_args(["--gt_dir", str(tmp_path / "gt"), "--methods", "sspir", "--settings", "4 steps"])
    assert args.settings == ["defaults", "4 steps"]
