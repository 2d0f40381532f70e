"""Image files in folders: which files count as images, listing and reading them, and writing outputs safely.

Cheap to import (the standard library only); PIL and numpy are imported by the functions that need them.
"""

import os
from pathlib import Path
from typing import Any

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
"""File extensions (lower case) taken as images when a folder is listed."""

SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
"""PIL modes of 16-bit grayscale images (PNG and TIFF open as one of them)."""


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The image files directly inside `folder` (not in subfolders), by `IMAGE_EXTENSIONS`, sorted by name.

    Raises:
        NotADirectoryError: if `folder` is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder.")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def check_unique_stems(paths: list[Path]) -> None:
    """Raises a `ValueError` naming both files when two paths share a file stem (ignoring case, as case-insensitive
    file systems do), since both would be written to the same `<stem>.*` output."""
    seen: dict[str, Path] = {}
    for path in paths:
        other = seen.setdefault(path.stem.casefold(), path)
        if other != path:
            raise ValueError(
                f"{other} and {path} have the same name stem {path.stem!r}, so their outputs would overwrite each "
                "other; rename one of them or process them separately."
            )


def read_image(path: str | os.PathLike) -> Any:
    """Opens and decodes an image file, turned upright by its EXIF orientation.

    Returns:
        `PIL.Image.Image`: in the file's mode (see [`rgb8`] for 8-bit RGB).

    Raises:
        ValueError: if the file is not an image PIL can read (unknown format, truncated or broken data), with the
            reason.
    """
    import PIL.Image
    import PIL.ImageOps

    try:
        with PIL.Image.open(path) as image:
            image.load()
        return PIL.ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, PIL.Image.DecompressionBombError) as error:  # SyntaxError: broken PNG
        reason = " ".join(str(error).split()) or type(error).__name__
        raise ValueError(f"cannot read the image ({reason})") from None


def rgb8(image: Any) -> Any:
    """A PIL image as an `(H, W, 3)` uint8 array: 16-bit grayscale scaled to 8 bits (÷ 257), alpha dropped, grey
    repeated."""
    import numpy as np

    if image.mode in SIXTEEN_BIT_MODES:
        gray = np.clip(np.round(np.asarray(image, dtype=np.float64) / 257), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    return np.asarray(image.convert("RGB"))


def read_rgb8(path: str | os.PathLike) -> Any:
    """An image file as an `(H, W, 3)` uint8 array, upright (see [`read_image`] and [`rgb8`]).

    Raises:
        ValueError: if the file is not an image PIL can read, with the reason.
    """
    return rgb8(read_image(path))


def write_atomic(path: str | os.PathLike, content: Any) -> None:
    """Writes `content` to `path` through a hidden temporary file next to it (`.<name>.partial`), renamed into place
    when complete, so that an interrupted run leaves either the whole file or none; the temporary file is removed
    when writing fails or is interrupted.

    Args:
        path (`str` or `os.PathLike`): the file to write; its folder must exist.
        content (`str` or `PIL.Image.Image`): text (written as UTF-8) or an image (written as PNG).
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        if isinstance(content, str):
            partial.write_text(content, encoding="utf-8")
        else:
            content.save(partial, format="PNG")
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
