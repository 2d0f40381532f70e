"""Runs sharing an output folder: each output is claimed by one run at a time, temporary files are per writer."""

import os
import socket
import subprocess
import sys

from diffusers_sspir.files import claim

from ..claims import held_claim
from .files import write_image


def test_claim_is_exclusive_and_released(tmp_path):
    output = tmp_path / "a.png"
    with claim(output) as first:
        assert first and (tmp_path / ".a.png.claim").read_text().split() == [socket.gethostname(), str(os.getpid())]
        with claim(output) as second:
            assert not second  # this very process is alive, so its claim holds
    assert not (tmp_path / ".a.png.claim").exists()


def test_a_claim_no_live_run_holds_is_taken_over_whatever_it_says(tmp_path, caplog):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left_behind = {
        "a": f"{socket.gethostname()} {dead.stdout.strip()}\n",  # a killed run
        "b": f"{socket.gethostname()} 1\n",  # a live process, but not a run: its id was reused after a reboot
        "c": "some-restarted-container 7\n",  # another host name
        "d": "",  # created, then its write failed (a full disk)
        "e": "\udcff\x00 garbage",  # unreadable
    }
    for name, text in left_behind.items():
        (tmp_path / f".{name}.png.claim").write_bytes(text.encode("utf-8", "surrogateescape"))
        with claim(tmp_path / f"{name}.png") as mine:
            assert mine, name
            assert (tmp_path / f".{name}.png.claim").read_text().split() == [socket.gethostname(), str(os.getpid())]
        assert not (tmp_path / f".{name}.png.claim").exists()
    said = [record.getMessage() for record in caplog.records if "taking over the claim" in record.getMessage()]
    assert len(said) == 4 and "a.png: taking over the claim left by" in said[0]  # each non-empty one is said


def test_a_claim_a_live_run_holds_is_respected_whatever_it_says(tmp_path):
    for name, text in {"a": "some-other-node 1\n", "b": ""}.items():
        with held_claim(tmp_path / f"{name}.png", text), claim(tmp_path / f"{name}.png") as mine:
            assert not mine, name
            assert (tmp_path / f".{name}.png.claim").read_text() == text  # left as it is


def test_claims_are_exclusive_when_many_processes_race_for_a_killed_runs_claim(tmp_path):
    (tmp_path / ".a.png.claim").write_text("gone-host 12345\n")
    # each racer claims a.png; the winner holds it until every loser has reported (or 60 s)
    racer = (
        "import os, sys, time; from pathlib import Path; from diffusers_sspir.files import claim\n"
        "folder = Path(sys.argv[1])\n"
        "with claim(folder / 'a.png') as mine:\n"
        "    (folder / f'{int(mine)}-{os.getpid()}').touch()\n"
        "    deadline = time.monotonic() + 60\n"
        "    while mine and len(list(folder.glob('0-*'))) < 5 and time.monotonic() < deadline:\n"
        "        time.sleep(0.01)\n"
    )
    runs = [subprocess.Popen([sys.executable, "-c", racer, str(tmp_path)]) for _ in range(6)]
    assert [run.wait(timeout=120) for run in runs] == [0] * 6
    assert (len(list(tmp_path.glob("1-*"))), len(list(tmp_path.glob("0-*")))) == (1, 5)
    assert not (tmp_path / ".a.png.claim").exists()


def test_taking_over_a_killed_runs_claim_removes_the_temporary_files_it_left(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = dead.stdout.strip()
    (tmp_path / "comparison").mkdir()
    (tmp_path / ".a.png.claim").write_text(f"{socket.gethostname()} {pid}\n")
    left = [tmp_path / f".a.png.{pid}-0badc0de.partial", tmp_path / "comparison" / f".a.png.{pid}-12345678.partial"]
    others = [tmp_path / f".a.png.{os.getpid()}-87654321.partial", tmp_path / f".b.png.{pid}-0badc0de.partial"]
    for path in left + others:
        path.write_bytes(b"half an image")
    with claim(tmp_path / "a.png", [tmp_path / "comparison" / "a.png"]) as mine:
        assert mine
        assert not any(path.exists() for path in left)
    assert all(path.exists() for path in others)  # a live writer's, and another output's


def test_restore_leaves_images_another_run_is_making(sspir, tmp_path, model_dir):
    inputs = [write_image(tmp_path / "in" / f"{name}.png", seed=i) for i, name in enumerate("abc")]
    out = tmp_path / "out"
    out.mkdir()
    with held_claim(out / "b.png"):  # a live run holds b
        run = sspir("restore", *inputs, "-o", out, "--model", model_dir, "--steps", "1", "--upscale", "2")
    assert run.code == 0
    assert "left 1 images to another run that is making them" in run.out
    assert "restored 2, left 1 to another run, failed 0." in run.out  # not counted as done: it is not made yet
    assert sorted(p.name for p in out.glob("*.png")) == ["a.png", "c.png"]


def test_two_concurrent_runs_on_one_folder_share_the_work(tmp_path, model_dir):
    for i in range(6):
        write_image(tmp_path / "in" / f"img{i}.png", seed=i)
    command = [sys.executable, "-c", "import sys; from diffusers_sspir.cli import main; sys.exit(main(sys.argv[1:]))",
               "restore", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(model_dir),
               "--steps", "1", "--upscale", "2", "--device", "cpu"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for _ in range(2)]  # fmt: skip
    results = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], results
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"img{i}.png" for i in range(6)]  # no leftovers
    for _, err in results:  # no third-party warnings a user cannot act on (transformers' torchvision fallback)
        assert "torchvision" not in err and "warn" not in err.lower(), err
        assert "%|" not in err, err  # progress bars are for terminals, not for pipes and logs


