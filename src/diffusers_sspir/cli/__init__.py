"""The `sspir` command line: restore, degrade, caption, evaluate, info, demo.

Each command lives in its own module with an `add_parser(subparsers, parents)` that registers its arguments and a
`run(args) -> int` that does the work. Importing this package loads only the standard library (the commands import
torch, diffusers and the models when they run), so `sspir --help` answers at once.

Exit status: 0 when everything was done (or skipped as already done), 1 when something failed, 2 for bad arguments
or inputs, 130 when interrupted (Ctrl-C, or SIGTERM, which is how `torchrun` stops the other processes of a launch
when one fails: either way a half-written output is removed and the claims are released).

`python -m diffusers_sspir.cli` runs the same command, for launchers that start a module (`torchrun`, `accelerate
launch`): see `diffusers_sspir.jobs` for how the processes of a launch share the work.
"""

import argparse
import contextlib
import signal
import threading
from collections.abc import Iterator

from .. import __version__
from . import caption, degrade, demo, evaluate, info, restore
from ._common import CLIError, HelpFormatter, echo, one_line, printable

COMMANDS = (restore, degrade, caption, evaluate, info, demo)

DESCRIPTION = """SSP-IR: diffusion-based realistic image restoration with semantic and structure priors.

`sspir COMMAND --help` describes each command, with examples."""

EPILOG = """example, the whole round trip:
  sspir degrade hq/ -o pairs/ --scale 4 --seed 0
  sspir restore pairs/lq/ -o restored/ --model path/to/sspir --save-comparison
  sspir evaluate --pred restored/ --gt pairs/gt/

exit status: 0 all done, 1 something failed, 2 bad arguments or inputs, 130 interrupted."""


def build_parser() -> argparse.ArgumentParser:
    """The `sspir` argument parser with one sub-parser per command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show the full traceback of errors"
    )
    parser = argparse.ArgumentParser(
        prog="sspir", description=DESCRIPTION, epilog=EPILOG, formatter_class=HelpFormatter, parents=[common]
    )
    parser.add_argument("--version", action="version", version=f"diffusers-sspir {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers, [common])
    return parser


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises `KeyboardInterrupt` inside the block, so that clean-up runs (temporary files, claims); the
    previous handler is back afterwards. Outside the main thread, where Python cannot set handlers, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """Runs `sspir` with `argv` (defaults to `sys.argv[1:]`) and returns the exit status.

    Errors are one line on stderr; `--debug` shows their traceback instead.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:  # --help, --version, or a usage error (argparse has printed it)
        return exit.code if isinstance(exit.code, int) else 2
    debug = getattr(args, "debug", False)
    try:
        with sigterm_interrupts():
            return args.run(args)
    except CLIError as error:
        if debug:
            raise
        echo(f"sspir {args.command}: error: {printable(error)}", err=True)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        echo(f"sspir {args.command}: interrupted", err=True)
        return 130
    except Exception as error:  # anything unforeseen: one line, the traceback with --debug
        if debug:
            raise
        reason = printable(one_line(error))
        echo(f"sspir {args.command}: error: {type(error).__name__}: {reason} (--debug shows where)", err=True)
        return 1
