"""`sspir info`: versions, devices, and the components of a saved model (read from its files, nothing loaded)."""

import argparse
import importlib.metadata
import importlib.util
import json
import math
import platform
import re
import struct
from pathlib import Path
from typing import Any

from . import _common
from ._common import CLIError, echo

SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                      "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}  # fmt: skip
OPTIONAL_PACKAGES = ("torchsde", "scipy", "xformers", "pyiqa", "accelerate", "peft", "gradio")

DESCRIPTION = """Show the versions of diffusers-sspir and its main dependencies, and the devices torch
can use. Given a saved pipeline folder, also list its components: class names from
model_index.json; parameter counts, dtypes and sizes from the safetensors headers (no
weight is loaded)."""

EPILOG = """examples:
  sspir info
  sspir info path/to/sspir"""


def add_parser(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "info", parents=parents, help="versions, devices, and the components of a saved model",
        description=DESCRIPTION, epilog=EPILOG, formatter_class=_common.HelpFormatter,
    )  # fmt: skip
    parser.add_argument("model", nargs="?", type=Path, metavar="MODEL", help="a saved pipeline folder")
    parser.set_defaults(run=run)


def version_of(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def devices() -> list[str]:
    import torch

    found = ["cpu"]
    for index in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        properties = torch.cuda.get_device_properties(index)
        found.append(f"cuda:{index} {properties.name} ({properties.total_memory / 2**30:.0f} GiB)")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found


def read_safetensors_header(path: Path) -> dict[str, dict]:
    """The tensor entries (`dtype`, `shape`, `data_offsets`) of a safetensors file, from its header, checked against
    the file: a header that does not parse, or tensors that need more bytes than the file has (a truncated download),
    raise a `CLIError` naming the file."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as file:
            (length,) = struct.unpack("<Q", file.read(8))
            if not 0 < length <= size - 8:
                raise ValueError(f"its header claims {length} bytes")
            header = json.loads(file.read(length))
        header.pop("__metadata__", None)
        end = max((entry["data_offsets"][1] for entry in header.values()), default=0)
    except (struct.error, ValueError, KeyError, TypeError, IndexError) as error:
        raise CLIError(f"{path}: not a readable safetensors file ({error}); download or save it again.") from None
    if 8 + length + end > size:
        raise CLIError(
            f"{path}: truncated: its tensors need {8 + length + end:,} bytes, the file has {size:,}; download or save "
            "it again."
        )
    return header


def weight_files(folder: Path) -> tuple[list[Path], str | None]:
    """The safetensors files of one component folder: those without a variant if any, else the first variant's.

    Returns:
        `tuple[list[Path], str | None]`: the files (all shards) and the variant (`None` for the default weights).
    """
    groups: dict[str | None, list[Path]] = {}
    for path in sorted(folder.glob("*.safetensors")):
        base = re.sub(r"-\d+-of-\d+$", "", path.name[: -len(".safetensors")])  # drop a shard suffix
        variant = base.split(".", 1)[1] if "." in base else None
        groups.setdefault(variant, []).append(path)
    if not groups:
        return [], None
    variant = None if None in groups else sorted(groups)[0]
    return groups[variant], variant


def describe_weights(folder: Path) -> dict[str, Any] | None:
    """Parameter count, dtypes, bytes and variant of the weights in `folder`, or `None` if it has none."""
    files, variant = weight_files(folder)
    if not files:
        return None
    count, dtypes, size = 0, set(), 0
    for path in files:
        for entry in read_safetensors_header(path).values():
            count += math.prod(entry["shape"])
            dtypes.add(SAFETENSORS_DTYPES.get(entry["dtype"], entry["dtype"]))
        size += path.stat().st_size
    return {"parameters": count, "dtypes": sorted(dtypes), "bytes": size, "variant": variant}


def human(number: float, units: tuple[str, ...]) -> str:
    """`number` in the largest of `units` (steps of 1000) that keeps it at least 1: `human(28030, ("", "K"))` is
    `"28.0K"`."""
    index = 0
    while abs(number) >= 1000 and index < len(units) - 1:
        number, index = number / 1000, index + 1
    return f"{number:.1f}{units[index]}" if index else f"{number:.0f}{units[0]}"


def describe_model(folder: Path) -> None:
    index_file = folder / "model_index.json"
    if not folder.is_dir():
        raise CLIError(f"{folder}: no such folder; pass a saved pipeline folder (save_pretrained writes one).")
    if not index_file.is_file():
        raise CLIError(f"{folder}: not a saved pipeline (no model_index.json); pass a folder save_pretrained wrote.")
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
    except ValueError as error:
        raise CLIError(f"{index_file}: not valid JSON ({error}).") from None
    pipeline, version = index.get("_class_name", "?"), index.get("_diffusers_version", "?")
    echo(f"\nmodel: {folder} ({pipeline}, saved with diffusers {version})")
    rows, total = [], 0
    for name, value in index.items():
        if name.startswith("_") or not isinstance(value, list) or len(value) != 2:
            continue
        library, class_name = value
        if class_name is None:
            rows.append((name, "(none)", "", "", "", ""))
            continue
        package = str(library).split(".")[0]
        weights = describe_weights(folder / name) if (folder / name).is_dir() else None
        if weights is None:
            rows.append((name, class_name, package, "-", "", ""))
            continue
        total += weights["parameters"]
        dtypes = "/".join(weights["dtypes"]) + (f" ({weights['variant']})" if weights["variant"] else "")
        count, size = (
            human(weights["parameters"], ("", "K", "M", "B")),
            human(weights["bytes"], (" B", " kB", " MB", " GB")),
        )
        rows.append((name, class_name, package, count, dtypes, size))
    header = ("component", "class", "library", "parameters", "dtype", "size")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [cell.ljust(width) if i < 3 else cell.rjust(width) for i, (cell, width) in enumerate(zip(row, widths))]
        echo("  " + "  ".join(cells).rstrip())
    echo(f"  total parameters: {total:,} ({human(total, ('', 'K', 'M', 'B'))})")


def run(args: argparse.Namespace) -> int:
    from .. import __version__

    echo(f"diffusers-sspir {__version__} (python {platform.python_version()}, {platform.platform(terse=True)})")
    echo("  ".join(f"{name} {version_of(name)}" for name in ("torch", "diffusers", "transformers")))
    optional = [name for name in OPTIONAL_PACKAGES if importlib.util.find_spec(name) is not None]
    missing = [name for name in OPTIONAL_PACKAGES if name not in optional]
    echo(f"optional: {', '.join(optional) or 'none'} installed; {', '.join(missing) or 'none'} not installed")
    echo(f"devices: {'; '.join(devices())}")
    from ..compat import text_encoder_lora_problem

    problem = text_encoder_lora_problem()
    if problem:
        echo(f"note: {problem}")
    if args.model is not None:
        describe_model(args.model)
    return 0
