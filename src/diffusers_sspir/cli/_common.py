"""What the `sspir` commands share: errors, messages, input lists, devices and the end summary.

Only the standard library is imported at module level, so that `sspir --help` stays fast; torch, PIL and the
package's models are imported inside the functions that need them.
"""

import argparse
import contextlib
import glob
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..console import echo, printable  # noqa: F401 (the commands print through these)
from ..jobs import one_line

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "float16", "bfloat16")


class CLIError(Exception):
    """An error the user can fix: shown as one line (what, what is wrong, what to do), without a traceback."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of descriptions and examples, with room for long option names."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30)


def launch() -> Any:
    """This process of the launch (`diffusers_sspir.jobs.Processes`): one process, or one of those `torchrun` and
    `accelerate launch` start; a `CLIError` when their environment variables do not add up."""
    from ..jobs import Processes

    try:
        return Processes.from_environment()
    except ValueError as error:
        raise CLIError(one_line(error)) from None


def say(message: str = "") -> None:
    """`echo` in the main process only: what a run says once however many processes run it."""
    if launch().is_main:
        echo(message)


# ------------------------------------------------------------------ arguments


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def setting(name: str) -> Callable[[str], float]:
    """An argparse type for the call setting `name` (`diffusers_sspir.defaults.RANGES` or `INTEGER_SETTINGS`): the
    pipeline's own rule."""
    from ..defaults import INTEGER_SETTINGS
    from ..validation import check_call_setting

    def parse(text: str) -> float:
        try:
            if name not in INTEGER_SETTINGS:
                return check_call_setting(name, float(text))
            try:
                value = int(text)
            except ValueError:
                raise ValueError(f"`{name}` must be an integer, got {text}") from None
            return check_call_setting(name, value)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error).removeprefix(f"`{name}` ")) from None

    return parse


def seed(text: str) -> int:
    """An argparse type for seeds: an integer in [0, 2**63 - 1], what torch generators accept."""
    from ..validation import check_seed

    try:
        return check_seed("seed", int(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("`seed` ")) from None


def device_name(text: str) -> str:
    if text in DEVICES or text.startswith("cuda:") and text[5:].isdigit():
        return text
    raise argparse.ArgumentTypeError(f"must be one of {', '.join(DEVICES)} (or cuda:N), got {text!r}")


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", type=device_name, default="auto", metavar="DEVICE",
        help="auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N or mps (default: auto)",
    )  # fmt: skip
    parser.add_argument(
        "--dtype", choices=DTYPES, default="auto",
        help="weights' precision; auto = float16 on CUDA, float32 elsewhere (default: auto)",
    )  # fmt: skip


def check_model_source(flag: str, value: str) -> None:
    """A `CLIError` when `value` (a folder or a Hub repo id) is clearly a path, but no folder is there."""
    looks_like_path = (
        value.startswith((".", "/", "~", "\\"))
        or value.endswith(("/", os.sep))
        or value.count("/") > 1
        or os.path.exists(value)
    )
    path = os.path.expanduser(value)
    if looks_like_path and not os.path.isdir(path):
        problem = "a file, not a folder" if os.path.isfile(path) else "no such folder"
        raise CLIError(f"{flag} {value}: {problem}; pass a model folder or a Hub repo id (owner/name).")


