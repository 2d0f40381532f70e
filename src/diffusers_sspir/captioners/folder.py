"""Caption every image of a folder into `captions/<stem>.txt`: batched, resumable, with a progress bar, in one
process or shared among the processes of a distributed launch (see [`diffusers_sspir.jobs`])."""

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import PIL.Image

from ..files import check_unique_keys, image_key, list_images, read_rgb8, write_atomic
from ..jobs import JobGroup, run_jobs
from .base import accepts_generator_seed


@dataclass
class CaptionFolderResult:
    """What [`caption_folder`] did.

    Args:
        output_dir (`Path`): where the caption files are.
        captioned (`list[Path]`): the images captioned in this run.
        skipped (`list[Path]`): the images whose caption file already existed (or was written meanwhile by another
            run sharing the caption folder).
        failed (`dict[Path, str]`): the images that could not be captioned, with the reason.
        elsewhere (`list[Path]`): the images left to another run that was captioning them.
    """

    output_dir: Path
    captioned: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: dict[Path, str] = field(default_factory=dict)
    elsewhere: list[Path] = field(default_factory=list)


def default_caption_dir(folder: str | os.PathLike) -> Path:
    """Where captions of `folder` go by default: `folder/captions`, except for the `gt/` or `lq/` folder of a
    training set, whose captions belong next to it (`train/gt` → `train/captions`, where training reads them)."""
    folder = Path(folder)
    return folder.parent / "captions" if folder.name in ("gt", "lq") else folder / "captions"


def caption_plans(
    folder: str | os.PathLike, output_dir: str | os.PathLike | None = None, recursive: bool = False
) -> tuple[dict[Path, dict[str, Path]], Path]:
    """The caption file of every image of `folder`: `<output_dir>/<key>.txt`, where the key is the image's stem, or
    with `recursive` its path inside `folder` without the extension (`captions/a/b.txt` for `a/b.png`).

    Args:
        folder (`str` or `os.PathLike`): the folder of images.
        output_dir (`str` or `os.PathLike`, *optional*): the caption folder; defaults to [`default_caption_dir`].
        recursive (`bool`, defaults to `False`): also the images of the subfolders (hidden ones left out).

    Returns:
        `tuple[dict[Path, dict[str, Path]], Path]`: `({image: {"caption": caption file}}, output_dir)`, images in
        sorted order.

    Raises:
        NotADirectoryError: if `folder` is not a folder.
        ValueError: if two images share a key (`a.png` and `a.jpg`: their captions would overwrite each other).
    """
    keys = {path: image_key(path, folder) for path in list_images(folder, recursive)}
    check_unique_keys(keys)
    output_dir = Path(output_dir) if output_dir is not None else default_caption_dir(folder)
    return {path: {"caption": output_dir / f"{key}.txt"} for path, key in keys.items()}, output_dir


def caption_writer(
    captioner: Callable[[list[PIL.Image.Image]], list[str]], generator_seed: int | None = None
) -> Callable[[list[tuple[Path, dict[str, Path]]]], dict[Path, str]]:
    """The work of one batch for [`diffusers_sspir.jobs.run_jobs`]: reads the images of `(image, {"caption": file})`
    items with [`~diffusers_sspir.files.read_rgb8`], captions them in one `captioner` call (with `generator_seed`
    when it accepts one) and writes each caption, stripped, to its file; returns the images that could not be read
    or captioned, with the reason."""
    kwargs = {}
    if generator_seed is not None and accepts_generator_seed(captioner):
        kwargs["generator_seed"] = generator_seed

    def write_captions(batch: list[tuple[Path, dict[str, Path]]]) -> dict[Path, str]:
        failed, read, images = {}, [], []
        for path, outputs in batch:
            try:
                images.append(PIL.Image.fromarray(read_rgb8(path)))
                read.append((path, outputs))
            except ValueError as error:  # unreadable (the reason is in the message): the others go on
                failed[path] = str(error)
            except Exception as error:
                failed[path] = f"cannot read the image ({type(error).__name__}: {error})"
        try:
            captions = captioner(images, **kwargs) if images else []
            if not isinstance(captions, list) or len(captions) != len(images):
                raise ValueError(f"it returned {captions!r} for {len(images)} images, not one string each")
            if not all(isinstance(caption, str) for caption in captions):
                raise TypeError(f"it returned {captions!r}; captions must be strings")
        except Exception as error:  # one failing batch does not stop the others
            failed.update({path: f"captioning failed ({type(error).__name__}: {error})" for path, _ in read})
            return failed
        for (_, outputs), caption in zip(read, captions):
            write_atomic(outputs["caption"], caption.strip())
        return failed

    return write_captions


def caption_folder(
    folder: str | os.PathLike,
    captioner: Callable[[list[PIL.Image.Image]], list[str]],
    output_dir: str | os.PathLike | None = None,
    batch_size: int = 8,
    overwrite: bool = False,
    generator_seed: int | None = None,
    progress: bool = True,
    recursive: bool = False,
    group: JobGroup | None = None,
) -> CaptionFolderResult:
    """Captions the images of `folder` and writes each caption to `<output_dir>/<stem>.txt` (with `recursive`, the
    images of its subfolders too, into `<output_dir>/<path inside folder>.txt`: the captions mirror the tree).

    Resumable: images that already have a caption file are skipped unless `overwrite`. Images are read and captioned
    `batch_size` at a time by [`~diffusers_sspir.files.read_rgb8`], as the `sspir` commands read them: 8-bit RGB
    (16-bit images scaled down), turned upright by their EXIF orientation. Batches are cut from the sorted list of
    all images (those already captioned are left out of theirs), so a resumed run and a run shared among processes
    caption the same batches as one uninterrupted run. An image that cannot be read, or a batch the captioner fails
    on, is recorded in `failed` and the rest go on. Captions are written as they come (through a temporary file, so
    an interrupted run leaves only whole files); runs sharing a caption folder never caption the same image at once.

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
        recursive (`bool`, defaults to `False`): also caption the images of the subfolders (hidden ones left out).
        group (`JobGroup`, *optional*): an entered [`~diffusers_sspir.jobs.JobGroup`] to share the images among the
            processes of a distributed launch, each with its own `captioner`; the result then holds the totals of
            all processes. Defaults to this process alone.

    Returns:
        [`CaptionFolderResult`]: what was captioned, skipped and failed.

    Raises:
        NotADirectoryError: if `folder` is not a folder.
        ValueError: if two images share a file stem (or, with `recursive`, a path without extension), or
            `batch_size` is not a positive integer.

    Example:

    ```py
    >>> from diffusers_sspir.captioners import FixedCaptioner, caption_folder

    >>> result = caption_folder("photos", FixedCaptioner("a photo"))
    >>> print(f"{len(result.captioned)} captioned, {len(result.skipped)} already done")
    ```
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
    plans, output_dir = caption_plans(folder, output_dir, recursive)
    write_captions = caption_writer(captioner, generator_seed)
    jobs = run_jobs(
        plans, lambda: write_captions, overwrite=overwrite, batch_size=batch_size, group=group, desc="captioning",
        progress=progress,
    )  # fmt: skip
    return CaptionFolderResult(output_dir, jobs.done, jobs.skipped, jobs.failed, jobs.elsewhere)
