"""Tiny training set-ups: Stable Diffusion / CLIP folders, a saved SSP-IR pipeline and image folders."""

import numpy as np
from PIL import Image

from diffusers_sspir import SSPIRPipeline
from diffusers_sspir.testing import make_sspir_components, save_stable_diffusion

RESOLUTION = 64


def smooth_image(seed: int, size: int = 96) -> Image.Image:
    """A photo-like test image: smooth colour gradients with a few sharp-edged shapes."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    channels = [np.sin(2 * np.pi * (rng.uniform(0.5, 2) * x + rng.uniform(0.5, 2) * y + rng.uniform())) for _ in "rgb"]
    image = np.stack(channels, -1) * 0.35 + 0.5
    side = max(size // 5, 2)
    for _ in range(3):
        top, left = rng.integers(0, size - side, 2)
        image[top : top + side, left : left + side] = rng.uniform(0, 1, 3)
    return Image.fromarray((image.clip(0, 1) * 255).round().astype(np.uint8))


def make_hq_folder(root, count: int = 3, captions: bool = True):
    """`root/gt/` with `count` images (and captions): an HQ-only training folder."""
    (root / "gt").mkdir(parents=True)
    (root / "captions").mkdir()
    for i in range(count):
        smooth_image(i).save(root / "gt" / f"img{i}.png")
        if captions:
            (root / "captions" / f"img{i}.txt").write_text(f"a photo number {i}")
    return root


def make_paired_folder(root, count: int = 2, scale: int = 4):
    """`root/gt/` + `root/lq/` (box-downscaled) pairs."""
    make_hq_folder(root, count)
    (root / "lq").mkdir()
    for path in sorted((root / "gt").iterdir()):
        image = Image.open(path)
        image.resize((image.width // scale, image.height // scale), Image.BOX).save(root / "lq" / path.name)
    return root


def sd_args(tmp_path) -> list[str]:
    """Options that start a full training run from tiny Stable Diffusion + CLIP folders."""
    _, sd_folder, clip_folder = save_stable_diffusion(tmp_path)
    return ["--pretrained_model_name_or_path", str(sd_folder), "--image_encoder", str(clip_folder),
            "--image_embed_dim", "12"]  # fmt: skip


def save_sspir(folder) -> SSPIRPipeline:
    pipe = SSPIRPipeline(**make_sspir_components())
    pipe.save_pretrained(folder)
    return pipe


def common_args(data, output, steps: int = 2) -> list[str]:
    return ["--train_data_dir", str(data), "--output_dir", str(output), "--resolution", str(RESOLUTION),
            "--train_batch_size", "1", "--max_train_steps", str(steps), "--checkpointing_steps", "2",
            "--report_to", "none", "--seed", "0"]  # fmt: skip
