"""Step 1 of the demo-model recipe: the photos, split by photo into training, validation and held-out sets.

Sources (the only ones used, photographs only, each listed below with its licence from its package's `copyright`
file): scikit-image's bundled photos and the photos in Debian's `mate-backgrounds`, `lomiri-wallpapers-16.04`,
`lomiri-wallpapers-20.04` and `plasma-workspace-wallpapers` (the illustrations and abstract wallpapers of those
packages are left out). `--fetch` gets the packages with `apt-get download` and unpacks them with `dpkg-deb -x` into
`--debian_dir` (nothing is installed); every photo is checked to be there before anything is written.

    python examples/demo_model/prepare_data.py --fetch --debian_dir demo_work/debian --output_dir demo_work/data

writes
    train/             the training photos (HQ only; training degrades them on the fly)
    validation/gt/     256x256 crops of the validation photos, for every decision (steps, settings, defaults)
    holdout/gt/        256x256 crops of the held-out photos, scored once at the end (the first 16 are the crops of
                       the 0.1 demo model's table: coffee, Dune, LadyBird)
    sample/gt/         one held-out 512x512 crop: the README's sample image is its degraded 128x128 version
    photos.tsv         every photo used: split, source, file, author, licence
"""

import argparse
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

PACKAGES = ("mate-backgrounds", "lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04", "plasma-workspace-wallpapers")
CROP = 256
# Photos are downscaled (Lanczos) by an integer factor so that a 256-pixel crop holds an object rather than a patch of
# blur: mate-backgrounds halved (as in 0.1, which keeps the 0.1 held-out crops), the others to a short side of
# 700-1400 pixels (`short // 700`).
MATE_DOWNSCALE = 2
SHORT_SIDE = 700


@dataclass(frozen=True)
class Photo:
    source: str  # "skimage" or a Debian package
    path: str  # the skimage.data name, or the file inside the package
    author: str
    licence: str
    split: str  # "train", "validation" or "holdout"
    grid: tuple[int, int] = (0, 0)  # crops (rows, cols) of a validation or held-out photo

    @property
    def name(self) -> str:
        """A short name, unique among the photos: the skimage name, the wallpaper's folder (plasma) or file stem."""
        if self.source == "skimage":
            return self.path
        if self.source == "plasma-workspace-wallpapers":
            return Path(self.path).parts[3]  # usr/share/wallpapers/<name>/contents/images/<size>
        return Path(self.path).stem.split("_by_")[0]


MATE = "usr/share/backgrounds/mate/nature"
LOMIRI = "usr/share/backgrounds"
PLASMA = "usr/share/wallpapers/{}/contents/images/{}"
MATE_GPL = "GPL-2+"
PLASMA_LICENCE = "GPL-2+ (package copyright file; metadata.json: LGPL-3)"

