"""Step 2 of the demo-model recipe: a small KL autoencoder (diffusers `AutoencoderKL`, 4x down, 4 latent channels).

Stable Diffusion's own VAE cannot be downloaded everywhere, so the demo model brings its own. Trained on random crops
of the training photos (flips, random 90-degree turns) with L1 + a tiny KL term, as SD's VAE minus its perceptual
and adversarial terms; its `scaling_factor` is set to 1 / std of the latents of the training crops, as SD does.

    python examples/demo_model/train_vae.py --train_dir demo_work/data/train --output_dir demo_work/vae

`--init_from VAE --decoder_only` then fine-tunes the decoder of a trained VAE for texture, its encoder (and so every
latent, and every model trained on them) unchanged: L1 + `--fft_weight` x the L1 distance of the Fourier spectra +
`--adversarial_weight` x a hinge GAN loss from a small patch discriminator trained from scratch alongside (SD's VAE
has a patch GAN too; no ImageNet weights are needed). Decoding the encoder's mean, as the pipeline decodes clean
latents. The scaling factor is kept.

    python examples/demo_model/train_vae.py --train_dir demo_work/data/train --output_dir demo_work/vae_texture \
        --init_from demo_work/vae --decoder_only --fft_weight 0.1 --adversarial_weight 0.05 --steps 1500

"""

import argparse
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from PIL import Image

from diffusers_sspir.files import list_images
from diffusers_sspir.training.losses import fft_l1

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


class PatchDiscriminator(torch.nn.Module):
    """A small PatchGAN (pix2pix's, narrower): strided 4x4 convolutions with leaky ReLU, one realness logit per
    patch of about 22 pixels. Spectral normalisation keeps it from overpowering the decoder on so little data."""

    def __init__(self, width: int = 32):
        super().__init__()
        sn = torch.nn.utils.parametrizations.spectral_norm
        self.layers = torch.nn.Sequential(
            sn(torch.nn.Conv2d(3, width, 4, stride=2, padding=1)),
            torch.nn.LeakyReLU(0.2),
            sn(torch.nn.Conv2d(width, 2 * width, 4, stride=2, padding=1)),
            torch.nn.LeakyReLU(0.2),
            sn(torch.nn.Conv2d(2 * width, 2 * width, 4, stride=1, padding=1)),
            torch.nn.LeakyReLU(0.2),
            sn(torch.nn.Conv2d(2 * width, 1, 4, stride=1, padding=1)),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)


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
    parser.add_argument("--init_from", type=Path, help="Start from this trained VAE instead of a new one.")
    parser.add_argument("--decoder_only", action="store_true", help="Train the decoder only (needs --init_from).")
    parser.add_argument("--fft_weight", type=float, default=0.0, help="Weight of the spectral L1 term.")
    parser.add_argument("--adversarial_weight", type=float, default=0.0, help="Weight of the patch-GAN term.")
    parser.add_argument(
        "--adversarial_start", type=int, default=200, help="Step from which the GAN term counts (after warm-up)."
    )
    args = parser.parse_args(argv)
    if args.decoder_only and args.init_from is None:
        parser.error("--decoder_only needs --init_from: a trained VAE whose encoder stays as it is")
    for name in ("fft_weight", "adversarial_weight", "kl_weight"):
        if not getattr(args, name) >= 0:
            parser.error(f"--{name} must be >= 0, got {getattr(args, name)}")
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
    if args.init_from is not None:
        vae = AutoencoderKL.from_pretrained(args.init_from, torch_dtype=torch.float32).to(args.device).train()
    else:
        vae = AutoencoderKL(**VAE_CONFIG).to(args.device).train()
    trained = vae.parameters()
    if args.decoder_only:
        vae.requires_grad_(False)
        for part in (vae.post_quant_conv, vae.decoder):
            part.requires_grad_(True)
        trained = [parameter for parameter in vae.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=args.learning_rate, weight_decay=0.0)
    discriminator = d_optimizer = None
    if args.adversarial_weight > 0:
        discriminator = PatchDiscriminator().to(args.device).train()
        d_optimizer = torch.optim.AdamW(discriminator.parameters(), lr=args.learning_rate, betas=(0.5, 0.9))
    warmup = max(1, min(200, args.steps // 10))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / args.steps)),
    )
    started = time.perf_counter()
    for step in range(args.steps):
        batch = random_crops(photos, args.batch_size, args.resolution, generator).to(args.device)
        if args.decoder_only:
            with torch.no_grad():
                latents = vae.encode(batch).latent_dist.mean
            reconstruction = vae.decode(latents).sample
            l1 = (reconstruction - batch).abs().mean()
            loss = l1
        else:
            posterior = vae.encode(batch).latent_dist
            reconstruction = vae.decode(posterior.sample()).sample
            l1 = (reconstruction - batch).abs().mean()
            loss = l1 + args.kl_weight * posterior.kl().mean()
        if args.fft_weight:
            loss = loss + args.fft_weight * fft_l1(reconstruction, batch)
        adversarial = discriminator is not None and step >= args.adversarial_start
        if adversarial:
            loss = loss - args.adversarial_weight * discriminator(reconstruction).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if discriminator is not None:  # hinge loss on real crops and this step's reconstructions
            real, fake = discriminator(batch), discriminator(reconstruction.detach())
            d_loss = F.relu(1 - real).mean() + F.relu(1 + fake).mean()
            d_optimizer.zero_grad(set_to_none=True)
            d_loss.backward()
            d_optimizer.step()
        if step % 100 == 0 or step == args.steps - 1:
            psnr = -10 * torch.log10(((reconstruction.detach() - batch) / 2).square().mean()).item()
            logger.info(f"step {step}: l1 {l1.item():.4f}, psnr {psnr:.2f} dB, {time.perf_counter() - started:.0f} s")

    vae.eval()
    with torch.no_grad():
        batch = random_crops(photos, 32, 128, np.random.default_rng(args.seed + 1)).to(args.device)
        latents = torch.cat([vae.encode(chunk).latent_dist.mean for chunk in batch.split(8)])
        reconstruction = torch.cat([vae.decode(chunk).sample for chunk in latents.split(8)])
    psnr = -10 * torch.log10(((reconstruction.clamp(-1, 1) - batch) / 2).square().mean()).item()
    if args.init_from is None:  # a fine-tuned decoder reads the latents the encoder always gave
        vae.register_to_config(scaling_factor=round(1.0 / latents.std().item(), 5))
    vae.save_pretrained(args.output_dir)
    logger.info(
        f"saved {args.output_dir}: scaling_factor {vae.config.scaling_factor}, reconstruction {psnr:.2f} dB PSNR on "
        f"32 training crops"
    )


if __name__ == "__main__":
    main()
