"""The gradio page without a browser: one queue for the pipeline's requests, messages in the page for bad uploads.
(tests/app/test_page_in_browser.py drives it in Chromium.)"""

import pytest

pytest.importorskip("gradio.blocks")

from diffusers_sspir import SSPIRPipeline  # noqa: E402
from diffusers_sspir.app import DemoRestorer  # noqa: E402
from diffusers_sspir.app.page import _error, build_page  # noqa: E402
from diffusers_sspir.testing import make_sspir_components  # noqa: E402

from ..cli.files import write_broken, write_image  # noqa: E402


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    pipe = SSPIRPipeline(**make_sspir_components())
    return build_page(DemoRestorer(pipe, model_name="a tiny model", work_dir=tmp_path_factory.mktemp("work")))


def handler(page, name):
    (function,) = [f for f in page.fns.values() if f.name == name]
    return function


def test_describe_and_restore_wait_for_each_other_one_at_a_time(page):
    describe, restore = handler(page, "on_describe"), handler(page, "on_restore")
    assert describe.concurrency_id == restore.concurrency_id == "pipeline"
    assert page._queue.default_concurrency_limit == 1
    assert describe.concurrency_limit == restore.concurrency_limit == "default"


def test_uploads_are_checked_with_a_message_in_the_page(page, tmp_path):
    on_upload = handler(page, "on_upload").fn
    assert on_upload(str(write_image(tmp_path / "a.png", 12, 20))) == ("Uploaded 20x12.", "")
    status, caption = on_upload(str(write_broken(tmp_path / "b.png")))
    assert status.startswith("**Error:** cannot read the image") and caption == ""
    assert handler(page, "on_describe").fn(None, 4, 0)[0] == "**Error:** upload an image first."


def test_the_page_names_the_model_and_the_missing_captioner(page):
    notes = [block.value for block in page.blocks.values() if getattr(block, "elem_id", None) == "model-note"]
    assert notes and "Serving a tiny model" in notes[0] and "no captioner" in notes[0]


def test_error_messages_show_no_server_paths():
    error = ValueError("cannot read the image (cannot identify image file '/tmp/sspir-demo-1/gradio/9f/cat.png')")
    assert _error(error) == "**Error:** cannot read the image (cannot identify image file 'cat.png')"
    assert _error(OSError("/srv/models/sspir/unet: broken")) == "**Error:** OSError: unet: broken"


def test_errors_are_one_status_line_and_unforeseen_ones_name_their_type(caplog):
    assert _error(ValueError("`steps` must be\n  an integer")) == "**Error:** `steps` must be an integer"
    assert _error(RuntimeError("boom")) == "**Error:** RuntimeError: boom"
    assert "the request failed" in caplog.text
