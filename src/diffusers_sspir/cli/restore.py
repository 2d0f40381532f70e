"""`sspir restore`: restore (and upscale) images with an SSP-IR pipeline, one `<stem>.png` per input."""

import argparse
import os
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..captioners.spec import CAPTIONER_SPEC_HELP
from ..defaults import CALL_DEFAULTS, COLOR_FIX_NAMES, DEFAULT_ADDED_PROMPT, DEFAULT_NEGATIVE_PROMPT
from ..schedulers import SCHEDULERS, make_scheduler, scheduler_table
from ..validation import check_tiling, color_fix_from_name
from . import _common
from ._common import CLIError, echo, one_line

COMPARISON_FOLDER = "comparison"
STRUCTURE_FOLDER = "structure"

DESCRIPTION = """Restore low-quality images with an SSP-IR pipeline, upscaled by --upscale.

Writes OUTDIR/<stem>.png for every input. --save-caption adds OUTDIR/<stem>.txt, the
prompt the image was restored with (caption and added prompt); --save-comparison adds
OUTDIR/comparison/<stem>.png: bicubic-upscaled input | structure prior | result;
--save-structure adds OUTDIR/structure/<stem>.png, the structure prior alone. With
--recursive, the images in the subfolders of INPUT folders too, at the same paths below
OUTDIR (OUTDIR/a/b.png for INPUT/a/b.jpg, OUTDIR/comparison/a/b.png, ...).

Existing outputs are never replaced without --overwrite, so running the same command again
restores only what is missing. An unreadable image is reported and the others still run."""

EPILOG = f"""examples:
  sspir restore photo.png -o restored/              (the bundled demo model)
  sspir restore photos/ -o restored/ --model path/to/sspir
  sspir restore 'scans/*.jpg' old.png -o out/ --model path/to/sspir --upscale 2 \\
      --steps 30 --scheduler dpm++2m-karras
  sspir restore photos/ -o out/ --model path/to/sspir --save-caption \\
      --captioner llava-hf/llava-1.5-7b-hf
  sspir restore photos/ -o out/ --model path/to/sspir --captioner "fixed:a stone bridge" \\
      --save-comparison
  sspir restore big.png -o out/ --model path/to/sspir --tile-size 1024 --tile-overlap 128
  torchrun --nproc_per_node 8 -m diffusers_sspir.cli restore lq/ -o out/ --recursive \
      --model path/to/sspir                     (8 GPUs, each image on one of them; docs/cli.md)

schedulers (--scheduler NAME; default: the one saved with the model; --scheduler list
shows the diffusers class and options of each):
{textwrap.fill(", ".join(SCHEDULERS), width=88, initial_indent="  ", subsequent_indent="  ")}

exit status: 0 all restored or skipped, 1 some image failed, 2 bad arguments or inputs."""


class SchedulerAction(argparse.Action):
    """`--scheduler NAME`, where `--scheduler list` prints the table of names and exits."""

    def __call__(self, parser, namespace, value, option_string=None):
        name = value.lower()
        if name == "list":
            echo(scheduler_table())
            parser.exit()
        if name not in SCHEDULERS:
            parser.error(f"argument --scheduler: unknown name {value!r}; one of: {', '.join(SCHEDULERS)}")
        setattr(namespace, self.dest, name)


def _recommended(name: str) -> str:
    return f"the model's recommended setting, else {CALL_DEFAULTS[name]}"


