"""How much memory a device has left, and the pipeline's estimate of what a restoration needs.

The estimate counts the largest activations of each stage (the structure processor's and the VAE's at the output
resolution, the UNet's and ControlNet's skip tensors at the latent resolution) and the full-size images the pipeline
keeps; weights are already allocated and not counted. It is measured against peak RSS in
`benchmarks/bench_memory.py`, whose figures are in docs/performance.md.
"""

from __future__ import annotations

import os

import torch

# Set to 1 to skip the check (an estimate can be wrong; the restoration then runs and may run out of memory).
SKIP_MEMORY_CHECK_VARIABLE = "SSPIR_SKIP_MEMORY_CHECK"


def available_memory(device: torch.device | str) -> int | None:
    """Bytes that `device` can still allocate: free plus cached memory on CUDA, `MemAvailable` of the host on the CPU;
    `None` where it cannot be known (other devices, no /proc/meminfo)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        index = device.index if device.index is not None else torch.cuda.current_device()
        return free + torch.cuda.memory_reserved(index) - torch.cuda.memory_allocated(index)
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(count: float) -> str:
    """`1536 * 2**20` → `"1.5 GiB"`."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    raise AssertionError("unreachable")


def memory_check_skipped() -> bool:
    return os.environ.get(SKIP_MEMORY_CHECK_VARIABLE, "") not in ("", "0")
