"""Image files in folders: which files count as images, listing and reading them, and writing outputs safely.

Cheap to import (the standard library only); PIL and numpy are imported by the functions that need them.
"""

import contextlib
import logging
import os
import threading
import uuid
from collections.abc import Iterable, Iterator
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

from .defaults import MAX_INPUT_PIXELS, MAX_INPUT_PIXELS_VARIABLE

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")
"""File extensions (lower case) taken as images when a folder is listed (an animated GIF, PNG or WebP gives its first
frame, with a warning)."""

EIGHT_BIT_MODES = ("RGB", "L", "P", "RGBA", "LA", "PA", "CMYK", "YCbCr", "1")
"""PIL modes of 8-bit data (and 1-bit), which `PIL.Image.Image.convert("RGB")` turns into the model's input exactly."""


def scan_folder(folder: str | os.PathLike, recursive: bool = False) -> tuple[list[Path], list[Path]]:
    """The files of `folder`: `(images, others)`, images by `IMAGE_EXTENSIONS`, each list sorted by the path
    relative to `folder` (see [`image_key`]).

    Without `recursive`, the files directly inside `folder`; with it, those of every subfolder too, except hidden
    ones (a file or folder whose name starts with `.`, such as the temporary files of [`write_atomic`]). Links to
    folders are not followed.

    Raises:
        NotADirectoryError: if `folder` is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder.")
    if recursive:
        files = []
        for parent, folders, names in os.walk(folder):
            folders[:] = [name for name in folders if not name.startswith(".")]
            files.extend(Path(parent, name) for name in names if not name.startswith("."))
    else:
        files = [path for path in folder.iterdir() if path.is_file()]
    files.sort(key=lambda path: path.relative_to(folder).as_posix())
    images = [path for path in files if path.suffix.lower() in IMAGE_EXTENSIONS]
    return images, [path for path in files if path.suffix.lower() not in IMAGE_EXTENSIONS]


def list_images(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """The image files of `folder` by `IMAGE_EXTENSIONS`, sorted by their path relative to it: those directly inside
    it, or with `recursive` those of its subfolders too (hidden ones left out; see [`scan_folder`]).

    Raises:
        NotADirectoryError: if `folder` is not a folder.
    """
    return scan_folder(folder, recursive)[0]


def image_key(path: str | os.PathLike, folder: str | os.PathLike | None = None) -> str:
    """The name an input goes by in the names of its outputs: its path relative to `folder` without the extension,
    `/`-separated (`"0001000/0000001"` for `folder/0001000/0000001.png`), so that outputs mirror the input tree; the
    file stem for a file directly in `folder`, or when `folder` is `None`."""
    path = Path(path)
    if folder is None:
        return path.stem
    return path.relative_to(folder).with_suffix("").as_posix()


def check_unique_keys(keys: dict[Path, str]) -> None:
    """Raises a `ValueError` naming both files when two inputs have the same key (see [`image_key`]; ignoring case,
    as case-insensitive file systems do), since both would be written to the same `<key>.*` outputs.

    Args:
        keys (`dict[Path, str]`): each input file → its key.
    """
    seen: dict[str, Path] = {}
    for path, key in keys.items():
        other = seen.setdefault(key.casefold(), path)
        if other != path:
            what = "name stem" if "/" not in key else "path (without extension)"
            raise ValueError(
                f"{other} and {path} have the same {what} {key!r}, so their outputs would overwrite each other; "
                "rename one of them or process them separately."
            )


def max_input_pixels() -> int:
    """The largest image (in pixels) the readers decode: `SSPIR_MAX_INPUT_PIXELS` if set (0: no limit), else
    `diffusers_sspir.defaults.MAX_INPUT_PIXELS`."""
    value = os.environ.get(MAX_INPUT_PIXELS_VARIABLE)
    if value is None:
        return MAX_INPUT_PIXELS
    try:
        limit = int(value)
    except ValueError:
        raise ValueError(
            f"{MAX_INPUT_PIXELS_VARIABLE}={value!r}: must be a whole number of pixels (0: no limit)."
        ) from None
    if limit < 0:
        raise ValueError(f"{MAX_INPUT_PIXELS_VARIABLE}={value!r}: must be >= 0 (0: no limit).")
    return limit


_PILLOW_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _pillow_limit() -> Iterator[None]:
    """Pillow's own decompression-bomb check (`PIL.Image.MAX_IMAGE_PIXELS`, an error at twice its value) off while
    a file's header is read, so that `limit` (0: none), checked from the header next, is the only limit and its
    message the one users see."""
    import PIL.Image

    default = PIL.Image.MAX_IMAGE_PIXELS
    if default is None:
        yield  # off already
        return
    with _PILLOW_LIMIT_LOCK:
        PIL.Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            PIL.Image.MAX_IMAGE_PIXELS = default


def _too_large(width: int, height: int, limit: int) -> str | None:
    if not limit or width * height <= limit:
        return None
    return (
        f"cannot read the image: {width}x{height} = {width * height:,} pixels, above the limit of {limit:,}; set "
        f"{MAX_INPUT_PIXELS_VARIABLE} to a larger number of pixels (0: no limit) to read it"
    )


def _unreadable(error: Exception) -> ValueError:
    """The error for a file Pillow cannot open or decode, with Pillow's reason on one line."""
    return ValueError(f"cannot read the image ({' '.join(str(error).split()) or type(error).__name__})")


