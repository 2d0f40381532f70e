# Copyright 2025 The diffusers-sspir authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Training data for SSP-IR: a folder of ground-truth images, optionally with low-quality partners and captions.

Layout (file names are matched by *stem*, never by listing order):

```
root/gt/0001.png        ground truth (HQ); .png .jpg .jpeg .webp .bmp .tif .tiff, any case
root/lq/0001.jpg        optional: the LQ partner, exactly 1/scale of the GT size, any of the same extensions
root/captions/0001.txt  optional: caption, UTF-8, stripped; a missing file means ""
```

Without `lq/` the folder is *HQ-only*: items carry no `"lq"` and the training loop degrades the GT batch on the fly.
A plain folder of images without `gt/` is HQ-only too (captions from `root/captions/` if present). By default only the
files directly inside the folders are used. With `recursive=True` the subfolders are read too (hidden ones left out),
and files are matched by their *key*, the path inside `gt/`, `lq/` or `captions/` without extension, so nested trees
such as LSDIR's pair up file by file:

```
root/gt/0001000/0000001.png        key 0001000/0000001
root/lq/0001000/0000001.png
root/captions/0001000/0000001.txt
```

`scan_image_folder` checks the whole folder once (file headers, sizes, pairing, captions) and returns an
`ImageFolderReport`; `PairedImageFolder` refuses a folder with problems (or skips the bad pairs on request) so that a
broken file shows up at construction time rather than in the middle of an epoch.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers.utils import logging

from ..files import IMAGE_EXTENSIONS
from ..image_ops import to_tensor_batch

logger = logging.get_logger(__name__)

__all__ = ["ImageFolderReport", "ImagePair", "PairedImageFolder", "collate_fn", "scan_image_folder"]

ON_PROBLEM_CHOICES = ("error", "skip")
GT_FOLDER, LQ_FOLDER, CAPTION_FOLDER = "gt", "lq", "captions"

# Header reads are I/O bound (network file systems especially), so the scan reads them from a few threads.
_SCAN_THREADS = 16


# ---------------------------------------------------------------------------------------------------------------------
# Scan and report
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImagePair:
    r"""
    One usable item of an image folder.

    Attributes:
        stem (`str`): the file name without extension shared by the GT, LQ and caption files.
        gt_path (`pathlib.Path`): the ground-truth image.
        gt_size (`tuple[int, int]`): its `(width, height)`.
        lq_path (`pathlib.Path`, *optional*): the low-quality image; `None` in an HQ-only folder.
        lq_size (`tuple[int, int]`, *optional*): its `(width, height)`, equal to `gt_size / scale`.
        caption (`str`): the stripped caption, `""` without a caption file.
        key (`str`): what the GT, LQ and caption files are matched by: the stem, or in a folder scanned with
            `recursive` the path inside `gt/` (`lq/`, `captions/`) without extension, such as `"0001000/0000001"`.
            Defaults to `stem`.
    """

    stem: str
    gt_path: Path
    gt_size: tuple[int, int]
    lq_path: Path | None = None
    lq_size: tuple[int, int] | None = None
    caption: str = ""
    key: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", self.stem)


