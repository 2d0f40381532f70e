"""What the web demo does, without the web: read an upload within the size limits, describe it, restore it.

[`DemoRestorer`] holds one loaded pipeline and answers the page's three requests, each a plain method that raises
`ValueError` (or `MemoryError`) with a message for the user when the request cannot be served: `read_upload`,
`describe` and `restore`. The gradio page (`page.py`) only lays these out.
"""

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..defaults import DEFAULT_ADDED_PROMPT, DEMO_MAX_INPUT_PIXELS, DEMO_MAX_OUTPUT_PIXELS
from ..files import EIGHT_BIT_MODES, read_image, rgb8, write_atomic
from ..validation import check_seed, check_setting, check_whole_number, color_fix_from_name

MODEL_SCHEDULER = "model's own"
"""The scheduler choice that keeps the one the model was saved with."""


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; larger requests are refused before anything is decoded or allocated.

    Args:
        max_input_pixels (`int`): width × height of an upload, read from the file's header.
        max_output_pixels (`int`): width × height of a restoration (the upload × `upscale`).
    """

    max_input_pixels: int = DEMO_MAX_INPUT_PIXELS
    max_output_pixels: int = DEMO_MAX_OUTPUT_PIXELS


@dataclass
class Upload:
    """An uploaded image as the pipeline takes it.

    Args:
        image (`PIL.Image.Image`): 8-bit RGB, upright.
        notes (`list[str]`): what was changed to make it so (alpha dropped, 16 bits scaled, first frame of an
            animation, ...), for the page to show.
    """

    image: Any
    notes: list[str] = field(default_factory=list)


@dataclass
class RestoreSettings:
    """The settings a user tunes on the page; `None` takes the model's recommended setting
    ([`SSPIRPipeline.recommended_settings`]) or the pipeline's default.

    Args:
        caption (`str`): the semantic prior (the reviewed caption); empty: the captioner's own description.
        added_prompt (`str`): appended to the caption.
        upscale (`float`): output size factor.
        steps, guidance_scale, strength, restoration_guidance_scale, restoration_guidance_decay: as in
            `SSPIRPipeline.__call__`.
        scheduler (`str`): a name of `sspir restore --scheduler`, or [`MODEL_SCHEDULER`].
        color_fix (`str`): `wavelet`, `adain` or `none`.
        seed (`int`): the seed of the noise (and of a sampling captioner).
        tile_size (`int`, *optional*): denoise in tiles of this many output pixels (`None`: the whole image).
    """

    caption: str = ""
    added_prompt: str = DEFAULT_ADDED_PROMPT
    upscale: float = 4
    steps: int | None = None
    guidance_scale: float | None = None
    strength: float | None = None
    restoration_guidance_scale: float | None = None
    restoration_guidance_decay: float | None = None
    scheduler: str = MODEL_SCHEDULER
    color_fix: str = "wavelet"
    seed: int = 0
    tile_size: int | None = None


@dataclass
class Restoration:
    """One restoration's results, for the page.

    Args:
        image (`PIL.Image.Image`): the restored image.
        bicubic (`PIL.Image.Image`): the upload upscaled bicubically to the same size, the "before" of the slider.
        structure (`PIL.Image.Image`): the structure prior at the output size.
        prompt (`str`): the prompt the image was restored with (caption and added prompt).
        seconds (`float`): the time the pipeline took.
        png (`Path`): the restored image as a PNG file in the restorer's folder, for download (until the next
            restoration: the page keeps a copy of its own).
        summary (`str`): one line saying what was done.
    """

    image: Any
    bicubic: Any
    structure: Any
    prompt: str
    seconds: float
    png: Path
    summary: str


class DemoRestorer:
    """One SSP-IR pipeline serving the web demo's requests, one at a time (the page queues them).

    Args:
        pipe (`SSPIRPipeline`): loaded on its device, with its captioner (or none).
        limits (`Limits`, *optional*): the size limits of a request.
        model_name (`str`): how the page names the model ("the bundled demo model", a path or a Hub id).
        captioner_name (`str`): how the page names the captioner (a Hub id, "fixed text: ...").
        work_dir (`str` or `os.PathLike`, *optional*): where the downloadable PNGs are written; defaults to a new
            temporary folder. Nothing else is written, and the page serves nothing else from the disk.
    """

    def __init__(
        self,
        pipe: Any,
        limits: Limits | None = None,
        model_name: str = "",
        captioner_name: str = "",
        work_dir: str | os.PathLike | None = None,
    ) -> None:
        self.pipe = pipe
        self.limits = limits or Limits()
        self.model_name = model_name
        self.captioner_name = captioner_name
        self.work_dir = Path(work_dir if work_dir is not None else tempfile.mkdtemp(prefix="sspir-demo-"))
        self.model_scheduler = pipe.scheduler

    @property
    def has_captioner(self) -> bool:
        return self.pipe.captioner is not None

    @property
    def recommended(self) -> dict[str, Any]:
        """The model's recommended call settings: the page's starting values."""
        return self.pipe.recommended_settings

    # ------------------------------------------------------------------ requests

    def read_upload(self, path: str | os.PathLike) -> Upload:
        """The uploaded file `path` as 8-bit RGB, or a `ValueError` saying why it cannot be used: not an image,
        truncated or broken (`diffusers_sspir.files.read_image`'s message), or more pixels than
        `limits.max_input_pixels` (read from the header, before the pixels are decoded)."""
        import PIL.Image

        try:
            with PIL.Image.open(path) as header:  # reads the header only
                width, height, frames = header.width, header.height, getattr(header, "n_frames", 1)
        except Exception:  # not an image, or a broken header: read_image says which
            width = height = frames = None
        if width is not None and width * height > self.limits.max_input_pixels:
            raise ValueError(
                f"The image is {width}x{height} = {width * height:,} pixels; this demo takes at most "
                f"{self.limits.max_input_pixels:,} (its --max-input-pixels). Upload a smaller image."
            )
        image = read_image(path)
        notes = []
        if image.mode not in EIGHT_BIT_MODES:  # 16-bit, 32-bit or float: by its range, as the pipeline reads it
            notes.append(f"{'float' if image.mode == 'F' else '16-bit'} image: scaled to 8 bits")
        elif image.mode == "CMYK":
            notes.append("CMYK image: converted to RGB")
        elif "A" in image.getbands() or "transparency" in image.info:
            notes.append("transparent image: its alpha channel is dropped (hidden colours show)")
        if frames and frames > 1:
            notes.append(f"animated image of {frames} frames: the first frame is used")
        return Upload(PIL.Image.fromarray(rgb8(image)), notes)

    def check_size(self, upload: Upload, upscale: float) -> tuple[int, int]:
        """The output `(width, height)` of restoring `upload` by `upscale`, or a `ValueError` when it has more
        pixels than `limits.max_output_pixels`."""
        upscale = check_setting("upscale", upscale)
        width, height = (round(s * upscale) for s in upload.image.size)
        if width * height > self.limits.max_output_pixels:
            largest = (self.limits.max_output_pixels / (upload.image.width * upload.image.height)) ** 0.5
            raise ValueError(
                f"Upscaling {upload.image.width}x{upload.image.height} by {upscale:g} gives {width}x{height} = "
                f"{width * height:,} pixels; this demo makes at most {self.limits.max_output_pixels:,} (its "
                f"--max-output-pixels). Choose an upscale of at most {int(largest * 10) / 10:g} or a smaller image."
            )
        if width < 1 or height < 1:
            raise ValueError(f"Upscaling by {upscale:g} leaves no pixels; choose a larger upscale.")
        return width, height

    def describe(self, upload: Upload, upscale: float, seed: int = 0) -> str:
        """The captioner's description of `upload` (upscaled as the restoration sees it), for the user to review;
        `""` without a captioner."""
        import torch

        self.check_size(upload, upscale)
        seed = check_seed("seed", check_whole_number("seed", seed, 0))
        generator = torch.Generator().manual_seed(seed)
        return self.pipe.describe(upload.image, added_prompt=None, upscale=upscale, generator=generator)[0]

    def restore(
        self,
        upload: Upload,
        settings: RestoreSettings,
        progress: Callable[[int, int], None] | None = None,
    ) -> Restoration:
        """Restores `upload` with `settings`, calling `progress(step, steps)` after each denoising step.

        Raises:
            ValueError: for a setting out of its range (the pipeline's own message) or an output above the limit.
            MemoryError: when the device cannot hold the restoration (the pipeline's estimate, before allocating).
        """
        import torch

        from ..schedulers import make_scheduler

        width, height = self.check_size(upload, settings.upscale)
        color_fix = color_fix_from_name(settings.color_fix)
        seed = check_seed("seed", check_whole_number("seed", settings.seed, 0))
        steps = None if settings.steps is None else check_whole_number("steps", settings.steps, 1)
        tile_size = None if settings.tile_size is None else check_whole_number("tile size", settings.tile_size, 1)
        if settings.scheduler == MODEL_SCHEDULER:
            scheduler = self.model_scheduler
        else:
            scheduler = make_scheduler(settings.scheduler, self.model_scheduler.config)  # ValueError: the name's

        def on_step_end(pipe: Any, step: int, timestep: Any, tensors: dict) -> dict:
            if progress is not None:
                progress(step + 1, pipe.num_timesteps)
            return tensors

        self.pipe.scheduler = scheduler
        start = time.perf_counter()
        try:
            result = self.pipe(
                upload.image,
                prompt=settings.caption.strip() or None,  # empty: the captioner describes the image
                added_prompt=settings.added_prompt,
                upscale=settings.upscale,
                num_inference_steps=steps,
                guidance_scale=settings.guidance_scale,
                strength=settings.strength,
                restoration_guidance_scale=settings.restoration_guidance_scale,
                restoration_guidance_decay=settings.restoration_guidance_decay,
                tile_size=tile_size,
                color_fix=color_fix,
                generator=torch.Generator().manual_seed(seed),
                callback_on_step_end=on_step_end,
            )
        finally:
            self.pipe.scheduler = self.model_scheduler
        seconds = time.perf_counter() - start
        restored = result.images[0]
        bicubic = _upscaled(upload.image, (height, width))
        for previous in self.work_dir.glob("restored-*"):  # served by now: gradio copied it into its cache
            shutil.rmtree(previous, ignore_errors=True)
        folder = Path(tempfile.mkdtemp(prefix="restored-", dir=self.work_dir))
        png = folder / f"sspir_x{settings.upscale:g}_{width}x{height}.png"
        write_atomic(png, restored)
        scheduler_name = type(scheduler).__name__ if settings.scheduler == MODEL_SCHEDULER else settings.scheduler
        summary = (
            f"{upload.image.width}x{upload.image.height} → {width}x{height} in {seconds:.1f} s "
            f"({scheduler_name}, seed {seed})"
        )
        return Restoration(restored, bicubic, result.structure_images[0], result.prompts[0], seconds, png, summary)


def _upscaled(image: Any, size: tuple[int, int]) -> Any:
    """`image` upscaled to `size` (height, width) as the pipeline upscales its input (`upscale_bicubic`)."""
    import numpy as np
    import PIL.Image

    from ..image_ops import to_tensor_batch, upscale_bicubic

    upscaled = upscale_bicubic(to_tensor_batch(image)[0][None], size)[0]
    return PIL.Image.fromarray((upscaled.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