def check_image_header(path: str | os.PathLike) -> None:
    """Reads only the header of an image file and raises the `ValueError` [`read_image`] would for a file that is
    not an image PIL can open or has more pixels than [`max_input_pixels`] allows: a check that costs no decoding,
    made before a model loads. A file that passes may still fail to decode (truncated data)."""
    import PIL.Image

    try:
        with _pillow_limit():
            opened = PIL.Image.open(path)
        with opened as image:
            width, height = image.size
    except (OSError, SyntaxError, ValueError, PIL.Image.DecompressionBombError) as error:
        raise _unreadable(error) from None
    problem = _too_large(width, height, max_input_pixels())
    if problem:
        raise ValueError(problem)


def read_image(path: str | os.PathLike) -> Any:
    """Opens and decodes an image file, turned upright by its EXIF orientation; of an animated image (GIF, APNG,
    WebP) the first frame, with a warning saying so.

    Returns:
        `PIL.Image.Image`: in the file's mode (see [`rgb8`] for 8-bit RGB; a palette image converts there).

    Raises:
        ValueError: if the file is not an image PIL can read (unknown format, truncated or broken data), with the
            reason, or if it has more pixels than [`max_input_pixels`] allows (checked before decoding).
    """
    import PIL.Image
    import PIL.ImageOps

    limit = max_input_pixels()
    try:
        with _pillow_limit():  # only while the header is read: the limit below governs the pixels
            opened = PIL.Image.open(path)
        with opened as image:
            too_large = _too_large(image.width, image.height, limit)
            frames = 1
            if not too_large:  # a huge image is refused from its header, before its pixels are decoded
                frames = getattr(image, "n_frames", 1)
                if frames > 1:
                    image.seek(0)
                image.load()
                if frames > 1:
                    image = image.copy()  # the first frame alone, readable after the file is closed
    except (OSError, SyntaxError, ValueError, PIL.Image.DecompressionBombError) as error:  # SyntaxError: broken PNG
        raise _unreadable(error) from None
    if too_large:
        raise ValueError(too_large)
    if frames > 1:
        logging.getLogger(__name__).warning(f"{path}: an animated image of {frames} frames; its first frame is used.")
    return PIL.ImageOps.exif_transpose(image)


def rgb8(image: Any) -> Any:
    """A PIL image as an `(H, W, 3)` uint8 array: the pipeline's own conversion of that image
    (`diffusers_sspir.image_ops.to_tensor_batch`: 16-bit and 32-bit integer grayscale ÷ 65535, float (`"F"`) images
    by their `[0, 1]` range, alpha dropped, grey repeated, palette and CMYK converted) rounded to 8 bits, so that
    every reader gives the same image.

    Raises:
        ValueError: for an image the pipeline refuses (a float image outside `[0, 1]`, say), with the reason.
    """
    import numpy as np

    if image.mode in EIGHT_BIT_MODES:  # PIL's conversion is the pipeline's here, exactly
        return np.asarray(image.convert("RGB"))
    from .image_ops import to_tensor_batch

    (tensor,) = to_tensor_batch(image, argument_name="image")
    return tensor.mul(255).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()


