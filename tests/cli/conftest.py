"""Shared fixtures of the `sspir` command tests: a tiny saved pipeline, image files, and an in-process runner."""

from dataclasses import dataclass
from pathlib import Path

import pytest

from diffusers_sspir import testing
from diffusers_sspir.cli import main


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def sspir(capsys):
    """Runs `sspir ARGS...` in this process; returns the exit status and what it printed."""

    def run(*args) -> Run:
        code = main([str(arg) for arg in args])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A tiny SSP-IR pipeline saved with `save_pretrained`."""
    from diffusers_sspir import SSPIRPipeline

    path = tmp_path_factory.mktemp("model") / "sspir"
    SSPIRPipeline(**testing.make_sspir_components()).save_pretrained(path)
    return path
