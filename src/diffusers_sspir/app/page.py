"""The gradio page of `sspir demo`: a thin layout over [`DemoRestorer`], whose methods do the work.

Every request's problem (a bad file, a setting out of range, a request too large) is shown in the page's status line
and the page stays usable; one request runs at a time (gradio's queue, shared by Describe and Restore).
"""

import logging
import re
from pathlib import Path
from typing import Any

import gradio as gr

from ..defaults import COLOR_FIX_NAMES, RANGES
from ..schedulers import SCHEDULERS
from .restorer import MODEL_SCHEDULER, DemoRestorer, RestoreSettings

logger = logging.getLogger(__name__)

SAMPLE_IMAGE = Path(__file__).resolve().parents[3] / "assets" / "ladybird_lq.png"
"""The example upload: the README's sample, present in a source checkout of the repository."""

MAX_FILE_SIZE = "50mb"
"""The largest upload gradio accepts (the pixel limits apply after it)."""

DELETE_CACHE = (3600, 24 * 3600)
"""Every hour, gradio deletes the uploads and outputs it keeps that are older than a day."""


def pass_files_undecoded(image: gr.Image) -> gr.Image:
    """Makes `image` give the app the uploaded file as gradio stored it (a path in gradio's upload folder, which
    gradio checks), undecoded: `DemoRestorer.read_upload` checks its size before decoding it and says what is wrong
    with a broken file, where `gradio.Image` would open it first and fail with no message on the page. (On the
    instance: a subclass of a gradio component makes gradio write a `.pyi` file next to this module.)"""
    decode = image.preprocess

    def preprocess(payload: Any) -> str | None:
        if payload is None or payload.path is None:  # nothing, or a pasted image sent inline
            return decode(payload)
        return payload.path

    image.preprocess = preprocess
    return image


EXPECTED_ERRORS = (ValueError, MemoryError, FloatingPointError)
"""What a request can fail with that its message explains (a bad file or setting, a request too large)."""


# An absolute path in a message (a file of the server's): the page shows its last part only.
_SERVER_PATH = re.compile(r"(?:/[^/\s'\"]+)+/([^/\s'\"]+)")


def _error(error: BaseException) -> str:
    """The status line for a failed request, without the server's paths (a file keeps its name); an unforeseen
    error is also logged, with its traceback, on the server."""
    message = _SERVER_PATH.sub(r"\1", " ".join(str(error).split())) or type(error).__name__
    if not isinstance(error, EXPECTED_ERRORS):
        logger.error("the request failed", exc_info=error)
        message = f"{type(error).__name__}: {message}"
    return f"**Error:** {message}"


def _model_note(restorer: DemoRestorer) -> str:
    if restorer.has_captioner:
        captioning = f"captioner: {restorer.captioner_name or type(restorer.pipe.captioner).__name__}"
    else:
        captioning = "no captioner: **Describe** is skipped; type a caption yourself, or leave it empty"
    return f"Serving {restorer.model_name} · {captioning}."


