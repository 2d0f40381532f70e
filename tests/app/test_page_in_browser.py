"""`sspir demo` end to end in headless Chromium: upload the sample, Describe, edit the caption, Restore with 2 steps,
check the downloaded PNG; reload (the settings stay); upload a broken file, see the error, upload again; no file
outside the app's is served; Ctrl-C stops the server.

Needs gradio, selenium and Debian's `chromium` + `chromium-driver` (`.ci/run` installs them); skips without them.
`SSPIR_DEMO_SCREENSHOTS=docs/images` saves the page before and after the restoration (docs/demo.md shows them).
"""

import importlib.util
import io
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from ..cli.files import write_broken
from ..network import free_port

SAMPLE = Path(__file__).resolve().parents[2] / "assets" / "ladybird_lq.png"
CAPTION = "a ladybird on a leaf"
EDITED = "a red ladybird on a green stem"


def _missing() -> str | None:
    # gradio.blocks, not just gradio: files pip leaves behind after uninstalling gradio make an empty `gradio`
    needed = (("gradio", "gradio.blocks", "pip install 'diffusers-sspir[demo]'"),
              ("selenium", "selenium", "pip install selenium"))  # fmt: skip
    for name, module, install in needed:
        if importlib.util.find_spec(name) is None or importlib.util.find_spec(module) is None:
            return f"{name} is not installed ({install})"
    for program in ("chromium", "chromedriver"):
        if shutil.which(program) is None:
            return f"{program} is not installed (apt-get install chromium chromium-driver)"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))


@pytest.fixture
def server(tmp_path):
    """`sspir demo` (the bundled model, a fixed-text captioner) on a free port; stopped with Ctrl-C (SIGINT)."""
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", GRADIO_TEMP_DIR=str(tmp_path / "gradio"))
    command = [sys.executable, "-c", "import sys; from diffusers_sspir.cli import main; sys.exit(main())"]
    command += ["demo", "--captioner", f"fixed:{CAPTION}", "--device", "cpu", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(url, timeout=5)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"sspir demo did not start:\n{process.communicate()[0]}")
            time.sleep(0.3)
    yield url, process
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1500"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield driver
    driver.quit()


def _wait_for(driver, condition, what: str, timeout: float = 60):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: condition(d))
    except TimeoutException:
        pytest.fail(f"timed out waiting for {what}; the status says {_text(driver, 'status')!r}")


def _text(driver, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id).text


def _value(driver, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f"#{element_id} textarea, #{element_id} input").get_attribute("value")


def _upload(driver, path: Path) -> None:
    from selenium.webdriver.common.by import By

    removes = driver.find_elements(By.CSS_SELECTOR, "#input-image button[aria-label='Remove Image']")
    if removes:
        removes[0].click()
        _wait_for(driver, lambda d: not _text(d, "status"), "the status to clear after removing the image")
    inputs = _wait_for(
        driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#input-image input[type=file]"), "the upload"
    )
    inputs[0].send_keys(str(path))


def _screenshot(driver, name: str) -> None:
    """The page as the browser shows it, as `$SSPIR_DEMO_SCREENSHOTS/<name>` (a JPEG) when that folder is set."""
    folder = os.environ.get("SSPIR_DEMO_SCREENSHOTS")
    if folder:
        shot = PIL.Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
        shot.save(Path(folder) / name, quality=85)


def test_demo_page_restores_the_sample_and_survives_a_broken_file(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url, process = server
    start = time.monotonic()
    browser.get(url)
    _wait_for(browser, lambda d: "bundled demo model" in _text(d, "model-note"), "the page")

    _upload(browser, SAMPLE)
    _wait_for(browser, lambda d: "Uploaded 128x128" in _text(d, "status"), "the upload")
    browser.find_element(By.ID, "describe").click()
    _wait_for(browser, lambda d: _value(d, "caption") == CAPTION, "the caption")
    caption = browser.find_element(By.CSS_SELECTOR, "#caption textarea")
    caption.send_keys(Keys.CONTROL, "a")
    caption.send_keys(EDITED)
    steps = browser.find_element(By.CSS_SELECTOR, "#steps input[type=number]")
    steps.send_keys(Keys.CONTROL, "a")
    steps.send_keys("2", Keys.TAB)
    _screenshot(browser, "demo_before.jpg")

    browser.find_element(By.ID, "restore").click()
    _wait_for(browser, lambda d: "Restored" in _text(d, "status"), "the restoration", timeout=90)
    assert _value(browser, "prompt-used").startswith(EDITED)
    assert _value(browser, "seconds").endswith(" s")
    link = browser.find_element(By.CSS_SELECTOR, "#download a").get_attribute("href")
    with urllib.request.urlopen(link) as response:
        restored = PIL.Image.open(io.BytesIO(response.read()))
        restored.load()
    assert restored.format == "PNG" and restored.size == (512, 512)
    bicubic = np.asarray(PIL.Image.open(SAMPLE).convert("RGB").resize(restored.size, PIL.Image.Resampling.BICUBIC))
    assert np.abs(np.asarray(restored.convert("RGB"), dtype=np.float32) - bicubic).mean() > 1
    assert browser.find_elements(By.CSS_SELECTOR, "#comparison img")
    browser.execute_script("window.scrollTo(0, 0)")
    _screenshot(browser, "demo_after.jpg")

    browser.refresh()  # the settings are remembered
    _wait_for(browser, lambda d: _value(d, "steps") == "2", "the remembered steps")

    _upload(browser, write_broken(tmp_path / "broken.png"))
    _wait_for(browser, lambda d: "cannot read the image" in _text(d, "status"), "the error of a broken file")
    assert _text(browser, "status").startswith("Error:")
    _upload(browser, SAMPLE)
    _wait_for(browser, lambda d: "Uploaded 128x128" in _text(d, "status"), "the next upload")
    browser.find_element(By.ID, "describe").click()
    _wait_for(browser, lambda d: _value(d, "caption") == CAPTION, "the caption of the next upload")
    browser.find_element(By.CSS_SELECTOR, "#input-image button[aria-label='Remove Image']").click()
    _wait_for(browser, lambda d: not _text(d, "status"), "the status to clear")
    browser.find_element(By.CSS_SELECTOR, "#sample img").click()  # the sample, as an example
    _wait_for(browser, lambda d: "Uploaded 128x128" in _text(d, "status"), "the example")
    elapsed = time.monotonic() - start

    # no file outside what the app made
    for path in ("/etc/passwd", str(SAMPLE.parents[1] / "setup.cfg")):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}gradio_api/file={path}")
        assert refused.value.code == 403

    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=30)[0]
    assert process.returncode == 0, output
    assert "sspir demo: stopped" in output and "Traceback" not in output
    assert elapsed < 60, f"the page took {elapsed:.0f} s"
