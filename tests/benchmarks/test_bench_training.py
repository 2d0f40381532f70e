"""benchmarks/bench_training.py end to end in its tiny CPU mode: real training steps through the package's parts."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_training.py"


def test_tiny_training_steps_report_time_memory_and_losses(tmp_path):
    output = tmp_path / "training.jsonl"
    command = [sys.executable, str(SCRIPT), "--size", "tiny", "--device", "cpu", "--threads", "1", "--resolution",
               "64", "--batch-size", "1", "--mixed-precision", "bf16", "--gradient-checkpointing", "--steps", "2",
               "--warmup", "1", "--output", str(output)]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-3000:]
    record = json.loads(output.read_text().splitlines()[-1])
    assert completed.stdout.strip().endswith(output.read_text().strip())
    assert record["size"] == "tiny" and record["mixed_precision"] == "bf16" and record["gradient_checkpointing"]
    assert len(record["step_s_all"]) == 2 and record["step_s"] > 0
    assert record["trainable_params"] > 0 and record["peak_memory_gib"] > 0
    assert set(record["loss"]) == {"diffusion", "rgb_l1", "rgb_fft", "loss"}
    assert all(value == value for value in record["loss"].values())  # no NaN


def test_fp16_on_cpu_is_refused():
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--size", "tiny", "--device", "cpu", "--mixed-precision", "fp16"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 2 and "needs a GPU" in completed.stderr
