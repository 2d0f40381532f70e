"""Step 1 of the demo-model recipe: the photos, split into training, validation and held-out sets.

Two kinds of evaluation sets, kept apart by name and checked by `check_splits` before anything is read:
- split by photo (the "old" sets of 0.1-0.4, kept exactly as they were so that old numbers stay comparable):
  `validation/` and `holdout/` are other photos of the packages the training set uses;
- split by source (0.5 on): `validation_new/` and `holdout_new/` come from whole packages that give the training set
  no photo at all, and neither shares a package with the other. `holdout_new/` is scored once, at the end.

    train                scikit-image, mate-backgrounds, lomiri-wallpapers-16.04 and -20.04,
                         plasma-workspace-wallpapers (0.4's 31 photos); lxqt-themes, kphotoalbum (added in 0.5)
    validation, holdout  other photos of scikit-image, mate, lomiri and plasma (the old sets)
    validation_new       digikam-data, qtbase5-examples, qtdeclarative5-examples, qtmultimedia5-examples,
                         lomiri-ui-toolkit-examples
    holdout_new          palapeli-data, scribus-template

Photographs only (the illustrations, renders and abstract wallpapers of these packages are left out), each listed
below with its author and licence from its package's `copyright` file or the package's own credits. Never used here,
kept for an outside check: the images shipped by scikit-learn, matplotlib, imageio, scipy and gradio, and those of
the SSP-IR authors' research repository. `--fetch` gets the Debian packages with `apt-get download` and unpacks them
with `dpkg-deb -x` into `--debian_dir` (nothing is installed); every photo is checked to be there before anything is
written.

    python examples/demo_model/prepare_data.py --fetch --debian_dir demo_work/debian --output_dir demo_work/data

writes
    train/               the training photos (HQ only; training degrades them on the fly)
    train_0.4/           the 31 of them that 0.4 was trained on (the recipe's diffusion stages read these; 0.5's
                         texture decoder reads all of train/)
    validation/gt/       256x256 crops of the old validation photos, for every decision (steps, settings, defaults)
    holdout/gt/          256x256 crops of the old held-out photos, scored once at the end (the first 16 are the crops
                         of the 0.1 demo model's table: coffee, Dune, LadyBird)
    validation_new/gt/   256x256 crops of photos from packages that training never sees, for every decision
    holdout_new/gt/      256x256 crops of photos from other such packages, scored once at the end
    sample/gt/           one held-out 512x512 crop: the README's sample image is its degraded 128x128 version
    photos.tsv           every photo used: split, source, file, author, licence
"""

import argparse
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

PACKAGES = (
    # the sources of 0.4's data
    "mate-backgrounds",
    "lomiri-wallpapers-16.04",
    "lomiri-wallpapers-20.04",
    "plasma-workspace-wallpapers",
    # added in 0.5: training
    "lxqt-themes",
    "kphotoalbum",
    # added in 0.5: validation_new
    "digikam-data",
    "qtbase5-examples",
    "qtdeclarative5-examples",
    "qtmultimedia5-examples",
    "lomiri-ui-toolkit-examples",
    # added in 0.5: holdout_new
    "palapeli-data",
    "scribus-template",
)
SPLITS = ("train", "validation", "holdout", "validation_new", "holdout_new")
# The sets split by source: no package of theirs gives a training photo, and they share no package with each other.
BY_SOURCE = ("validation_new", "holdout_new")
# Their images are kept for an outside check: never trained on, selected on or scored against here.
OUTSIDE_CHECK = ("scikit-learn", "matplotlib", "imageio", "scipy", "gradio")
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
    split: str  # one of SPLITS
    grid: tuple[int, int] = (0, 0)  # crops (rows, cols) of a validation or held-out photo

    @property
    def name(self) -> str:
        """A short name, unique among the photos: the skimage name, the wallpaper's folder (plasma), the template and
        file stem (scribus) or the file stem."""
        if self.source == "skimage":
            return self.path
        if self.source == "plasma-workspace-wallpapers":
            return Path(self.path).parts[3]  # usr/share/wallpapers/<name>/contents/images/<size>
        if self.source == "scribus-template":
            return f"{Path(self.path).parent.name}_{Path(self.path).stem}"  # usr/share/scribus/templates/<name>/
        return Path(self.path).stem.split("_by_")[0]


MATE = "usr/share/backgrounds/mate/nature"
LOMIRI = "usr/share/backgrounds"
PLASMA = "usr/share/wallpapers/{}/contents/images/{}"
MATE_GPL = "GPL-2+"
PLASMA_LICENCE = "GPL-2+ (package copyright file; metadata.json: LGPL-3)"

