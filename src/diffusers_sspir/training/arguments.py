"""Command-line options of the training scripts (`examples/train_sspir.py`, `examples/train_sspir_lora.py`)."""

import argparse
import os

import PIL.Image

from ..defaults import BRANCH_TYPES
from ..validation import check_finite, check_integer, check_seed, check_setting

FULL, LORA = "full", "lora"


def as_flag(check, name: str, value, **bounds):
    """Runs a `diffusers_sspir.validation` check on option `--name`, with the option's name in the message."""
    try:
        return check(name, value, **bounds)
    except ValueError as error:
        raise ValueError(str(error).replace(f"`{name}`", f"--{name}")) from None


MIXED_PRECISION = ("no", "fp16", "bf16")
LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial")
REPORT_TO = ("auto", "none", "tensorboard", "wandb", "all")

FULL_EXAMPLE = """examples:
  # single GPU, from Stable Diffusion 1.5 and CLIP ViT-L/14 folders, HQ photos degraded on the fly
  accelerate launch examples/train_sspir.py --pretrained_model_name_or_path ./stable-diffusion-v1-5 \\
      --image_encoder ./clip-vit-large-patch14 --train_data_dir ./data/train --output_dir ./sspir-run \\
      --resolution 512 --train_batch_size 16 --gradient_accumulation_steps 2 --mixed_precision fp16 \\
      --gradient_checkpointing --max_train_steps 100000 --checkpointing_steps 2000 \\
      --resume_from_checkpoint latest
"""
LORA_EXAMPLE = """examples:
  accelerate launch examples/train_sspir_lora.py --pretrained_sspir ./sspir-run --train_data_dir ./faces \\
      --output_dir ./sspir-faces-lora --rank 16 --max_train_steps 2000 --mixed_precision fp16
  # then: pipe = SSPIRPipeline.from_pretrained("./sspir-run"); pipe.load_lora_weights("./sspir-faces-lora")
"""