PHOTOS = (
    # scikit-image's bundled photos (licences as their docstrings state them)
    Photo("skimage", "astronaut", "NASA (Great Images database)", "no known copyright restrictions", "train"),
    Photo("skimage", "chelsea", "Stefan van der Walt", "CC0", "train"),
    Photo("skimage", "rocket", "SpaceX", "public domain (released by SpaceX)", "train"),
    Photo("skimage", "coffee", "Rachel Michetti", "CC0", "holdout", (1, 2)),
    # mate-backgrounds 1.26.0-1, nature/ (GPL-2+)
    *(
        Photo("mate-backgrounds", f"{MATE}/{name}.jpg", author, MATE_GPL, "train")
        for name, author in (
            ("Aqua", "Charles Barbin"),
            ("Blinds", "Lennart Poettering, Andrea Cimitan"),
            ("FreshFlower", "Jens Ansorg"),
            ("Garden", "Charles Barbin"),
            ("GreenMeadow", "Timothy Schellhase, Lapo Calamandrei"),
            ("RainDrops", "blackcombwhistler07"),
            ("Storm", "Sergey Nazarov"),
            ("TwoWings", "Charles Barbin, Hylke Bons"),
            ("Wood", "Jean-François Fortin Tam"),
        )
    ),  # fmt: skip
    Photo("mate-backgrounds", f"{MATE}/YellowFlower.jpg", "Charles Barbin", MATE_GPL, "validation", (1, 3)),
    Photo("mate-backgrounds", f"{MATE}/Dune.jpg", "Marco Cogoni, Hylke Bons", MATE_GPL, "holdout", (2, 3)),
    Photo("mate-backgrounds", f"{MATE}/LadyBird.jpg", "Charles Barbin", MATE_GPL, "holdout", (2, 4)),
    # lomiri-wallpapers-16.04 20.04.0-2 (per-file licences of its copyright file)
    Photo(
        "lomiri-wallpapers-16.04",
        f"{LOMIRI}/Bridge_by_Sander_Klootwijk.jpg",
        "Sander Klootwijk",
        "CC-BY-SA-4.0",
        "train",
    ),
    Photo(
        "lomiri-wallpapers-16.04", f"{LOMIRI}/Dragonfly_by_Bolly.jpg", "Bolly", "CC-BY-SA-4.0", "validation", (1, 3)
    ),
    Photo(
        "lomiri-wallpapers-16.04", f"{LOMIRI}/Picture_0B_by_freespace.jpg", "Trevor Freespace", "CC-BY-4.0", "train"
    ),
    Photo(
        "lomiri-wallpapers-16.04", f"{LOMIRI}/Picture_1A_by_freespace.jpg", "Trevor Freespace", "CC-BY-4.0", "train"
    ),
    Photo("lomiri-wallpapers-16.04", f"{LOMIRI}/Wine_by_Jakkub_Mede.jpg", "Jakub Mede", "CC-BY-4.0", "train"),
    Photo(
        "lomiri-wallpapers-16.04",
        f"{LOMIRI}/aitzgorri_by_Aitzol_Berasategi.jpg",
        "Aitzol Berasategi",
        "CC-BY-4.0",
        "train",
    ),
    Photo("lomiri-wallpapers-16.04", f"{LOMIRI}/free_by_Peter_Nerlich.jpg", "Peter Nerlich", "CC-BY-SA-4.0", "train"),
    Photo(
        "lomiri-wallpapers-16.04",
        f"{LOMIRI}/friends_by_Aitzol_Berasategi.jpg",
        "Aitzol Berasategi",
        "CC-BY-4.0",
        "validation",
        (2, 1),
    ),
    Photo(
        "lomiri-wallpapers-16.04", f"{LOMIRI}/greentock_by_Peter_Nerlich.jpg", "Peter Nerlich", "CC-BY-SA-4.0", "train"
    ),
    Photo(
        "lomiri-wallpapers-16.04", f"{LOMIRI}/life_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0", "train"
    ),
    Photo(
        "lomiri-wallpapers-16.04",
        f"{LOMIRI}/picosdeeuropa_by_Aitzol_Berasategi.jpg",
        "Aitzol Berasategi",
        "CC-BY-4.0",
        "holdout",
        (1, 3),
    ),
    Photo(
        "lomiri-wallpapers-16.04",
        f"{LOMIRI}/seeding_by_Clements_Engelhardt.jpg",
        "Clemens Engelhardt",
        "CC0-1.0",
        "train",
    ),
    Photo(
        "lomiri-wallpapers-16.04",
        f"{LOMIRI}/sunset_by_Aitzol_Berasategi.jpg",
        "Aitzol Berasategi",
        "CC-BY-4.0",
        "train",
    ),
    # lomiri-wallpapers-20.04 20.04.0-2
    Photo(
        "lomiri-wallpapers-20.04", f"{LOMIRI}/Kleiber_by_Lukas_Baubkus.jpg", "Lukas Baubkus", "CC-BY-SA-3.0", "train"
    ),
    # plasma-workspace-wallpapers 4:5.27.5-2 (authors from each wallpaper's metadata.json)
    Photo(
        "plasma-workspace-wallpapers",
        PLASMA.format("BytheWater", "2560x1600.jpg"),
        "Maciej Wiklo",
        PLASMA_LICENCE,
        "train",
    ),
    Photo(
        "plasma-workspace-wallpapers",
        PLASMA.format("ColdRipple", "2560x1600.jpg"),
        "Risto Saukonpää",
        PLASMA_LICENCE,
        "train",
    ),
    Photo(
        "plasma-workspace-wallpapers",
        PLASMA.format("ColorfulCups", "2560x1600.jpg"),
        "Dmitri Popov",
        PLASMA_LICENCE,
        "validation",
        (1, 3),
    ),
    Photo(
        "plasma-workspace-wallpapers",
        PLASMA.format("DarkestHour", "2560x1600.jpg"),
        "Risto Saukonpää",
        PLASMA_LICENCE,
        "train",
    ),
    Photo(
        "plasma-workspace-wallpapers",
        PLASMA.format("EveningGlow", "2560x1600.jpg"),
        "Ian Hex",
        PLASMA_LICENCE,
        "holdout",
        (1, 3),
    ),
    Photo(
        "plasma-workspace-wallpapers",
        PLASMA.format("FallenLeaf", "2560x1600.jpg"),
        "Martin Klapetek",
        PLASMA_LICENCE,
        "validation",
        (1, 3),
    ),
    Photo("plasma-workspace-wallpapers", PLASMA.format("Grey", "2560x1600.jpg"), "Sigi Sagi", PLASMA_LICENCE, "train"),
    Photo(
        "plasma-workspace-wallpapers",
        PLASMA.format("Kite", "2560x1600.jpg"),
        "Risto Saukonpää",
        PLASMA_LICENCE,
        "train",
    ),
    Photo(
        "plasma-workspace-wallpapers",
        PLASMA.format("OneStandsOut", "2560x1600.jpg"),
        "Risto Saukonpää",
        PLASMA_LICENCE,
        "train",
    ),
    Photo(
        "plasma-workspace-wallpapers",
        PLASMA.format("Path", "2560x1600.jpg"),
        "Risto Saukonpää",
        PLASMA_LICENCE,
        "train",
    ),
    Photo(
        "plasma-workspace-wallpapers",
        PLASMA.format("summer_1am", "2560x1600.jpg"),
        "Risto Saukonpää",
        PLASMA_LICENCE,
        "train",
    ),
)
# The README's sample: a 512x512 crop of a held-out photo (it overlaps some held-out crops; both are held out).
SAMPLE = ("LadyBird", (384, 144), 512)
# The held-out crops of 0.1 come first, in 0.1's order, so its table can be compared with.
HOLDOUT_ORDER = ("coffee", "Dune", "LadyBird")


