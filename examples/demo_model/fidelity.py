"""The fidelity-realism trade-off of a model on the validation crops: PSNR-Y and a sharpness proxy against each
fidelity control's value, as a plot and an image strip (docs/usage.md shows them for the bundled model).

    python examples/demo_model/fidelity.py --data_dir demo_work/data --output_dir demo_work/fidelity

1. `sspir degrade --seed 0` makes x4 LQ inputs of the split's crops (validation by default: every decision is made
   there; the held-out crops are scored once, by evaluate.py);
2. the pipeline restores them once per setting: `restoration_guidance_scale` from 0 to 1 (at `--decay`),
   `restoration_guidance_decay` from 0 to 8 (at `--guidance`), and `strength` from 1 down to 0.2 (without
   restoration guidance, at `--strength_steps` steps so that low strengths still run a step); everything else at
   the model's recommended settings unless given (`--steps`, `--guidance_scale`), seed 0;
3. each result is scored with BasicSR's PSNR-Y and SSIM-Y (4-pixel border) and with an edge-sharpness proxy: the
   mean gradient magnitude of Y on the ground truth's strongest edges (its top 10 % of gradient magnitudes),
   relative to the ground truth's there (1.0 = edges as crisp as the ground truth's; a blurred result is below, an
   over-sharpened one above). Measuring on the ground truth's edges only keeps noise in flat areas, which a plain
   mean gradient counts as sharpness, out of it.

Writes `fidelity.json`, `fidelity.png` (the curves, with bicubic and the structure prior as references) and
`strip.png` (one crop at each guidance value).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from diffusers_sspir import SSPIRPipeline, demo_model_path
from diffusers_sspir.cli import main as sspir
from diffusers_sspir.files import list_images, read_rgb8
from diffusers_sspir.image_ops import upscale_bicubic
from diffusers_sspir.metrics import psnr, rgb_to_y, ssim

GUIDANCE = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)
DECAY = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
STRENGTH = (1.0, 0.8, 0.6, 0.4, 0.2)
EDGE_FRACTION = 0.1


def gradient_magnitude(image: np.ndarray) -> np.ndarray:
    """Gradient magnitude of the Y channel (central differences), 4-pixel border cropped."""
    y = rgb_to_y(image.astype(np.float64))[4:-4, 4:-4]
    gy, gx = np.gradient(y)
    return np.hypot(gx, gy)


def edge_sharpness(image: np.ndarray, truth: np.ndarray) -> float:
    """`image`'s mean gradient magnitude on `truth`'s strongest edges, relative to `truth`'s there."""
    reference = gradient_magnitude(truth)
    edges = reference >= np.quantile(reference, 1 - EDGE_FRACTION)
    return float(gradient_magnitude(image)[edges].mean() / max(reference[edges].mean(), 1e-8))


def score(images: list[np.ndarray], truths: list[np.ndarray]) -> dict[str, float]:
    rows = [(psnr(p, g, 4, True), ssim(p, g, 4, True), edge_sharpness(p, g)) for p, g in zip(images, truths)]
    return dict(zip(("psnr_y", "ssim_y", "sharpness"), (float(np.mean(c)) for c in zip(*rows))))


def restore(pipe, lq: list[np.ndarray], settings: dict, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    images, structures = [], []
    for image in lq:
        out = pipe(image, output_type="np", generator=torch.Generator().manual_seed(seed), **settings)
        images.append((out.images[0] * 255).round().astype(np.uint8))
        structures.append((out.structure_images[0] * 255).round().astype(np.uint8))
    return images, structures


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(15, 4), dpi=110)
    panels = (
        ("guidance", f"restoration_guidance_scale (decay {results['guidance_decay']:g})"),
        ("decay", f"restoration_guidance_decay (guidance {results['decay_guidance']:g})"),
        ("strength", f"strength ({results['strength_steps']} steps, no restoration guidance)"),
    )
    for axis, (control, label) in zip(axes, panels):
        rows = results[control]
        x = [row["value"] for row in rows]
        axis.plot(x, [row["psnr_y"] for row in rows], "o-", color="C0", label="PSNR-Y (dB), left axis")
        axis.axhline(results["bicubic"]["psnr_y"], color="C0", linestyle=":", label="bicubic PSNR-Y")
        axis.axhline(results["structure"]["psnr_y"], color="C0", linestyle="--", alpha=0.6, label="structure prior")
        axis.set(xlabel=label, ylabel="PSNR-Y (dB)")
        twin = axis.twinx()
        twin.plot(x, [row["sharpness"] for row in rows], "s-", color="C3", label="edge sharpness, right axis")
        twin.axhline(results["bicubic"]["sharpness"], color="C3", linestyle=":", alpha=0.6, label="bicubic's")
        twin.axhline(1.0, color="grey", linestyle="-", alpha=0.3, linewidth=0.8)
        twin.set(ylabel="edge sharpness (ground truth = 1)", ylim=(0, max(1.2, *twin.get_ylim())))
        handles = axis.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        axis.legend(handles=handles, fontsize=7, loc="lower left")
        axis.grid(True, alpha=0.3)
        if control == "strength":
            axis.invert_xaxis()
    figure.suptitle(f"Fidelity controls on {results['crops']} validation crops ({results['model']})", fontsize=9)
    figure.tight_layout()
    figure.savefig(path)