@dataclass
class ImageFolderReport:
    r"""
    What `scan_image_folder` found: the usable pairs, the problems that make files unusable, and notes.

    Attributes:
        root (`pathlib.Path`): the scanned folder.
        gt_dir (`pathlib.Path`): where the GT images are (`root/gt` or `root` itself).
        lq_dir (`pathlib.Path`, *optional*): `root/lq`, `None` for an HQ-only folder.
        caption_dir (`pathlib.Path`, *optional*): `root/captions` if it exists.
        scale (`int`): GT size / LQ size.
        resolution (`int`, *optional*): the GT crop size that the notes on small images refer to.
        recursive (`bool`): whether subfolders were scanned (files matched by their path inside the folders).
        pairs (`list[ImagePair]`): the usable items, sorted by key.
        problems (`list[tuple[pathlib.Path, str]]`): `(path, message)` for every file that cannot be used.
        notes (`list[tuple[pathlib.Path, str]]`): `(path, message)` for what is handled but worth knowing (padded
            small images, ignored files, captions without images).
    """

    root: Path
    gt_dir: Path
    lq_dir: Path | None
    caption_dir: Path | None
    scale: int
    resolution: int | None = None
    recursive: bool = False
    pairs: list[ImagePair] = field(default_factory=list)
    problems: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """`True` when there are no problems (notes are fine)."""
        return not self.problems

    @property
    def has_lq(self) -> bool:
        """`True` for a paired folder (`lq/` exists)."""
        return self.lq_dir is not None

    def format(self, max_entries: int = 20) -> str:
        r"""
        The report as text for a human: a summary line, then problems and notes with paths relative to `root`.

        Args:
            max_entries (`int`, *optional*, defaults to 20): at most this many problems and this many notes are
                listed; the rest are counted.
        """
        if self.lq_dir is not None:
            layout = f"paired: {GT_FOLDER}/ + {LQ_FOLDER}/, scale {self.scale}"
        elif self.gt_dir != self.root:
            layout = f"HQ-only: {GT_FOLDER}/ without {LQ_FOLDER}/"
        else:
            layout = "HQ-only: plain folder of images"
        if self.caption_dir is not None:
            layout += f", captions in {CAPTION_FOLDER}/"
        if self.resolution is not None:
            layout += f", crop {self.resolution}"
        if self.recursive:
            layout += ", with subfolders"
        lines = [
            f"Image folder {str(self.root)!r} ({layout}): {len(self.pairs)} usable, "
            f"{_count(len(self.problems), 'problem')}, {_count(len(self.notes), 'note')}."
        ]
        counts = self.folder_counts()
        if self.recursive and len(counts) > 1:
            lines.append("By subfolder:")
            for folder, (usable, problems) in list(counts.items())[:max_entries]:
                lines.append(f"  {folder or '.'}/: {usable} usable, {_count(problems, 'problem')}")
            if len(counts) > max_entries:
                lines.append(f"  ... and {len(counts) - max_entries} more subfolders")
        for title, entries in (("Problems (these files are not used)", self.problems), ("Notes", self.notes)):
            if not entries:
                continue
            lines.append(f"{title}:")
            for path, message in sorted(entries, key=lambda entry: str(entry[0]))[:max_entries]:
                lines.append(f"  {self._relative(path)}: {message}")
            if len(entries) > max_entries:
                lines.append(f"  ... and {len(entries) - max_entries} more")
        return "\n".join(lines)

    def folder_counts(self) -> dict[str, tuple[int, int]]:
        r"""
        `(usable, problems)` per subfolder, sorted: the folder of each key (`"0001000"` for `"0001000/0000001"`,
        `""` for the top), a problem counted in the subfolder its file lies in, inside `gt/`, `lq/` or `captions/`.
        """
        counts: dict[str, list[int]] = {}
        for pair in self.pairs:
            counts.setdefault(Path(pair.key).parent.as_posix().removeprefix("."), [0, 0])[0] += 1
        tops = [folder for folder in (self.gt_dir, self.lq_dir, self.caption_dir) if folder is not None]
        for path, _ in self.problems:
            top = next((folder for folder in tops if path.is_relative_to(folder) and path != folder), None)
            folder = path.parent.relative_to(top).as_posix().removeprefix(".") if top is not None else ""
            counts.setdefault(folder, [0, 0])[1] += 1
        return {folder: (usable, problems) for folder, (usable, problems) in sorted(counts.items())}

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix() if path.is_relative_to(self.root) else str(path)


