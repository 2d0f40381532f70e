"""Loading the repository's scripts (benchmarks, recipe steps, converters) as modules, for the tests that call their
functions."""

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def load_script(relative_path: str, name: str | None = None) -> ModuleType:
    """The Python file at `relative_path` (from the repository root), imported as a module called `name` (its stem by
    default)."""
    path = REPO / relative_path
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
