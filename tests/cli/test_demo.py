"""`sspir demo`: its arguments, the one-line hint without gradio, and what it serves (the page itself is tested in a
browser by tests/app/test_page_in_browser.py)."""

import importlib.util

import pytest


def test_without_gradio_it_says_how_to_install_it(sspir, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a))
    run = sspir("demo")
    assert run.code == 2
    assert run.err == "sspir demo: error: sspir demo needs gradio: pip install 'diffusers-sspir[demo]'\n"


def test_a_missing_model_folder_is_refused_before_loading(sspir, tmp_path):
    run = sspir("demo", "--model", tmp_path / "missing")
    assert run.code == 2 and "no such folder" in run.err


@pytest.fixture
def launched(monkeypatch):
    """Runs `sspir demo` up to the launch, which is recorded instead of served."""
    pytest.importorskip("gradio.blocks")
    import diffusers_sspir.app.page as page

    calls = []
    built = page.build_page

    def build(restorer):
        calls.append({"restorer": restorer})
        return built(restorer)

    def launch(app, host, port, share, root_path):
        calls[-1].update(host=host, port=port, share=share, root_path=root_path)
        return f"http://{host}:{port}/"

    monkeypatch.setattr(page, "build_page", build)
    monkeypatch.setattr(page, "launch", launch)
    return calls


def test_it_serves_the_bundled_model_on_localhost_by_default(sspir, launched):
    run = sspir("demo")
    assert run.code == 0 and "using the bundled demo model" in run.out and "sspir demo: stopped" in run.out
    (call,) = launched
    assert (call["host"], call["port"], call["share"], call["root_path"]) == ("127.0.0.1", None, False, "")
    assert "bundled demo model" in call["restorer"].model_name and not call["restorer"].has_captioner


def test_it_serves_the_given_model_captioner_limits_and_address(sspir, launched, model_dir):
    run = sspir("demo", "--model", model_dir, "--captioner", "fixed:a cat", "--host", "0.0.0.0", "--port", 8123,
                "--share", "--root-path", "/sspir", "--max-input-pixels", 100, "--max-output-pixels", 400)  # fmt: skip
    assert run.code == 0, run.err
    (call,) = launched
    restorer = call["restorer"]
    assert (call["host"], call["port"], call["share"], call["root_path"]) == ("0.0.0.0", 8123, True, "/sspir")
    assert str(model_dir) in restorer.model_name and restorer.captioner_name == "fixed text 'a cat'"
    assert (restorer.limits.max_input_pixels, restorer.limits.max_output_pixels) == (100, 400)


def test_it_serves_the_captioner_saved_with_the_model(sspir, launched, tmp_path):
    from diffusers_sspir import FixedCaptioner, SSPIRPipeline, testing

    model = tmp_path / "model"
    SSPIRPipeline(**testing.make_sspir_components(), captioner=FixedCaptioner("a barn")).save_pretrained(model)
    assert sspir("demo", "--model", model).code == 0
    assert sspir("demo", "--model", model, "--captioner", "none").code == 0
    saved, overridden = (call["restorer"] for call in launched)
    assert saved.has_captioner and saved.captioner_name == "fixed text 'a barn' (saved with the model)"
    assert not overridden.has_captioner


def test_every_file_of_a_session_lives_in_one_private_folder_removed_on_stop(sspir, launched, monkeypatch):
    import os
    import stat

    seen = {}
    import diffusers_sspir.app.page as page

    recorded = page.launch

    def launch(app, host, port, share, root_path):  # while serving: where gradio would keep its files
        folder = os.environ["GRADIO_TEMP_DIR"]
        seen.update(
            folder=folder, work=launched[-1]["restorer"].work_dir, mode=os.stat(os.path.dirname(folder)).st_mode
        )
        return recorded(app, host, port, share, root_path)

    monkeypatch.setattr(page, "launch", launch)
    monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)
    assert sspir("demo").code == 0
    assert os.path.dirname(seen["folder"]) == str(seen["work"]) and stat.S_IMODE(seen["mode"]) == 0o700
    assert not os.path.exists(seen["work"]) and "GRADIO_TEMP_DIR" not in os.environ  # removed, setting restored
