"""A claim held by another run, for the tests of runs sharing an output folder (see `diffusers_sspir.files.claim`)."""

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def held_claim(output: Path, text: str | None = None) -> Iterator[Path]:
    """Holds the claim on `output` as a live run does (its claim file locked, through a descriptor of its own, so
    that even this process's `claim` sees it held), the file reading `text` (default: this host and process)."""
    lock = output.with_name(f".{output.name}.claim")
    lock.write_text(f"{socket.gethostname()} {os.getpid()}\n" if text is None else text)
    descriptor = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield lock
    finally:
        os.close(descriptor)