def resolve_device(name: str) -> Any:
    """The `torch.device` for `--device`, or a `CLIError` when that device is not available.

    Under a distributed launch, `auto` and `cuda` give each process the GPU of its local rank (`cuda:LOCAL_RANK`;
    all share `cuda:0` when the process sees a single GPU, as with one `CUDA_VISIBLE_DEVICES` per process), and an
    explicit `cuda:N` is refused, since every process would take the same GPU.
    """
    import torch

    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise CLIError(f"--device {name}: no CUDA device is available (torch {torch.__version__}, {build}); "
                           "use --device cpu, or install the torch build for your CUDA version.")  # fmt: skip
        processes, count = launch(), torch.cuda.device_count()
        if processes.is_distributed and ":" in name:
            raise CLIError(
                f"--device {name}: with {processes.world_size} processes every one would take this GPU; pass "
                "--device cuda (or auto): each process takes the GPU of its local rank, cuda:LOCAL_RANK."
            )
        index = int(name[5:]) if ":" in name else processes.local_rank if count > 1 else 0
        if index >= count:
            if processes.is_distributed:
                raise CLIError(
                    f"--device {name}: {processes.local_world_size} processes on this machine but only {count} "
                    f"CUDA devices; launch at most {count} processes per machine."
                )
            raise CLIError(f"--device {name}: there are only {count} CUDA devices.")
        device = torch.device("cuda", index)
        torch.cuda.set_device(device)
        return device
    if name == "mps" and not has_mps:
        raise CLIError("--device mps: MPS (Apple GPU) is not available here; use --device cpu.")
    return torch.device(name)


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Hides diffusers' and transformers' per-component loading bars inside the block; download bars still show."""
    import diffusers
    import huggingface_hub
    import transformers

    loggers = [library.utils.logging for library in (diffusers, transformers)]
    enabled = [logger.is_progress_bar_enabled() for logger in loggers]
    downloads = not huggingface_hub.utils.are_progress_bars_disabled()
    for logger in loggers:
        logger.disable_progress_bar()
    if downloads:
        huggingface_hub.utils.enable_progress_bars()
    try:
        yield
    finally:
        for logger, was_enabled in zip(loggers, enabled):
            if was_enabled:
                logger.enable_progress_bar()


def resolve_dtype(name: str, device: Any) -> Any:
    """The `torch.dtype` for `--dtype`: `auto` is float16 on CUDA and float32 elsewhere."""
    import torch

    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


# ------------------------------------------------------------------ inputs


def add_recursive_argument(parser: argparse.ArgumentParser, what: str = "folders") -> None:
    parser.add_argument(
        "--recursive", action="store_true",
        help=f"also read the images in the subfolders of {what} (hidden ones left out); the outputs mirror the "
        "input tree",
    )  # fmt: skip


def collect_inputs(items: list[str], recursive: bool = False) -> dict[Path, str]:
    """The image files named by `items`, each with the key its outputs are named by
    (`diffusers_sspir.files.image_key`): files (taken as they are; key: their stem), folders (their images, and with
    `recursive` those of their subfolders; key: the path inside the folder) and glob patterns (their matching
    images, `**` recursive; key: their stem). Each file once, in the order given.

    Raises:
        CLIError: for an item that names nothing, an empty folder or a pattern that matches no image, for two
            inputs with the same key (their outputs would overwrite each other), and for a bad
            `SSPIR_MAX_INPUT_PIXELS` (before anything is read or loaded).
    """
    from ..files import IMAGE_EXTENSIONS, check_unique_keys, image_key, max_input_pixels, scan_folder

    try:
        max_input_pixels()
    except ValueError as error:
        raise CLIError(str(error)) from None
    found: dict[Path, tuple[Path, str]] = {}
    for item in items:
        path = Path(item)
        if path.is_dir():
            images, others = scan_folder(path, recursive)
            if not images:
                where = "nor its subfolders hold" if recursive else "holds"
                raise CLIError(f"{item}: the folder {where} no images ({', '.join(IMAGE_EXTENSIONS)}).")
            others = [other for other in others if not other.name.startswith(".")]
            if others:  # a .gif, say: said, not silently left out
                names = [printable(other.relative_to(path).as_posix()) for other in others]
                listed = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
                kinds = "/".join(IMAGE_EXTENSIONS)
                say(f"{printable(item)}: skipping {len(others)} files that are not {kinds} images: {listed}")
            matches = [(image, image_key(image, path)) for image in images]
        elif path.is_file():
            matches = [(path, image_key(path))]
        elif glob.has_magic(item):
            matches = sorted(
                (Path(p), image_key(p)) for p in glob.glob(item, recursive=True)
                if os.path.isfile(p) and Path(p).suffix.lower() in IMAGE_EXTENSIONS
            )  # fmt: skip
            if not matches:
                raise CLIError(f"{item}: no image matches this pattern.")
        else:
            raise CLIError(f"{item}: no such file or folder; pass image files, folders or glob patterns.")
        for match, key in matches:
            found.setdefault(match.resolve(), (match, key))
    keys = dict(found.values())
    try:
        check_unique_keys(keys)
    except ValueError as error:
        raise CLIError(one_line(error)) from None
    return keys


def check_outside_inputs(flag: str, output: Path, folders: list[Path]) -> None:
    """A `CLIError` when the output folder lies inside one of the input `folders` read with `--recursive`: the next
    run would take the outputs for inputs."""
    for folder in folders:
        if output.resolve().is_relative_to(folder.resolve()):
            raise CLIError(
                f"{flag} {output}: lies inside the input folder {folder}, which --recursive reads, so the next run "
                "would take the outputs for inputs; choose a folder outside it."
            )


def check_outputs_are_not_inputs(plans: dict[Path, dict[str, Path]]) -> None:
    """A `CLIError` when an output file of `plans` (input → its output files) is one of the inputs, or would be
    written into a folder that holds an input: inputs and outputs mixed in one folder clash by stem on the next run
    (`b.jpg` restored into `b.png` beside it), whatever their extensions."""
    inputs = {path.resolve(): path for path in plans}
    input_folders = {path.resolve().parent: path for path in plans}
    for path, outputs in plans.items():
        for output in outputs.values():
            if output.resolve() in inputs:
                raise CLIError(
                    f"{output}: an output of {path} would replace the input {inputs[output.resolve()]}; choose "
                    "another -o folder."
                )
            folder = output.resolve().parent
            if folder in input_folders:
                raise CLIError(
                    f"{output.parent}: the output folder holds the input {input_folders[folder]}; outputs written "
                    "beside their inputs clash with them by name on the next run. Choose another -o folder."
                )


def check_captioner_spec(spec: str | None) -> None:
    """`--captioner` is `none`, `fixed:TEXT` with a text, or a model folder / Hub id (checked as such); not given
    (`None`) is the model's own captioner."""
    from ..captioners.spec import parse_captioner_spec

    if spec is None:
        return
    try:
        kind, value = parse_captioner_spec(spec)
    except ValueError:
        raise CLIError("--captioner fixed:TEXT needs a text after 'fixed:' (or use --captioner none).") from None
    if kind == "model":
        check_model_source("--captioner", value)


