"""`sspir demo`: a local web page (gradio) to restore one image at a time, reviewing its caption first."""

import argparse
import contextlib
import importlib.util
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..captioners.spec import CAPTIONER_SPEC_HELP
from ..defaults import DEMO_MAX_INPUT_PIXELS, DEMO_MAX_OUTPUT_PIXELS
from . import _common
from ._common import CLIError, echo

INSTALL_HINT = "sspir demo needs gradio: pip install 'diffusers-sspir[demo]'"

DESCRIPTION = """Serve a web page to restore images with an SSP-IR pipeline, one at a time.

Upload an image (or take the sample), press Describe to see the captioner's description
(the semantic prior) and edit it, set the restoration (upscale, steps, scheduler, guidance,
fidelity, colour fix, seed, tiling) and press Restore: the result comes as a before/after
slider against bicubic, with the structure prior, the prompt used, the time taken and the
full-resolution PNG. Requests run one at a time; uploads and outputs larger than
--max-input-pixels / --max-output-pixels are refused before anything is allocated.

The page listens on 127.0.0.1 (this machine only) unless --host says otherwise, and is
never shared publicly unless --share is given. Ctrl-C stops it. See docs/demo.md."""

EPILOG = """examples:
  sspir demo                                        (the bundled demo model, http://127.0.0.1:7860)
  sspir demo --model path/to/sspir --captioner llava-hf/llava-1.5-7b-hf --device cuda
  sspir demo --model path/to/sspir --host 0.0.0.0 --port 8080    (reachable from the network)

exit status: 0 stopped (Ctrl-C), 1 failed, 2 bad arguments (or gradio is not installed)."""


def add_parser(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo", parents=parents, help="serve a web page to restore images (gradio)",
        description=DESCRIPTION, epilog=EPILOG, formatter_class=_common.HelpFormatter,
    )  # fmt: skip
    parser.add_argument(
        "--model", metavar="PATH_OR_REPO",
        help="a saved SSP-IR pipeline folder or Hub repo id (default: the bundled demo model)",
    )  # fmt: skip
    parser.add_argument(
        "--captioner", metavar="SPEC",
        help=f"{CAPTIONER_SPEC_HELP} (default: the captioner saved with the model, none if it has none)",
    )  # fmt: skip
    _common.add_device_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument(
        "--port", type=_common.positive_int, metavar="N", help="port to listen on (default: the first free from 7860)"
    )
    parser.add_argument("--share", action="store_true", help="also publish the page on a public gradio.live link")
    parser.add_argument(
        "--root-path", default="", metavar="PATH",
        help="the page's path behind a reverse proxy that serves it below the site's root, e.g. /sspir",
    )  # fmt: skip
    parser.add_argument(
        "--max-input-pixels", type=_common.positive_int, default=DEMO_MAX_INPUT_PIXELS, metavar="N",
        help=f"largest upload, width x height (default: {DEMO_MAX_INPUT_PIXELS:,})",
    )  # fmt: skip
    parser.add_argument(
        "--max-output-pixels", type=_common.positive_int, default=DEMO_MAX_OUTPUT_PIXELS, metavar="N",
        help=f"largest restoration, width x height (default: {DEMO_MAX_OUTPUT_PIXELS:,})",
    )  # fmt: skip
    parser.set_defaults(run=run, scheduler=None)  # the scheduler is chosen on the page


@contextlib.contextmanager
def gradio_files_in(folder: Path) -> Iterator[None]:
    """Points gradio's file cache (`GRADIO_TEMP_DIR`, read whenever a page is built or a file arrives) at `folder`
    while the block runs, instead of the shared `/tmp/gradio` that every local user can read."""
    previous = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = previous


def run(args: argparse.Namespace) -> int:
    if args.model is not None:
        _common.check_model_source("--model", args.model)
    _common.check_captioner_spec(args.captioner)
    # gradio.blocks, not just gradio: files pip leaves behind after uninstalling gradio make an empty `gradio`
    if importlib.util.find_spec("gradio") is None or importlib.util.find_spec("gradio.blocks") is None:
        raise CLIError(INSTALL_HINT)

    from ..app import DemoRestorer, Limits
    from ..app.page import build_page, launch
    from ..captioners.spec import describe_captioner
    from .restore import load_pipeline

    pipe = load_pipeline(args)
    pipe.set_progress_bar_config(disable=True)  # the page shows the progress
    model_name = "**the bundled demo model** (small, not the paper's; see docs/demo_model.md)"
    # One private folder (mode 0700, this user's only) holds every file of the session: the PNGs to download and all
    # that gradio keeps (uploads, results, the sample's copy), removed when the demo stops, however it stops.
    with tempfile.TemporaryDirectory(prefix="sspir-demo-") as work_dir, gradio_files_in(Path(work_dir) / "gradio"):
        restorer = DemoRestorer(
            pipe,
            Limits(args.max_input_pixels, args.max_output_pixels),
            model_name=model_name if args.model is None else f"`{args.model}`",
            captioner_name=describe_captioner(pipe.captioner, saved=args.captioner is None),
            work_dir=work_dir,
        )
        page = build_page(restorer)
        url = launch(page, args.host, args.port, share=args.share, root_path=args.root_path)
        echo(f"serving {url} (Ctrl-C stops it)")
        try:
            while page.is_running:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            page.close()
    echo("sspir demo: stopped")
    return 0
