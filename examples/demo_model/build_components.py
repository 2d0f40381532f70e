"""Step 3 of the demo-model recipe: the small Stable Diffusion-shaped model and CLIP vision encoder that SSP-IR
training starts from, built from configs (nothing is downloaded).

    python examples/demo_model/build_components.py --vae demo_work/vae --output_dir demo_work/base

writes `sd/` (a `StableDiffusionPipeline` folder: the trained VAE of step 2, a random CLIP text encoder with a
byte-level tokenizer, a random UNet, SD-1.5's scheduler config) and `clip/` (a random CLIP vision encoder and its
image processor), which `examples/train_sspir.py --pretrained_model_name_or_path sd --image_encoder clip` reads as
it reads the real SD-1.5 and CLIP ViT-L/14.

No captions exist for the training photos and a random text encoder knows no language, so the UNet's text
cross-attention is built with a zero output projection and kept frozen in training (`--freeze_text_attention`):
prompts have no effect on the demo model. The CLIP vision encoder stays random and frozen as well; the refine layer
learns what it can from its features.
"""

import argparse
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import (
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPVisionConfig,
    CLIPVisionModel,
)

from diffusers_sspir import testing

UNET_CONFIG = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    block_out_channels=(32, 64, 128),
    layers_per_block=1,
    down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    cross_attention_dim=32,
    attention_head_dim=4,
    norm_num_groups=8,
)
TEXT_ENCODER_CONFIG = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=1,
    num_attention_heads=2,
    max_position_embeddings=77,
    projection_dim=32,
)
IMAGE_ENCODER_CONFIG = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=2,
    image_size=64,
    patch_size=8,
    projection_dim=64,
)
# Stable Diffusion 1.5's noise schedule, with v-prediction (as SD 2): steadier than ε at the nearly pure-noise
# first steps of a small model.
SCHEDULER_CONFIG = {**testing.SCHEDULER_CONFIG, "prediction_type": "v_prediction"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vae", type=Path, required=True, help="The VAE folder written by train_vae.py.")
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="Replace the models already in --output_dir.")
    args = parser.parse_args(argv)
    if (args.output_dir / "sd").exists() and not args.overwrite:
        parser.error(f"--output_dir {args.output_dir} already holds sd/; pass --overwrite to replace it")

    torch.manual_seed(args.seed)
    tokenizer = testing.make_tokenizer("bytes")
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            **TEXT_ENCODER_CONFIG,
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    unet = UNet2DConditionModel(**UNET_CONFIG)
    for name, module in unet.named_modules():
        if name.endswith("attn2"):
            torch.nn.init.zeros_(module.to_out[0].weight)
            torch.nn.init.zeros_(module.to_out[0].bias)
    sd = StableDiffusionPipeline(
        vae=AutoencoderKL.from_pretrained(args.vae),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(**SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    sd.save_pretrained(args.output_dir / "sd")
    side = IMAGE_ENCODER_CONFIG["image_size"]
    CLIPVisionModel(CLIPVisionConfig(**IMAGE_ENCODER_CONFIG)).save_pretrained(args.output_dir / "clip")
    CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side}).save_pretrained(
        args.output_dir / "clip"
    )
    print(f"saved {args.output_dir / 'sd'} and {args.output_dir / 'clip'}")


if __name__ == "__main__":
    main()
