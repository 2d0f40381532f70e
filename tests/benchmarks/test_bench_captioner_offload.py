"""benchmarks/bench_captioner_offload.py end to end in its tiny CPU mode (the figures need a GPU)."""

import json

from ..scripts import load_script


def test_three_cases_with_the_same_restoration(tmp_path):
    bench = load_script("benchmarks/bench_captioner_offload.py")
    output = tmp_path / "rows.jsonl"
    rows = bench.main(["--size", "tiny", "--device", "cpu", "--resolution", "64", "--output", str(output)])
    assert [row["case"] for row in rows] == ["no_captioner", "resident", "model_offload"]
    assert [json.loads(line) for line in output.read_text().splitlines()] == rows
    assert rows[0]["captioner_parameters"] == 0 and rows[1]["captioner_parameters"] > 0
    assert rows[1]["caption_words"] == rows[2]["caption_words"] > rows[0]["caption_words"]  # the captioner ran
    assert all(row["peak_allocated_gib"] is None for row in rows)  # no accelerator, no memory figure
