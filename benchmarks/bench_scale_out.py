"""Throughput of `sspir degrade`, `sspir caption` and `sspir restore` on one process and on several (torchrun), on
this machine's CPU: the numbers of docs/cli.md#many-processes-many-gpus-many-machines.

The data are crops of scikit-image's bundled photographs (`skimage.data`): `--images` ground-truth crops of 256² (40
by default), made into 64² LQ images by `sspir degrade`, captioned by a tiny random LLaVA
(`diffusers_sspir.testing.make_tiny_llava`, the architecture of LLaVA-1.5 at a toy size) and restored ×4 by the
bundled demo model with its recommended settings. Each job runs, from scratch into its own folder, as

- one process with all the CPU's threads (what `sspir ...` does by default),
- one process with one thread,
- `--processes` processes with one thread each (`torchrun --nproc_per_node N -m diffusers_sspir.cli ...`),

and the outputs of the multi-process run are checked to be identical, file for file, to those of the one-process
run with as many threads per process (how many files the all-threads run makes differently is recorded: CPU kernels
may round differently with another thread count). Recorded for each run: the wall time of the whole command
(Python's start, imports and model loading in every process included), and the command's own report of the work:
its time, the longest loading in any process, and the images/s after loading, which is what a large dataset sees.

    python benchmarks/bench_scale_out.py --out benchmarks/results/scale_out_cpu.json

About 5 minutes on 2 CPU cores with the defaults; not in the suite.
"""

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina")


def write_crops(folder: Path, count: int, size: int = 256) -> None:
    """`count` crops of `size`² from scikit-image's photographs, on a grid over each photo in turn, then the same
    crops turned by 90° (distinct images to the degradation) as far as needed."""
    import numpy as np
    import PIL.Image
    import skimage.data

    crops = []
    for name in PHOTOS:
        photo = np.asarray(getattr(skimage.data, name)())[..., :3]
        for top in range(0, photo.shape[0] - size + 1, size):
            for left in range(0, photo.shape[1] - size + 1, size):
                crops.append((name, photo[top : top + size, left : left + size]))
    crops += [(f"{name}_turned", np.rot90(crop).copy()) for name, crop in crops]
    if len(crops) < count:
        raise SystemExit(f"--images {count}: the photos give only {len(crops)} crops of {size}²")
    folder.mkdir(parents=True)
    for index, (name, crop) in enumerate(crops[:count]):
        PIL.Image.fromarray(crop).save(folder / f"{index:03d}_{name}.png")


def subset(source: Path, folder: Path, count: int) -> Path:
    """The first `count` images of `source`, copied into `folder`."""
    folder.mkdir(parents=True)
    for path in sorted(source.iterdir())[:count]:
        shutil.copy(path, folder / path.name)
    return folder


def run(command: list[str], processes: int, threads: int | None) -> dict:
    """Runs `sspir COMMAND...` on `processes` processes (torchrun when more than one): its wall time, and the work's
    own timing from the command's last line (`N images in T s: L s loading, then R images/s`)."""
    environment = dict(os.environ, HF_HUB_OFFLINE="1", GLOO_SOCKET_IFNAME="lo")
    environment.pop("OMP_NUM_THREADS", None)
    if threads is not None:
        environment["OMP_NUM_THREADS"] = str(threads)
    launcher = [sys.executable, "-m"]
    if processes > 1:
        launcher += ["torch.distributed.run", "--nproc_per_node", str(processes), "--master_addr", "127.0.0.1",
                     "--master_port", "29561", "-m"]  # fmt: skip
    start = time.perf_counter()
    command = [*launcher, "diffusers_sspir.cli", *command]
    done = subprocess.run(command, env=environment, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    timing = re.search(r"(\d+) images in ([\d.]+) s.*: ([\d.]+) s loading, then ([\d.]+) images/s", done.stdout)
    return dict(seconds=round(seconds, 2), work_seconds=float(timing[2]), load_seconds=float(timing[3]),
                images_per_second=float(timing[4]))  # fmt: skip


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def largest_difference(first: dict[str, bytes], second: dict[str, bytes], names: list[str]) -> int:
    """The largest difference of one 8-bit level between the images `names` of two runs (0 for text files)."""
    import io

    import numpy as np
    import PIL.Image

    largest = 0
    for name in names:
        if name.endswith(".png"):
            a, b = (np.asarray(PIL.Image.open(io.BytesIO(run[name])), dtype=np.int16) for run in (first, second))
            largest = max(largest, int(np.abs(a - b).max()))
    return largest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=80, help="ground-truth crops to degrade and caption")
    parser.add_argument("--restore-images", type=int, default=16, help="how many of their LQ images to restore")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    args = parser.parse_args()

    from diffusers_sspir.testing import make_tiny_llava

    cpus = os.cpu_count()
    layouts = [("1 process, all threads", 1, None), ("1 process, 1 thread", 1, 1),
               (f"{args.processes} processes, 1 thread each", args.processes, 1)]  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="bench-scale-out-"))
    try:
        write_crops(work / "hq", args.images)
        vlm = make_tiny_llava(work / "vlm")
        caption = ["--captioner", vlm, "--batch-size", "8", "--max-new-tokens", "128", "--device", "cpu"]
        jobs = {  # job → (images, command for an input folder and an output folder); lq/ is made by the first run
            "degrade": (args.images, lambda inputs, out: ["degrade", str(inputs), "-o", str(out), "--seed", "0"]),
            "caption": (args.images, lambda inputs, out: ["caption", str(inputs), "--output", str(out), *caption]),
            "restore": (args.restore_images, lambda inputs, out: ["restore", str(inputs), "-o", str(out)]),
        }
        inputs = {"degrade": work / "hq"}
        results = []
        for job, (count, command) in jobs.items():
            outputs = []
            for index, (layout, processes, threads) in enumerate(layouts):
                out = work / f"{job}-{index}"
                timing = run(command(inputs[job], out), processes, threads)
                outputs.append(tree(out))
                results.append(dict(job=job, layout=layout, processes=processes, threads=threads or cpus,
                                    images=count, **timing))  # fmt: skip
                print(json.dumps(results[-1]), flush=True)
                if job == "degrade" and index == 0:
                    inputs["caption"] = out / "lq"
                    inputs["restore"] = subset(out / "lq", work / "restore-inputs", args.restore_images)
            # The processes of a launch compute exactly what one process with as many threads computes; CPU kernels
            # may round differently with another thread count, which a hard-rounded JPEG can turn into visible LSBs.
            same = outputs[1] == outputs[2]
            apart = [name for name in outputs[0] if outputs[0][name] != outputs[1][name]]
            for result in results[-len(layouts) :]:
                result["same_files_as_one_process_with_one_thread"] = same
                result["files_that_differ_with_all_threads"] = len(apart)
                result["largest_difference_with_all_threads"] = largest_difference(outputs[0], outputs[1], apart)
            if not same:
                raise SystemExit(f"{job}: {args.processes} processes did not make the files of one process")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    import torch

    report = dict(machine=f"{platform.machine()}, {cpus} CPUs", torch=torch.__version__, results=results)
    print(f"\n| job | images | {' | '.join(layout for layout, _, _ in layouts)} |")
    print("|---|---|" + "---|" * len(layouts))
    for job in jobs:
        rows = [r for r in results if r["job"] == job]
        cells = [f"{r['images_per_second']:.2f} img/s ({r['seconds']:.1f} s)" for r in rows]
        print(f"| {job} | {rows[0]['images']} | {' | '.join(cells)} |")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