def add_parser(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "restore", parents=parents, help="restore (and upscale) images with an SSP-IR pipeline",
        description=DESCRIPTION, epilog=EPILOG, formatter_class=_common.HelpFormatter,
    )  # fmt: skip
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or globs")
    parser.add_argument("-o", "--output-dir", required=True, type=Path, metavar="OUTDIR", help="where to write")
    parser.add_argument(
        "--model",
        metavar="PATH_OR_REPO",
        help="a saved SSP-IR pipeline folder (save_pretrained) or Hub repo id (default: the bundled demo model, "
        "see docs/demo_model.md)",
    )
    parser.add_argument(
        "--upscale", type=_common.setting("upscale"), default=4, metavar="X", help="output size factor (default: 4)"
    )
    parser.add_argument(
        "--steps", type=_common.positive_int, metavar="N",
        help=f"denoising steps (default: {_recommended('num_inference_steps')})",
    )  # fmt: skip
    # The settings a model may recommend (SSPIRPipeline.recommended_settings): left out, the model's apply.
    for flag, name, metavar, text in (
        ("--guidance-scale", "guidance_scale", "SCALE", "classifier-free guidance; <= 1 turns it off"),
        ("--strength", "strength", "S", "fidelity: in (0, 1], run only the last part of the schedule from the "
         "noised upscaled input; lower keeps more of the input"),
        ("--restoration-guidance", "restoration_guidance_scale", "W", "fidelity: in [0, 1], pull every step's "
         "clean prediction towards the structure prior, strongest at high noise (SUPIR)"),
        ("--restoration-guidance-decay", "restoration_guidance_decay", "TAU", "how fast that pull fades as the "
         "noise falls; 0: the same at every step"),
    ):  # fmt: skip
        help_text = f"{text} (default: {_recommended(name)})"
        parser.add_argument(flag, dest=name, type=_common.setting(name), metavar=metavar, help=help_text)
    parser.add_argument(
        "--scheduler", action=SchedulerAction, metavar="NAME", help="sampler by short name; 'list' shows them"
    )
    parser.add_argument(
        "--captioner", metavar="SPEC",
        help=f"{CAPTIONER_SPEC_HELP} (default: the captioner saved with the model, none if it has none)",
    )  # fmt: skip
    parser.add_argument(
        "--prompt", metavar="TEXT", help=f"added prompt, appended to every caption; '' for none "
        f"(default: {DEFAULT_ADDED_PROMPT!r})",
    )  # fmt: skip
    parser.add_argument(
        "--negative-prompt", metavar="TEXT", help=f"negative prompt (default: {DEFAULT_NEGATIVE_PROMPT!r})"
    )
    parser.add_argument(
        "--tile-size", type=_common.positive_int, metavar="PIXELS", help="denoise in tiles of this many output pixels"
    )
    parser.add_argument(
        "--tile-overlap",
        type=_common.non_negative_int,
        metavar="PIXELS",
        help="overlap of tiles in output pixels (default: tile / 4)",
    )
    parser.add_argument("--color-fix", choices=COLOR_FIX_NAMES, default="wavelet", help="(default: wavelet)")
    parser.add_argument(
        "--color-fix-levels", type=_common.setting("color_fix_levels"), metavar="N",
        help="levels of the wavelet colour fix, 1-10: fewer keep more of the input's coarse detail (default: "
        f"{_recommended('color_fix_levels')})",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=_common.seed, default=0, metavar="N", help="seed of every image's noise (default: 0)"
    )
    _common.add_device_arguments(parser)
    parser.add_argument("--save-caption", action="store_true", help="also write <stem>.txt with the prompt used")
    parser.add_argument(
        "--save-comparison", action="store_true", help="also write comparison/<stem>.png: input | structure | result"
    )
    parser.add_argument(
        "--save-structure",
        action="store_true",
        help="also write structure/<stem>.png: the structure processor's RGB prediction at the output size",
    )
    _common.add_recursive_argument(parser, "the INPUT folders")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.set_defaults(run=run)


def check_arguments(args: argparse.Namespace) -> None:
    """What can be checked before loading anything."""
    if args.model is not None:
        _common.check_model_source("--model", args.model)
    check_tiling_arguments(args)  # the rest of the pipeline's rule once the model (its VAE) is loaded
    _common.check_captioner_spec(args.captioner)


