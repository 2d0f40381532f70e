"""Full SSP-IR training from Stable Diffusion 1.5 (or from a saved SSP-IR pipeline): the ControlNet, structure
processor, dual-prior branches and refine layer train; everything else is frozen (`--train_unet` trains the
whole UNet too, e.g. for a model trained from scratch; `--train_restorer_only` trains the structure prior's
full-resolution restorer alone, for fidelity).

Run it with `accelerate launch examples/train_sspir.py --help` (or `python -m diffusers_sspir.training.train_sspir`).
"""

import argparse

import torch

from ..models import RRDBNet, StructureProcessor
from ..pipelines import SSPIRPipeline
from .arguments import FULL
from .module import (
    RestorerTrainingModule,
    SSPIRTrainingModule,
    select_full_training_parameters,
    select_restorer_parameters,
)
from .trainer import TrainingParts, TrainingSetupError, run_script


def load_pipeline(args: argparse.Namespace) -> SSPIRPipeline:
    """The pipeline the run starts from (float32): a saved SSP-IR folder, or an untrained SSP-IR built from Stable
    Diffusion and CLIP; with `--structure_residual_blocks`, its structure processor given that full-resolution
    restorer; with `--upscaler`, that stage-1 upscaler in front."""
    if args.pretrained_sspir:
        pipe = SSPIRPipeline.from_pretrained(args.pretrained_sspir, dtype=torch.float32)
    else:
        pipe = SSPIRPipeline.from_stable_diffusion(
            args.pretrained_model_name_or_path,
            image_encoder=args.image_encoder,
            branch_type=args.branch_type,
            image_embed_dim=args.image_embed_dim,
            pixel_attention=not args.no_pixel_attention,
            dtype=torch.float32,
        )
    if args.structure_residual_blocks is not None:
        processor = with_restorer(
            pipe.structure_processor, args.structure_residual_blocks, args.structure_residual_channels
        )
        pipe.register_modules(structure_processor=processor)
    if getattr(args, "upscaler", None):  # absent from the run.json of runs before the option
        pipe.upscaler = RRDBNet.from_pretrained(args.upscaler, torch_dtype=torch.float32).eval()
    return pipe


def with_restorer(processor: StructureProcessor, blocks: int, channels: int) -> StructureProcessor:
    """`processor` with a full-resolution restorer of `blocks` × `channels`: itself when it has that restorer, a copy
    with a new one (at identity, so it computes what `processor` did) when it has none. A different trained restorer
    is refused rather than thrown away."""
    config = processor.config
    have = (config.get("residual_blocks", 0), config.get("residual_channels", 64))
    if have == (blocks, channels) or (blocks == 0 and have[0] == 0):
        return processor
    if have[0]:
        raise TrainingSetupError(
            f"--structure_residual_blocks {blocks} --structure_residual_channels {channels}: the loaded structure "
            f"processor already has a restorer of {have[0]} blocks x {have[1]} channels; leave both options out to "
            "train it as it is."
        )
    # Without its private keys: diffusers' from_config drops those listed in `_use_default_values`, which for a
    # config saved before these options are the restorer's own, so the new values would be ignored.
    settings = {key: value for key, value in config.items() if not key.startswith("_")}
    grown = StructureProcessor.from_config({**settings, "residual_blocks": blocks, "residual_channels": channels})
    if grown.preprocessor is None or len(grown.preprocessor.body) != blocks:
        raise RuntimeError(f"The structure processor was not given its restorer ({dict(grown.config)}).")
    missing = grown.load_state_dict(processor.state_dict(), strict=False).missing_keys
    if any(not key.startswith("preprocessor.") for key in missing):
        raise RuntimeError(f"The structure processor's weights {missing[:3]} did not carry over.")
    return grown.to(processor.device, processor.dtype)


def build(args: argparse.Namespace) -> TrainingParts:
    pipe = load_pipeline(args)
    if getattr(args, "train_restorer_only", False):  # absent from the run.json of runs before the option
        try:
            module = RestorerTrainingModule.from_pipeline(pipe)
        except ValueError as error:  # no restorer to train
            raise TrainingSetupError(
                f"--train_restorer_only: {error} Give it one with --structure_residual_blocks (and "
                "--structure_residual_channels)."
            ) from None
        trainable = select_restorer_parameters(module)
        return TrainingParts(pipe, module, trainable, rgb_weights=(args.rgb_l1_weight, args.rgb_fft_weight))
    module = SSPIRTrainingModule.from_pipeline(pipe)
    trainable = select_full_training_parameters(
        module, train_unet=args.train_unet, freeze_text_attention=args.freeze_text_attention
    )
    return TrainingParts(pipe, module, trainable, rgb_weights=(args.rgb_l1_weight, args.rgb_fft_weight))


def save_final(args: argparse.Namespace, parts: TrainingParts) -> None:
    """Saves the complete pipeline (float32) to `--output_dir`. The frozen models ran in a lower precision under
    mixed precision, so they are loaded again from where the run started and only the trained weights are taken
    from the run."""
    pipe = parts.pipe
    if pipe.vae.dtype != torch.float32:  # the frozen models ran in the mixed-precision dtype
        pipe = load_pipeline(args)
        trained = {name: parameter.detach().float().cpu() for name, parameter in parts.trainable.items()}
        unexpected = SSPIRTrainingModule.from_pipeline(pipe).load_state_dict(trained, strict=False).unexpected_keys
        if unexpected:
            raise RuntimeError(f"Trained weights {unexpected[:3]} have no place in the reloaded pipeline.")
    pipe.save_pretrained(args.output_dir)


def main(argv: list[str] | None = None) -> None:
    run_script(FULL, build, save_final, argv)


if __name__ == "__main__":
    main()