def _key_text(key: str) -> str:
    return f"stem {key!r}" if "/" not in key else f"path {key!r} (without extension)"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _size_text(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _list_images(
    directory: Path, report: ImageFolderReport, ignored_folders: tuple[str, ...], recursive: bool = False
) -> tuple[dict[str, Path], set[str]]:
    """Images in `directory` (with `recursive`, in its subfolders too, hidden ones and the top-level
    `ignored_folders` left out) by key, the relative path without extension; keys with several files are reported
    and returned separately."""
    by_key: dict[str, list[Path]] = {}
    folders = [directory]
    while folders:
        folder = folders.pop()
        for path in sorted(folder.iterdir()):
            if path.name.startswith("."):
                continue
            if path.is_dir():
                if folder == directory and path.name in ignored_folders:
                    continue
                if recursive:
                    folders.append(path)
                else:
                    report.notes.append(
                        (path, "subfolder not scanned (only files directly in the folder are used; scan with "
                               "recursive=True, --train_data_recursive in training, to use subfolders)")
                    )  # fmt: skip
            elif path.suffix.lower() in IMAGE_EXTENSIONS:
                by_key.setdefault(path.relative_to(directory).with_suffix("").as_posix(), []).append(path)
            else:
                accepted = ", ".join(IMAGE_EXTENSIONS)
                report.notes.append((path, f"ignored: not an image extension (accepted: {accepted})"))
    duplicated = {key for key, paths in by_key.items() if len(paths) > 1}
    for key in sorted(duplicated):
        names = [path.name for path in by_key[key]]
        for path in by_key[key]:
            others = ", ".join(name for name in names if name != path.name)
            where = path.parent.relative_to(directory.parent).as_posix()
            report.problems.append(
                (path, f"duplicate stem {path.stem!r} (also {others}); keep exactly one file per stem in {where}/")
            )
    return {key: paths[0] for key, paths in by_key.items() if key not in duplicated}, duplicated


def _read_header(path: Path) -> tuple[tuple[int, int] | None, str | None]:
    """`((width, height), None)` for an image that decodes in full, `(None, reason)` otherwise. The whole pixel data
    is decoded once (a header check passes truncated JPEGs, which then fail mid-training)."""
    try:
        with PIL.Image.open(path) as image:
            size = image.size
            image.load()
    except Exception as error:  # PIL raises many types for broken files (OSError, SyntaxError, struct.error, ...)
        return None, f"unreadable image ({type(error).__name__}: {error}); re-encode or remove the file"
    return size, None


def _read_caption(path: Path) -> tuple[str, str | None]:
    try:
        return path.read_text(encoding="utf-8").strip(), None
    except (OSError, UnicodeDecodeError) as error:
        return "", f"unreadable caption ({type(error).__name__}: {error}); save it as UTF-8 text or remove it"


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")


def _check_root(root: Any) -> Path:
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"`root` must be a `str` or `os.PathLike` naming a folder, got {root!r}.")
    path = Path(root).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"`root` {str(path)!r} does not exist; expected a folder with gt/ or images in it.")
    if not path.is_dir():
        raise NotADirectoryError(f"`root` {str(path)!r} is not a folder; expected a folder with gt/ or images in it.")
    return path


