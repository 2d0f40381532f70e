"""`sspir degrade`: make low-quality/ground-truth pairs from high-quality images with Real-ESRGAN's degradations."""

import argparse
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import _common
from ._common import CLIError, one_line

DESCRIPTION = """Make training or test pairs from a folder of high-quality images (with --recursive, and
those of its subfolders: the pairs mirror its tree, gt/a/b.png and lq/a/b.png for a/b.jpg).

Each image is optionally centre-cropped to --crop, then cropped to a multiple of --scale
(its bottom and right rows go, as BasicSR's mod_crop does) and written to OUT_DIR/gt/<stem>.png;
its low-quality partner, degraded by Real-ESRGAN's second-order pipeline (blur, resize,
noise, JPEG, twice) and downscaled by --scale, goes to OUT_DIR/lq/<stem>.png.

Reproducible: each image's randomness is seeded from --seed and the image's file stem (its
path without extension inside HQ_DIR, for an image of a subfolder), so adding or removing
images never changes the others, and neither does the number of processes running it. The
same seed gives the same pairs bit for bit on the same device and torch build (the default
device is the CPU; CUDA is faster, but its pairs may differ slightly). Existing pairs are
kept (running again makes only what is missing) unless --overwrite."""

EPILOG = """examples:
  sspir degrade DIV2K_valid_HR/ -o pairs/ --scale 4 --seed 0
  sspir degrade photos/ -o pairs-x2/ --scale 2 --seed 1 --crop 512

exit status: 0 all made or skipped, 1 some image failed, 2 bad arguments or inputs."""


def add_parser(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "degrade", parents=parents, help="make LQ/GT pairs from high-quality images (Real-ESRGAN degradations)",
        description=DESCRIPTION, epilog=EPILOG, formatter_class=_common.HelpFormatter,
    )  # fmt: skip
    parser.add_argument("folder", type=Path, metavar="HQ_DIR", help="the high-quality images")
    parser.add_argument("-o", "--output-dir", required=True, type=Path, metavar="OUT_DIR", help="gets gt/ and lq/")
    parser.add_argument("--scale", type=_common.positive_int, default=4, metavar="N", help="downscaling (default: 4)")
    parser.add_argument("--seed", type=_common.seed, default=0, metavar="N", help="seed of the whole set (default: 0)")
    parser.add_argument("--crop", type=_common.positive_int, metavar="SIZE", help="centre crop SIZE x SIZE first")
    parser.add_argument(
        "--gt-usm", action="store_true",
        help="unsharp-mask the ground truth first (Real-ESRGAN's gt_usm): gt/ gets the sharpened image, lq/ its "
        "degradation",
    )  # fmt: skip
    parser.add_argument(
        "--device", type=_common.device_name, default="cpu", metavar="DEVICE",
        help="where to degrade: cpu, cuda, cuda:N, mps or auto (default: cpu)",
    )  # fmt: skip
    _common.add_recursive_argument(parser, "HQ_DIR")
    parser.add_argument("--overwrite", action="store_true", help="replace existing pairs")
    parser.set_defaults(run=run)


def image_seed(seed: int, key: str) -> int:
    """The seed of one image: a hash of `(seed, key)`, the same in every run and on every machine; `key` is the
    image's `diffusers_sspir.files.image_key` (its stem, or its path without extension inside a folder read with
    --recursive)."""
    digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def crop_ground_truth(image: Any, crop: int | None, scale: int) -> Any:
    """The `(H, W, 3)` array centre-cropped to `crop` (if given), then to a multiple of `scale` (top-left kept).

    Raises:
        ValueError: if the image is smaller than `crop` or than `scale`.
    """
    height, width = image.shape[:2]
    if crop is not None:
        if height < crop or width < crop:
            raise ValueError(f"the image is {width}x{height}, smaller than --crop {crop}")
        top, left = (height - crop) // 2, (width - crop) // 2
        image = image[top : top + crop, left : left + crop]
        height = width = crop
    if height < scale or width < scale:
        raise ValueError(f"the image is {width}x{height}, smaller than --scale {scale}")
    return image[: height - height % scale, : width - width % scale]


def degrade_one(
    degradation: Any, path: Path, key: str, outputs: dict[str, Path], args: argparse.Namespace, device: Any
) -> None:
    """Writes the missing files of the pair of `path` (both with --overwrite), seeded by its key."""
    import numpy as np
    import PIL.Image
    import torch

    from ..files import read_rgb8, write_atomic

    gt = crop_ground_truth(read_rgb8(path), args.crop, args.scale)
    batch = torch.from_numpy(np.array(gt)).permute(2, 0, 1)[None].to(device, torch.float32) / 255
    generator = torch.Generator().manual_seed(image_seed(args.seed, key))
    target, lq = degradation.degrade_pair(batch, generator=generator)
    if degradation.config.gt_usm:
        gt = (target[0].permute(1, 2, 0) * 255).round().to(torch.uint8).cpu().numpy()
    lq = (lq[0].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    for kind, array in (("gt", gt), ("lq", lq)):
        if args.overwrite or not outputs[kind].exists():
            write_atomic(outputs[kind], PIL.Image.fromarray(array))


def run(args: argparse.Namespace) -> int:
    from ..files import check_unique_keys, image_key, list_images

    if args.crop is not None and args.crop % args.scale:
        raise CLIError(f"--crop {args.crop}: must be a multiple of --scale {args.scale}.")
    if not args.folder.is_dir():
        raise CLIError(f"{args.folder}: no such folder; pass the folder of high-quality images.")
    images = list_images(args.folder, args.recursive)
    if not images:
        raise CLIError(f"{args.folder}: the folder holds no images.")
    keys = {path: image_key(path, args.folder) for path in images}
    try:
        check_unique_keys(keys)
    except ValueError as error:
        raise CLIError(one_line(error)) from None
    _common.check_output_folder("-o", args.output_dir)
    if args.output_dir.resolve() == args.folder.resolve():
        raise CLIError(f"-o {args.output_dir}: is the input folder; choose another folder for the pairs.")
    if args.recursive:
        _common.check_outside_inputs("-o", args.output_dir, [args.folder])
    for kind in ("gt", "lq"):
        if (args.output_dir / kind).resolve() == args.folder.resolve():
            raise CLIError(
                f"-o {args.output_dir}: its {kind}/ folder is the input folder {args.folder}, so the pairs would "
                "replace or mix with the inputs; choose another folder for the pairs."
            )
    plans = {
        path: {kind: args.output_dir / kind / f"{key}.png" for kind in ("gt", "lq")} for path, key in keys.items()
    }
    _common.check_outputs_are_not_inputs(plans)

    def start() -> Callable[[Path, dict[str, Path]], None]:
        from ..data.degradations import RealESRGANDegradation, RealESRGANDegradationConfig

        try:
            degradation = RealESRGANDegradation(RealESRGANDegradationConfig(scale=args.scale, gt_usm=args.gt_usm))
        except ValueError as error:
            raise CLIError(f"--scale {args.scale}: {one_line(error)}") from None
        device = _common.resolve_device(args.device)
        return lambda path, outputs: degrade_one(degradation, path, keys[path], outputs, args, device)

    return _common.run_each(plans, args, "made", "degrading", start)
