"""Held-out evaluation of the demo model with the `sspir` commands, as docs/demo_model.md reports it.

    python examples/demo_model/evaluate.py --data_dir demo_work/data --output_dir demo_work/eval

1. `sspir degrade` makes x4 Real-ESRGAN LQ inputs of the 22 held-out crops (seed 0; `--split validation` for the
   validation crops instead);
2. the same LQ inputs upscaled with bicubic (the pipeline's own `upscale_bicubic`): the baseline;
3. `sspir restore` with its default settings (the model's recommended ones; and `--save-structure`) restores them;
4. `sspir evaluate` scores bicubic, the structure prior and the restoration against the ground truth.

Writes `results.md` (the mean table and the per-crop PSNR-Y), the `metrics_*.json` of each row, and `comparison.png`
(LQ | bicubic | structure prior | SSP-IR demo | ground truth) for `--figure_crops`.
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from diffusers_sspir.cli import main as sspir
from diffusers_sspir.files import list_images, read_rgb8
from diffusers_sspir.image_ops import upscale_bicubic

ROWS = {"bicubic": "bicubic", "structure": "structure prior", "restored": "SSP-IR demo"}
METRICS = ("psnr_y", "ssim_y", "psnr", "ssim")


def run(*args) -> None:
    code = sspir([str(arg) for arg in args])
    if code:
        sys.exit(f"error: `sspir {' '.join(map(str, args))}` exited with {code}")


def bicubic_baseline(lq_dir: Path, gt_dir: Path, output_dir: Path) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    for path in list_images(lq_dir):
        low_quality = torch.from_numpy(read_rgb8(path).copy()).permute(2, 0, 1)[None].float() / 255
        size = Image.open(gt_dir / path.name).size[::-1]
        upscaled = upscale_bicubic(low_quality, size).clamp(0, 1)[0].permute(1, 2, 0)
        Image.fromarray((upscaled * 255).round().byte().numpy()).save(output_dir / path.name)


def figure(columns: list[tuple[str, Path]], names: list[str], output: Path) -> None:
    """One row per crop; the LQ column is enlarged with nearest-neighbour so its pixels show."""
    font = ImageFont.load_default()
    label_height = font.getbbox("Ag")[3] + 8
    size = Image.open(columns[-1][1] / names[0]).size
    canvas = Image.new("RGB", (size[0] * len(columns), label_height + size[1] * len(names)), "white")
    draw = ImageDraw.Draw(canvas)
    for col, (label, folder) in enumerate(columns):
        draw.text((col * size[0] + 4, 4), label, fill="black", font=font)
        for row, name in enumerate(names):
            image = Image.open(folder / name).convert("RGB").resize(size, Image.Resampling.NEAREST)
            canvas.paste(image, (col * size[0], label_height + row * size[1]))
    canvas.save(output)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=Path, required=True, help="The --output_dir of prepare_data.py.")
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--model", help="An SSP-IR pipeline folder (default: the bundled demo model).")
    parser.add_argument("--split", choices=("holdout", "validation"), default="holdout")
    parser.add_argument("--label", default="SSP-IR demo", help="The restoration's name in the table and figure.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure_crops", nargs="+", help="(default: held-out LadyBird_00, Dune_01, coffee_00, "
                        "picosdeeuropa_00, EveningGlow_01; the first three of another split)")  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="Redo everything in a non-empty --output_dir.")
    args = parser.parse_args(argv)
    holdout = args.data_dir / args.split / "gt"
    if args.figure_crops is None:
        default = ["LadyBird_00.png", "Dune_01.png", "coffee_00.png", "picosdeeuropa_00.png", "EveningGlow_01.png"]
        args.figure_crops = default if args.split == "holdout" else [p.name for p in list_images(holdout)[:3]]
    unknown = [name for name in args.figure_crops if not (holdout / name).is_file()]
    if unknown:
        parser.error(f"--figure_crops {unknown}: not in {holdout}")
    if args.output_dir.exists() and any(args.output_dir.iterdir()) and not args.overwrite:
        parser.error(f"--output_dir {args.output_dir} is not empty; pass --overwrite to redo the evaluation there")
    overwrite = ["--overwrite"] if args.overwrite else []

    out = args.output_dir
    pairs = out / "pairs"
    run("degrade", holdout, "-o", pairs, "--scale", 4, "--seed", args.seed, *overwrite)
    bicubic_baseline(pairs / "lq", pairs / "gt", out / "bicubic")
    model = ["--model", args.model] if args.model else []
    run("restore", pairs / "lq", "-o", out / "restored", "--save-structure", "--seed", args.seed, *model, *overwrite)
    folders = {"bicubic": out / "bicubic", "structure": out / "restored" / "structure", "restored": out / "restored"}
    results = {}
    for row, folder in folders.items():
        prefix = out / f"metrics_{row}"
        run("evaluate", "--pred", folder, "--gt", pairs / "gt", "--output", prefix, "--overwrite")
        results[row] = json.loads(prefix.with_suffix(".json").read_text())

    rows = {**ROWS, "restored": args.label}
    means = {row: results[row]["mean"] for row in rows}
    lines = ["| method | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for row, label in rows.items():
        lines.append(f"| {label} | " + " | ".join(f"{means[row][m]:.4f}" for m in METRICS) + " |")
    gain = means["restored"]["psnr_y"] - means["bicubic"]["psnr_y"]
    ssim_gain = means["restored"]["ssim_y"] - means["bicubic"]["ssim_y"]
    lines += ["", f"{args.label} - bicubic: {gain:+.2f} dB PSNR-Y, {ssim_gain:+.4f} SSIM-Y", ""]
    lines += [f"| crop | bicubic PSNR-Y | structure prior PSNR-Y | {args.label} PSNR-Y |", "|---|---|---|---|"]
    for name in results["bicubic"]["images"]:
        values = [results[row]["images"][name]["psnr_y"] for row in rows]
        lines.append(f"| {name} | " + " | ".join(f"{value:.2f}" for value in values) + " |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    columns = [("LQ (x4 nearest)", pairs / "lq"), ("bicubic", out / "bicubic")]
    columns += [("structure prior", folders["structure"]), (args.label, out / "restored")]
    columns += [("ground truth", pairs / "gt")]
    figure(columns, args.figure_crops, out / "comparison.png")
    print(f"wrote {out / 'results.md'} and {out / 'comparison.png'}")


if __name__ == "__main__":
    main()
