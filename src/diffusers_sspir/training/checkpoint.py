"""Training checkpoints: safetensors and JSON only (nothing is unpickled), written atomically.

A checkpoint is a folder `checkpoint-<step>/` holding

- `trainable.safetensors`: the trained parameters (frozen weights come from the model the run started from);
- `optimizer.safetensors` + `optimizer.json`: the optimizer state, its tensors and the rest;
- `state.json`: step counters, the learning-rate scheduler and the gradient scaler.

It is first written to a hidden temporary folder and renamed into place, so a run killed at any moment leaves
either the complete checkpoint or none.
"""

import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..checkpoint_format import TRAINABLE_METADATA

FORMAT_VERSION = 1
CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
RUN_FILE = "run.json"  # the options of the run that wrote the checkpoint, for exporting it


@dataclass
class TrainingProgress:
    """Where a run stands: optimizer steps taken, the epoch, and the batches of that epoch already consumed."""

    global_step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0


def flatten_state(state: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Moves every tensor of a nested dict/list structure into `tensors` (keyed by its path) and returns the
    structure with `{"__tensor__": key}` in their place, ready for JSON."""
    if isinstance(state, torch.Tensor):
        tensors[prefix] = state.detach().cpu().contiguous()
        return {"__tensor__": prefix}
    if isinstance(state, dict):
        return {"__dict__": [[key, flatten_state(value, f"{prefix}.{key}", tensors)] for key, value in state.items()]}
    if isinstance(state, (list, tuple)):
        items = [flatten_state(value, f"{prefix}.{i}", tensors) for i, value in enumerate(state)]
        return {"__tuple__": items} if isinstance(state, tuple) else items
    return state


def unflatten_state(state: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of [`flatten_state`]."""
    if isinstance(state, dict):
        if "__tensor__" in state:
            return tensors[state["__tensor__"]]
        if "__tuple__" in state:
            return tuple(unflatten_state(value, tensors) for value in state["__tuple__"])
        return {key: unflatten_state(value, tensors) for key, value in state["__dict__"]}
    if isinstance(state, list):
        return [unflatten_state(value, tensors) for value in state]
    return state


def _write_json(path: str, data: Any) -> None:
    with open(path, "w", encoding="utf-8") as file:
        json.dump(data, file, indent=2)
        file.flush()
        os.fsync(file.fileno())


def _fsync(path: str) -> None:
    with open(path, "rb") as file:
        os.fsync(file.fileno())


def save_checkpoint(
    output_dir: str,
    progress: TrainingProgress,
    trainable: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    lr_scheduler: Any | None = None,
    scaler: Any | None = None,
    run_options: dict[str, Any] | None = None,
) -> str:
    """Writes `output_dir/checkpoint-<global_step>` atomically and returns its path. An existing checkpoint of the
    same step (left by an earlier attempt of this run) is replaced only once the new one is complete. `run_options`
    (the command-line options) are written to `run.json`, so that the checkpoint can be exported on its own."""
    os.makedirs(output_dir, exist_ok=True)
    final = os.path.join(output_dir, f"checkpoint-{progress.global_step}")
    staging = tempfile.mkdtemp(prefix=f".checkpoint-{progress.global_step}.", dir=output_dir)
    try:
        trained = {k: v.detach().cpu().contiguous() for k, v in trainable.items()}
        save_file(trained, f"{staging}/trainable.safetensors", metadata=TRAINABLE_METADATA)
        if run_options is not None:
            _write_json(f"{staging}/{RUN_FILE}", run_options)
        tensors: dict[str, torch.Tensor] = {}
        optimizer_structure = flatten_state(optimizer.state_dict(), "optimizer", tensors)
        save_file(tensors, f"{staging}/optimizer.safetensors")
        _write_json(f"{staging}/optimizer.json", optimizer_structure)
        for name in ("trainable.safetensors", "optimizer.safetensors"):
            _fsync(f"{staging}/{name}")
        state = {
            "format_version": FORMAT_VERSION,
            "progress": asdict(progress),
            "lr_scheduler": lr_scheduler.state_dict() if lr_scheduler is not None else None,
            "scaler": scaler.state_dict() if scaler is not None else None,
        }
        _write_json(f"{staging}/state.json", state)  # written last: its presence marks a complete checkpoint
        if os.path.exists(final):
            retired = tempfile.mkdtemp(prefix=f".retired-{progress.global_step}.", dir=output_dir)
            os.replace(final, os.path.join(retired, "old"))
            os.replace(staging, final)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def recover_interrupted_saves(output_dir: str) -> list[str]:
    """Cleans up after a run killed while saving: deletes half-written checkpoints (hidden `.checkpoint-*`
    folders), and puts back a checkpoint that was being replaced (`.retired-*`) when its replacement never arrived.
    Returns what was done, for the log."""
    if not os.path.isdir(output_dir):
        return []
    notes = []
    for name in sorted(os.listdir(output_dir)):
        path = os.path.join(output_dir, name)
        if name.startswith(".retired-") and os.path.isdir(path):
            step = name.split(".")[1].removeprefix("retired-")
            final, old = os.path.join(output_dir, f"checkpoint-{step}"), os.path.join(path, "old")
            if not os.path.exists(final) and os.path.isfile(os.path.join(old, "state.json")):
                os.replace(old, final)
                notes.append(f"Restored {final}, which an interrupted save was replacing.")
            shutil.rmtree(path, ignore_errors=True)
        elif name.startswith(".checkpoint-") and os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
            notes.append(f"Deleted {path}, a checkpoint whose writing was interrupted.")
    return notes


def list_checkpoints(output_dir: str) -> list[tuple[int, str]]:
    """Complete checkpoints in `output_dir` as `(step, path)`, oldest first."""
    if not os.path.isdir(output_dir):
        return []
    found = []
    for name in os.listdir(output_dir):
        match = CHECKPOINT_PATTERN.match(name)
        path = os.path.join(output_dir, name)
        if match and os.path.isfile(os.path.join(path, "state.json")):
            found.append((int(match.group(1)), path))
    return sorted(found)


def prune_checkpoints(output_dir: str, total_limit: int | None) -> list[str]:
    """Deletes the oldest checkpoints so that at most `total_limit` remain; returns the deleted paths."""
    if total_limit is None:
        return []
    checkpoints = list_checkpoints(output_dir)
    doomed = [path for _, path in checkpoints[: max(len(checkpoints) - total_limit, 0)]]
    for path in doomed:
        shutil.rmtree(path)
    return doomed


def resolve_checkpoint(output_dir: str, resume_from_checkpoint: str) -> str | None:
    """`"latest"` → the newest complete checkpoint in `output_dir` (or `None` when there is none yet); otherwise the
    given checkpoint folder (a path, or a folder name inside `output_dir`), which must exist and be complete."""
    if resume_from_checkpoint == "latest":
        checkpoints = list_checkpoints(output_dir)
        return checkpoints[-1][1] if checkpoints else None
    path = resume_from_checkpoint
    if not os.path.isdir(path):
        path = os.path.join(output_dir, resume_from_checkpoint)
    if not os.path.isfile(os.path.join(path, "state.json")):
        raise ValueError(
            f"`--resume_from_checkpoint {resume_from_checkpoint}` is not a complete checkpoint folder (expected "
            f"checkpoint-<step>/state.json, as a path or inside {output_dir}); use 'latest' to pick the newest."
        )
    return path


def load_checkpoint(
    path: str,
    trainable: dict[str, torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    lr_scheduler: Any | None = None,
    scaler: Any | None = None,
) -> TrainingProgress:
    """Restores the trained parameters (in place), the optimizer, the scheduler and the scaler from a checkpoint
    written by [`save_checkpoint`]; returns where the run stood."""
    with open(os.path.join(path, "state.json"), encoding="utf-8") as file:
        state = json.load(file)
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} has checkpoint format {state.get('format_version')}, expected {FORMAT_VERSION}.")
    saved = load_file(os.path.join(path, "trainable.safetensors"))
    if set(saved) != set(trainable):
        missing, unexpected = sorted(set(trainable) - set(saved)), sorted(set(saved) - set(trainable))
        raise ValueError(
            f"{path} does not match the parameters being trained (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}): resume with the same model and training options as the run that wrote it."
        )
    mismatched = [name for name, parameter in trainable.items() if saved[name].shape != parameter.shape]
    if mismatched:
        name = mismatched[0]
        raise ValueError(
            f"{path} holds {name} with shape {tuple(saved[name].shape)}, but the run trains it with shape "
            f"{tuple(trainable[name].shape)}: resume with the same model and options (e.g. --rank) as the run "
            "that wrote it."
        )
    with torch.no_grad():
        for name, parameter in trainable.items():
            parameter.copy_(saved[name])
    with open(os.path.join(path, "optimizer.json"), encoding="utf-8") as file:
        structure = json.load(file)
    optimizer.load_state_dict(unflatten_state(structure, load_file(os.path.join(path, "optimizer.safetensors"))))
    if lr_scheduler is not None and state["lr_scheduler"] is not None:
        lr_scheduler.load_state_dict(state["lr_scheduler"])
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    return TrainingProgress(**state["progress"])
