"""`sspir degrade|restore|caption` on several processes (torchrun and accelerate launch, gloo on the CPU): the same
files as one process, bit for bit, one summary with the totals of all, and a run that is killed resumes with another
number of processes without redoing or corrupting anything."""

import os
import re
import signal
import time
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from diffusers_sspir.jobs import JobGroup, Processes, run_jobs
from diffusers_sspir.testing import make_tiny_llava

from .. import launch

CLI = ["-m", "diffusers_sspir.cli"]


def nested_photos(root: Path, count: int, size: int = 48) -> list[Path]:
    """`count` images in an LSDIR-like tree: `root/0001000/0000001.png`, ... in folders of 4, one JPEG at the top."""
    paths = []
    for index in range(count):
        rng = np.random.default_rng(index)
        base = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        image = PIL.Image.fromarray(base).resize((size, size), PIL.Image.Resampling.BICUBIC)
        folder = root / f"{1000 * (index // 4 + 1):07d}"
        folder.mkdir(parents=True, exist_ok=True)
        paths.append(folder / f"{index + 1:07d}.png")
        image.save(paths[-1])
    PIL.Image.new("RGB", (size, size), (90, 140, 200)).save(root / "top.jpg")
    return paths + [root / "top.jpg"]


def tree(folder: Path) -> dict[str, bytes]:
    """Every file below `folder` (hidden ones too) by relative path, with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ the share of each process


@pytest.mark.parametrize("world_size", [1, 2, 3, 5])
@pytest.mark.parametrize("batch_size", [1, 2, 3])
def test_the_shares_of_all_processes_hold_every_item_once_in_the_batches_of_one_process(world_size, batch_size):
    items = list(range(11))
    alone = Processes().share(items, batch_size)
    shares = [Processes(rank, world_size, rank, world_size).share(items, batch_size) for rank in range(world_size)]
    batches = [batch for share in shares for batch in share]
    assert sorted(x for batch in batches for x in batch) == items
    assert sorted(batches) == alone  # the same batches, whoever makes them
    assert shares[0][0] == items[:batch_size]  # in order: batch k to process k mod N
    assert world_size == 1 or shares[1][0] == items[batch_size : 2 * batch_size]


def test_the_launch_is_read_from_the_launchers_environment():
    assert Processes.from_environment({}) == Processes()
    assert Processes.from_environment({"WORLD_SIZE": "1", "RANK": "0"}) == Processes()
    environment = {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}
    processes = Processes.from_environment(environment)
    assert (processes.rank, processes.world_size, processes.local_rank, processes.local_world_size) == (5, 8, 1, 4)
    assert not processes.is_main and processes.is_distributed
    for bad, message in (
        ({"WORLD_SIZE": "two", "RANK": "0"}, "WORLD_SIZE='two' must be a whole number"),
        ({"WORLD_SIZE": "2"}, "RANK is not"),
        ({"WORLD_SIZE": "2", "RANK": "2"}, "does not add up"),
        ({"WORLD_SIZE": "2", "RANK": "-1"}, "RANK='-1' must be >= 0"),
    ):
        with pytest.raises(ValueError, match=message):
            Processes.from_environment(bad)
    with pytest.raises(ValueError, match="`batch_size` must be a positive integer"):
        Processes().share([1], 0)


def test_each_process_of_a_launch_takes_the_gpu_of_its_local_rank(monkeypatch):
    import torch

    from diffusers_sspir.cli._common import CLIError, resolve_device

    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    for name, value in {"WORLD_SIZE": "8", "RANK": "5", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}.items():
        monkeypatch.setenv(name, value)
    assert resolve_device("auto") == resolve_device("cuda") == torch.device("cuda", 1)
    assert chosen == [torch.device("cuda", 1)] * 2  # made current, for libraries that use the current device
    with pytest.raises(CLIError, match="--device cuda:2: with 8 processes every one would take this GPU"):
        resolve_device("cuda:2")
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # one CUDA_VISIBLE_DEVICES per process
    assert resolve_device("cuda") == torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "3")
    with pytest.raises(CLIError, match="4 processes on this machine but only 2 CUDA devices"):
        resolve_device("auto")


def test_one_process_runs_batches_skips_what_is_done_and_records_failures(tmp_path):
    plans = {tmp_path / f"in{i}": {"out": tmp_path / "out" / f"{i}.txt"} for i in range(5)}
    (tmp_path / "out").mkdir()
    plans[tmp_path / "in1"]["out"].write_text("done before")
    seen = []

    def make(batch):
        seen.append([path.name for path, _ in batch])
        for path, outputs in batch:
            if path.name == "in3":
                raise OSError("disk on fire")
            outputs["out"].write_text(path.name)

    pending = []
    with JobGroup() as group:
        result = run_jobs(plans, lambda: make, batch_size=2, group=group, on_pending=lambda *c: pending.append(c))
    assert seen == [["in0"], ["in2", "in3"], ["in4"]]  # batches of the whole list, what is done left out of its own
    assert pending == [(4, 1)]
    assert [p.name for p in result.done] == ["in0", "in4"]
    assert [p.name for p in result.skipped] == ["in1"]
    assert {p.name: reason for p, reason in result.failed.items()} == {"in2": "disk on fire", "in3": "disk on fire"}
    assert not list((tmp_path / "out").glob(".*"))  # no claim left behind


# ------------------------------------------------------------------ whole commands on several processes


def test_degrade_on_two_processes_makes_the_files_of_one_bit_for_bit_with_one_summary(tmp_path, sspir):
    hq = tmp_path / "hq"
    nested_photos(hq, 7)
    (hq / "0002000" / "broken.png").write_bytes(b"not an image")
    alone = sspir("degrade", hq, "-o", tmp_path / "one", "--recursive", "--seed", 5, "--scale", 2)
    assert alone.code == 1, alone.err  # the broken file

    code, out, err = launch.run(2, [*CLI, "degrade", str(hq), "-o", str(tmp_path / "two"), "--recursive",
                                    "--seed", "5", "--scale", "2"])  # fmt: skip
    assert code == 1, err[-3000:]
    assert tree(tmp_path / "two") == tree(tmp_path / "one")
    assert "lq/0001000/0000001.png" in tree(tmp_path / "two") and "gt/top.png" in tree(tmp_path / "two")
    assert out.count("made 8, failed 1:") == 1, out  # the totals of both processes, printed once
    assert "0002000/broken.png: cannot read the image" in out


def test_restore_on_two_processes_with_accelerate_matches_one_process(tmp_path, sspir, model_dir):
    lq = tmp_path / "lq"
    nested_photos(lq, 3, size=16)
    common = ["--model", str(model_dir), "--recursive", "--steps", "2", "--upscale", "2", "--save-comparison"]
    alone = sspir("restore", lq, "-o", tmp_path / "one", *common)
    assert alone.code == 0, alone.err

    code, out, err = launch.run(2, [*CLI, "restore", str(lq), "-o", str(tmp_path / "two"), *common], "accelerate")
    assert code == 0, err[-3000:]
    assert tree(tmp_path / "two") == tree(tmp_path / "one")
    assert set(tree(tmp_path / "two")) >= {"0001000/0000001.png", "comparison/0001000/0000003.png", "top.png"}
    assert out.count("restored 4, failed 0.") == 1, out
    assert [line for line in out.splitlines() if line.startswith("loading ")] == [
        f"loading {model_dir} on cpu (float32), a copy in each of the 2 processes with work"
    ]
    assert re.search(r"^4 images in [\d.]+ s on 2 processes: [\d.]+ s loading, then [\d.]+ images/s$", out, re.M)


def test_caption_on_two_processes_sends_the_same_batches_through_the_model(tmp_path, sspir):
    model = make_tiny_llava(tmp_path / "vlm")
    photos = tmp_path / "gt"
    nested_photos(photos, 4, size=32)
    common = ["--captioner", model, "--recursive", "--batch-size", "2", "--max-new-tokens", "6", "--seed", "3"]
    alone = sspir("caption", photos, "--output", tmp_path / "one", *common)
    assert alone.code == 0, alone.err

    code, out, err = launch.run(2, [*CLI, "caption", str(photos), "--output", str(tmp_path / "two"), *common])
    assert code == 0, err[-3000:]
    captions = tree(tmp_path / "two")
    assert captions == tree(tmp_path / "one")
    assert sorted(captions) == ["0001000/0000001.txt", "0001000/0000002.txt", "0001000/0000003.txt",
                                "0001000/0000004.txt", "top.txt"]  # fmt: skip
    assert out.count("captioned 5, failed 0.") == 1, out


def test_a_run_killed_on_four_processes_resumes_on_two_and_one_without_redoing_anything(tmp_path, sspir):
    hq = tmp_path / "hq"
    nested_photos(hq, 31, size=192)
    args = ["degrade", str(hq), "-o", str(tmp_path / "pairs"), "--recursive", "--seed", "1"]
    reference = sspir(*args[:3], str(tmp_path / "reference"), *args[4:])
    assert reference.code == 0, reference.err
    expected = tree(tmp_path / "reference")

    process = launch.start(4, [*CLI, *args])
    lq = tmp_path / "pairs" / "lq"
    deadline = time.monotonic() + launch.HANG_SECONDS
    while not any(lq.rglob("*.png")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    workers = launch.descendants(process.pid)
    assert workers, "the launch ended before its first output"
    os.kill(workers[-1], signal.SIGKILL)  # one process dies; torchrun stops the others
    _, err = launch.finish(process)
    assert process.returncode != 0

    made = {path: (stat.st_ino, stat.st_mtime_ns) for path in (tmp_path / "pairs").rglob("*.png")
            for stat in [path.stat()]}  # fmt: skip
    assert 0 < len(made) < len(expected), "the kill came after the whole run: nothing left to resume"
    first = tree(tmp_path / "pairs")
    assert all(expected[name] == data for name, data in first.items() if not name.split("/")[-1].startswith("."))

    code, out, err = launch.run(2, [*CLI, *args])
    assert code == 0, err[-3000:]
    assert tree(tmp_path / "pairs") == expected  # every file whole and right, no temporary file or claim left
    assert {path: (path.stat().st_ino, path.stat().st_mtime_ns) for path in made} == made  # nothing made twice
    pairs = tmp_path / "pairs"
    both = {path.relative_to(pairs / "lq") for path in made if path.is_relative_to(pairs / "lq")}
    both &= {path.relative_to(pairs / "gt") for path in made if path.is_relative_to(pairs / "gt")}
    assert out.count(f"made {32 - len(both)}, skipped {len(both)} already done") == 1, out

    again = sspir(*args)
    assert again.code == 0 and "made 0, skipped 32 already done" in again.out, again.out
