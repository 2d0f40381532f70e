"""The package's layers import downwards only: the library (models, pipelines, image operations, captioners, the web
demo's app) never imports the command line or the training package, which sit on top of it."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "diffusers_sspir"
TOP_LAYERS = ("cli", "training")  # entry points: they may import everything below, nothing below imports them


def imported_modules(path: Path) -> set[str]:
    """The absolute names of the modules `path` imports (relative imports resolved inside the package)."""
    module = "diffusers_sspir." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    package = package.removesuffix(".__init__")
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[: len(base) - node.level + 1] if node.level else []
            name = ".".join([*base, node.module] if node.module else base)
            found.add(name)
            found |= {f"{name}.{alias.name}" for alias in node.names}
    return found


@pytest.mark.parametrize("path", sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0]
                                        not in TOP_LAYERS), ids=lambda p: str(p.relative_to(PACKAGE)))  # fmt: skip
def test_the_library_never_imports_the_command_line_or_the_training_package(path):
    upward = sorted(name for name in imported_modules(path)
                    if any(name == f"diffusers_sspir.{top}" or name.startswith(f"diffusers_sspir.{top}.")
                           for top in TOP_LAYERS))  # fmt: skip
    assert not upward, f"{path.relative_to(PACKAGE)} imports {upward}"
