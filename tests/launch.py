"""Launching commands on several CPU processes (torchrun, accelerate launch) from tests, and finding them again.

The processes talk over the loopback interface on a free port: gloo otherwise binds to the address the host name
resolves to, which on some machines is not reachable, and the ranks wait for each other forever. If they hang anyway,
every process prints where it is (faulthandler, on SIGABRT) before the test fails."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .network import free_port

HANG_SECONDS = 180  # a two-process launch takes 10-20 s on a 2-core machine


def descendants(pid: int) -> list[int]:
    """The processes below `pid`, children first (Linux /proc)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def launch_command(processes: int, program: list[str], launcher: str = "torchrun") -> list[str]:
    """The command line that starts `program` (`-m module ...` or `script ...`) on `processes` CPU processes."""
    port = str(free_port())
    if launcher == "torchrun":
        return [sys.executable, "-X", "faulthandler", "-m", "torch.distributed.run", "--nproc_per_node",
                str(processes), "--master_addr", "127.0.0.1", "--master_port", port, *program]  # fmt: skip
    if launcher == "accelerate":
        return [sys.executable, "-X", "faulthandler", "-m", "accelerate.commands.launch", "--multi_gpu",
                "--num_processes", str(processes), "--num_machines", "1", "--mixed_precision", "no",
                "--dynamo_backend", "no", "--main_process_ip", "127.0.0.1", "--main_process_port", port,
                *program]  # fmt: skip
    raise ValueError(launcher)


def launch_environment(**extra: str) -> dict[str, str]:
    return {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo",
            "PYTHONFAULTHANDLER": "1", "HF_HUB_OFFLINE": "1", **extra}  # fmt: skip


def start(processes: int, program: list[str], launcher: str = "torchrun", cwd: Path | None = None) -> subprocess.Popen:
    """`program` started on `processes` CPU processes, its output piped (see `finish`)."""
    return subprocess.Popen(
        launch_command(processes, program, launcher), env=launch_environment(), cwd=cwd, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip


def finish(process: subprocess.Popen, what: str = "the launch") -> tuple[str, str]:
    """`(stdout, stderr)` of a started launch once it ends; fails the test with every rank's stack if it hangs."""
    try:
        return process.communicate(timeout=HANG_SECONDS)
    except subprocess.TimeoutExpired:
        for pid in [*descendants(process.pid), process.pid]:  # the ranks run in sessions of their own
            os.kill(pid, signal.SIGABRT)  # faulthandler prints every thread's stack
        _, stderr = process.communicate()
        pytest.fail(f"{what} hung for {HANG_SECONDS} s; where each process was:\n{stderr[-6000:]}")


PORT_TAKEN = "address already in use"  # the free port was taken before the launcher bound it (another test's)


def run(processes: int, program: list[str], launcher: str = "torchrun", cwd: Path | None = None) -> tuple:
    """`(exit status, stdout, stderr)` of `program` run on `processes` CPU processes. A launch whose port another
    process took between `free_port` and the launcher's bind (nothing ran yet) is started again on a new port."""
    for _ in range(3):
        process = start(processes, program, launcher, cwd)
        out, err = finish(process, f"{launcher} with {processes} processes")
        if process.returncode == 0 or PORT_TAKEN not in err.lower():
            break
    return process.returncode, out, err