def scan_image_folder(
    root: str | os.PathLike, scale: int = 4, resolution: int | None = None, recursive: bool = False
) -> ImageFolderReport:
    r"""
    Check an image folder once and report every problem, instead of failing in the middle of an epoch.

    Problems (the files are not used): GT without LQ (when `lq/` exists), LQ without GT, several files with one stem
    (`a.png` and `a.jpg`), images PIL cannot decode in full (truncated or corrupt: every image is decoded once), LQ
    size different from GT size / `scale` (the GT size must be exactly `scale` times the LQ size), captions that are
    not UTF-8, `lq/` without `gt/`, a folder without images. Notes (handled, worth knowing): GT images with a side
    smaller than `resolution` (the dataset pads them by mirroring), subfolders (without `recursive`) and non-image
    files (ignored), captions without an image. With `recursive`, files are matched by their path inside `gt/`, `lq/`
    and `captions/` (see the module docstring) and the report counts per subfolder.

    Every image is decoded once, so a file whose header is intact but whose pixel data is truncated (a JPEG cut short,
    say) is reported here rather than failing mid-training.

    Args:
        root (`str` or `os.PathLike`): the folder (see the module docstring for the layout).
        scale (`int`, *optional*, defaults to 4): GT size / LQ size.
        resolution (`int`, *optional*): the GT crop size; with it, images smaller than the crop get a note.
        recursive (`bool`, *optional*, defaults to `False`): also scan the subfolders (hidden ones left out; in a
            plain folder, its top-level `captions/` and `lq/` are not image folders).

    Returns:
        `ImageFolderReport`: the usable pairs (sorted by key), the problems and the notes.
    """
    root = _check_root(root)
    _check_int("scale", scale, 1)
    if resolution is not None:
        _check_int("resolution", resolution, 1)

    gt_dir, lq_dir = root / GT_FOLDER, root / LQ_FOLDER
    caption_dir = root / CAPTION_FOLDER if (root / CAPTION_FOLDER).is_dir() else None
    plain = not gt_dir.is_dir()
    report = ImageFolderReport(
        root=root,
        gt_dir=root if plain else gt_dir,
        lq_dir=None if plain or not lq_dir.is_dir() else lq_dir,
        caption_dir=caption_dir,
        scale=scale,
        resolution=resolution,
        recursive=recursive,
    )
    if plain and lq_dir.is_dir():
        report.problems.append(
            (lq_dir, f"{LQ_FOLDER}/ without {GT_FOLDER}/: put the GT images in {GT_FOLDER}/ next to {LQ_FOLDER}/")
        )
    ignored = (CAPTION_FOLDER, LQ_FOLDER) if plain else ()
    gt_files, gt_duplicated = _list_images(report.gt_dir, report, ignored, recursive)
    lq_files, lq_duplicated = _list_images(report.lq_dir, report, (), recursive) if report.lq_dir else ({}, set())
    if not gt_files and not gt_duplicated:
        report.problems.append((report.gt_dir, f"no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder"))

    paths = list(gt_files.values()) + list(lq_files.values())
    with ThreadPoolExecutor(max_workers=min(_SCAN_THREADS, max(len(paths), 1))) as pool:
        headers = dict(zip(paths, pool.map(_read_header, paths)))

    for key in sorted(gt_files.keys() | lq_files.keys()):
        if key in gt_duplicated or key in lq_duplicated:
            continue  # already reported
        gt_path, lq_path = gt_files.get(key), lq_files.get(key)
        if gt_path is None:
            report.problems.append((lq_path, f"LQ image without GT: no image with {_key_text(key)} in {GT_FOLDER}/"))
            continue
        if report.lq_dir is not None and lq_path is None:
            report.problems.append((gt_path, f"GT image without LQ: no image with {_key_text(key)} in {LQ_FOLDER}/"))
            continue
        usable = True
        for path in (gt_path, lq_path):
            if path is not None and headers[path][1] is not None:
                report.problems.append((path, headers[path][1]))
                usable = False
        if not usable:
            continue
        gt_size, lq_size = headers[gt_path][0], headers[lq_path][0] if lq_path is not None else None
        if lq_size is not None and (lq_size[0] * scale, lq_size[1] * scale) != gt_size:
            if gt_size[0] % scale or gt_size[1] % scale:
                advice = f"crop the GT to a multiple of {scale} and make the LQ from it"
            else:
                advice = f"the LQ should be {_size_text((gt_size[0] // scale, gt_size[1] // scale))}: remake it"
            report.problems.append(
                (
                    lq_path,
                    f"LQ is {_size_text(lq_size)} but GT {gt_path.name} is {_size_text(gt_size)}; with scale {scale} "
                    f"the GT must be exactly scale x LQ = {_size_text((lq_size[0] * scale, lq_size[1] * scale))}; "
                    f"{advice}, or fix `scale`",
                )
            )
            continue
        caption = ""
        if caption_dir is not None and (caption_dir / f"{key}.txt").is_file():
            caption, error = _read_caption(caption_dir / f"{key}.txt")
            if error is not None:
                report.problems.append((caption_dir / f"{key}.txt", error))
                continue
        if resolution is not None and min(gt_size) < resolution:
            report.notes.append(
                (
                    gt_path,
                    f"{_size_text(gt_size)} is smaller than the {resolution}x{resolution} crop; padded by mirroring "
                    "at the bottom/right edge",
                )
            )
        report.pairs.append(ImagePair(gt_path.stem, gt_path, gt_size, lq_path, lq_size, caption, key))

    if caption_dir is not None:
        image_keys = gt_files.keys() | lq_files.keys() | gt_duplicated | lq_duplicated
        for path in sorted(caption_dir.rglob("*.txt") if recursive else caption_dir.glob("*.txt")):
            key = path.relative_to(caption_dir).with_suffix("").as_posix()
            if key not in image_keys and not any(part.startswith(".") for part in Path(key).parts):
                report.notes.append((path, f"caption without an image (no image with {_key_text(key)})"))
    return report


