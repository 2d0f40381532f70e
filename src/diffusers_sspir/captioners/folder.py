"""Caption every image of a folder into `captions/<stem>.txt`: batched, resumable, with a progress bar."""

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import PIL.Image
from tqdm.auto import tqdm

from ..files import check_unique_stems, list_images, read_rgb8, write_atomic


@dataclass
class CaptionFolderResult:
    """What [`caption_folder`] did.

    Args:
        output_dir (`Path`): where the caption files are.
        captioned (`list[Path]`): the images captioned in this run.
        skipped (`list[Path]`): the images whose caption file already existed.
        failed (`dict[Path, str]`): the images that could not be captioned, with the reason.
    """

    output_dir: Path
    captioned: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: dict[Path, str] = field(default_factory=dict)


def default_caption_dir(folder: str | os.PathLike) -> Path:
    """Where captions of `folder` go by default: `folder/captions`, except for the `gt/` or `lq/` folder of a
    training set, whose captions belong next to it (`train/gt` → `train/captions`, where training reads them)."""
    folder = Path(folder)
    return folder.parent / "captions" if folder.name in ("gt", "lq") else folder / "captions"


def pending_images(
    folder: str | os.PathLike, output_dir: str | os.PathLike | None = None, overwrite: bool = False
) -> tuple[list[Path], list[Path], Path]:
    """Splits the images of `folder` into those still to caption and those whose `<stem>.txt` caption exists.

    Args:
        folder (`str` or `os.PathLike`): the folder of images.
        output_dir (`str` or `os.PathLike`, *optional*): the caption folder; defaults to
            [`default_caption_dir`].
        overwrite (`bool`, defaults to `False`): count every image as still to caption.

    Returns:
        `tuple[list[Path], list[Path], Path]`: `(to_caption, already_captioned, output_dir)`.

    Raises:
        NotADirectoryError: if `folder` is not a folder.
        ValueError: if two images share a file stem (their captions would overwrite each other).
    """
    images = list_images(folder)
    check_unique_stems(images)
    output_dir = Path(output_dir) if output_dir is not None else default_caption_dir(folder)
    todo, done = [], []
    for path in images:
        (done if not overwrite and (output_dir / f"{path.stem}.txt").is_file() else todo).append(path)
    return todo, done, output_dir


def caption_folder(
    folder: str | os.PathLike,
    captioner: Callable[[list[PIL.Image.Image]], list[str]],
    output_dir: str | os.PathLike | None = None,
    batch_size: int = 8,
    overwrite: bool = False,
    generator_seed: int | None = None,
    progress: bool = True,
) -> CaptionFolderResult:
    """Captions the images of `folder` (not its subfolders) and writes each caption to `<output_dir>/<stem>.txt`.

    Resumable: images that already have a caption file are skipped unless `overwrite`. Images are read and captioned
    `batch_size` at a time by [`~diffusers_sspir.files.read_rgb8`], as the `sspir` commands read them: 8-bit RGB
    (16-bit images scaled down), turned upright by their EXIF orientation. An image that cannot be read, or a batch
    the captioner fails on, is recorded in `failed` and the rest go on. Captions are written as they come (through a
    temporary file, so an interrupted run leaves only whole files).

    Args:
        folder (`str` or `os.PathLike`): the folder of images (extensions in `IMAGE_EXTENSIONS`).
        captioner (`Captioner`): any callable `list[PIL.Image.Image] -> list[str]`, such as
            [`VLMCaptioner`] or [`FixedCaptioner`]. One that takes `generator_seed` gets `generator_seed`.
        output_dir (`str` or `os.PathLike`, *optional*): where to write the captions; defaults to
            [`default_caption_dir`] (`folder/captions`, or `train/captions` for `train/gt`). Created if missing.
        batch_size (`int`, defaults to 8): images per captioner call.
        overwrite (`bool`, defaults to `False`): caption again images that already have a caption.
        generator_seed (`int`, *optional*): passed to every call of a captioner that accepts it, for reproducible
            sampling.
        progress (`bool`, defaults to `True`): show a progress bar over the images (on a terminal only).

    Returns:
        [`CaptionFolderResult`]: what was captioned, skipped and failed.

    Raises:
        NotADirectoryError: if `folder` is not a folder.
        ValueError: if two images share a file stem, or `batch_size` is not a positive integer.

    Example:

    ```py
    >>> from diffusers_sspir.captioners import FixedCaptioner, caption_folder

    >>> result = caption_folder("photos", FixedCaptioner("a photo"))
    >>> print(f"{len(result.captioned)} captioned, {len(result.skipped)} already done")
    ```
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
    todo, done, output_dir = pending_images(folder, output_dir, overwrite)
    result = CaptionFolderResult(output_dir=output_dir, skipped=done)
    if not todo:
        return result
    output_dir.mkdir(parents=True, exist_ok=True)
    kwargs = {}
    if generator_seed is not None and "generator_seed" in inspect.signature(captioner).parameters:
        kwargs["generator_seed"] = generator_seed

    with tqdm(total=len(todo), unit="image", desc="captioning", disable=None if progress else True) as bar:
        for start in range(0, len(todo), batch_size):
            batch, images = [], []
            for path in todo[start : start + batch_size]:
                try:
                    images.append(PIL.Image.fromarray(read_rgb8(path)))
                    batch.append(path)
                except ValueError as error:  # unreadable (the reason is in the message): the others go on
                    result.failed[path] = str(error)
                except Exception as error:
                    result.failed[path] = f"cannot read the image ({type(error).__name__}: {error})"
            try:
                captions = captioner(images, **kwargs) if images else []
                if not isinstance(captions, list) or len(captions) != len(images):
                    raise ValueError(f"it returned {captions!r} for {len(images)} images, not one string each")
                if not all(isinstance(caption, str) for caption in captions):
                    raise TypeError(f"it returned {captions!r}; captions must be strings")
            except Exception as error:  # one failing batch does not stop the others
                result.failed.update({path: f"captioning failed ({type(error).__name__}: {error})" for path in batch})
                captions, batch = [], []
            for path, caption in zip(batch, captions):
                write_atomic(output_dir / f"{path.stem}.txt", caption.strip())
                result.captioned.append(path)
            bar.update(len(todo[start : start + batch_size]))
    return result
