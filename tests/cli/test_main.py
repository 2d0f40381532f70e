"""The `sspir` entry point: help, cheap import, one-line errors, --debug, the installed console script."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diffusers_sspir.cli import COMMANDS, info

COMMAND_NAMES = ["restore", "degrade", "caption", "evaluate", "info", "demo"]


def test_every_command_is_registered():
    assert sorted(command.__name__.rsplit(".", 1)[1] for command in COMMANDS) == sorted(COMMAND_NAMES)


@pytest.mark.parametrize("command", COMMAND_NAMES)
def test_help_has_examples(sspir, command):
    run = sspir(command, "--help")
    assert run.code == 0 and "examples:" in run.out and f"sspir {command}" in run.out


def test_the_installed_script_answers_help_fast():
    script = Path(sys.executable).with_name("sspir")
    assert script.is_file(), "the console script is missing: pip install -e ."
    start = time.perf_counter()
    result = subprocess.run([script, "--help"], capture_output=True, text=True, check=True)
    assert time.perf_counter() - start < 10
    assert all(command in result.stdout for command in COMMAND_NAMES)


def test_importing_the_cli_loads_no_torch():
    code = "import sys, diffusers_sspir.cli; assert not {'torch', 'diffusers', 'PIL', 'numpy'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_usage_errors(sspir):
    assert sspir().code == 2
    run = sspir("restore", "a.png")
    assert run.code == 2 and "required: -o/--output-dir" in run.err
    run = sspir("restore", "a.png", "-o", "out", "--steps", 0)
    assert run.code == 2 and "must be an integer >= 1" in run.err
    run = sspir("restore", "a.png", "-o", "out", "--guidance-scale", "nan")
    assert run.code == 2 and "must be a finite number" in run.err


def test_unexpected_errors_are_one_line_unless_debug(sspir, monkeypatch):
    def broken():
        raise RuntimeError("the driver\nis confused")

    monkeypatch.setattr(info, "devices", broken)
    run = sspir("info")
    assert run.code == 1
    expected = "sspir info: error: RuntimeError: the driver is confused (--debug shows where)"
    assert run.err.strip().splitlines()[-1] == expected
    with pytest.raises(RuntimeError):
        sspir("--debug", "info")
    with pytest.raises(RuntimeError):
        sspir("info", "--debug")


def test_cli_errors_show_their_traceback_with_debug(sspir, tmp_path):
    from diffusers_sspir.cli._common import CLIError

    with pytest.raises(CLIError, match="no such folder"):
        sspir("info", tmp_path / "missing", "--debug")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a CUDA device is present")
def test_unavailable_device(sspir, tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    run = sspir("caption", tmp_path, "--captioner", tmp_path, "--device", "cuda")
    assert run.code == 2 and "no CUDA device is available" in run.err


def test_sigterm_interrupts_the_command_so_that_it_cleans_up_and_the_old_handler_comes_back():
    from diffusers_sspir.cli import sigterm_interrupts

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), sigterm_interrupts():
        os.kill(os.getpid(), signal.SIGTERM)  # how torchrun stops the other processes of a launch
        time.sleep(5)
    assert signal.getsignal(signal.SIGTERM) is before
