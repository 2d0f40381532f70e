"""Step 1 of the demo-model recipe: the training photos and the held-out evaluation crops.

Sources (the only ones used): scikit-image's bundled photos and the photos of Debian's `mate-backgrounds`
package (`apt-get install mate-backgrounds`, or `apt-get download mate-backgrounds && dpkg-deb -x ...`; pass the
folder that holds `nature/` with `--mate_dir`). The split is fixed below and was made before any training: the
held-out photos are never trained or tuned on.

    python examples/demo_model/prepare_data.py --mate_dir /usr/share/backgrounds/mate --output_dir demo_work/data

writes
    train/             the training photos (HQ only; training degrades them on the fly)
    holdout/gt/        16 held-out 256x256 crops for `sspir degrade` + `sspir evaluate`
    sample/gt/         one held-out 512x512 crop: the README's sample image is its degraded 128x128 version
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

# Large wallpapers are halved (Lanczos) so that a training crop holds a whole object rather than a patch of blur.
MATE_DOWNSCALE = 2

TRAIN_SKIMAGE = ("astronaut", "chelsea", "rocket")
TRAIN_MATE = (
    "nature/Aqua.jpg",
    "nature/Blinds.jpg",
    "nature/FreshFlower.jpg",
    "nature/Garden.jpg",
    "nature/GreenMeadow.jpg",
    "nature/RainDrops.jpg",
    "nature/Storm.jpg",
    "nature/TwoWings.jpg",
    "nature/Wood.jpg",
    "nature/YellowFlower.jpg",
)
HOLDOUT_SKIMAGE = ("coffee",)
HOLDOUT_MATE = ("nature/Dune.jpg", "nature/LadyBird.jpg")
HOLDOUT_CROP = 256
# Crops per held-out photo, on an even grid over the (downscaled) photo.
HOLDOUT_GRID = {"coffee": (1, 2), "LadyBird": (2, 4), "Dune": (2, 3)}
# The README's sample: a 512x512 crop of a held-out photo (it overlaps some evaluation crops; both are held out).
SAMPLE = ("LadyBird", (384, 144), 512)


def load_skimage(name: str) -> Image.Image:
    from skimage import data

    return Image.fromarray(getattr(data, name)()).convert("RGB")


def load_mate(mate_dir: Path, relative: str) -> Image.Image:
    image = Image.open(mate_dir / relative).convert("RGB")
    size = (image.width // MATE_DOWNSCALE, image.height // MATE_DOWNSCALE)
    return image.resize(size, Image.Resampling.LANCZOS)


def grid_crops(image: Image.Image, rows: int, cols: int, size: int) -> list[Image.Image]:
    """`rows` x `cols` crops of `size`, spread evenly over the image (first and last touch the borders)."""
    tops = np.linspace(0, image.height - size, rows).round().astype(int)
    lefts = np.linspace(0, image.width - size, cols).round().astype(int)
    return [image.crop((left, top, left + size, top + size)) for top in tops for left in lefts]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mate_dir", type=Path, default=Path("/usr/share/backgrounds/mate"))
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--overwrite", action="store_true", help="Write into an --output_dir that is not empty.")
    args = parser.parse_args(argv)

    missing = [name for name in (*TRAIN_MATE, *HOLDOUT_MATE) if not (args.mate_dir / name).is_file()]
    if missing:
        sys.exit(
            f"error: --mate_dir {args.mate_dir}: {len(missing)} photos missing (first: {missing[0]}); install "
            "Debian's mate-backgrounds package and pass the folder that holds nature/ (default "
            "/usr/share/backgrounds/mate)"
        )
    if args.output_dir.exists() and any(args.output_dir.iterdir()) and not args.overwrite:
        sys.exit(f"error: --output_dir {args.output_dir} is not empty; pass --overwrite to write into it")

    train = args.output_dir / "train"
    holdout = args.output_dir / "holdout" / "gt"
    sample = args.output_dir / "sample" / "gt"
    for folder in (train, holdout, sample):
        folder.mkdir(parents=True, exist_ok=True)

    for name in TRAIN_SKIMAGE:
        load_skimage(name).save(train / f"skimage_{name}.png")
    for relative in TRAIN_MATE:
        load_mate(args.mate_dir, relative).save(train / f"mate_{Path(relative).stem}.png")

    held_out = {name: load_skimage(name) for name in HOLDOUT_SKIMAGE}
    held_out |= {Path(relative).stem: load_mate(args.mate_dir, relative) for relative in HOLDOUT_MATE}
    count = 0
    for name, image in held_out.items():
        for index, crop in enumerate(grid_crops(image, *HOLDOUT_GRID[name], HOLDOUT_CROP)):
            crop.save(holdout / f"{name}_{index:02d}.png")
            count += 1
    name, (left, top), size = SAMPLE
    held_out[name].crop((left, top, left + size, top + size)).save(sample / f"{name.lower()}.png")
    print(f"{len(TRAIN_SKIMAGE) + len(TRAIN_MATE)} training photos in {train}, {count} held-out crops in {holdout}")


if __name__ == "__main__":
    main()