def build_parser(mode: str) -> argparse.ArgumentParser:
    """The option parser of the full (`mode="full"`) or LoRA (`mode="lora"`) training script."""
    parser = argparse.ArgumentParser(
        description=(
            "Train SSP-IR from Stable Diffusion 1.5 (ControlNet, structure processor, dual-prior branches, refine "
            "layer; everything else frozen unless --train_unet)."
            if mode == FULL
            else "Fine-tune a trained SSP-IR pipeline on a domain with LoRA adapters (only the adapters train)."
        ),
        epilog=FULL_EXAMPLE if mode == FULL else LORA_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    model = parser.add_argument_group("model")
    if mode == FULL:
        model.add_argument("--pretrained_model_name_or_path", help="Stable Diffusion 1.5 folder or Hub id.")
        model.add_argument("--image_encoder", help="CLIP vision encoder folder or Hub id (with its processor).")
        model.add_argument(
            "--branch_type",
            choices=BRANCH_TYPES,
            default="transformer",
            help="Dual-prior branches: 'transformer' (the paper's layout, ~998 M trainable parameters at SD-1.5 "
            "size) or 'attention' (light, ~443 M). Ignored with --pretrained_sspir (the saved model's kind is used).",
        )
        model.add_argument("--image_embed_dim", type=int, default=512, help="Width of the refined image tokens.")
        model.add_argument("--no_pixel_attention", action="store_true", help="Build without pixel attention.")
        model.add_argument(
            "--structure_residual_blocks",
            type=int,
            default=None,
            help="Give the structure processor a full-resolution restorer (MSRResNet at scale 1, the research code's "
            "use_srresnet; 8 blocks there) of this many residual blocks, added at identity to a --pretrained_sspir "
            "model that has none. Default: the loaded model's (none when built from Stable Diffusion).",
        )
        model.add_argument(
            "--structure_residual_channels", type=int, default=64, help="Width of that restorer (the research's 64)."
        )
        model.add_argument(
            "--upscaler",
            help="A stage-1 upscaler folder (an RRDBNet saved by `save_pretrained`, such as "
            "scripts/convert_realesrgan_ncnn.py writes) to put in front of every prior, frozen, in place of bicubic "
            "(the pipeline's `upscaler`; saved with the model). Default: the loaded model's (none from SD).",
        )
        model.add_argument(
            "--train_unet",
            action="store_true",
            help="Train all of the UNet too, not only its new branches (a model trained from scratch, or a "
            "whole-UNet domain fine-tune).",
        )
        model.add_argument(
            "--train_restorer_only",
            action="store_true",
            help="Train only the structure processor's full-resolution restorer, on the structure loss of its own "
            "output (--rgb_l1_weight, --rgb_fft_weight): nothing else runs, and the rest of the model is saved as "
            "loaded. Pretrains the structure prior for fidelity, as BasicSR trains MSRResNet for PSNR.",
        )
        model.add_argument(
            "--freeze_text_attention",
            action="store_true",
            help="Keep the text cross-attention projections (attn2.to_q/k/v/out) of the UNet and ControlNet as "
            "loaded.",
        )
    model.add_argument(
        "--pretrained_sspir",
        help="A saved SSP-IR pipeline folder to start from"
        + (" (instead of Stable Diffusion + CLIP)." if mode == FULL else "."),
        required=mode == LORA,
    )

    data = parser.add_argument_group("data")
    data.add_argument(
        "--train_data_dir",
        required=True,
        help="gt/ (+ optional lq/, captions/) folder, or a folder of HQ images degraded on the fly.",
    )
    data.add_argument(
        "--train_data_recursive",
        action="store_true",
        help="Also use the images in subfolders (an LSDIR-like tree): gt/, lq/ and captions/ files are matched by "
        "their path inside those folders.",
    )
    data.add_argument("--resolution", type=int, default=512, help="Training crop size (HQ pixels).")
    data.add_argument("--scale", type=int, default=4, help="Super-resolution factor of the LQ images.")
    data.add_argument(
        "--null_text_ratio", type=float, default=0.5, help="Probability of training a sample without its caption."
    )
    data.add_argument("--no_random_flip", action="store_true", help="Do not flip crops horizontally.")
    data.add_argument(
        "--skip_bad_files", action="store_true", help="Train on the good pairs of a folder with problems."
    )
    data.add_argument(
        "--degradation_config", help="JSON file of RealESRGANDegradationConfig fields to override (HQ-only data)."
    )
    data.add_argument(
        "--gt_usm",
        action="store_true",
        help="Unsharp-mask the ground truth before degrading it and train towards the sharpened image (Real-ESRNet's "
        "gt_usm; HQ-only data).",
    )
    data.add_argument("--dataloader_num_workers", type=int, default=0)

    train = parser.add_argument_group("optimisation")
    train.add_argument("--output_dir", required=True, help="Checkpoints, logs and the final model go here.")
    train.add_argument(
        "--overwrite_output_dir", action="store_true", help="Start afresh in an output folder that holds a run."
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--train_batch_size", type=int, default=4, help="Batch size per device.")
    train.add_argument("--gradient_accumulation_steps", type=int, default=1)
    train.add_argument("--max_train_steps", type=int, default=100_000 if mode == FULL else 2_000)
    train.add_argument("--learning_rate", type=float, default=5e-5 if mode == FULL else 1e-4)
    train.add_argument("--scale_lr", action="store_true", help="Multiply the lr by batch × accumulation × GPUs.")
    train.add_argument("--lr_scheduler", default="constant", choices=LR_SCHEDULERS)
    train.add_argument("--lr_warmup_steps", type=int, default=0)
    train.add_argument("--adam_beta1", type=float, default=0.9)
    train.add_argument("--adam_beta2", type=float, default=0.999)
    train.add_argument("--adam_weight_decay", type=float, default=1e-2)
    train.add_argument("--adam_epsilon", type=float, default=1e-8)
    train.add_argument("--max_grad_norm", type=float, default=1.0)
    train.add_argument("--use_8bit_adam", action="store_true", help="bitsandbytes' 8-bit AdamW (CUDA only).")
    train.add_argument(
        "--mixed_precision", choices=MIXED_PRECISION, default=None, help="Defaults to accelerate's config."
    )
    train.add_argument("--gradient_checkpointing", action="store_true", help="Trade compute for memory.")
    train.add_argument("--allow_tf32", action="store_true", help="TF32 matmuls on Ampere and newer GPUs.")
    if mode == FULL:
        train.add_argument("--rgb_l1_weight", type=float, default=0.1, help="Structure processor L1 weight.")
        train.add_argument("--rgb_fft_weight", type=float, default=0.01, help="Structure processor FFT-L1 weight.")
    else:
        train.add_argument("--rank", type=int, default=16, help="LoRA rank.")
        train.add_argument("--lora_alpha", type=float, default=None, help="LoRA alpha (defaults to the rank).")
        train.add_argument("--lora_dropout", type=float, default=0.0)
        train.add_argument(
            "--lora_target_modules",
            default="to_q,to_k,to_v,to_out.0",
            help="Comma-separated attention projections that get adapters.",
        )
        train.add_argument(
            "--lora_on_branches", action="store_true", help="Also adapt the dual-prior attention branches."
        )
        train.add_argument("--train_controlnet_lora", action="store_true", help="Also adapt the ControlNet.")

    keep = parser.add_argument_group("checkpoints, validation and logs")
    keep.add_argument("--checkpointing_steps", type=int, default=500)
    keep.add_argument("--checkpoints_total_limit", type=int, default=None, help="Keep at most this many.")
    keep.add_argument(
        "--resume_from_checkpoint", default=None, help="A checkpoint folder, or 'latest' (starts afresh if none)."
    )
    keep.add_argument("--validation_image", nargs="+", default=[], help="Low-quality images restored for checks.")
    keep.add_argument("--validation_prompt", default="", help="Prompt used for the validation images.")
    keep.add_argument("--validation_steps", type=int, default=500, help="Restore the validation images every N.")
    keep.add_argument("--validation_inference_steps", type=int, default=20)
    keep.add_argument("--report_to", default="auto", choices=REPORT_TO, help="auto: tensorboard/wandb if installed.")
    keep.add_argument("--logging_dir", default="logs", help="Relative to --output_dir.")
    keep.add_argument("--tracker_project_name", default="sspir" if mode == FULL else "sspir-lora")
    return parser


def check_args(args: argparse.Namespace, mode: str) -> None:
    """Raises a `ValueError` naming the option for any value the training cannot use."""
    if mode == FULL and not args.pretrained_sspir:
        if not (args.pretrained_model_name_or_path and args.image_encoder):
            raise ValueError(
                "Pass --pretrained_model_name_or_path (Stable Diffusion 1.5) and --image_encoder (CLIP vision) to "
                "start from Stable Diffusion, or --pretrained_sspir to continue from a saved SSP-IR pipeline."
            )
    positive = ["resolution", "scale", "train_batch_size", "gradient_accumulation_steps", "max_train_steps"]
    positive += ["checkpointing_steps", "validation_steps", "validation_inference_steps"]
    positive += ["rank"] if mode == LORA else ["image_embed_dim", "structure_residual_channels"]
    for name in positive:
        as_flag(check_integer, name, getattr(args, name), minimum=1)
    if mode == FULL and args.structure_residual_blocks is not None:
        as_flag(check_integer, "structure_residual_blocks", args.structure_residual_blocks, minimum=0)
    if mode == FULL and args.train_restorer_only:
        for name in ("train_unet", "freeze_text_attention", "gradient_checkpointing"):
            if getattr(args, name):
                raise ValueError(f"--{name} has no effect with --train_restorer_only (only the restorer runs).")
    for name in ("lr_warmup_steps", "dataloader_num_workers"):
        as_flag(check_integer, name, getattr(args, name), minimum=0)
    as_flag(check_seed, "seed", args.seed)
    if args.resolution % 8 or args.resolution % args.scale:
        raise ValueError(f"--resolution must be a multiple of 8 and of --scale ({args.scale}), got {args.resolution}.")
    as_flag(check_finite, "null_text_ratio", args.null_text_ratio, minimum=0, maximum=1)
    as_flag(check_finite, "max_grad_norm", args.max_grad_norm, minimum=0)
    as_flag(check_setting, "learning_rate", args.learning_rate)
    if args.checkpoints_total_limit is not None and args.checkpoints_total_limit < 1:
        raise ValueError(f"--checkpoints_total_limit must be at least 1, got {args.checkpoints_total_limit}.")
    if not os.path.isdir(args.train_data_dir):
        raise ValueError(f"--train_data_dir {args.train_data_dir} is not a folder.")
    for path in args.validation_image:
        if not os.path.isfile(path):
            raise ValueError(f"--validation_image {path} is not a file.")
        try:
            with PIL.Image.open(path) as image:
                image.verify()
        except (OSError, SyntaxError) as error:
            raise ValueError(f"--validation_image {path} is not a readable image ({error}).") from None
    if args.degradation_config and not os.path.isfile(args.degradation_config):
        raise ValueError(f"--degradation_config {args.degradation_config} is not a file.")


def parse_args(mode: str, argv: list[str] | None = None) -> argparse.Namespace:
    """Parses and checks the options of the full or LoRA training script."""
    parser = build_parser(mode)
    args = parser.parse_args(argv)
    try:
        check_args(args, mode)
    except ValueError as error:
        parser.error(str(error))
    args.script = mode  # recorded in every checkpoint's run.json, for `python -m diffusers_sspir.training.export`
    return args
