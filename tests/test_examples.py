"""The code examples users read (README quickstart, SSPIRPipeline's example docstring) run as written, with tiny
saved checkpoints standing in for the real ones and the CPU for CUDA."""

import re
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from diffusers_sspir import testing
from diffusers_sspir.pipelines.pipeline_sspir import EXAMPLE_DOC_STRING
from diffusers_sspir.testing import make_tiny_llava
from tests.pipelines.test_pipeline_sspir import make_pipe

README = Path(__file__).parents[1] / "README.md"


def readme_quickstart() -> str:
    text = README.read_text(encoding="utf-8")
    return re.search(r"## Quickstart\s+```python\n(.*?)```", text, re.S).group(1)


def docstring_example() -> str:
    code = re.search(r"```py\n(.*?)```", EXAMPLE_DOC_STRING, re.S).group(1)
    return "\n".join(line.strip()[4:] for line in code.splitlines() if line.strip().startswith(">>>"))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("examples")
    make_pipe().save_pretrained(root / "sspir")
    llava = make_tiny_llava(root / "llava")
    PIL.Image.fromarray((np.random.RandomState(0).rand(12, 10, 3) * 255).astype(np.uint8)).save(root / "photo.png")
    return root, llava


@pytest.mark.parametrize("source", [readme_quickstart, docstring_example], ids=["README", "docstring"])
def test_example_runs(source, checkpoints, monkeypatch):
    root, llava = checkpoints
    code = source()
    for placeholder, value in {
        '"path/to/sspir"': repr(str(root / "sspir")),
        '"path/to/llava-1.5-7b-hf"': repr(llava),
        '"llava-hf/llava-1.5-7b-hf"': repr(llava),
        '"cuda"': '"cpu"',
        "torch.float16": "torch.float32",
    }.items():
        code = code.replace(placeholder, value)
    monkeypatch.chdir(root)
    namespace = {}
    exec(compile(code, source.__name__, "exec"), namespace)
    result = namespace["result"]
    assert result.images[0].size == (40, 48)
    assert (root / "restored.png").is_file()


def run_quickstart(monkeypatch, *args):
    import runpy
    import sys

    monkeypatch.setattr(sys, "argv", ["quickstart.py", *map(str, args)])
    runpy.run_path(str(Path(__file__).parents[1] / "examples" / "quickstart.py"), run_name="__main__")


def test_quickstart_script_with_a_saved_model(checkpoints, monkeypatch, capsys):
    root, llava = checkpoints
    output = root / "script.png"
    run_quickstart(monkeypatch, root / "photo.png", "--model", root / "sspir", "-o", output, "--steps", 2,
                   "--captioner", llava)  # fmt: skip
    assert PIL.Image.open(output).size == (40, 48)
    with pytest.raises(SystemExit):  # an existing output is not overwritten unless asked
        run_quickstart(monkeypatch, root / "photo.png", "--model", root / "sspir", "-o", output)
    assert "pass --overwrite" in capsys.readouterr().err
    run_quickstart(monkeypatch, root / "photo.png", "--model", root / "sspir", "-o", output, "--steps", 1,
                   "--upscale", 2, "--overwrite")  # fmt: skip
    assert PIL.Image.open(output).size == (20, 24)


def test_quickstart_script_builds_from_stable_diffusion(checkpoints, monkeypatch):
    root, _ = checkpoints
    _, sd_folder, clip_folder = testing.save_stable_diffusion(root)
    run_quickstart(monkeypatch, root / "photo.png", "--sd", sd_folder, "--clip", clip_folder, "--save",
                   root / "untrained", "-o", root / "untrained.png", "--steps", 1, "--prompt", "a wall")  # fmt: skip
    assert (root / "untrained" / "model_index.json").is_file()
    assert PIL.Image.open(root / "untrained.png").size == (40, 48)


def test_package_import_is_lazy_and_exports_resolve():
    import subprocess
    import sys

    code = "import sys, diffusers_sspir; assert 'torch' not in sys.modules and 'diffusers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    import diffusers_sspir

    assert sorted(diffusers_sspir.__all__) == sorted(diffusers_sspir._EXPORTS)
    for name in diffusers_sspir.__all__:
        assert getattr(diffusers_sspir, name).__name__ == name


@pytest.mark.parametrize(
    "args,message",
    [
        (["missing.png", "--model", "m", "-o", "x.png"], "missing.png is not a file"),
        (["photo.png", "--model", "m", "-o", "no/such/dir/x.png"], "does not exist"),
        (["photo.png", "--sd", "sd", "-o", "x.png"], "--sd needs --clip"),
        (["photo.png", "--model", "m", "--clip", "c", "-o", "x.png"], "go with --sd"),
    ],
)
def test_quickstart_script_checks_arguments_before_loading(checkpoints, monkeypatch, capsys, args, message):
    root, _ = checkpoints
    monkeypatch.chdir(root)
    with pytest.raises(SystemExit):
        run_quickstart(monkeypatch, *args)
    assert message in capsys.readouterr().err


def test_quickstart_script_defaults_to_the_bundled_demo_model(checkpoints, monkeypatch):
    root, _ = checkpoints
    output = root / "demo.png"
    run_quickstart(monkeypatch, root / "photo.png", "-o", output, "--steps", 1)
    assert PIL.Image.open(output).size == (40, 48)