# ---------------------------------------------------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------------------------------------------------


def _pad_symmetric(image: torch.Tensor, size: int) -> torch.Tensor:
    """Pad a `(C, H, W)` image at the bottom/right to at least `size` by mirroring about the edge (edge repeated).

    Mirroring about the edge (not about the last pixel, as `"reflect"` does) commutes with box-downscaling when the
    image and the pad are multiples of the scale, so a padded GT and its padded LQ stay aligned.
    """
    pad_h, pad_w = max(size - image.shape[-2], 0), max(size - image.shape[-1], 0)
    if pad_h == 0 and pad_w == 0:
        return image
    return torch.from_numpy(np.pad(image.numpy(), ((0, 0), (0, pad_h), (0, pad_w)), mode="symmetric"))


def _load_crop(path: Path, expected_size: tuple[int, int], top: int, left: int, size: int) -> torch.Tensor:
    """Load the `size` x `size` crop at `(top, left)` as a float RGB `(3, size, size)` tensor, padding small images."""
    try:
        with PIL.Image.open(path) as image:
            if image.size != expected_size:
                raise OSError(f"the image is now {_size_text(image.size)}, the scan found {_size_text(expected_size)}")
            width, height = image.size
            crop = image.crop((left, top, min(left + size, width), min(top + size, height)))
            crop.info = {}  # the crop is in stored pixel order: no EXIF/XMP orientation may turn it afterwards
    except OSError as error:
        raise OSError(
            f"Could not load {str(path)!r}: {error}. The file changed since the dataset was built (the scan decoded "
            "it); re-encode or remove it and build the dataset again, or pass --skip_bad_files / "
            'on_problem="skip" to skip such files.'
        ) from error
    return _pad_symmetric(to_tensor_batch(crop, argument_name=str(path))[0], size)