def strip(columns: list[tuple[str, np.ndarray]], path: Path) -> None:
    font = ImageFont.load_default()
    height, width = columns[0][1].shape[:2]
    label = font.getbbox("Ag")[3] + 8
    canvas = Image.new("RGB", (width * len(columns), height + label), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (text, image) in enumerate(columns):
        canvas.paste(Image.fromarray(image).resize((width, height), Image.Resampling.NEAREST), (i * width, label))
        draw.text((i * width + 3, 3), text, fill="black", font=font)
    canvas.save(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=Path, required=True, help="The --output_dir of prepare_data.py.")
    parser.add_argument("--split", choices=("validation", "holdout"), default="validation")
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--model", help="An SSP-IR pipeline folder (default: the bundled demo model).")
    parser.add_argument("--steps", type=int, help="denoising steps (default: the model's recommended)")
    parser.add_argument("--guidance_scale", type=float, help="classifier-free guidance (default: recommended)")
    parser.add_argument("--decay", type=float, default=1.0, help="restoration_guidance_decay of the guidance sweep")
    parser.add_argument("--guidance", type=float, default=1.0, help="restoration_guidance_scale of the decay sweep")
    parser.add_argument("--strength_steps", type=int, default=10, help="denoising steps of the strength sweep "
                        "(default: 10, so that every strength runs at least one step)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crops", type=int, help="only the first N crops (a quick look; the docs use all)")
    parser.add_argument("--strip_crop", default=None, help="the crop of the image strip (default: the first)")
    args = parser.parse_args(argv)
    gt_dir = args.data_dir / args.split / "gt"
    if not gt_dir.is_dir():
        parser.error(f"--data_dir {args.data_dir}: no {args.split}/gt folder; run prepare_data.py first")

    pairs = args.output_dir / "pairs"
    if sspir(["degrade", str(gt_dir), "-o", str(pairs), "--scale", "4", "--seed", str(args.seed)]):
        sys.exit("error: sspir degrade failed")
    names = [path.name for path in list_images(pairs / "lq")][: args.crops]
    lq = [read_rgb8(pairs / "lq" / name) for name in names]
    truths = [read_rgb8(pairs / "gt" / name) for name in names]
    pipe = SSPIRPipeline.from_pretrained(args.model or demo_model_path())
    pipe.set_progress_bar_config(disable=True)
    base = {k: v for k, v in (("num_inference_steps", args.steps), ("guidance_scale", args.guidance_scale)) if v}

    bicubic = []
    for image, truth in zip(lq, truths):
        tensor = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 255
        upscaled = upscale_bicubic(tensor, truth.shape[:2])[0].permute(1, 2, 0)
        bicubic.append((upscaled * 255).round().byte().numpy())
    results = {"model": args.model or "bundled demo model", "crops": len(names), "settings": base,
               "guidance_decay": args.decay, "decay_guidance": args.guidance, "strength_steps": args.strength_steps,
               "bicubic": score(bicubic, truths)}  # fmt: skip
    strip_index = names.index(args.strip_crop) if args.strip_crop else 0
    columns = [("bicubic", bicubic[strip_index])]
    results["guidance"], results["decay"], results["strength"] = [], [], []
    for value in GUIDANCE:
        settings = {**base, "restoration_guidance_scale": value, "restoration_guidance_decay": args.decay}
        images, structures = restore(pipe, lq, {**settings, "strength": 1.0}, args.seed)
        results["guidance"].append({"value": value, **score(images, truths)})
        columns.append((f"guidance {value:g}", images[strip_index]))
        if value == 0.0:
            results["structure"] = score(structures, truths)
            structure_image = structures[strip_index]
        print(f"restoration_guidance_scale {value}: {results['guidance'][-1]}")
    for value in DECAY:
        settings = {**base, "restoration_guidance_scale": args.guidance, "restoration_guidance_decay": value}
        images, _ = restore(pipe, lq, {**settings, "strength": 1.0}, args.seed)
        results["decay"].append({"value": value, **score(images, truths)})
        print(f"restoration_guidance_decay {value}: {results['decay'][-1]}")
    steps = args.strength_steps
    for value in STRENGTH:
        if int(steps * value) < 1:
            print(f"strength {value}: skipped, it runs no step of {steps}")
            continue
        settings = {**base, "num_inference_steps": steps, "strength": value, "restoration_guidance_scale": 0.0}
        images, _ = restore(pipe, lq, settings, args.seed)
        results["strength"].append({"value": value, **score(images, truths)})
        print(f"strength {value}: {results['strength'][-1]}")
    columns += [("structure prior", structure_image), ("ground truth", truths[strip_index])]

    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "fidelity.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.output_dir / "fidelity.png")
    strip(columns, args.output_dir / "strip.png")
    print(f"wrote {args.output_dir / 'fidelity.json'}, fidelity.png and strip.png")


if __name__ == "__main__":
    main()