def load_captioner_spec(args: argparse.Namespace, **model_kwargs) -> Any:
    """The captioner `args.captioner` names (`captioner_from_spec`: `None`, a `FixedCaptioner` or a `VLMCaptioner` on
    `args.device` / `args.dtype`), or a `CLIError` saying why the model does not load."""
    from ..captioners.spec import CAPTIONER_SPEC_HELP, captioner_from_spec, parse_captioner_spec

    if parse_captioner_spec(args.captioner)[0] != "model":
        return captioner_from_spec(args.captioner)
    device = resolve_device(args.device)
    try:
        with quiet_loading():
            return captioner_from_spec(
                args.captioner, device=device, dtype=resolve_dtype(args.dtype, device), **model_kwargs
            )
    except Exception as error:
        raise CLIError(
            f"--captioner {args.captioner}: cannot load a vision-language model ({one_line(error)}). Pass "
            f"{CAPTIONER_SPEC_HELP}."
        ) from error


def check_output_folder(flag: str, folder: Path) -> None:
    """A `CLIError` unless outputs can be written into `folder` (made if missing): checked before any model loads,
    by writing and removing a probe file in the folder or its nearest existing parent; nothing is created."""
    import tempfile

    if folder.exists() and not folder.is_dir():
        raise CLIError(f"{flag} {folder}: is a file; pass a folder for the outputs.")
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise CLIError(f"{flag} {folder}: {existing} is a file, so the folder cannot be made; pass another folder.")
    try:
        descriptor, probe = tempfile.mkstemp(prefix=".sspir-probe-", dir=existing)
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:
        reason = error.strerror or one_line(error)
        raise CLIError(
            f"{flag} {folder}: cannot write in {existing} ({reason}); pass a folder you can write to."
        ) from None


def check_writable(paths: list[Path], overwrite: bool, what: str) -> None:
    """A `CLIError` if one of `paths` exists and `overwrite` is not set."""
    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise CLIError(f"{', '.join(existing)}: {what} already exists; pass --overwrite to replace it.")


# ------------------------------------------------------------------ summary


