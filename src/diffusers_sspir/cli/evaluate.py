"""`sspir evaluate`: PSNR/SSIM (RGB and Y) of restored images against ground truth, NIQE of the images alone, and
pyiqa metrics if present."""

import argparse
import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any

from . import _common
from ._common import CLIError, echo, one_line

BUILTIN_METRICS = {"psnr": ("psnr", "psnr_y"), "ssim": ("ssim", "ssim_y"), "niqe": ("niqe",)}
"""Metric name → the columns it adds (psnr and ssim: RGB, then the Y channel; niqe: the Y channel)."""
NO_REFERENCE_METRICS = ("niqe",)
"""The built-in metrics of a restored image alone, which need no `--gt`."""
PYIQA_METRICS = ("lpips", "dists", "musiq", "maniqa", "clipiqa")
"""Suggested pyiqa metrics; any other name pyiqa knows works too."""

DESCRIPTION = """Score restored images (--pred) against their ground truth (--gt), paired by file
stem (with --recursive, by their path inside the folders without extension: restored/a/b.png
with gt/a/b.png; the comparison/ and structure/ folders of sspir restore are left out of
--pred), or alone with no-reference metrics (--metrics niqe: --gt is then optional; given,
only the images with a partner are scored, so that every metric covers the same images).

psnr and ssim are computed as BasicSR computes them for restoration papers: on 8-bit
images with --crop-border pixels removed from each side, in RGB and on the Y channel of
BT.601 YCbCr (columns psnr, psnr_y, ssim, ssim_y); SSIM with an 11x11 Gaussian window of
sigma 1.5. niqe is BasicSR's NIQE (no reference; lower is more natural) on the Y channel
after the same --crop-border, built in and offline; it needs at least two 96x96 blocks
(an image of at least 96x192 or 192x96 pixels). Other names (lpips, dists, musiq,
maniqa, clipiqa, ...) are computed by pyiqa, if installed, on the whole images.

Prints a table (each image, then the mean) and writes it to metrics.csv and metrics.json
in --pred (or PREFIX.csv and PREFIX.json), never replacing them without --overwrite. Files
without a partner, and pairs that differ in size, are reported. PSNR of identical images
is inf (the string "inf" in JSON); such pairs are listed as identical and left out of the
PSNR means."""

EPILOG = """examples:
  sspir evaluate --pred restored/ --gt pairs/gt/
  sspir evaluate --pred restored/ --gt pairs/gt/ --crop-border 2 --output results/x2
  sspir evaluate --pred restored/ --gt pairs/gt/ --metrics psnr,ssim,niqe
  sspir evaluate --pred restored/ --metrics niqe
  sspir evaluate --pred restored/ --gt pairs/gt/ --metrics psnr,ssim,lpips,dists

exit status: 0 every image evaluated, 1 some failed (unreadable, sizes differ, too small for
niqe), 2 bad arguments or inputs."""


def add_parser(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "evaluate", parents=parents, help="PSNR/SSIM against ground truth, NIQE (and pyiqa metrics)",
        description=DESCRIPTION, epilog=EPILOG, formatter_class=_common.HelpFormatter,
    )  # fmt: skip
    parser.add_argument("--pred", required=True, type=Path, metavar="DIR", help="the restored images")
    parser.add_argument(
        "--gt", type=Path, metavar="DIR",
        help=f"the ground-truth images (optional when only {', '.join(NO_REFERENCE_METRICS)} is asked for)",
    )  # fmt: skip
    parser.add_argument(
        "--crop-border", type=_common.non_negative_int, default=4, metavar="PIXELS",
        help="pixels removed from each side for psnr/ssim/niqe, by convention the scale (default: 4)",
    )  # fmt: skip
    parser.add_argument(
        "--metrics", default="psnr,ssim", metavar="NAMES", help="comma-separated: psnr, ssim (against --gt), niqe "
        f"(no reference); default: psnr,ssim; with pyiqa also {', '.join(PYIQA_METRICS)}, ...",
    )  # fmt: skip
    parser.add_argument(
        "--output",
        metavar="PREFIX",
        help="write PREFIX.csv and PREFIX.json, or metrics.csv/.json into PREFIX if it is a folder or ends in / "
        "(default: --pred)",
    )
    parser.add_argument(
        "--device",
        type=_common.device_name,
        default="auto",
        metavar="DEVICE",
        help="for pyiqa metrics (default: auto)",
    )
    _common.add_recursive_argument(parser, "--pred and --gt")
    parser.add_argument("--overwrite", action="store_true", help="replace existing CSV/JSON files")
    parser.set_defaults(run=run)


