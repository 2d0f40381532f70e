"""One job over many files, in one process or shared among the processes of a distributed launch.

`sspir restore`, `sspir degrade`, `sspir caption` and [`~diffusers_sspir.captioners.caption_folder`] all run
through [`run_jobs`]: it skips the inputs whose outputs exist, claims each input while making it (so that runs
sharing an output folder never make the same file), records each failure and goes on, shows one progress bar and
returns the totals.

Launched by `torchrun` or `accelerate launch` (which set `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`), the
processes of a run share its inputs ([`Processes.share`]): the sorted inputs are cut into consecutive batches and
batch *k* goes to process *k* mod *N*. The assignment depends only on the list of inputs, not on what is done, so
every process knows its share without asking the others, a run resumed with another number of processes skips what
is done and makes the rest, and each batch holds the same images as in a single-process run (a batched captioner
sees the same batches). The processes tell each other only counts, through a [`JobGroup`] (a gloo process group and
a key-value store, whichever devices they run on): the main process shows one progress bar for all and every
process gets the totals of all at the end.

Only the standard library is imported at module level; torch is imported when several processes talk.
"""

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

Item = TypeVar("Item")
Plans = dict[Path, dict[str, Path]]
"""Each input → the files it is made into (by kind: `"image"`, `"caption"`, …); the first one is the one claimed."""

DEFAULT_TIMEOUT_S = 1800.0
"""How long a process waits for the others at the start and at the end of a run (gloo's collectives)."""


def one_line(error: BaseException) -> str:
    """The message of `error` on a single line (at most 400 characters)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 400 else text[:397] + "..."


def _environment_int(environ: Any, name: str, minimum: int) -> int:
    value = environ[name]
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"the environment variable {name}={value!r} must be a whole number.") from None
    if number < minimum:
        raise ValueError(f"the environment variable {name}={value!r} must be >= {minimum}.")
    return number


@dataclass(frozen=True)
class Processes:
    """Which process of a launch this is, and how many there are.

    Args:
        rank (`int`, defaults to 0): this process among all, `0 <= rank < world_size`; 0 is the main process.
        world_size (`int`, defaults to 1): the number of processes, on all machines.
        local_rank (`int`, defaults to 0): this process among those of its machine (its GPU is `cuda:local_rank`).
        local_world_size (`int`, defaults to 1): the number of processes on this machine.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    def __post_init__(self) -> None:
        for name in ("rank", "world_size", "local_rank", "local_world_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"`{name}` must be an int, got {value!r}.")
        if self.world_size < 1 or self.local_world_size < 1:
            raise ValueError(f"`world_size` and `local_world_size` must be >= 1, got {self}.")
        if not 0 <= self.rank < self.world_size or not 0 <= self.local_rank < self.local_world_size:
            raise ValueError(f"need 0 <= rank < world_size and 0 <= local_rank < local_world_size, got {self}.")

    @classmethod
    def from_environment(cls, environ: Any = None) -> "Processes":
        """The process as `torchrun` and `accelerate launch` describe it in `RANK`, `WORLD_SIZE`, `LOCAL_RANK` and
        `LOCAL_WORLD_SIZE`; a single process without `WORLD_SIZE` (or with `WORLD_SIZE=1`).

        Raises:
            ValueError: if a variable is not a whole number, or `WORLD_SIZE` > 1 comes without `RANK`.
        """
        environ = os.environ if environ is None else environ
        if "WORLD_SIZE" not in environ:
            return cls()
        world_size = _environment_int(environ, "WORLD_SIZE", 1)
        if world_size == 1:
            return cls()
        if "RANK" not in environ:
            raise ValueError(f"WORLD_SIZE={world_size} is set but RANK is not; launch with torchrun or accelerate.")
        rank = _environment_int(environ, "RANK", 0)
        local_rank = _environment_int(environ, "LOCAL_RANK", 0) if "LOCAL_RANK" in environ else 0
        local_world_size = (
            _environment_int(environ, "LOCAL_WORLD_SIZE", 1) if "LOCAL_WORLD_SIZE" in environ else local_rank + 1
        )
        try:
            return cls(rank, world_size, local_rank, local_world_size)
        except ValueError as error:
            raise ValueError(f"the launch's environment does not add up: {error}") from None

    @property
    def is_main(self) -> bool:
        """The process that shows the progress bar and prints the summary."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def __str__(self) -> str:
        return f"process {self.rank + 1} of {self.world_size}"

    def share(self, items: Sequence[Item], batch_size: int = 1) -> list[list[Item]]:
        """This process's batches of `items`: `items` cut in order into batches of `batch_size` (the last may be
        shorter), batch *k* going to process *k* mod `world_size`. The shares of all processes hold every item
        exactly once, and batch by batch they are those of a single process.

        Raises:
            ValueError: if `batch_size` is not a positive integer.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
        batches = [list(items[start : start + batch_size]) for start in range(0, len(items), batch_size)]
        return batches[self.rank :: self.world_size]


