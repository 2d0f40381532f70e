"""benchmarks/bench_pipeline.py end to end in its tiny CPU mode, and its seam measure."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ..scripts import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_pipeline.py"


def load_bench():
    return load_script("benchmarks/bench_pipeline.py")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    output = folder / "results.jsonl"
    command = [
        sys.executable, str(SCRIPT), "--size", "tiny", "--device", "cpu", "--threads", "1", "--dtypes", "fp32",
        "--resolutions", "64", "--tiled", "128", "--tile-size", "64", "--steps", "3", "--tiled-steps", "2",
        "--warmup-steps", "1", "--repeats", "1", "--optimizations", "fused_cl", "--output", str(output),
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout, output


def test_one_json_line_per_case(run):
    stdout, output = run
    lines = output.read_text().splitlines()
    assert stdout.startswith(lines[0])  # the same lines are printed
    records = [json.loads(line) for line in lines]
    meta, cases = records[0], records[1:]
    assert meta["kind"] == "meta" and meta["size"] == "tiny" and meta["torch"] and meta["diffusers"]
    keys = [(c["pipeline"], c["variant"], c["resolution"], c["tiled"]) for c in cases]
    assert keys == [
        ("stock", "eager", 64, False),
        ("stock", "eager", 128, False),  # the stock pipeline makes the tiled size whole
        ("sspir", "eager", 64, False),
        ("sspir", "eager", 128, True),
        ("models", "eager", 64, False),
        ("sspir", "fused_cl", 64, False),
    ]
    for case in cases:
        assert case["status"] == "ok", case
        if case["pipeline"] == "models":
            assert all(case[f"{p}_{m}_ms"] > 0 for p in ("stock", "sspir") for m in ("unet", "controlnet"))
            continue
        assert case["e2e_s"] > 0 and case["per_step_ms"] > 0 and case["finite"]
        assert case["steps"] == (2 if case["resolution"] == 128 else 3)
        assert case["loop_sync_free"] is None  # checked on CUDA only
    tiled = cases[3]
    assert tiled["tile_size"] == 64 and 0.5 < tiled["seam_ratio"] < 1.5
    assert all((output.parent / name).is_file() for name in tiled["views"])
    assert cases[5]["calls"] == "pipe.fuse_qkv_projections(); pipe.enable_channels_last()"


def test_ratio_table(run):
    stdout, output = run
    table = output.with_suffix(".md").read_text()
    assert table.strip() in stdout
    assert "| dtype | output | steps | stock ms/step | SSP-IR ms/step | step ratio (≤ 1.3) |" in table
    rows = [line for line in table.splitlines() if line.startswith("| fp32 |")]
    assert rows[0].startswith("| fp32 | 64² | 3 |") and ("(fused_cl)" in rows[0] or "(eager)" in rows[0])
    assert rows[1].startswith("| fp32 | 128² (SSP-IR in 64² tiles, stock whole) | 2 |") and "(≤ 8)" in rows[1]
    assert "| fp32 | 2×4×8² |" in table  # one UNet and one ControlNet call of each pipeline
    assert sum(line.endswith("| ok |") for line in table.splitlines()) == 5


def test_seam_ratio_sees_a_step_at_a_tile_edge():
    bench = load_bench()
    rng = np.random.RandomState(0)
    image = rng.rand(256, 256, 3) * 0.2 + 0.4
    assert 0.8 < bench.seam_ratio(image, tile_size=128, overlap=32) < 1.3
    edge = 8 * bench.tile_starts(32, 16, 4)[1]  # where the second tile starts, in pixels
    seamed = image.copy()
    seamed[:, edge:] += 0.2
    assert bench.seam_ratio(seamed, tile_size=128, overlap=32) > 2


def test_arguments_are_checked():
    bench = load_bench()
    with pytest.raises(SystemExit):
        bench.parse_args(["--resolutions", "500"])  # not a multiple of 32 (the input is a quarter)
    with pytest.raises(SystemExit):
        bench.parse_args(["--optimizations", "magic"])
    args = bench.parse_args(["--optimizations", "compile,fused", "--output", "out/r.jsonl"])
    assert args.optimizations == ["fused", "compile"]  # compiled variants last: compiling cannot be undone
    assert args.table == "out/r.md" and args.optimized_resolutions == [512]


def test_a_size_in_both_whole_and_tiled_lists_is_refused():
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--size", "tiny", "--device", "cpu", "--resolutions", "128", "--tiled", "128"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 2 and "in both --resolutions and --tiled" in completed.stderr
