"""Console output of the commands (`sspir ...` and `python -m diffusers_sspir.training.export`): lines that never
break a running progress bar, and names shown safely. A leaf module: the command-line and training packages both
print through it."""

import sys


def printable(text: object) -> str:
    """`text` for one line of a terminal: control characters (a newline, an escape sequence in a file name) shown
    as `\\n`, `\\x1b`, ... rather than acted on."""
    return "".join(
        char if char.isprintable() or char == " " else char.encode("unicode_escape").decode("ascii")
        for char in str(text)
    )


def echo(message: str = "", err: bool = False) -> None:
    """Writes a line to stdout (or stderr) without breaking a running progress bar."""
    from tqdm import tqdm

    lines = (printable(line) for line in message.split("\n"))  # an escape sequence anywhere is shown, not run
    tqdm.write("\n".join(lines), file=sys.stderr if err else sys.stdout)