def test_only_whole_images_count_as_done_and_what_is_in_the_way_is_kept_and_named(tmp_path):
    import PIL.Image

    from diffusers_sspir.jobs import JobGroup, run_jobs

    out = tmp_path / "out"
    out.mkdir()
    PIL.Image.new("RGB", (4, 4)).save(out / "whole.png")
    (out / "empty.png").write_bytes(b"")
    (out / "junk.png").write_text("not an image")
    (out / "folder.png").mkdir()
    (out / "caption.txt").write_text("")  # not an image: any file counts
    names = ["whole.png", "empty.png", "junk.png", "folder.png", "caption.txt", "new.png"]
    plans = {tmp_path / name: {"out": out / name} for name in names}

    def make(batch):
        for _, outputs in batch:
            PIL.Image.new("RGB", (4, 4), "red").save(outputs["out"], format="PNG")

    failed = []
    with JobGroup() as group:
        result = run_jobs(plans, lambda: make, group=group, on_failure=lambda path, why: failed.append(path.name))
    assert [p.name for p in result.skipped] == ["whole.png", "caption.txt"]
    assert [p.name for p in result.done] == ["new.png"]
    reasons = {p.name: why for p, why in result.failed.items()}
    assert reasons.keys() == {"empty.png", "junk.png", "folder.png"} and sorted(failed) == sorted(reasons)
    assert "is empty; pass --overwrite" in reasons["empty.png"]
    assert "not a readable image" in reasons["junk.png"] and "is a folder" in reasons["folder.png"]
    assert (out / "junk.png").read_text() == "not an image"  # kept: never replaced unasked

    with JobGroup() as group:
        again = run_jobs(plans, lambda: make, group=group, overwrite=True)
    assert sorted(p.name for p in again.done) == sorted(set(names) - {"folder.png"})
    assert list(again.failed) == [tmp_path / "folder.png"]  # a folder is never replaced
    assert PIL.Image.open(out / "junk.png").size == (4, 4)


def test_an_output_that_cannot_be_claimed_fails_alone_and_the_others_go_on(tmp_path, monkeypatch):
    import errno

    from diffusers_sspir import files
    from diffusers_sspir.jobs import JobGroup, run_jobs

    real_claim = files.claim

    def full_disk_for_b(path, others=()):
        if path.name == "b.txt":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_claim(path, others)

    monkeypatch.setattr(files, "claim", full_disk_for_b)
    plans = {tmp_path / name: {"out": tmp_path / "out" / f"{name}.txt"} for name in "abc"}

    def make(batch):
        for path, outputs in batch:
            outputs["out"].write_text(path.name)

    with JobGroup() as group:
        result = run_jobs(plans, lambda: make, group=group)
    assert [p.name for p in result.done] == ["a", "c"]
    assert "No space left on device" in result.failed[tmp_path / "b"]
    assert not list((tmp_path / "out").glob(".*"))  # no claim left behind


FILE_SIZE_LIMITED = r"""
import resource, signal, sys
# The kernel refuses writes past the limit (EFBIG, with SIGXFSZ ignored), as a full disk refuses them (ENOSPC).
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from diffusers_sspir.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_writes_the_kernel_refuses_fail_each_file_and_a_rerun_completes(model_dir, tmp_path):
    """A real write failure (a file-size limit, `ulimit -f`): each image fails alone with a one-line reason, the run
    goes on and exits 1, no claim or temporary file is left, and a rerun without the limit makes everything."""
    for name in "abc":
        write_image(tmp_path / "in" / f"{name}.png", 12, 12, seed=ord(name))
    out = tmp_path / "out"
    command = ["restore", str(tmp_path / "in"), "-o", str(out), "--model", str(model_dir), "--steps", "1",
               "--upscale", "2"]  # fmt: skip
    limited = subprocess.run([sys.executable, "-c", FILE_SIZE_LIMITED, "300", *command], capture_output=True,
                             text=True, timeout=300)  # fmt: skip
    assert limited.returncode == 1, limited.stderr[-2000:]
    failures = [line for line in limited.stderr.splitlines() if line.startswith("failed: ")]
    assert len(failures) == 3 and all("File too large" in line for line in failures), limited.stderr[-2000:]
    assert "restored 0" in limited.stdout and "failed 3" in limited.stdout
    assert not [p.name for p in out.iterdir()]  # no output, claim or temporary file left behind

    rerun = subprocess.run([sys.executable, "-m", "diffusers_sspir.cli", *command], capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.png"]