def fetch(debian_dir: Path) -> None:
    """`apt-get download` the packages and `dpkg-deb -x` each into `debian_dir/<package>/`."""
    debian_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as downloads:
        subprocess.run(["apt-get", "download", *PACKAGES], cwd=downloads, check=True)
        for package in PACKAGES:
            (deb,) = Path(downloads).glob(f"{package}_*.deb")
            subprocess.run(["dpkg-deb", "-x", str(deb), str(debian_dir / package)], check=True)


def load(photo: Photo, debian_dir: Path) -> Image.Image:
    if photo.source == "skimage":
        from skimage import data

        return Image.fromarray(getattr(data, photo.path)()).convert("RGB")
    Image.MAX_IMAGE_PIXELS = None  # the wallpapers are trusted package files of up to 6000x4000
    image = Image.open(debian_dir / photo.source / photo.path).convert("RGB")
    factor = MATE_DOWNSCALE if photo.source == "mate-backgrounds" else max(1, min(image.size) // SHORT_SIDE)
    return image.resize((image.width // factor, image.height // factor), Image.Resampling.LANCZOS)


def grid_crops(image: Image.Image, rows: int, cols: int, size: int) -> list[Image.Image]:
    """`rows` x `cols` crops of `size`, spread evenly over the image (first and last touch the borders)."""
    tops = np.linspace(0, image.height - size, rows).round().astype(int)
    lefts = np.linspace(0, image.width - size, cols).round().astype(int)
    return [image.crop((left, top, left + size, top + size)) for top in tops for left in lefts]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debian_dir", type=Path, required=True, help="where the packages are (or go) unpacked")
    parser.add_argument("--fetch", action="store_true", help="apt-get download and unpack the packages first")
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--overwrite", action="store_true", help="Write into an --output_dir that is not empty.")
    args = parser.parse_args(argv)

    if args.output_dir.exists() and any(args.output_dir.iterdir()) and not args.overwrite:
        sys.exit(f"error: --output_dir {args.output_dir} is not empty; pass --overwrite to write into it")
    if args.fetch:
        fetch(args.debian_dir)
    missing = [f"{p.source}/{p.path}" for p in PHOTOS if p.source != "skimage"]
    missing = [name for name in missing if not (args.debian_dir / name).is_file()]
    if missing:
        sys.exit(
            f"error: --debian_dir {args.debian_dir}: {len(missing)} photos missing (first: {missing[0]}); pass "
            f"--fetch to download and unpack {', '.join(PACKAGES)} there"
        )

    folders = {split: args.output_dir / split for split in ("train", "validation/gt", "holdout/gt", "sample/gt")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    rows = ["split\tsource\tfile\tauthor\tlicence"]
    counts = dict.fromkeys(("train", "validation", "holdout"), 0)
    held_out = {}
    ordered = sorted(PHOTOS, key=lambda p: HOLDOUT_ORDER.index(p.name) if p.name in HOLDOUT_ORDER else 99)
    for photo in ordered:
        image = load(photo, args.debian_dir)
        rows.append(f"{photo.split}\t{photo.source}\t{photo.path}\t{photo.author}\t{photo.licence}")
        if photo.split == "train":
            image.save(folders["train"] / f"{photo.source.split('-')[0]}_{photo.name}.png")
            counts["train"] += 1
            continue
        held_out[photo.name] = image
        folder = folders["validation/gt" if photo.split == "validation" else "holdout/gt"]
        for index, crop in enumerate(grid_crops(image, *photo.grid, CROP)):
            crop.save(folder / f"{photo.name}_{index:02d}.png")
            counts[photo.split] += 1
    name, (left, top), size = SAMPLE
    held_out[name].crop((left, top, left + size, top + size)).save(folders["sample/gt"] / f"{name.lower()}.png")
    (args.output_dir / "photos.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    print(
        f"{counts['train']} training photos, {counts['validation']} validation crops, {counts['holdout']} held-out "
        f"crops in {args.output_dir} (photos.tsv lists each photo and its licence)"
    )


if __name__ == "__main__":
    main()