def report(result: Any, verb: str) -> int:
    """Prints (in the main process) `done / skipped / failed` of a `diffusers_sspir.jobs.JobResult`, with the reason
    of each failure, and returns the exit status: 1 if anything failed in any process, else 0."""
    if result.elsewhere:
        names = ", ".join(map(printable, result.elsewhere))
        say(f"left {len(result.elsewhere)} images to another run that is making them: {names}")
    parts = [f"{verb} {len(result.done)}"]
    if result.skipped:
        parts.append(f"skipped {len(result.skipped)} already done (--overwrite redoes them)")
    if result.elsewhere:
        parts.append(f"left {len(result.elsewhere)} to another run")
    parts.append(f"failed {len(result.failed)}")
    say(", ".join(parts) + ("." if not result.failed else ":"))
    for path, reason in result.failed.items():
        say(f"  {printable(path)}: {printable(reason)}")
    if result.images_per_second is not None:
        count = len(result.done) + len(result.failed)
        images = f"{count} image{'s' if count > 1 else ''}"
        on = f" on {result.processes} processes" if result.processes > 1 else ""
        say(f"{images} in {result.seconds:.1f} s{on}: {result.load_seconds:.1f} s loading, then "
            f"{result.images_per_second:.2f} images/s")  # fmt: skip
    return 1 if result.failed else 0


def run_each(
    plans: dict[Path, dict[str, Path]],
    args: argparse.Namespace,
    verb: str,
    desc: str,
    start: Callable[[], Callable[[Path, dict[str, Path]], None]],
    check: Callable[[Path], None] | None = None,
) -> int:
    """The loop of `restore` and `degrade` (`diffusers_sspir.jobs.run_jobs`, one input at a time), in this process's
    share of the inputs when the command runs in several (torchrun, accelerate launch): skips the inputs whose
    outputs all exist (unless `--overwrite`), calls `start()` once if anything is left (it loads what the work needs
    and returns the function that makes one input's outputs), runs that function on each remaining input behind one
    progress bar, records each failure and goes on, and prints the summary of all processes.

    Args:
        plans (`dict[Path, dict[str, Path]]`): each input → the files it is made into.
        args (`argparse.Namespace`): the command's arguments (`output_dir`, `overwrite`, `debug`).
        verb (`str`): what is done to each input, for the summary ("restored", …).
        desc (`str`): the progress bar's label ("restoring", …).
        start (`Callable`): called once before the first input; not called when everything is done already.
        check (`Callable[[Path], None]`, *optional*): a cheap check of an input (see `run_jobs`), run before
            `start()` until an input passes, so that inputs that cannot work cost no model load.

    Returns:
        `int`: the exit status (1 if some input failed).
    """

    def start_batches() -> Callable[[list[tuple[Path, dict[str, Path]]]], None]:
        make = start()

        def make_batch(batch: list[tuple[Path, dict[str, Path]]]) -> None:
            ((path, outputs),) = batch
            make(path, outputs)

        return make_batch

    return run_batches(plans, args, verb, desc, start_batches, check=check)


def run_batches(
    plans: dict[Path, dict[str, Path]],
    args: argparse.Namespace,
    verb: str,
    desc: str,
    start: Callable[[], Callable[[list[tuple[Path, dict[str, Path]]]], dict[Path, str] | None]],
    batch_size: int = 1,
    where: Path | None = None,
    check: Callable[[Path], None] | None = None,
) -> int:
    """`run_each` for work done `batch_size` inputs at a time: `start()` returns `make(batch)`, which returns the
    failed inputs of the batch with their reasons (see `diffusers_sspir.jobs.run_jobs`). `where` names the output
    folder in messages (default: `args.output_dir`)."""
    from ..jobs import JobGroup, run_jobs

    def pending(todo: int, done: int) -> None:
        if done:
            echo(f"skipping {done} of {todo + done} images already {verb} in {printable(where or args.output_dir)}")

    processes = launch()
    with JobGroup(processes) as group:
        result = run_jobs(
            plans, start, overwrite=args.overwrite, batch_size=batch_size, group=group, desc=desc,
            debug=getattr(args, "debug", False), on_pending=pending,
            on_failure=lambda path, reason: echo(f"failed: {printable(path)}: {printable(reason)}", err=True),
            check=check,
        )  # fmt: skip
    return report(result, verb)