# 0.4's photos, unchanged: its training set and the old validation and held-out sets (split by photo).
PHOTOS_04 = (
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
LXQT = "usr/share/lxqt/wallpapers"
LXQT_LICENCE = "CC-BY-SA-3.0 (wallpapers/License; the package copyright file: LGPL-2.1+)"
KPA = "usr/share/kphotoalbum/demo"
DIGIKAM = "usr/share/digikam/about/images"
QT = "usr/lib/x86_64-linux-gnu/qt5/examples"
QT_AUTHOR = "The Qt Company Ltd. (photographer not named)"
PALAPELI = "usr/share/palapeli/collection"
SCRIBUS = "usr/share/scribus/templates"
SCRIBUS_LICENCE = "public domain (placed there by its author, package copyright file)"

# Added in 0.5. Training: whole packages that no evaluation set uses.
PHOTOS_05_TRAIN = (
    # lxqt-themes 1.2.0-1: the photos of wallpapers/ (authors from wallpapers/License; two are not credited there)
    *(
        Photo("lxqt-themes", f"{LXQT}/{file}", author, LXQT_LICENCE, "train")
        for file, author in (
            ("Butterfly-Kenneth-Wimer.jpg", "Kenneth Wimer"),
            ("Valendas.png", "not named (LXQt Project Team)"),
            ("after-the-rain.jpg", "stefonarch"),
            ("appleflower.png", "stefonarch"),
            ("beam.png", "stefonarch"),
            ("butterfly.png", "stefonarch"),
            ("cloud.png", "not named (LXQt Project Team)"),
            ("drop.png", "stefonarch"),
            ("flowers.png", "stefonarch"),
            ("fog.jpg", "stefonarch"),
            ("this-is-not-windows.jpg", "stefonarch"),
        )
    ),  # fmt: skip
    # kphotoalbum 5.9.1-1: the demo album (people, pets, indoors, night, travel; 800x600 JPEGs, some scanned prints)
    *(
        Photo("kphotoalbum", f"{KPA}/{name}.jpg", "Jesper K. Pedersen", "GPL-2+ (package copyright file)", "train")
        for name in (
            "anne_helene bar55 bar55_2 blackie cold_water donna donna_2 grand_canyon_1 grand_canyon_2 grand_canyon_3 "
            "jesper jesper_2 new_wave_1 new_wave_2 pool pool_2 qt-logo skagen skagen_2 snow spiff spiff_2 sunset wayne"
        ).split()
    ),
)
# Added in 0.5. Split by source: validation_new (every decision) and holdout_new (scored once, at the end).
PHOTOS_05_BY_SOURCE = (
    Photo("digikam-data", f"{DIGIKAM}/body-background.jpg", "digiKam team (photographer not named)",
          "GPL-2+ (package copyright file)", "validation_new", (2, 3)),
    Photo("qtdeclarative5-examples", f"{QT}/quick/customitems/scrollbar/pics/niagara_falls.jpg", QT_AUTHOR,
          "BSD-3-clause", "validation_new", (2, 3)),
    Photo("qtdeclarative5-examples", f"{QT}/quick/particles/images/backgroundLeaves.jpg", QT_AUTHOR, "BSD-3-clause",
          "validation_new", (2, 1)),
    Photo("qtdeclarative5-examples", f"{QT}/quick/touchinteraction/flickable/content/cork.jpg", QT_AUTHOR,
          "BSD-3-clause", "validation_new", (1, 3)),
    Photo("qtmultimedia5-examples", f"{QT}/multimedia/video/qmlvideo/images/leaves.jpg", QT_AUTHOR, "BSD-3-clause",
          "validation_new", (2, 3)),
    Photo("qtbase5-examples", f"{QT}/widgets/effects/fademessage/background.jpg",
          "The Qt Company Ltd.; the photo carries RepublicDomain.com's mark", "BSD-3-clause", "validation_new",
          (2, 2)),  # text on a screen
    Photo("lomiri-ui-toolkit-examples", f"{QT}/lomiri-ui-toolkit/examples/lomiri-ui-toolkit-gallery/demo_image.jpg",
          "Canonical Ltd. (photographer not named)", "LGPL-3.0", "validation_new", (1, 2)),
    # palapeli-data 4:22.12.3-1: its puzzles, Wikimedia Commons photos (author and licence from each .desktop file)
    Photo("palapeli-data", f"{PALAPELI}/castle-maintenon.jpg", "Eric Pouhier", "GFDL", "holdout_new", (2, 3)),
    Photo("palapeli-data", f"{PALAPELI}/cincinnati-bridge.jpg", "Derek Jensen", "public domain", "holdout_new",
          (2, 3)),
    Photo("palapeli-data", f"{PALAPELI}/citrus-fruits.jpg", "US Department of Agriculture", "public domain",
          "holdout_new", (2, 3)),
    Photo("palapeli-data", f"{PALAPELI}/european-honey-bee.jpg", "John Severns", "public domain", "holdout_new",
          (2, 3)),
    Photo("palapeli-data", f"{PALAPELI}/panther-chameleon-female.jpg", "B. Navez and others", "GFDL", "holdout_new",
          (3, 2)),
    # scribus-template 1.2.4.1-6: the photos of Riku Leino's templates (br2's moon.jpg, mostly black sky, left out)
    *(
        Photo("scribus-template", f"{SCRIBUS}/{file}", "Riku Leino", SCRIBUS_LICENCE, "holdout_new", grid)
        for file, grid in (
            ("br2/brightness.jpg", (1, 2)),  # night clouds: few crops, most of them are nearly flat
            ("br2/halfmoon.jpg", (1, 2)),
            ("br2/nature.jpg", (2, 3)),
            ("br2/sunset.jpg", (2, 3)),
            ("cal2/moon.jpg", (2, 2)),
            ("menu2/pizza.jpg", (2, 2)),
        )
    ),  # fmt: skip
)  # fmt: skip
PHOTOS = PHOTOS_04 + PHOTOS_05_TRAIN + PHOTOS_05_BY_SOURCE
# The README's sample: a 512x512 crop of a held-out photo (it overlaps some held-out crops; both are held out).
SAMPLE = ("LadyBird", (384, 144), 512)
# The held-out crops of 0.1 come first, in 0.1's order, so its table can be compared with.
HOLDOUT_ORDER = ("coffee", "Dune", "LadyBird")


def train_name(photo: Photo) -> str:
    """The file name of a training photo in `train/`: its source's first word and its name."""
    return f"{photo.source.split('-')[0]}_{photo.name}.png"


def check_splits(photos: tuple[Photo, ...]) -> None:
    """Raise `ValueError` unless the splits are clean: every split known, no photo in two splits (nor two outputs of
    one name), no source of a split-by-source set (`BY_SOURCE`) in training or in the other such set, and nothing kept
    for the outside check."""
    unknown = sorted({p.split for p in photos} - set(SPLITS))
    if unknown:
        raise ValueError(f"unknown splits {unknown}: a photo's split is one of {SPLITS}")
    files = [f"{p.source}/{p.path}" for p in photos]
    names = [train_name(p) if p.split == "train" else p.name for p in photos]  # what the outputs are named by
    for listed in (files, names):
        twice = sorted({item for item in listed if listed.count(item) > 1})
        if twice:
            raise ValueError(f"photos listed twice, or with the same output name: {twice}")
    sources = {split: {p.source for p in photos if p.split == split} for split in SPLITS}
    for split in BY_SOURCE:
        if sources[split] & sources["train"]:
            raise ValueError(
                f"{split} is split by source, but {sorted(sources[split] & sources['train'])} also give training "
                f"photos: move every photo of such a source to one side"
            )
    first, second = BY_SOURCE
    if sources[first] & sources[second]:
        raise ValueError(f"{first} and {second} share the sources {sorted(sources[first] & sources[second])}")
    outside = {p.source for p in photos} & set(OUTSIDE_CHECK)
    if outside:
        raise ValueError(f"{sorted(outside)}: their images are kept for an outside check and are never used here")


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

    check_splits(PHOTOS)
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

    folders = {split: args.output_dir / split / "gt" for split in SPLITS[1:]}
    folders.update(train=args.output_dir / "train", sample=args.output_dir / "sample" / "gt")
    folders["train_0.4"] = args.output_dir / "train_0.4"
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    rows = ["split\tsource\tfile\tauthor\tlicence"]
    counts = dict.fromkeys(SPLITS, 0)
    held_out = {}
    ordered = sorted(PHOTOS, key=lambda p: HOLDOUT_ORDER.index(p.name) if p.name in HOLDOUT_ORDER else 99)
    for photo in ordered:
        image = load(photo, args.debian_dir)
        rows.append(f"{photo.split}\t{photo.source}\t{photo.path}\t{photo.author}\t{photo.licence}")
        if photo.split == "train":
            image.save(folders["train"] / train_name(photo))
            if photo in PHOTOS_04:
                image.save(folders["train_0.4"] / train_name(photo))
            counts["train"] += 1
            continue
        held_out[photo.name] = image
        for index, crop in enumerate(grid_crops(image, *photo.grid, CROP)):
            crop.save(folders[photo.split] / f"{photo.name}_{index:02d}.png")
            counts[photo.split] += 1
    name, (left, top), size = SAMPLE
    held_out[name].crop((left, top, left + size, top + size)).save(folders["sample"] / f"{name.lower()}.png")
    (args.output_dir / "photos.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    crops = ", ".join(f"{counts[split]} {split} crops" for split in SPLITS[1:])
    print(f"{counts['train']} training photos, {crops} in {args.output_dir} (photos.tsv lists each photo's licence)")


if __name__ == "__main__":
    main()
