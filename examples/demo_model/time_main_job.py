"""The README's main job, timed: `sspir restore assets/ladybird_lq.png -o restored/` restores the 128x128 sample to
512x512 with the bundled model's defaults. This measures the restoration itself (the pipeline call, after loading
and a warm-up call) for each model given, in one run, so the figures compare as ratios on one machine.

    python examples/demo_model/time_main_job.py --models NEW=src/diffusers_sspir/demo_model OLD=path/to/old --runs 3
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from diffusers_sspir import SSPIRPipeline
from diffusers_sspir.files import read_image

SAMPLE = Path(__file__).resolve().parents[2] / "assets" / "ladybird_lq.png"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", required=True, metavar="NAME=FOLDER")
    parser.add_argument("--image", type=Path, default=SAMPLE)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, help="write the times as JSON")
    args = parser.parse_args(argv)
    torch.set_flush_denormal(True)
    image = read_image(args.image)
    pipes = {}
    for spec in args.models:
        name, folder = spec.split("=", 1)
        pipes[name] = SSPIRPipeline.from_pretrained(folder)
        pipes[name].set_progress_bar_config(disable=True)
        pipes[name](image, generator=torch.Generator().manual_seed(0))  # warm-up
    times = {name: [] for name in pipes}
    for _ in range(args.runs):  # interleaved, so that both see the same machine load
        for name, pipe in pipes.items():
            start = time.perf_counter()
            pipe(image, generator=torch.Generator().manual_seed(0))
            times[name].append(time.perf_counter() - start)
    results = {name: {"median_s": statistics.median(t), "runs": t, "settings": pipes[name].recommended_settings}
               for name, t in times.items()}  # fmt: skip
    first = next(iter(results))
    for name, result in results.items():
        ratio = result["median_s"] / results[first]["median_s"]
        print(f"{name}: {result['median_s']:.2f} s (median of {args.runs}; {ratio:.2f}x {first}) {result['settings']}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