def read_rgb8(path: str | os.PathLike) -> Any:
    """An image file as an `(H, W, 3)` uint8 array, upright (see [`read_image`] and [`rgb8`]).

    Raises:
        ValueError: if the file is not an image PIL can read, with the reason.
    """
    return rgb8(read_image(path))


def write_atomic(path: str | os.PathLike, content: Any) -> None:
    """Writes `content` to `path` through a hidden temporary file next to it (`.<name>.<pid>-<random>.partial`),
    renamed into place when complete, so that an interrupted run leaves either the whole file or none; the temporary
    file is removed when writing fails or is interrupted.

    Args:
        path (`str` or `os.PathLike`): the file to write; its folder must exist.
        content (`str` or `PIL.Image.Image`): text (written as UTF-8) or an image (written as PNG).
    """
    path = Path(path)
    # unique per writer, so that runs sharing an output folder never write into each other's temporary file
    partial = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")
    try:
        if isinstance(content, str):
            partial.write_text(content, encoding="utf-8")
        else:
            content.save(partial, format="PNG")
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def read_claim(path: str | os.PathLike) -> str | None:
    """`"<host> <pid>"` of the run that holds the claim on `path`, or `None` when nobody does."""
    lock = Path(path).with_name(f".{Path(path).name}.claim")
    try:
        text = lock.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None
    return text if text and _claim_is_live(lock) else None


def _claim_is_live(lock: Path) -> bool:
    """Whether a run holds the claim file `lock`: whether a process has it locked (`flock`). The lock goes with the
    process however it ends, so a claim left by a killed run, a run of a restarted container or a file half written
    on a full disk is never taken for live, and a reused process id never keeps it."""
    import fcntl

    try:
        descriptor = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)
    return False


def _remove_partials(paths: Iterable[Path], text: str) -> None:
    """Removes the temporary files of [`write_atomic`] that the dead run whose claim read `text` (`"<host> <pid>"`)
    left for `paths` (a killed process cannot remove its own)."""
    try:
        pid = int(text.split()[1])
    except (ValueError, IndexError):
        return
    for path in paths:
        for partial in path.parent.glob(f".{glob_escape(path.name)}.{pid}-*.partial"):
            partial.unlink(missing_ok=True)


def _lock_claim_file(lock: Path) -> int | None:
    """An open descriptor of the claim file `lock`, locked by this process, or `None` when another holds it. A
    holder removes its file when done: a lock taken on a file that is no longer at `lock` is dropped and retried."""
    import fcntl

    while True:
        descriptor = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            return None
        try:
            if os.path.samestat(os.fstat(descriptor), os.stat(lock)):
                return descriptor
        except FileNotFoundError:
            pass
        os.close(descriptor)


@contextlib.contextmanager
def claim(path: str | os.PathLike, others: Iterable[str | os.PathLike] = ()) -> Iterator[bool]:
    """Claims the output `path` for this process while the block runs, so that concurrent runs on one output folder
    never make the same file: yields `True` when claimed, `False` when another live run holds it.

    The claim is a hidden `.<name>.claim` file next to `path`, locked (`flock`) while the block runs, holding the
    host and process id for messages, and removed afterwards. A run holds a claim only as long as its process lives:
    the claim of a killed run is taken over, and the temporary files that run left for `path` and for `others` (the
    other outputs made with it) are removed. On a folder shared between machines this needs a file system whose
    locks span them (NFS v4, Lustre, CephFS do).
    """
    import socket

    lock = Path(path).with_name(f".{Path(path).name}.claim")
    descriptor = _lock_claim_file(lock)
    if descriptor is None:
        yield False
        return
    try:
        with os.fdopen(os.dup(descriptor), "r+", encoding="utf-8", errors="replace") as file:
            left = file.read()  # a dead run's host and pid (or nothing): its half-written files go
            if left.strip():  # not just created: a run that is gone left it
                logging.getLogger(__name__).warning(
                    f"{path}: taking over the claim left by {left.strip()} (no live run holds it)."
                )
                _remove_partials([Path(path), *map(Path, others)], left)
            file.seek(0)
            file.truncate()
            file.write(f"{socket.gethostname()} {os.getpid()}\n")
        yield True
    finally:
        lock.unlink(missing_ok=True)  # before the lock goes, so that no run takes a claim on a removed file
        os.close(descriptor)