def build_page(restorer: DemoRestorer) -> Any:
    """The demo's `gradio.Blocks`, queued (one request at a time), not launched."""
    recommended = restorer.recommended

    def on_upload(path: str | None) -> tuple[str, str]:
        if path is None:
            return "", ""
        try:
            upload = restorer.read_upload(path)
        except Exception as error:  # said in the page; the app goes on
            return _error(error), ""
        width, height = upload.image.size
        notes = "".join(f"; {note}" for note in upload.notes)
        return f"Uploaded {width}x{height}{notes}.", ""

    def on_describe(path: str | None, upscale: float, seed: float) -> tuple[str, Any]:
        if path is None:
            return "**Error:** upload an image first.", gr.skip()
        if not restorer.has_captioner:
            return "No captioner: type a caption, or leave it empty.", gr.skip()
        try:
            caption = restorer.describe(restorer.read_upload(path), upscale, seed)
        except Exception as error:  # said in the page; the app goes on
            return _error(error), gr.skip()
        return "Described: review and edit the caption, then **Restore**.", caption

    def on_restore(path, caption, added_prompt, upscale, steps, scheduler, guidance_scale, strength,
                   restoration_guidance_scale, restoration_guidance_decay, color_fix, seed, tiled, tile_size,
                   progress=gr.Progress()):  # noqa: B008 (gradio reads the default)  # fmt: skip
        skip = (gr.skip(),) * 5
        if path is None:
            return ("**Error:** upload an image first.", *skip)
        settings = RestoreSettings(
            caption=caption or "", added_prompt=added_prompt or "", upscale=upscale, steps=steps,
            guidance_scale=guidance_scale, strength=strength, restoration_guidance_scale=restoration_guidance_scale,
            restoration_guidance_decay=restoration_guidance_decay, scheduler=scheduler, color_fix=color_fix,
            seed=seed, tile_size=tile_size if tiled else None,
        )  # fmt: skip
        progress(0, desc="restoring")
        try:
            upload = restorer.read_upload(path)
            result = restorer.restore(upload, settings, lambda step, total: progress((step, total), unit="steps"))
        except Exception as error:  # said in the page; the app goes on
            return (_error(error), *skip)
        return (f"Restored {result.summary}.", (result.bicubic, result.image), result.structure, result.prompt,
                str(result.png), f"{result.seconds:.1f} s")  # fmt: skip

    # analytics off: a local demo sends nothing anywhere
    with gr.Blocks(title="SSP-IR restoration", delete_cache=DELETE_CACHE, analytics_enabled=False) as page:
        gr.Markdown(f"# SSP-IR image restoration\n{_model_note(restorer)}", elem_id="model-note")
        remembered = gr.BrowserState([], storage_key="sspir-demo-settings")
        with gr.Row():
            with gr.Column():
                image = pass_files_undecoded(gr.Image(
                    label="Low-quality image (drop, paste or click)", type="filepath", image_mode=None,
                    sources=["upload", "clipboard"], elem_id="input-image",
                ))  # fmt: skip
                if SAMPLE_IMAGE.is_file():
                    gr.Examples([[str(SAMPLE_IMAGE)]], inputs=[image], label="Sample", elem_id="sample")
                status = gr.Markdown(elem_id="status")
                describe = gr.Button("Describe", elem_id="describe", interactive=restorer.has_captioner)
                caption = gr.Textbox(
                    label="Caption (the semantic prior; edit it freely; empty: the captioner's own)",
                    lines=3, elem_id="caption",
                )  # fmt: skip
                added_prompt = gr.Textbox(label="Added prompt", value=RestoreSettings.added_prompt)
                restore = gr.Button("Restore", variant="primary", elem_id="restore")
                with gr.Accordion("Settings", open=True):
                    upscale = gr.Slider(1, RANGES["upscale"][1], value=4, step=0.5, label="Upscale", elem_id="upscale")
                    steps = gr.Slider(1, 200, value=recommended["num_inference_steps"], step=1, label="Steps",
                                      elem_id="steps")  # fmt: skip
                    scheduler = gr.Dropdown(
                        [MODEL_SCHEDULER, *SCHEDULERS], value=MODEL_SCHEDULER, label="Scheduler",
                        info=f"{MODEL_SCHEDULER}: {type(restorer.model_scheduler).__name__}",
                    )  # fmt: skip
                    guidance_scale = gr.Number(
                        value=recommended["guidance_scale"], minimum=RANGES["guidance_scale"][0],
                        maximum=RANGES["guidance_scale"][1], label="Guidance scale (<= 1: off)",
                    )  # fmt: skip
                    strength = gr.Slider(0.01, 1, value=recommended["strength"], step=0.01,
                                         label="Strength (fidelity: lower keeps more of the input)")  # fmt: skip
                    restoration_guidance_scale = gr.Slider(
                        *RANGES["restoration_guidance_scale"], value=recommended["restoration_guidance_scale"],
                        step=0.01, label="Restoration guidance (fidelity: pull towards the structure prior)",
                    )  # fmt: skip
                    restoration_guidance_decay = gr.Slider(
                        *RANGES["restoration_guidance_decay"], value=recommended["restoration_guidance_decay"],
                        step=0.1, label="Restoration guidance decay",
                    )  # fmt: skip
                    color_fix = gr.Radio(list(COLOR_FIX_NAMES), value="wavelet", label="Colour fix")
                    seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
                    with gr.Row():
                        tiled = gr.Checkbox(value=False, label="Tiles (large outputs)")
                        tile_size = gr.Number(value=512, precision=0, minimum=8, label="Tile size (output pixels)")
            with gr.Column():
                comparison = gr.ImageSlider(label="bicubic | SSP-IR", format="png", elem_id="comparison")
                with gr.Row():
                    prompt_used = gr.Textbox(label="Prompt used", interactive=False, scale=3, elem_id="prompt-used")
                    seconds = gr.Textbox(label="Time taken", interactive=False, scale=1, elem_id="seconds")
                download = gr.File(label="Full-resolution PNG", interactive=False, height=60, elem_id="download")
                structure = gr.Image(label="Structure prior", format="png", interactive=False, elem_id="structure")

        image.change(on_upload, [image], [status, caption], queue=False)
        describe.click(on_describe, [image, upscale, seed], [status, caption], concurrency_id="pipeline")
        settings = [added_prompt, upscale, steps, scheduler, guidance_scale, strength, restoration_guidance_scale,
                    restoration_guidance_decay, color_fix, seed, tiled, tile_size]  # fmt: skip
        restore.click(
            on_restore, [image, caption, *settings], [status, comparison, structure, prompt_used, download, seconds],
            concurrency_id="pipeline",
        ).then(lambda *values: list(values), settings, remembered, queue=False)  # fmt: skip

        def on_load(saved: list) -> list:  # the settings of the last restoration, until the server restarts
            return saved if isinstance(saved, list) and len(saved) == len(settings) else [gr.skip()] * len(settings)

        page.load(on_load, remembered, settings, queue=False)
    return page.queue(default_concurrency_limit=1)


def launch(page: Any, host: str, port: int | None, share: bool = False, root_path: str = "") -> str:
    """Starts serving `page` in the background, on `host:port` (a free port from 7860 when `None`), public only with
    `share`, at `root_path` behind a reverse proxy; uploads up to `MAX_FILE_SIZE`, no file from the disk but the
    app's own. Returns the address to open (the public link with `share`); `page.close()` stops it."""
    # system fonts: the default theme's web fonts would be fetched from the internet by every browser
    theme = gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )
    page.launch(
        server_name=host, server_port=port, share=share, root_path=root_path, max_file_size=MAX_FILE_SIZE,
        ssr_mode=False, footer_links=["api"], allowed_paths=[], theme=theme, prevent_thread_lock=True, quiet=True,
    )  # fmt: skip
    return page.share_url or page.local_url
