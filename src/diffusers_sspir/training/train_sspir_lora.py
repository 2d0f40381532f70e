"""LoRA fine-tuning of a trained SSP-IR pipeline on a domain (faces, documents, microscopy…): peft adapters on the
UNet's attention (optionally the dual-prior branches and the ControlNet); only the adapters train.

The adapters are saved so that `pipe.load_lora_weights(output_dir)` brings back the UNet's, and
`pipe.controlnet.load_lora_adapter(output_dir + "/controlnet")` the ControlNet's.

Run it with `accelerate launch examples/train_sspir_lora.py --help`.
"""

import argparse
import os
import re

import torch
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

from ..models.branches import BRANCH_KEY_MARKERS
from ..pipelines import SSPIRPipeline
from .arguments import LORA
from .module import SSPIRTrainingModule, trainable_parameters
from .trainer import TrainingParts, run_script


def lora_target_modules(names: str, on_branches: bool) -> str:
    """A peft `target_modules` pattern (matched against full module names) for the given projection names, with or
    without the dual-prior branches' projections."""
    projections = [name.strip() for name in names.split(",") if name.strip()]
    if not projections:
        raise ValueError(f"--lora_target_modules names no module: {names!r}.")
    alternatives = "|".join(re.escape(name) for name in projections)
    branches = "|".join(re.escape(marker) for marker in BRANCH_KEY_MARKERS)
    exclude = "" if on_branches else rf"(?!.*({branches}))"
    return rf"^{exclude}.*\.({alternatives})$"


def lora_config(args: argparse.Namespace) -> LoraConfig:
    return LoraConfig(
        r=args.rank,
        lora_alpha=args.lora_alpha if args.lora_alpha is not None else args.rank,
        lora_dropout=args.lora_dropout,
        init_lora_weights="gaussian",
        target_modules=lora_target_modules(args.lora_target_modules, args.lora_on_branches),
    )


def build(args: argparse.Namespace) -> TrainingParts:
    pipe = SSPIRPipeline.from_pretrained(args.pretrained_sspir, dtype=torch.float32)
    module = SSPIRTrainingModule.from_pipeline(pipe)
    module.requires_grad_(False)
    config = lora_config(args)
    pipe.unet.add_adapter(config)
    if args.train_controlnet_lora:
        pipe.controlnet.add_adapter(config)
    return TrainingParts(pipe, module, trainable_parameters(module), rgb_weights=None)


def save_final(args: argparse.Namespace, parts: TrainingParts) -> None:
    """Writes `pytorch_lora_weights.safetensors` (UNet) and, with `--train_controlnet_lora`, `controlnet/`."""
    pipe = parts.pipe
    SSPIRPipeline.save_lora_weights(
        args.output_dir, unet_lora_layers=get_peft_model_state_dict(pipe.unet), safe_serialization=True
    )
    if args.train_controlnet_lora:
        pipe.controlnet.save_lora_adapter(os.path.join(args.output_dir, "controlnet"), safe_serialization=True)


def main(argv: list[str] | None = None) -> None:
    run_script(LORA, build, save_final, argv)


if __name__ == "__main__":
    main()
