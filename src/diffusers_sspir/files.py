"""Image files in folders: which files count as images, listing them, and writing outputs safely."""

import os
from pathlib import Path

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
"""File extensions (lower case) taken as images when a folder is listed."""


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


def write_text_atomic(path: Path, text: str) -> None:
    """Writes `text` to `path` through a temporary file, so that an interrupted run never leaves a partial file."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