class PairedImageFolder(torch.utils.data.Dataset):
    r"""
    Random crops of a folder of GT images, with their aligned LQ crops and captions, for SSP-IR training.

    The folder is scanned at construction (see `scan_image_folder`); `report` keeps the result. Each item is a dict:

    - `"gt"`: `torch.FloatTensor` `(3, resolution, resolution)` in `[0, 1]`;
    - `"lq"` (only when `has_lq`): `(3, resolution // scale, resolution // scale)` in `[0, 1]`, the LQ crop at the same
      place (crop positions are drawn on the LQ grid and multiplied by `scale` for the GT);
    - `"caption"`: `str`, `""` without caption file or when dropped (`null_text_ratio`);
    - `"stem"`: `str`, the file stem (see `ImagePair.key` for what pairs files in a nested folder).

    Images are converted like the pipeline's inputs (`image_ops.to_tensor_batch`): grey is replicated to RGB, alpha
    is dropped (no compositing), palette and other modes go through `PIL.Image.convert("RGB")`, 16-bit images
    (`"I;16"`, `"I"`) are divided by 65535 without going through 8 bits. EXIF orientation is not applied (GT and LQ
    are used as stored, so they stay aligned). Images with a side smaller than the crop are padded at the bottom/right
    by mirroring about the edge (the scan notes them); for a pair, GT and LQ are padded alike and stay aligned.

    All randomness of item `index` (crop position, flip, caption dropout) comes from
    `numpy.random.default_rng((seed, epoch, index))`, so an item does not depend on DataLoader workers or on the
    order in which items are read; `set_epoch` changes it. The epoch lives in shared memory, so `set_epoch` called
    before iterating reaches DataLoader workers too, persistent ones included.

    Args:
        root (`str` or `os.PathLike`): the folder: `gt/` with optional `lq/` and `captions/`, or a plain folder of
            images (HQ-only, optional `captions/`).
        resolution (`int`, *optional*, defaults to 512): GT crop size; a positive multiple of `scale` and of 8.
        scale (`int`, *optional*, defaults to 4): GT size / LQ size.
        random_crop (`bool`, *optional*, defaults to `True`): random crop positions; `False` crops at the top left
            (unless `center_crop`).
        random_flip (`bool`, *optional*, defaults to `True`): flip GT and LQ horizontally with probability 1/2.
        null_text_ratio (`float`, *optional*, defaults to 0.0): probability of replacing the caption with `""`.
        seed (`int`, *optional*, defaults to 0): non-negative seed of all per-item randomness.
        on_problem (`str`, *optional*, defaults to `"error"`): `"error"` raises `ValueError` with the report when the
            scan finds problems; `"skip"` logs the report as a warning and uses the usable pairs only.
        center_crop (`bool`, *optional*, defaults to `False`): crop at the centre (for validation); takes precedence
            over `random_crop`.
        recursive (`bool`, *optional*, defaults to `False`): also use the images of subfolders, matching GT, LQ and
            caption files by their path inside `gt/`, `lq/` and `captions/` (an LSDIR-like nested tree).

    Raises:
        `ValueError`: for invalid arguments, for scan problems with `on_problem="error"`, and for a folder without any
            usable pair.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        resolution: int = 512,
        scale: int = 4,
        random_crop: bool = True,
        random_flip: bool = True,
        null_text_ratio: float = 0.0,
        seed: int = 0,
        on_problem: str = "error",
        center_crop: bool = False,
        recursive: bool = False,
    ):
        _check_int("scale", scale, 1)
        _check_int("resolution", resolution, 1)
        if resolution % scale or resolution % 8:
            raise ValueError(
                f"`resolution` must be a multiple of `scale` ({scale}) and of 8 (the VAE factor), got {resolution}; "
                f"for example {_next_multiple(resolution, math.lcm(scale, 8))}."
            )
        for name, value in (("random_crop", random_crop), ("random_flip", random_flip), ("center_crop", center_crop)):
            if not isinstance(value, bool):
                raise ValueError(f"`{name}` must be a bool, got {value!r}.")
        if (
            isinstance(null_text_ratio, bool)
            or not isinstance(null_text_ratio, (int, float))
            or not 0.0 <= null_text_ratio <= 1.0
        ):
            raise ValueError(f"`null_text_ratio` must be a number in [0, 1], got {null_text_ratio!r}.")
        _check_int("seed", seed, 0)
        if on_problem not in ON_PROBLEM_CHOICES:
            raise ValueError(f"`on_problem` must be one of {ON_PROBLEM_CHOICES}, got {on_problem!r}.")

        if not isinstance(recursive, bool):
            raise ValueError(f"`recursive` must be a bool, got {recursive!r}.")
        self.report = scan_image_folder(root, scale=scale, resolution=resolution, recursive=recursive)
        if not self.report.pairs:
            raise ValueError(
                f"{self.report.format()}\nNo usable images: put GT images in {str(self.report.root / GT_FOLDER)!r} "
                f"(or directly in {str(self.report.root)!r} for an HQ-only folder) and fix the problems listed."
            )
        if not self.report.ok:
            if on_problem == "error":
                raise ValueError(
                    f"{self.report.format()}\nWhat to do: fix or remove the files listed under Problems and build "
                    'the dataset again, or pass `on_problem="skip"` to use the '
                    f"{len(self.report.pairs)} usable items only."
                )
            logger.warning(f"{self.report.format()}\nUsing the {len(self.report.pairs)} usable items only.")

        self.root = self.report.root
        self.pairs = self.report.pairs
        self.resolution = resolution
        self.scale = scale
        self.lq_resolution = resolution // scale
        self.random_crop = random_crop
        self.random_flip = random_flip
        self.center_crop = center_crop
        self.null_text_ratio = float(null_text_ratio)
        self.seed = seed
        self.on_problem = on_problem
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def has_lq(self) -> bool:
        """`True` when the folder has `lq/`: items then carry `"lq"`."""
        return self.report.has_lq

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that, with `seed` and the index, determines each item's crop, flip and caption dropout."""
        _check_int("epoch", epoch, 0)
        self._epoch.fill_(epoch)

    def __len__(self) -> int:
        return len(self.pairs)

    def _crop_origin(self, height: int, width: int, crop: int, top_u: float, left_u: float) -> tuple[int, int]:
        max_top, max_left = max(height - crop, 0), max(width - crop, 0)
        if self.center_crop:
            return max_top // 2, max_left // 2
        if self.random_crop:
            return int(top_u * (max_top + 1)), int(left_u * (max_left + 1))
        return 0, 0

    def __getitem__(self, index: int) -> dict[str, Any]:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an integer, got {index!r}.")
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for a dataset of {len(self)} items.")
        index = int(index) % len(self)
        for attempt in range(len(self)):
            try:
                return self._item((index + attempt) % len(self))
            except OSError as error:
                if self.on_problem != "skip":
                    raise
                # A file that broke after the scan: logged, and the next item takes its place.
                logger.warning(f"Skipping item {(index + attempt) % len(self)}: {error}")
        raise OSError(f"No item of {self.root} can be loaded any more; see the warnings above.")

    def _item(self, index: int) -> dict[str, Any]:
        pair = self.pairs[index]
        # One draw per decision, in a fixed order, so that e.g. the flip does not depend on the image size.
        flip_u, caption_u, top_u, left_u = np.random.default_rng((self.seed, self.epoch, index)).random(4)

        item: dict[str, Any] = {}
        if pair.lq_path is not None:
            top, left = self._crop_origin(pair.lq_size[1], pair.lq_size[0], self.lq_resolution, top_u, left_u)
            item["gt"] = _load_crop(pair.gt_path, pair.gt_size, top * self.scale, left * self.scale, self.resolution)
            item["lq"] = _load_crop(pair.lq_path, pair.lq_size, top, left, self.lq_resolution)
        else:
            top, left = self._crop_origin(pair.gt_size[1], pair.gt_size[0], self.resolution, top_u, left_u)
            item["gt"] = _load_crop(pair.gt_path, pair.gt_size, top, left, self.resolution)
        if self.random_flip and flip_u < 0.5:
            item = {key: value.flip(-1) for key, value in item.items()}
        item["caption"] = "" if caption_u < self.null_text_ratio else pair.caption
        item["stem"] = pair.stem
        return item


def _next_multiple(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def collate_fn(items: list[dict[str, Any]]) -> dict[str, Any]:
    r"""
    Batch items of `PairedImageFolder`: `"gt"` `(B, 3, R, R)`, `"lq"` `(B, 3, r, r)` when the items have it,
    `"caption"` and `"stem"` as lists of `str`.
    """
    if not items:
        raise ValueError("`collate_fn` got an empty list of items; expected at least one item of `PairedImageFolder`.")
    with_lq = sum("lq" in item for item in items)
    if with_lq not in (0, len(items)):
        raise ValueError(
            f"{with_lq} of {len(items)} items have an `lq` image; a batch must come from one dataset, all paired "
            "or all HQ-only."
        )
    batch: dict[str, Any] = {"gt": torch.stack([item["gt"] for item in items])}
    if with_lq:
        batch["lq"] = torch.stack([item["lq"] for item in items])
    batch["caption"] = [item["caption"] for item in items]
    batch["stem"] = [item["stem"] for item in items]
    return batch