class JobGroup:
    """The processes of one run and the counts they tell each other; use it as a context manager around the run.

    With one process there is nobody to tell: counters are local and [`gather`] returns `[value]`. With several, the
    group joins torch's default process group (made with the gloo backend from the launcher's `MASTER_ADDR` and
    `MASTER_PORT` when none exists; a gloo group beside an existing NCCL one) and a key-value store hosted by the main
    process. Only small counts and the final totals travel; the images never leave their process.

    Args:
        processes (`Processes`, *optional*): defaults to [`Processes.from_environment`].
        timeout_s (`float`, defaults to `DEFAULT_TIMEOUT_S`): how long to wait for the other processes.
    """

    def __init__(self, processes: Processes | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.processes = Processes.from_environment() if processes is None else processes
        self.timeout = timedelta(seconds=timeout_s)
        self._counters: dict[str, int] = {}
        self._group = None
        self._store = None
        self._owns_default_group = False

    def __enter__(self) -> "JobGroup":
        if not self.processes.is_distributed:
            return self
        import torch.distributed as dist

        if not dist.is_available():
            raise RuntimeError("torch.distributed is not available in this torch build; run one process.")
        if not dist.is_initialized():
            dist.init_process_group(
                "gloo", rank=self.processes.rank, world_size=self.processes.world_size, timeout=self.timeout
            )
            self._owns_default_group = True
        if dist.get_world_size() != self.processes.world_size or dist.get_rank() != self.processes.rank:
            raise RuntimeError(
                f"the process group has rank {dist.get_rank()} of {dist.get_world_size()}, the environment says "
                f"{self.processes.rank} of {self.processes.world_size}."
            )
        self._group = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo", timeout=self.timeout)
        host = os.environ.get("MASTER_ADDR", "127.0.0.1")
        port = [0]
        if self.processes.is_main:
            self._store = dist.TCPStore(
                host, 0, self.processes.world_size, True, timeout=self.timeout, wait_for_workers=False
            )
            port = [self._store.port]
        dist.broadcast_object_list(port, src=0, group=self._group)
        if not self.processes.is_main:
            self._store = dist.TCPStore(host, port[0], self.processes.world_size, False, timeout=self.timeout)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._owns_default_group:
            import torch.distributed as dist

            if exc_info[0] is None:
                dist.barrier()  # the main process hosts the store: it leaves last
            dist.destroy_process_group()
            self._owns_default_group = False
        self._store = None

    def add(self, counter: str, amount: int) -> int:
        """Adds `amount` to the counter `counter` shared by all processes and returns its new value (`amount=0`
        reads it)."""
        if self._store is None:
            self._counters[counter] = self._counters.get(counter, 0) + amount
            return self._counters[counter]
        return int(self._store.add(counter, amount))

    def gather(self, value: Any) -> list[Any]:
        """The `value` of every process, by rank (each process gets all; every process must call it)."""
        if not self.processes.is_distributed:
            return [value]
        import torch.distributed as dist

        values = [None] * self.processes.world_size
        dist.all_gather_object(values, value, group=self._group)
        return values


@dataclass
class JobResult:
    """What [`run_jobs`] did, over all processes of the run.

    Args:
        done (`list[Path]`): the inputs made in this run.
        skipped (`list[Path]`): the inputs whose outputs all existed (at the start, or made meanwhile by another run).
        elsewhere (`list[Path]`): the inputs left to another run that was making them (see [`files.claim`]).
        failed (`dict[Path, str]`): the inputs that could not be made, with the reason.
        seconds (`float`): wall time of the work, from the moment every process knew its share to the end of the
            last one; Python's start and imports not included.
        load_seconds (`float`): the longest time a process spent in `start()` (loading its model) within `seconds`.
        processes (`int`): how many processes shared the work.
    """

    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    elsewhere: list[Path] = field(default_factory=list)
    failed: dict[Path, str] = field(default_factory=dict)
    seconds: float = 0.0
    load_seconds: float = 0.0
    processes: int = 1

    def merge(self, other: "JobResult") -> None:
        self.done += other.done
        self.skipped += other.skipped
        self.elsewhere += other.elsewhere
        self.failed.update(other.failed)
        self.seconds = max(self.seconds, other.seconds)
        self.load_seconds = max(self.load_seconds, other.load_seconds)

    @property
    def images_per_second(self) -> float | None:
        """The throughput once loaded: inputs made (or failed) per second of `seconds` after `load_seconds`;
        `None` when nothing was made."""
        count, seconds = len(self.done) + len(self.failed), self.seconds - self.load_seconds
        return count / seconds if count and seconds > 0 else None


DONE = "done"


def _outputs_state(outputs: dict[str, Path], overwrite: bool) -> str | None:
    """`DONE` when every output is already a whole file (never with `overwrite`), `None` when there is something to
    make, or, when something in the way cannot be replaced, why: an output path that is a folder; without
    `overwrite`, an image output that is empty or no image (not ours: a run writes whole files only; kept, as any
    user file, unless `overwrite` says to replace it)."""
    from .files import IMAGE_EXTENSIONS

    done = not overwrite
    for output in outputs.values():
        if output.is_dir():
            return f"{output} is a folder, where the output file goes; move it away"
        if overwrite:
            continue
        if not output.exists():
            done = False
        elif output.suffix.lower() in IMAGE_EXTENSIONS and (problem := _not_an_image(output)):
            return f"{output} exists but is {problem}; pass --overwrite to replace it"
    return DONE if done else None


def _not_an_image(path: Path) -> str | None:
    """Why the file at `path` is no image (its header only is read), or `None`."""
    import PIL.Image

    try:
        if path.stat().st_size == 0:
            return "empty"
        with PIL.Image.open(path):
            return None
    except (OSError, ValueError, PIL.Image.DecompressionBombError) as error:
        return f"not a readable image ({one_line(error)})"


def _fail(result: "JobResult", path: Path, reason: str, on_failure: Callable[[Path, str], None] | None) -> None:
    result.failed[path] = reason
    if on_failure is not None:
        on_failure(path, reason)


@contextlib.contextmanager
def _claimed(batch: list[tuple[Path, dict[str, Path]]]) -> Iterator[list[bool | str]]:
    """Makes the output folders of every item of `batch` and claims its first output (see `files.claim`); yields,
    per item, whether this process got the claim, or why the folder or claim could not be made (a full disk, a
    read-only folder: that item fails, the others go on)."""
    from .files import claim

    with contextlib.ExitStack() as stack:
        claims = []
        for _, outputs in batch:
            first, *others = outputs.values()
            try:
                for output in outputs.values():
                    output.parent.mkdir(parents=True, exist_ok=True)
                claims.append(stack.enter_context(claim(first, others)))
            except OSError as error:
                claims.append(f"cannot write into {first.parent}: {one_line(error)}")
        yield claims


def _drop_leading_failures(
    todo: list[list[tuple[Path, dict[str, Path]]]],
    check: Callable[[Path], None],
    result: JobResult,
    on_failure: Callable[[Path, str], None] | None,
) -> list[list[tuple[Path, dict[str, Path]]]]:
    """`todo` without its leading inputs that fail `check` (each recorded as failed), up to the first that passes."""
    kept = []
    passed = False
    for batch in todo:
        left = []
        for path, outputs in batch:
            if not passed:
                try:
                    check(path)
                except ValueError as error:
                    _fail(result, path, str(error), on_failure)
                    continue
                passed = True
            left.append((path, outputs))
        if left:
            kept.append(left)
    return kept


def run_jobs(
    plans: Plans,
    start: Callable[[], Callable[[list[tuple[Path, dict[str, Path]]]], dict[Path, str] | None]],
    *,
    overwrite: bool = False,
    batch_size: int = 1,
    group: JobGroup | None = None,
    desc: str = "working",
    progress: bool = True,
    debug: bool = False,
    on_pending: Callable[[int, int], None] | None = None,
    on_failure: Callable[[Path, str], None] | None = None,
    check: Callable[[Path], None] | None = None,
) -> JobResult:
    """Makes the outputs of `plans` that are missing, in batches, in this process's share of them.

    Inputs whose outputs all exist are skipped (unless `overwrite`). `start()` is called once, before the first
    batch, only in a process that has something to make (it loads what the work needs and returns `make`).
    `make(batch)` gets the items `(input, outputs)` of one batch, writes their missing outputs (all of them with
    `overwrite`) and returns the failed items with their reasons (`None`: none); an exception fails the whole batch
    with its message (or, with `debug`, propagates). Before `make`, each item is claimed ([`files.claim`]): an item
    another run is making is left to it, one it finished meanwhile is skipped. Output folders are made as needed.

    Args:
        plans (`dict[Path, dict[str, Path]]`): each input → its outputs, in the order to work in (sorted); the first
            output of each is the one claimed.
        start (`Callable`): returns `make`; see above.
        overwrite (`bool`, defaults to `False`): make every input again.
        batch_size (`int`, defaults to 1): inputs per `make` call; also the unit shared among processes.
        group (`JobGroup`, *optional*): the processes of the run, entered; defaults to this process alone.
        desc (`str`): the progress bar's label.
        progress (`bool`, defaults to `True`): show the bar (on a terminal, in the main process only).
        debug (`bool`, defaults to `False`): let an exception of `make` propagate.
        on_pending (`Callable[[int, int], None]`, *optional*): called in the main process before any work with the
            totals of all processes: inputs to make, inputs already done.
        on_failure (`Callable[[Path, str], None]`, *optional*): called in the process where an input fails, when
            it fails.
        check (`Callable[[Path], None]`, *optional*): a cheap check of an input (its header, say) that raises a
            `ValueError` with the reason for one that cannot work. Run on the inputs to make, in order, before
            `start()` until one passes: inputs that fail it fail without costing what `start()` loads, and if none
            passes, `start()` is not called. The others are checked by `make` itself.

    Returns:
        [`JobResult`]: the totals of all processes (the same in every process).
    """
    group = JobGroup(Processes()) if group is None else group
    processes = group.processes
    mine = JobResult()
    todo = []
    for batch in processes.share(list(plans.items()), batch_size):
        left = []
        for path, outputs in batch:
            state = _outputs_state(outputs, overwrite)
            if state is None:
                left.append((path, outputs))
            elif state == DONE:
                mine.skipped.append(path)
            else:
                _fail(mine, path, state, on_failure)
        if left:
            todo.append(left)
    if check is not None:
        todo = _drop_leading_failures(todo, check, mine, on_failure)
    pending = sum(len(batch) for batch in todo)
    counts = group.gather((pending, len(mine.skipped)))
    total = sum(count[0] for count in counts)
    if processes.is_main and on_pending is not None:
        on_pending(total, sum(count[1] for count in counts))

    from tqdm.auto import tqdm

    show = progress and processes.is_main and total > 0
    began = time.perf_counter()
    with tqdm(total=total, desc=desc, unit="image", position=0, disable=None if show else True) as bar:
        try:
            make = start() if todo else None
            mine.load_seconds = time.perf_counter() - began if todo else 0.0
            for batch in todo:
                with _claimed(batch) as claims:
                    work = []
                    for item, mine_now in zip(batch, claims):
                        state = _outputs_state(item[1], overwrite) if mine_now is True else None
                        if isinstance(mine_now, str):  # its folder or claim could not be made (a full disk)
                            _fail(mine, item[0], mine_now, on_failure)
                        elif not mine_now:  # another run (same output folder) is making it now
                            mine.elsewhere.append(item[0])
                        elif state == DONE:
                            mine.skipped.append(item[0])  # another run finished it since this one started
                        elif state is not None:
                            _fail(mine, item[0], state, on_failure)
                        else:
                            work.append(item)
                    failures: dict[Path, str] = {}
                    if work:
                        try:
                            failures = make(work) or {}
                        except Exception as error:  # one bad batch does not stop the others
                            if debug:
                                raise
                            failures = {path: one_line(error) for path, _ in work}
                for path, _ in work:
                    if path in failures:
                        _fail(mine, path, failures[path], on_failure)
                    else:
                        mine.done.append(path)
                bar.n = group.add("finished", len(batch))
                bar.refresh()
        finally:
            group.add("stopped", 1)
        while processes.is_main and bar.n < total and group.add("stopped", 0) < processes.world_size:
            time.sleep(0.2)  # the others are still working: follow them
            bar.n = group.add("finished", 0)
            bar.refresh()
        bar.n = group.add("finished", 0)
        bar.refresh()
    mine.seconds = time.perf_counter() - began
    result = JobResult(processes=processes.world_size)
    for part in group.gather(mine):
        result.merge(part)
    order = {path: index for index, path in enumerate(plans)}
    for paths in (result.done, result.skipped, result.elsewhere):
        paths.sort(key=order.__getitem__)
    result.failed = dict(sorted(result.failed.items(), key=lambda entry: order[entry[0]]))
    return result
