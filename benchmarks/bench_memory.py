"""Peak memory of a restoration against the output size, with and without tiling, on the CPU.

Each case runs in a fresh process: the bundled demo model restores a random `side/4`-square image to `side`², one
denoising step without guidance (memory does not depend on the step count), `output_type="np"`. The process's peak
RSS is read before and after the restoration (`ru_maxrss`, after a warm-up call on a tiny image), so the figure is
what the restoration itself adds to the loaded model. Also recorded: the pipeline's own estimate
(`SSPIRPipeline.estimate_peak_memory`, which refuses requests that cannot fit), the size of the output image as
float32 (a floor no pipeline can go below) and the time.

    python benchmarks/bench_memory.py --out benchmarks/results/memory_cpu.json --plot docs/images/memory_cpu.png

Defaults: tiled (`--tile-size 512`) at 1024², 2048², 4096², 8192²; untiled at 1024² and 2048² (the untiled 4096²
case needs ~13 GB and is estimated only). About 15 minutes on 2 CPU cores; not in the suite.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
import torch
torch.set_flush_denormal(True)
from diffusers_sspir import SSPIRPipeline, demo_model_path
side, tile = int(sys.argv[1]), (int(sys.argv[2]) or None)
pipe = SSPIRPipeline.from_pretrained(demo_model_path())
pipe.set_progress_bar_config(disable=True)
settings = dict(num_inference_steps=1, guidance_scale=1.0, output_type="np")
pipe(torch.rand(3, 16, 16), **settings)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
start = time.perf_counter()
pipe(torch.rand(3, side // 4, side // 4, generator=torch.Generator().manual_seed(0)), tile_size=tile, **settings)
seconds = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
estimate = pipe.estimate_peak_memory(1, side, side, tile, classifier_free_guidance=False)
print(json.dumps(dict(side=side, tile_size=tile, seconds=seconds, peak_rss=after, added=after - before,
                      estimate=estimate, output_float32=3 * side * side * 4)))
"""


def run_case(side: int, tile: int | None) -> dict:
    environment = dict(os.environ, HF_HUB_OFFLINE="1", SSPIR_SKIP_MEMORY_CHECK="1")
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(side), str(tile or 0)],
        capture_output=True, text=True, env=environment, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def plot(results: list[dict], path: Path) -> None:
    """Two panels: the memory each restoration adds (log-log), and the same per output pixel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    figure, (absolute, per_pixel) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    mib = 2**20
    sides = sorted({r["side"] for r in results})
    for tile, style, label, color in ((None, "o-", "whole image", "C0"), (512, "s-", "tile_size=512", "C2")):
        rows = [r for r in results if r["tile_size"] == tile]
        if not rows:
            continue
        x = [r["side"] for r in rows]
        absolute.plot(x, [r["added"] / mib for r in rows], style, color=color, label=f"{label}: measured")
        absolute.plot(x, [r["estimate"] / mib for r in rows], style[0] + ":", color=color, alpha=0.5,
                      label=f"{label}: the pipeline's estimate")  # fmt: skip
        per_pixel.plot(x, [r["added"] / r["side"] ** 2 for r in rows], style, color=color, label=f"{label}: measured")
    absolute.plot(sides, [3 * s * s * 4 / mib for s in sides], "k--", alpha=0.5, label="the output itself (float32)")
    per_pixel.axhline(12, color="k", linestyle="--", alpha=0.5, label="one float32 RGB copy of the output (12 B)")
    absolute.set(xscale="log", yscale="log", ylabel="memory added by the restoration (MiB)",
                 title="Peak RSS added by one restoration")  # fmt: skip
    per_pixel.set(xscale="log", ylim=(0, None), ylabel="bytes per output pixel",
                  title="The same per output pixel")  # fmt: skip
    for axis in (absolute, per_pixel):
        axis.set_xticks(sides, [f"{s}²" for s in sides])
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.set_xlabel("output size (pixels)")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle("Bundled model on the CPU, one step, no guidance (benchmarks/bench_memory.py)", fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiled", type=int, nargs="*", default=[1024, 2048, 4096, 8192])
    parser.add_argument("--untiled", type=int, nargs="*", default=[1024, 2048])
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    parser.add_argument("--plot", type=Path, help="draw them (needs matplotlib)")
    parser.add_argument("--from-json", type=Path, help="draw (and print) the results of an earlier run, run nothing")
    args = parser.parse_args()
    if args.from_json:
        results = json.loads(args.from_json.read_text())["results"]
    else:
        results = [run_case(side, None) for side in args.untiled]
        results += [run_case(side, args.tile_size) for side in args.tiled]
    mib = 2**20
    print("| output | tiling | added peak RSS | estimate | output (float32) | time |")
    print("|---|---|---|---|---|---|")
    for r in results:
        tiling = r["tile_size"] or "none"
        print(f"| {r['side']}² | {tiling} | {r['added'] / mib:.0f} MiB | {r['estimate'] / mib:.0f} MiB "
              f"| {r['output_float32'] / mib:.0f} MiB | {r['seconds']:.1f} s |")  # fmt: skip
    if args.out and not args.from_json:
        machine = dict(platform=platform.platform(), cpus=os.cpu_count(), python=platform.python_version())
        args.out.write_text(json.dumps(dict(machine=machine, results=results), indent=2) + "\n")
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