def parse_metrics(text: str) -> tuple[list[str], list[str]]:
    """`(builtin names, pyiqa names)` from `--metrics`."""
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    if not names:
        raise CLIError(f"--metrics {text!r}: name at least one metric, e.g. psnr,ssim.")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise CLIError(f"--metrics {text}: {', '.join(duplicates)} named twice.")
    return [n for n in names if n in BUILTIN_METRICS], [n for n in names if n not in BUILTIN_METRICS]


def load_pyiqa_metrics(names: list[str], device_name: str) -> dict[str, Any]:
    """The pyiqa metric of each name, or a one-line `CLIError` when pyiqa or a metric's weights are missing."""
    if not names:
        return {}
    try:
        import pyiqa
    except ImportError:
        raise CLIError(
            f"--metrics {','.join(names)}: not built in ({', '.join(BUILTIN_METRICS)} are); other names are pyiqa "
            "metrics, and pyiqa is not installed. Check the spelling, or install pyiqa (pip install pyiqa; it may "
            "pull another torch, so a separate environment is safer)."
        ) from None
    unknown = [name for name in names if name not in pyiqa.list_models()]
    if unknown:
        raise CLIError(
            f"--metrics: {', '.join(unknown)} unknown to pyiqa and to sspir; built in: {', '.join(BUILTIN_METRICS)}; "
            "pyiqa lists its names with pyiqa.list_models()."
        )
    device = _common.resolve_device(device_name)
    metrics = {}
    for name in names:
        try:
            metrics[name] = pyiqa.create_metric(name, device=device)
        except Exception as error:
            raise CLIError(
                f"--metrics {name}: pyiqa cannot create it ({one_line(error)}); its weights download on first use, "
                "which needs network access once."
            ) from error
    return metrics


def evaluate_pair(
    pred_path: Path, gt_path: Path | None, builtin: list[str], pyiqa_metrics: dict[str, Any], crop_border: int
) -> dict[str, float]:
    """The metric values of one image, compared with `gt_path` when given (the metrics need it then); an exception
    (reason in its message) when it cannot be evaluated."""
    from ..files import read_rgb8
    from ..metrics import niqe, psnr, ssim

    pred = read_rgb8(pred_path)
    gt = None if gt_path is None else read_rgb8(gt_path)
    if gt is not None and pred.shape != gt.shape:
        raise ValueError(
            f"size mismatch: pred {pred.shape[1]}x{pred.shape[0]}, gt {gt.shape[1]}x{gt.shape[0]} (width x height)"
        )
    functions = {"psnr": psnr, "ssim": ssim}
    values = {}
    for name in builtin:
        if name == "niqe":
            values["niqe"] = niqe(pred, crop_border=crop_border)
            continue
        rgb, y = BUILTIN_METRICS[name]
        values[rgb] = functions[name](pred, gt, crop_border=crop_border)
        values[y] = functions[name](pred, gt, crop_border=crop_border, y_channel=True)
    if pyiqa_metrics:
        import torch

        def to_tensor(array):
            return torch.from_numpy(array.copy()).permute(2, 0, 1)[None].float().div(255)

        for name, metric in pyiqa_metrics.items():
            inputs = (to_tensor(pred), to_tensor(gt)) if metric.metric_mode == "FR" else (to_tensor(pred),)
            with torch.no_grad():
                values[name] = float(metric(*(x.to(metric.device) for x in inputs)))
    return values