def check_tiling_arguments(args: argparse.Namespace, factor: int | None = None) -> None:
    """The pipeline's own tiling rule (`diffusers_sspir.validation.check_tiling`), with its message."""
    try:
        check_tiling(args.tile_size, args.tile_overlap, factor)
    except ValueError as error:
        flags = str(error).replace("`tile_size`", "--tile-size").replace("`tile_overlap`", "--tile-overlap")
        raise CLIError(flags) from error


def planned_outputs(key: str, args: argparse.Namespace) -> dict[str, Path]:
    """The files the input of key `key` (`diffusers_sspir.files.image_key`: its stem, or its path inside a folder
    read with --recursive) is restored into: `image`, and `caption`, `comparison` and `structure` when asked for."""
    outputs = {"image": args.output_dir / f"{key}.png"}
    if args.save_caption:
        outputs["caption"] = args.output_dir / f"{key}.txt"
    if args.save_comparison:
        outputs["comparison"] = args.output_dir / COMPARISON_FOLDER / f"{key}.png"
    if args.save_structure:
        outputs["structure"] = args.output_dir / STRUCTURE_FOLDER / f"{key}.png"
    return outputs


def load_pipeline(args: argparse.Namespace) -> Any:
    """The pipeline on the chosen device, with the chosen scheduler and captioner."""
    from diffusers_sspir import SSPIRPipeline, demo_model_path

    device = _common.resolve_device(args.device)
    dtype = _common.resolve_dtype(args.dtype, device)
    if args.model is None:
        try:
            model = demo_model_path()
        except FileNotFoundError as error:
            raise CLIError(f"{error} Or pass --model.") from error
        _common.say(
            "no --model given: using the bundled demo model (a small model trained on 31 photos, not the paper's "
            "model; see docs/demo_model.md)"
        )
    else:
        model = os.path.expanduser(args.model)
    processes = _common.launch()
    copies = f", a copy in each of the {processes.world_size} processes with work" if processes.is_distributed else ""
    where = device.type if processes.is_distributed else device
    _common.say(f"loading {args.model or model} on {where} ({str(dtype).removeprefix('torch.')}){copies}")
    try:
        with _common.quiet_loading():
            pipe = SSPIRPipeline.from_pretrained(model, dtype=dtype)
    except Exception as error:  # diffusers raises many kinds; all mean the same to the user
        raise CLIError(
            f"--model {args.model}: cannot load an SSP-IR pipeline ({one_line(error)}). Pass a folder written by "
            "SSPIRPipeline.save_pretrained, or its Hub repo id."
        ) from error
    if args.scheduler is not None:
        try:
            pipe.scheduler = make_scheduler(args.scheduler, pipe.scheduler.config)
        except ValueError as error:  # an unknown name, or one whose package is missing
            raise CLIError(f"--scheduler {error}") from None
    pipe.to(device)
    if args.captioner is not None:
        pipe.captioner = _common.load_captioner_spec(args)
    elif hasattr(pipe.captioner, "load"):  # the model's own vision-language captioner: loaded now, or a clear stop
        try:
            with _common.quiet_loading():
                pipe.captioner.load()
        except OSError as error:
            raise CLIError(
                f"--model {args.model or model}: {one_line(error)} Or pass --captioner (none, fixed:TEXT or a model)."
            ) from error
    # disable=None: bars on a terminal only, so that logs and pipes get no progress-bar lines
    pipe.set_progress_bar_config(
        desc="denoising", leave=False, position=1, disable=None if processes.is_main else True
    )
    return pipe


