"""Export a training checkpoint (`checkpoint-<step>/` of `examples/train_sspir.py` or `train_sspir_lora.py`) to
what the finished run writes: a complete pipeline folder (full training) or LoRA files (LoRA training).

    python -m diffusers_sspir.training.export sspir-run/checkpoint-2000 --output sspir-step2000

The checkpoint holds only the trained weights; the rest is rebuilt from the model the run started from, as recorded
in the checkpoint's `run.json` (the run's options), so that model must still be where the run found it.
"""

import argparse
import json
import os
import shutil
import sys

import torch
from safetensors.torch import load_file

from ..console import echo
from .arguments import FULL, LORA
from .checkpoint import RUN_FILE


class ExportError(ValueError):
    """A checkpoint that cannot be exported, or an output that must not be replaced (the message says why)."""


def _check_output(output: str, overwrite: bool) -> None:
    if not os.path.exists(output) or not os.listdir(output):
        return
    if not overwrite:
        raise ExportError(f"--output {output} already exists; pass --overwrite to replace it.")
    if not any(
        os.path.isfile(os.path.join(output, name)) for name in ("model_index.json", "pytorch_lora_weights.safetensors")
    ):
        raise ExportError(f"--output {output} is not a saved model; it is not replaced even with --overwrite.")


def export_checkpoint(checkpoint: str, output: str, overwrite: bool = False) -> str:
    """Writes what `checkpoint` amounts to into `output` and returns what it wrote ("pipeline" or "LoRA").

    Args:
        checkpoint (`str`): a `checkpoint-<step>/` folder of a training run.
        output (`str`): the folder to write (a pipeline folder, or LoRA files for a LoRA run).
        overwrite (`bool`, defaults to `False`): replace an existing model at `output`.
    """
    run_file = os.path.join(checkpoint, RUN_FILE)
    weights = os.path.join(checkpoint, "trainable.safetensors")
    if not os.path.isfile(weights):
        raise ExportError(f"{checkpoint} is not a training checkpoint: it has no trainable.safetensors.")
    if not os.path.isfile(run_file):
        raise ExportError(
            f"{checkpoint} has no {RUN_FILE} (written since diffusers-sspir 0.2): export it by resuming the run with "
            "its options and --max_train_steps at this step."
        )
    _check_output(output, overwrite)
    with open(run_file, encoding="utf-8") as file:
        args = argparse.Namespace(**json.load(file))
    if args.script == FULL:
        from .train_sspir import build, save_final
    elif args.script == LORA:
        from .train_sspir_lora import build, save_final
    else:
        raise ExportError(f"{run_file}: unknown training script {args.script!r}.")
    parts = build(args)
    saved = load_file(weights)
    if set(saved) != set(parts.trainable):
        missing, unexpected = sorted(set(parts.trainable) - set(saved)), sorted(set(saved) - set(parts.trainable))
        raise ExportError(
            f"{checkpoint} does not match the model its run started from (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}); was the starting model changed since?"
        )
    with torch.no_grad():
        for name, parameter in parts.trainable.items():
            parameter.copy_(saved[name])
    staging = f"{output.rstrip(os.sep)}.partial-{os.getpid()}"
    try:
        save_final(argparse.Namespace(**{**vars(args), "output_dir": staging}), parts)
        if os.path.isdir(output):
            shutil.rmtree(output)  # checked above: empty, or a saved model the user asked to replace
        os.replace(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return "pipeline" if args.script == FULL else "LoRA"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a checkpoint-<step>/ folder of a training run")
    parser.add_argument("--output", required=True, help="folder to write the pipeline (or LoRA files) to")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing model at --output")
    args = parser.parse_args(argv)
    try:
        kind = export_checkpoint(args.checkpoint, args.output, args.overwrite)
    except (ExportError, OSError) as error:
        echo(f"error: {error}", err=True)
        return 2
    loader = "SSPIRPipeline.from_pretrained" if kind == "pipeline" else "pipe.load_lora_weights"
    echo(f"wrote the {kind} of {args.checkpoint} to {args.output}; load it with {loader}({args.output!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