def pair_files(
    pred_dir: Path, gt_dir: Path | None, recursive: bool = False
) -> tuple[dict[str, tuple[Path, Path | None]], list[Path], list[Path]]:
    """`(key → (pred, gt), unpaired pred files, unpaired gt files)`; the key is the stem, or with `recursive` the
    path inside the folder without extension (`diffusers_sspir.files.image_key`). Without `gt_dir`, every pred file
    is there, with `None` for its partner."""
    from ..files import check_unique_keys, image_key, list_images
    from .restore import COMPARISON_FOLDER, STRUCTURE_FOLDER

    keys = {}
    for flag, folder in (("--pred", pred_dir), ("--gt", gt_dir)) if gt_dir is not None else (("--pred", pred_dir),):
        if not folder.is_dir():
            raise CLIError(f"{flag} {folder}: no such folder.")
        images = {path: image_key(path, folder) for path in list_images(folder, recursive)}
        if flag == "--pred" and recursive:
            extras = (f"{COMPARISON_FOLDER}/", f"{STRUCTURE_FOLDER}/")
            images = {path: key for path, key in images.items() if not key.startswith(extras)}
        try:
            check_unique_keys(images)
        except ValueError as error:
            raise CLIError(one_line(error)) from None
        keys[flag] = images
    if gt_dir is None:
        return {key: (path, None) for path, key in keys["--pred"].items()}, [], []
    gt_by_key = {key: path for path, key in keys["--gt"].items()}
    pairs = {key: (path, gt_by_key[key]) for path, key in keys["--pred"].items() if key in gt_by_key}
    unpaired_pred = [path for path, key in keys["--pred"].items() if key not in pairs]
    return pairs, unpaired_pred, [path for path, key in keys["--gt"].items() if key not in pairs]


def output_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """Where the CSV and JSON go: into `--pred`, into `--output` when it is a folder (an existing one, or any path
    ending in a separator), else to `--output` + `.csv` / `.json`."""
    if args.output is None:
        return args.pred / "metrics.csv", args.pred / "metrics.json"
    output = Path(args.output)  # `--output` is kept as text: `Path` would drop the trailing separator
    if output.is_dir() or args.output.endswith(("/", os.sep)):
        return output / "metrics.csv", output / "metrics.json"
    prefix = output.with_suffix("") if output.suffix in (".csv", ".json") else output
    return prefix.with_name(prefix.name + ".csv"), prefix.with_name(prefix.name + ".json")


def format_value(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.4f}"


def print_table(columns: list[str], rows: dict[str, dict[str, float]], failed: dict[str, str], mean: dict) -> None:
    names = list(rows) + list(failed) + (["mean"] if mean else [])
    width = max(len(name) for name in names + ["image"])
    echo(f"{'image':<{width}}  " + "  ".join(f"{column:>9}" for column in columns))
    for name, values in rows.items():
        echo(f"{name:<{width}}  " + "  ".join(f"{format_value(values[c]):>9}" for c in columns))
    for name, reason in failed.items():
        echo(f"{name:<{width}}  {reason}")
    if mean:
        echo(f"{'mean':<{width}}  " + "  ".join(f"{format_value(mean[c]):>9}" for c in columns))