def make_comparison(panels: list[tuple[str, Any]]) -> Any:
    """Images side by side, each under its label (PIL's default font, cut at the panel's edge), all at the size of
    the first.

    Args:
        panels (`list[tuple[str, PIL.Image.Image]]`): `(label, image)` pairs, left to right.

    Returns:
        `PIL.Image.Image`: `(len(panels) * width, label_height + height)`, RGB.
    """
    import PIL.Image
    import PIL.ImageDraw
    import PIL.ImageFont

    font = PIL.ImageFont.load_default()
    label_height = font.getbbox("Ag")[3] + 6
    width, height = panels[0][1].size
    canvas = PIL.Image.new("RGB", (width * len(panels), label_height + height), "white")
    for i, (label, image) in enumerate(panels):
        strip = PIL.Image.new("RGB", (width, label_height), "white")
        PIL.ImageDraw.Draw(strip).text((3, 3), label, fill="black", font=font)
        canvas.paste(strip, (i * width, 0))
        panel = image.convert("RGB").resize((width, height), PIL.Image.Resampling.BICUBIC)
        canvas.paste(panel, (i * width, label_height))
    return canvas


def restore_one(pipe: Any, path: Path, outputs: dict[str, Path], args: argparse.Namespace) -> None:
    """Restores one image and writes those of `outputs` that are missing (all of them with --overwrite)."""
    import PIL.Image
    import torch

    from ..files import read_image, rgb8, write_atomic

    low_quality = read_image(path)
    missing = {kind: output for kind, output in outputs.items() if args.overwrite or not output.exists()}
    kwargs = {"added_prompt": args.prompt} if args.prompt is not None else {}
    if set(missing) == {"caption"}:  # a re-run that adds --save-caption: the caption alone, no restoration
        caption = pipe.describe(
            low_quality, upscale=args.upscale, generator=torch.Generator().manual_seed(args.seed), **kwargs
        )[0]
        write_atomic(missing["caption"], caption)
        return
    if args.negative_prompt is not None:
        kwargs["negative_prompt"] = args.negative_prompt
    result = pipe(
        low_quality,
        upscale=args.upscale,
        num_inference_steps=args.steps,  # None: the model's recommended setting
        guidance_scale=args.guidance_scale,
        strength=args.strength,
        restoration_guidance_scale=args.restoration_guidance_scale,
        restoration_guidance_decay=args.restoration_guidance_decay,
        tile_size=args.tile_size,
        tile_overlap=args.tile_overlap,
        color_fix=color_fix_from_name(args.color_fix),
        color_fix_levels=args.color_fix_levels,
        generator=torch.Generator().manual_seed(args.seed),
        **kwargs,
    )
    restored = result.images[0]
    if "image" in missing:
        write_atomic(missing["image"], restored)
    if "caption" in missing:
        write_atomic(missing["caption"], result.prompts[0])
    if "comparison" in missing:
        upscaled = PIL.Image.fromarray(rgb8(low_quality)).resize(restored.size, PIL.Image.Resampling.BICUBIC)
        panels = [(f"input (bicubic x{args.upscale:g})", upscaled), ("structure prior", result.structure_images[0]),
                  ("SSP-IR", restored)]  # fmt: skip
        write_atomic(missing["comparison"], make_comparison(panels))
    if "structure" in missing:
        write_atomic(missing["structure"], result.structure_images[0])


def run(args: argparse.Namespace) -> int:
    check_arguments(args)
    inputs = _common.collect_inputs(args.inputs, args.recursive)
    _common.check_output_folder("-o", args.output_dir)
    if args.recursive:
        folders = [Path(item) for item in args.inputs if Path(item).is_dir()]
        _common.check_outside_inputs("-o", args.output_dir, folders)
    plans = {path: planned_outputs(key, args) for path, key in inputs.items()}
    _common.check_outputs_are_not_inputs(plans)

    def start() -> Callable[[Path, dict[str, Path]], None]:
        pipe = load_pipeline(args)
        check_tiling_arguments(args, pipe.vae_scale_factor)
        return lambda path, outputs: restore_one(pipe, path, outputs, args)

    from ..files import check_image_header

    return _common.run_each(plans, args, "restored", "restoring", start, check=check_image_header)
