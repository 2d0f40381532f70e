"""`sspir caption`: caption a folder of images into `captions/<stem>.txt` (the logic is `caption_folder`)."""

import argparse
from pathlib import Path
from typing import Any

from ..captioners.spec import CAPTIONER_SPEC_HELP
from . import _common
from ._common import CLIError, one_line

DESCRIPTION = """Caption every image of a folder into DIR/captions/<stem>.txt (for the gt/ or lq/ folder of
a training set: into the captions/ folder next to it, where training reads them). With --recursive,
the images of its subfolders too: captions/a/b.txt for DIR/a/b.png, as training reads a nested set.

The captioner is a vision-language model, a folder or Hub id that transformers'
AutoModelForImageTextToText loads (LLaVA-1.5 in the llava-hf format, Qwen2-VL, SmolVLM,
...), asked SSP-IR's question about each image; or fixed:TEXT, the same caption for all.
Resumable: images that already have a caption are skipped unless --overwrite."""

EPILOG = """examples:
  sspir caption pairs/lq/ --captioner llava-hf/llava-1.5-7b-hf --batch-size 8
  sspir caption photos/ --captioner path/to/qwen2-vl --output captions/ --dtype bfloat16
  sspir caption photos/ --captioner "fixed:a photo"

exit status: 0 all captioned or skipped, 1 some image failed, 2 bad arguments or inputs."""


def add_parser(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "caption", parents=parents, help="caption a folder of images into captions/<stem>.txt",
        description=DESCRIPTION, epilog=EPILOG, formatter_class=_common.HelpFormatter,
    )  # fmt: skip
    parser.add_argument("folder", type=Path, metavar="DIR", help="the folder of images")
    parser.add_argument("--captioner", required=True, metavar="SPEC", help=CAPTIONER_SPEC_HELP)
    parser.add_argument(
        "--output",
        type=Path,
        metavar="DIR",
        help="where to write <stem>.txt (default: DIR/captions; PARENT/captions for a gt/ or lq/ folder)",
    )
    parser.add_argument(
        "--batch-size", type=_common.positive_int, default=4, metavar="N", help="images per batch (default: 4)"
    )
    parser.add_argument(
        "--max-new-tokens", type=_common.positive_int, default=512, metavar="N", help="longest caption (default: 512)"
    )
    parser.add_argument(
        "--seed", type=_common.seed, default=0, metavar="N", help="seed of the captioner's sampling (default: 0)"
    )
    _common.add_device_arguments(parser)
    _common.add_recursive_argument(parser, "DIR")
    parser.add_argument("--overwrite", action="store_true", help="caption again images that have a caption")
    parser.set_defaults(run=run)


def load_captioner(args: argparse.Namespace) -> Any:
    """The captioner `--captioner` names ([`captioner_from_spec`]) on the chosen device, or a `CLIError`."""
    return _common.load_captioner_spec(args, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)


def run(args: argparse.Namespace) -> int:
    from ..captioners.folder import caption_plans, caption_writer

    if args.captioner == "none":
        raise CLIError("--captioner none: nothing to caption with; pass a vision-language model or fixed:TEXT.")
    _common.check_captioner_spec(args.captioner)
    if not args.folder.is_dir():
        raise CLIError(f"{args.folder}: no such folder; pass the folder of images to caption.")
    try:
        plans, output_dir = caption_plans(args.folder, args.output, args.recursive)
    except ValueError as error:
        raise CLIError(one_line(error)) from None
    if not plans:
        where = "nor its subfolders hold" if args.recursive else "holds"
        raise CLIError(f"{args.folder}: the folder {where} no images.")
    if args.overwrite or not all(outputs["caption"].exists() for outputs in plans.values()):
        _common.check_output_folder("--output" if args.output else "the caption folder", output_dir)

    def start():
        return caption_writer(load_captioner(args), generator_seed=args.seed)

    return _common.run_batches(
        plans, args, "captioned", "captioning", start, batch_size=args.batch_size, where=output_dir
    )