def json_value(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from ..files import write_atomic

    builtin, pyiqa_names = parse_metrics(args.metrics)
    full_reference = [name for name in builtin if name not in NO_REFERENCE_METRICS]
    if args.gt is None and full_reference:
        raise CLIError(
            f"--metrics {args.metrics}: full-reference metrics ({', '.join(full_reference)}) need the ground truth: "
            f"pass --gt DIR, or ask only for no-reference metrics (--metrics {','.join(NO_REFERENCE_METRICS)})."
        )
    pairs, unpaired_pred, unpaired_gt = pair_files(args.pred, args.gt, args.recursive)
    if not pairs and args.gt is None:
        raise CLIError(f"--pred {args.pred}: no images.")
    if not pairs:
        raise CLIError(f"--pred {args.pred} and --gt {args.gt}: no image has a partner with the same file stem.")
    csv_path, json_path = output_paths(args)
    _common.check_writable([csv_path, json_path], args.overwrite, "the metrics file")
    _common.check_output_folder("--output", csv_path.parent)
    pyiqa_metrics = load_pyiqa_metrics(pyiqa_names, args.device)
    full_reference += [name for name, metric in pyiqa_metrics.items() if metric.metric_mode == "FR"]
    if args.gt is None and full_reference:
        raise CLIError(
            f"--metrics {args.metrics}: full-reference metrics ({', '.join(full_reference)}) need the ground truth: "
            "pass --gt DIR."
        )
    columns = [column for name in builtin for column in BUILTIN_METRICS[name]] + pyiqa_names
    unit = "pair" if args.gt is not None else "image"

    rows, failed = {}, {}
    for stem, (pred_path, gt_path) in tqdm(
        sorted(pairs.items()), desc="evaluating", unit=unit, leave=False, disable=None
    ):
        try:
            gt_path = gt_path if full_reference else None  # no-reference metrics only: the ground truth is not read
            rows[stem] = evaluate_pair(pred_path, gt_path, builtin, pyiqa_metrics, args.crop_border)
        except Exception as error:  # one bad pair does not stop the others
            if getattr(args, "debug", False):
                raise
            failed[stem] = one_line(error)
    identical = sorted(stem for stem, values in rows.items() if any(math.isinf(v) for v in values.values()))
    mean = {}
    for column in columns if rows else []:
        finite = [values[column] for values in rows.values() if math.isfinite(values[column])]
        mean[column] = sum(finite) / len(finite) if finite else math.inf

    print_table(columns, rows, failed, mean)
    if identical:
        names = ", ".join(identical[:10]) + (", ..." if len(identical) > 10 else "")
        echo(f"identical: {len(identical)} pairs are pixel-identical (PSNR inf), left out of the PSNR means: {names}")
    unpaired_pred = [path.relative_to(args.pred).as_posix() for path in unpaired_pred]
    unpaired_gt = [path.relative_to(args.gt).as_posix() for path in unpaired_gt]
    for flag, files in (("--pred", unpaired_pred), ("--gt", unpaired_gt)):
        if files:
            names = ", ".join(map(str, files[:10])) + (", ..." if len(files) > 10 else "")
            echo(f"unpaired: {len(files)} in {flag} without a partner: {names}", err=True)

    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["image", *columns, "error"])
    for stem, values in rows.items():
        writer.writerow([stem, *(values[c] for c in columns), ""])
    for stem, reason in failed.items():
        writer.writerow([stem, *([""] * len(columns)), reason])
    if mean:
        writer.writerow(["mean", *(mean[c] for c in columns), ""])
    report = {
        "pred": str(args.pred), "gt": None if args.gt is None else str(args.gt), "crop_border": args.crop_border,
        "metrics": columns,
        "count": len(rows), "mean": {c: json_value(v) for c, v in mean.items()},
        "images": {stem: {c: json_value(v) for c, v in values.items()} for stem, values in rows.items()},
        "failed": failed, "identical": identical,
        "unpaired": {"pred": unpaired_pred, "gt": unpaired_gt},
    }  # fmt: skip
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(csv_path, table.getvalue())
    write_atomic(json_path, json.dumps(report, indent=2) + "\n")
    echo(f"{len(rows)} {unit}s evaluated, {len(failed)} failed; wrote {csv_path} and {json_path}")
    return 1 if failed else 0
