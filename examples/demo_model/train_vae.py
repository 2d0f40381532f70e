"""Step 2 of the demo-model recipe: a small KL autoencoder (diffusers `AutoencoderKL`, 4x down, 4 latent channels).

Stable Diffusion's own VAE cannot be downloaded everywhere, so the demo model brings its own. Trained on random crops
of the training photos (flips, random 90-degree turns) with L1 + a tiny KL term, as SD's VAE minus its perceptual
and adversarial terms; its `scaling_factor` is set to 1 / std of the latents of the training crops, as SD does.

    python examples/demo_model/train_vae.py --train_dir demo_work/data/train --output_dir demo_work/vae
"""

import argparse
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL
from PIL import Image

from diffusers_sspir.files import list_images

logger = logging.getLogger("train_vae")

VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(16, 32, 64),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=8,
    sample_size=256,
    mid_block_add_attention=False,
)


def random_crops(photos: list[np.ndarray], count: int, size: int, generator: np.random.Generator) -> torch.Tensor:
    """`count` random `size` crops, flipped and turned at random, as a `(count, 3, size, size)` batch in [-1, 1]."""
    crops = []
    for _ in range(count):
        photo = photos[generator.integers(len(photos))]
        top = generator.integers(photo.shape[0] - size + 1)
        left = generator.integers(photo.shape[1] - size + 1)
        crop = np.rot90(photo[top : top + size, left : left + size], k=generator.integers(4))
        if generator.random() < 0.5:
            crop = crop[:, ::-1]
        crops.append(np.ascontiguousarray(crop))
    batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float()
    return batch / 127.5 - 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train_dir", type=Path, required=True)
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--kl_weight", type=float, default=1e-6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--overwrite", action="store_true", help="Replace a VAE already in --output_dir.")
    args = parser.parse_args(argv)
    for name in ("steps", "batch_size", "resolution"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be a positive integer, got {getattr(args, name)}")
    if (args.output_dir / "config.json").exists() and not args.overwrite:
        parser.error(f"--output_dir {args.output_dir} already holds a VAE; pass --overwrite to replace it")
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    torch.manual_seed(args.seed)
    generator = np.random.default_rng(args.seed)
    photos = [np.asarray(Image.open(path).convert("RGB")) for path in list_images(args.train_dir)]
    side = max(args.resolution, 128)  # the final check uses 128-pixel crops
    if not photos or min(min(photo.shape[:2]) for photo in photos) < side:
        parser.error(f"--train_dir {args.train_dir} needs images of at least {side}x{side} pixels")
    vae = AutoencoderKL(**VAE_CONFIG).to(args.device).train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=args.learning_rate, weight_decay=0.0)
    warmup = max(1, min(200, args.steps // 10))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / args.steps)),
    )
    started = time.perf_counter()
    for step in range(args.steps):
        batch = random_crops(photos, args.batch_size, args.resolution, generator).to(args.device)
        posterior = vae.encode(batch).latent_dist
        reconstruction = vae.decode(posterior.sample()).sample
        l1 = (reconstruction - batch).abs().mean()
        loss = l1 + args.kl_weight * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == args.steps - 1:
            psnr = -10 * torch.log10(((reconstruction.detach() - batch) / 2).square().mean()).item()
            logger.info(f"step {step}: l1 {l1.item():.4f}, psnr {psnr:.2f} dB, {time.perf_counter() - started:.0f} s")

    vae.eval()
    with torch.no_grad():
        batch = random_crops(photos, 32, 128, np.random.default_rng(args.seed + 1)).to(args.device)
        latents = torch.cat([vae.encode(chunk).latent_dist.mean for chunk in batch.split(8)])
        reconstruction = torch.cat([vae.decode(chunk).sample for chunk in latents.split(8)])
    psnr = -10 * torch.log10(((reconstruction.clamp(-1, 1) - batch) / 2).square().mean()).item()
    vae.register_to_config(scaling_factor=round(1.0 / latents.std().item(), 5))
    vae.save_pretrained(args.output_dir)
    logger.info(
        f"saved {args.output_dir}: scaling_factor {vae.config.scaling_factor}, reconstruction {psnr:.2f} dB PSNR on "
        f"32 training crops"
    )


if __name__ == "__main__":
    main()
