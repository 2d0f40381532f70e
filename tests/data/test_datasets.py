"""Tests for `diffusers_sspir.data.datasets` (CPU only, fast): scan report, pairing, crops, captions, determinism."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
import torch.nn.functional as F

from diffusers_sspir.data import ImageFolderReport, PairedImageFolder, collate_fn, scan_image_folder

SCALE = 4
RESOLUTION = 32  # GT crop; the LQ crop is 8
LQ_SIZE = (12, 10)  # (width, height) of the LQ images; GT 48x40


def _pair_arrays(seed: int, lq_size: tuple[int, int] = LQ_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """A random LQ and a GT whose exact box-downscale (mean over `SCALE` x `SCALE` blocks) is the LQ."""
    rng = np.random.default_rng(seed)
    width, height = lq_size
    lq = rng.integers(16, 240, size=(height, width, 3))
    detail = rng.integers(-12, 13, size=(height, SCALE, width, SCALE, 3))
    detail[:, :, :, SCALE // 2 :] = -detail[:, :, :, : SCALE // 2]  # zero mean per block, not flat
    gt = lq[:, None, :, None] + detail
    return gt.reshape(height * SCALE, width * SCALE, 3).astype(np.uint8), lq.astype(np.uint8)


def _save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = PIL.Image.fromarray(array)
    (image.convert(mode) if mode else image).save(path)
    return path


def _as_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(array)).permute(2, 0, 1).float() / 255.0


# GT and LQ files of one pair may have different extensions; names are listed unsorted on purpose.
PAIRED_FILES = {
    "b": ("b.bmp", "b.png"),
    "a": ("a.png", "a.bmp"),
    "c10": ("c10.tif", "c10.png"),
    "c2": ("c2.tiff", "c2.tif"),
}


@pytest.fixture
def paired_root(tmp_path: Path) -> Path:
    for seed, (gt_name, lq_name) in enumerate(PAIRED_FILES.values()):
        gt, lq = _pair_arrays(seed)
        _save(tmp_path / "gt" / gt_name, gt)
        _save(tmp_path / "lq" / lq_name, lq)
    return tmp_path


def _find_window(full: torch.Tensor, crop: torch.Tensor, step: int) -> tuple[int, int, bool]:
    """Position (on a grid of `step`) and flip under which `crop` is a window of `full`; fails if there is none."""
    size = crop.shape[-1]
    for top in range(0, full.shape[-2] - size + 1, step):
        for left in range(0, full.shape[-1] - size + 1, step):
            window = full[:, top : top + size, left : left + size]
            for flipped in (False, True):
                if torch.equal(window.flip(-1) if flipped else window, crop):
                    return top, left, flipped
    raise AssertionError("the crop is not a window of the image at a position on the grid")


# ---------------------------------------------------------------------------------------------------------------------
# Pairing, alignment, crops
# ---------------------------------------------------------------------------------------------------------------------


def test_pairs_matched_by_stem_and_crops_aligned(paired_root):
    dataset = PairedImageFolder(paired_root, resolution=RESOLUTION, scale=SCALE)
    assert dataset.has_lq and len(dataset) == 4
    assert [pair.stem for pair in dataset.pairs] == sorted(PAIRED_FILES)
    positions, flips = set(), set()
    for epoch in range(4):
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            item = dataset[index]
            assert item["gt"].shape == (3, RESOLUTION, RESOLUTION) and item["gt"].dtype == torch.float32
            assert item["lq"].shape == (3, RESOLUTION // SCALE, RESOLUTION // SCALE)
            # The GT crop is a window of this stem's GT file, on the LQ grid, possibly flipped ...
            full_gt = _as_tensor(np.asarray(PIL.Image.open(paired_root / "gt" / PAIRED_FILES[item["stem"]][0])))
            top, left, flipped = _find_window(full_gt, item["gt"], SCALE)
            positions.add((top, left))
            flips.add(flipped)
            # ... and the LQ crop is its box-downscale: same place, same flip.
            torch.testing.assert_close(F.avg_pool2d(item["gt"][None], SCALE)[0], item["lq"], atol=1e-5, rtol=0)
    assert len(positions) > 3 and flips == {False, True}


@pytest.mark.parametrize(
    "kwargs, expected_origin",
    [
        ({"center_crop": True}, (4, 8)),  # GT 48x40, crop 32: LQ offsets (1, 2) -> GT (4, 8)
        ({"center_crop": True, "random_crop": False}, (4, 8)),
        ({"random_crop": False}, (0, 0)),
    ],
)
def test_deterministic_crops(paired_root, kwargs, expected_origin):
    dataset = PairedImageFolder(paired_root, resolution=RESOLUTION, scale=SCALE, random_flip=False, **kwargs)
    top, left = expected_origin
    for epoch in (0, 5):
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            item = dataset[index]
            full_gt = _as_tensor(np.asarray(PIL.Image.open(paired_root / "gt" / PAIRED_FILES[item["stem"]][0])))
            full_lq = _as_tensor(np.asarray(PIL.Image.open(paired_root / "lq" / PAIRED_FILES[item["stem"]][1])))
            assert torch.equal(item["gt"], full_gt[:, top : top + RESOLUTION, left : left + RESOLUTION])
            r = RESOLUTION // SCALE
            assert torch.equal(
                item["lq"], full_lq[:, top // SCALE : top // SCALE + r, left // SCALE : left // SCALE + r]
            )


def test_small_images_are_padded_by_mirroring_and_stay_aligned(tmp_path):
    gt, lq = _pair_arrays(0, lq_size=(6, 4))  # GT 24x16, smaller than the 32x32 crop on both sides
    _save(tmp_path / "gt" / "small.png", gt)
    _save(tmp_path / "lq" / "small.png", lq)
    report = scan_image_folder(tmp_path, scale=SCALE, resolution=RESOLUTION)
    assert report.ok and report.notes == [(tmp_path / "gt" / "small.png", report.notes[0][1])]
    assert "smaller than the 32x32 crop; padded by mirroring" in report.format()

    item = PairedImageFolder(tmp_path, resolution=RESOLUTION, scale=SCALE, random_flip=False)[0]
    expected = torch.from_numpy(np.pad(gt, ((0, 16), (0, 8), (0, 0)), mode="symmetric")).permute(2, 0, 1) / 255.0
    assert torch.equal(item["gt"], expected.float())
    assert torch.equal(item["gt"][:, :16, :24], _as_tensor(gt))
    torch.testing.assert_close(F.avg_pool2d(item["gt"][None], SCALE)[0], item["lq"], atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------------------------------
# Scan report
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def broken_root(tmp_path: Path) -> Path:
    gt, lq = _pair_arrays(0)
    for stem in ("good1", "good2"):
        _save(tmp_path / "gt" / f"{stem}.png", gt)
        _save(tmp_path / "lq" / f"{stem}.png", lq)
    _save(tmp_path / "gt" / "gt_only.png", gt)
    _save(tmp_path / "lq" / "lq_only.png", lq)
    _save(tmp_path / "gt" / "dup.png", gt)
    _save(tmp_path / "gt" / "dup.jpg", gt)
    _save(tmp_path / "lq" / "dup.png", lq)
    (tmp_path / "gt" / "corrupt.png").write_bytes(b"not an image at all")
    _save(tmp_path / "lq" / "corrupt.png", lq)
    _save(tmp_path / "gt" / "wrong_size.png", gt)
    _save(tmp_path / "lq" / "wrong_size.png", lq[:, :-1])
    _save(tmp_path / "gt" / "odd_gt.png", gt[:, :-2])  # 46 wide: not a multiple of the scale
    _save(tmp_path / "lq" / "odd_gt.png", lq)
    (tmp_path / "gt" / "notes.md").write_text("not an image")
    (tmp_path / "captions").mkdir()
    (tmp_path / "captions" / "good1.txt").write_text("  a red fox \n")
    (tmp_path / "captions" / "orphan.txt").write_text("no image")
    return tmp_path


BROKEN_PROBLEMS = [
    ("gt/gt_only.png", "GT image without LQ"),
    ("lq/lq_only.png", "LQ image without GT"),
    ("gt/dup.png", "duplicate stem 'dup' (also dup.jpg)"),
    ("gt/dup.jpg", "duplicate stem 'dup' (also dup.png)"),
    ("gt/corrupt.png", "unreadable image"),
    (
        "lq/wrong_size.png",
        "LQ is 11x10 but GT wrong_size.png is 48x40; with scale 4 the GT must be exactly scale x LQ = 44x40; "
        "the LQ should be 12x10: remake it, or fix `scale`",
    ),
    ("lq/odd_gt.png", "46x40; with scale 4 the GT must be exactly scale x LQ = 48x40; crop the GT to a multiple of 4"),
]
BROKEN_NOTES = [
    ("captions/orphan.txt", "caption without an image"),
    ("gt/notes.md", "ignored: not an image extension"),
]


def test_scan_reports_each_problem_with_its_path(broken_root):
    report = scan_image_folder(broken_root, scale=SCALE)
    assert isinstance(report, ImageFolderReport) and not report.ok and report.has_lq
    assert [pair.stem for pair in report.pairs] == ["good1", "good2"]
    assert sorted(path.relative_to(broken_root).as_posix() for path, _ in report.problems) == sorted(
        path for path, _ in BROKEN_PROBLEMS
    )
    assert sorted(path.relative_to(broken_root).as_posix() for path, _ in report.notes) == sorted(
        path for path, _ in BROKEN_NOTES
    )
    text = report.format()
    assert text.startswith(f"Image folder {str(broken_root)!r} (paired: gt/ + lq/, scale 4, captions in captions/)")
    assert "2 usable, 7 problems, 2 notes" in text
    for path, message in BROKEN_PROBLEMS + BROKEN_NOTES:
        assert f"  {path}: " in text and message in text.split(f"  {path}: ")[1].splitlines()[0], path


def test_format_caps_long_lists(broken_root):
    text = scan_image_folder(broken_root, scale=SCALE).format(max_entries=3)
    assert "  ... and 4 more" in text


def test_on_problem_error_raises_with_report(broken_root):
    with pytest.raises(ValueError) as error:
        PairedImageFolder(broken_root, resolution=RESOLUTION, scale=SCALE)
    message = str(error.value)
    assert scan_image_folder(broken_root, scale=SCALE, resolution=RESOLUTION).format() in message
    assert 'on_problem="skip"' in message and "2 usable items" in message


def test_on_problem_skip_warns_and_uses_good_pairs(broken_root, caplog):
    with caplog.at_level(logging.WARNING, logger="diffusers_sspir.data.datasets"):
        dataset = PairedImageFolder(broken_root, resolution=RESOLUTION, scale=SCALE, on_problem="skip")
    assert "gt/corrupt.png: unreadable image" in caplog.text and "Using the 2 usable items only" in caplog.text
    assert [dataset[i]["stem"] for i in range(len(dataset))] == ["good1", "good2"]
    assert [dataset[i]["caption"] for i in range(len(dataset))] == ["a red fox", ""]


@pytest.mark.parametrize(
    "layout, on_problem, fragment",
    [
        ({}, "skip", "no images"),
        ({"gt": None}, "skip", "no images"),
        ({"gt": None, "lq": "x.png"}, "skip", "no images"),
        ({"notes.txt": None}, "skip", "no images"),
        ({"lq": "x.png", "y.png": None}, "error", "lq: lq/ without gt/: put the GT images in gt/ next to lq/"),
    ],
)
def test_folders_without_usable_images(tmp_path, layout, on_problem, fragment):
    gt, lq = _pair_arrays(0)
    for name, inner in layout.items():
        if name.endswith(".png"):
            _save(tmp_path / name, gt)
        elif name.endswith(".txt"):
            (tmp_path / name).write_text("x")
        else:
            (tmp_path / name).mkdir()
            if inner:
                _save(tmp_path / name / inner, lq)
    with pytest.raises(ValueError, match=re.escape(fragment)):
        PairedImageFolder(tmp_path, resolution=RESOLUTION, scale=SCALE, on_problem=on_problem)


def test_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        PairedImageFolder(tmp_path / "nope", resolution=RESOLUTION)
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="is not a folder"):
        scan_image_folder(tmp_path / "file.png")


# ---------------------------------------------------------------------------------------------------------------------
# HQ-only folders, captions, image modes
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("image_folder", ["gt", "."])
def test_hq_only_folders(tmp_path, image_folder):
    for seed, stem in enumerate(("x", "y", "z")):
        _save(tmp_path / image_folder / f"{stem}.png", _pair_arrays(seed)[0])
    (tmp_path / "captions").mkdir()
    (tmp_path / "captions" / "x.txt").write_text("\tan old photo  \n\n")
    (tmp_path / "captions" / "z.txt").write_text("")
    dataset = PairedImageFolder(tmp_path, resolution=RESOLUTION, scale=SCALE)
    assert not dataset.has_lq and dataset.report.ok and dataset.report.notes == []
    items = [dataset[i] for i in range(len(dataset))]
    assert [item["caption"] for item in items] == ["an old photo", "", ""]
    assert all(set(item) == {"gt", "caption", "stem"} for item in items)
    for item in items:
        full = _as_tensor(np.asarray(PIL.Image.open(tmp_path / image_folder / f"{item['stem']}.png")))
        _find_window(full, item["gt"], 1)
    batch = collate_fn(items)
    assert set(batch) == {"gt", "caption", "stem"} and batch["gt"].shape == (3, 3, RESOLUTION, RESOLUTION)


@pytest.mark.parametrize("null_text_ratio, low, high", [(0.0, 0, 0), (1.0, 400, 400), (0.5, 160, 240)])
def test_caption_dropout(tmp_path, null_text_ratio, low, high):
    for seed, stem in enumerate("abcd"):
        _save(tmp_path / f"{stem}.png", _pair_arrays(seed)[0])
        (tmp_path / "captions").mkdir(exist_ok=True)
        (tmp_path / "captions" / f"{stem}.txt").write_text(f"caption {stem}")
    dataset = PairedImageFolder(tmp_path, resolution=RESOLUTION, null_text_ratio=null_text_ratio)
    dropped = 0
    for epoch in range(100):
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            caption = dataset[index]["caption"]
            assert caption in ("", f"caption {'abcd'[index]}")
            dropped += caption == ""
    assert low <= dropped <= high


def _mode_cases():
    rgb = np.random.default_rng(0).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    grey = rgb[..., 0]
    grey16 = np.random.default_rng(1).integers(0, 65536, size=(32, 32)).astype(np.uint16)
    rgba = np.concatenate([rgb, np.full((32, 32, 1), 9, np.uint8)], axis=-1)
    palette = PIL.Image.fromarray(rgb).quantize(16)
    return [
        ("rgb.png", PIL.Image.fromarray(rgb), _as_tensor(rgb)),
        ("grey.png", PIL.Image.fromarray(grey), _as_tensor(np.repeat(grey[..., None], 3, axis=-1))),
        ("grey16.png", PIL.Image.fromarray(grey16), torch.from_numpy(grey16 / 65535.0).float().expand(3, -1, -1)),
        ("rgba.png", PIL.Image.fromarray(rgba), _as_tensor(rgb)),
        ("palette.png", palette, _as_tensor(np.asarray(palette.convert("RGB")))),
    ]


@pytest.mark.parametrize("name, image, expected", _mode_cases(), ids=lambda case: getattr(case, "name", None))
def test_image_modes_become_rgb_floats(tmp_path, name, image, expected):
    image.save(tmp_path / name)
    item = PairedImageFolder(tmp_path, resolution=32, random_flip=False)[0]
    assert item["gt"].dtype == torch.float32 and item["gt"].shape == (3, 32, 32)
    torch.testing.assert_close(item["gt"], expected, atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------------------------------------
# Determinism, batching, workers
# ---------------------------------------------------------------------------------------------------------------------


def _items(dataset: PairedImageFolder) -> list[dict]:
    return [dataset[i] for i in range(len(dataset))]


def _same(items_a: list[dict], items_b: list[dict]) -> bool:
    return all(
        torch.equal(a["gt"], b["gt"]) and torch.equal(a["lq"], b["lq"]) and a["stem"] == b["stem"]
        for a, b in zip(items_a, items_b, strict=True)
    )


def test_items_depend_on_seed_epoch_and_index_only(paired_root):
    first = PairedImageFolder(paired_root, resolution=RESOLUTION, seed=7)
    second = PairedImageFolder(paired_root, resolution=RESOLUTION, seed=7)
    epoch0 = _items(first)
    assert _same(epoch0, [second[i] for i in reversed(range(len(second)))][::-1])  # reading order does not matter
    assert _same([first[2]], [second[-2]])
    first.set_epoch(1)
    assert first.epoch == 1 and not _same(epoch0, _items(first))
    second.set_epoch(1)
    assert _same(_items(first), _items(second))
    first.set_epoch(0)
    assert _same(epoch0, _items(first))
    assert not _same(epoch0, _items(PairedImageFolder(paired_root, resolution=RESOLUTION, seed=8)))


def test_collate_fn(paired_root):
    dataset = PairedImageFolder(paired_root, resolution=RESOLUTION)
    batch = collate_fn(_items(dataset)[:3])
    assert batch["gt"].shape == (3, 3, RESOLUTION, RESOLUTION) and batch["lq"].shape == (3, 3, 8, 8)
    assert batch["caption"] == ["", "", ""] and batch["stem"] == ["a", "b", "c10"]
    with pytest.raises(ValueError, match="empty list"):
        collate_fn([])
    hq_only = {key: value for key, value in dataset[0].items() if key != "lq"}
    with pytest.raises(ValueError, match="1 of 2 items have an `lq` image"):
        collate_fn([dataset[0], hq_only])


def test_dataloader_workers_do_not_change_items(paired_root):
    dataset = PairedImageFolder(paired_root, resolution=RESOLUTION, null_text_ratio=0.5, seed=3)
    loaders = [
        torch.utils.data.DataLoader(dataset, batch_size=2, collate_fn=collate_fn, num_workers=0),
        torch.utils.data.DataLoader(
            dataset, batch_size=2, collate_fn=collate_fn, num_workers=2, persistent_workers=True
        ),
    ]
    epochs = {0: [], 1: []}
    for loader in loaders:
        for epoch in epochs:
            dataset.set_epoch(epoch)  # reaches the persistent workers too
            epochs[epoch].append(list(loader))
    for serial, parallel in epochs.values():
        for a, b in zip(serial, parallel, strict=True):
            assert torch.equal(a["gt"], b["gt"]) and torch.equal(a["lq"], b["lq"]) and a["caption"] == b["caption"]
    assert not all(torch.equal(a["gt"], b["gt"]) for a, b in zip(epochs[0][0], epochs[1][0]))


# ---------------------------------------------------------------------------------------------------------------------
# Argument validation
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (
            {"resolution": 20},
            "`resolution` must be a multiple of `scale` (4) and of 8 (the VAE factor), got 20; for example 24",
        ),
        (
            {"resolution": 24, "scale": 16},
            "multiple of `scale` (16) and of 8 (the VAE factor), got 24; for example 32",
        ),
        ({"resolution": 0}, "`resolution` must be an integer >= 1, got 0"),
        ({"resolution": 32.0}, "`resolution` must be an integer >= 1, got 32.0"),
        ({"resolution": True}, "`resolution` must be an integer >= 1, got True"),
        ({"scale": 0}, "`scale` must be an integer >= 1, got 0"),
        ({"scale": "4"}, "`scale` must be an integer >= 1, got '4'"),
        ({"null_text_ratio": -0.1}, "`null_text_ratio` must be a number in [0, 1], got -0.1"),
        ({"null_text_ratio": 1.5}, "`null_text_ratio` must be a number in [0, 1], got 1.5"),
        ({"null_text_ratio": "0.5"}, "`null_text_ratio` must be a number in [0, 1], got '0.5'"),
        ({"seed": -1}, "`seed` must be an integer >= 0, got -1"),
        ({"seed": 1.5}, "`seed` must be an integer >= 0, got 1.5"),
        ({"on_problem": "ignore"}, "`on_problem` must be one of ('error', 'skip'), got 'ignore'"),
        ({"random_crop": 1}, "`random_crop` must be a bool, got 1"),
        ({"random_flip": "yes"}, "`random_flip` must be a bool, got 'yes'"),
        ({"center_crop": None}, "`center_crop` must be a bool, got None"),
    ],
)
def test_argument_validation(paired_root, kwargs, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        PairedImageFolder(paired_root, **{"resolution": RESOLUTION, **kwargs})


def test_epoch_and_index_validation(paired_root):
    dataset = PairedImageFolder(paired_root, resolution=RESOLUTION)
    for epoch in (-1, 1.0, None):
        with pytest.raises(ValueError, match=f"`epoch` must be an integer >= 0, got {epoch!r}"):
            dataset.set_epoch(epoch)
    with pytest.raises(IndexError, match="index 4 is out of range for a dataset of 4 items"):
        dataset[4]
    with pytest.raises(TypeError, match="index must be an integer"):
        dataset["a"]
    with pytest.raises(ValueError, match="`scale` must be an integer >= 1"):
        scan_image_folder(paired_root, scale=0)
    with pytest.raises(TypeError, match="`root` must be a `str` or `os.PathLike`"):
        scan_image_folder(None)


def _truncated_jpeg(path: Path, seed: int = 0) -> Path:
    """A JPEG whose header and first scans are intact and whose end is cut off: PIL opens it (and `verify()` passes
    for JPEG), decoding the pixels fails."""
    _save(path.with_suffix(".full.jpg"), np.random.RandomState(seed).randint(0, 255, (96, 96, 3), dtype=np.uint8))
    data = path.with_suffix(".full.jpg").read_bytes()
    path.with_suffix(".full.jpg").unlink()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_scan_decodes_in_full_so_a_truncated_jpeg_is_reported_up_front(tmp_path):
    for i in range(2):
        _save(tmp_path / "gt" / f"good{i}.png", np.random.RandomState(i).randint(0, 255, (96, 96, 3), dtype=np.uint8))
    _truncated_jpeg(tmp_path / "gt" / "cut.jpg")
    report = scan_image_folder(tmp_path, scale=4, resolution=64)
    assert [pair.stem for pair in report.pairs] == ["good0", "good1"]
    assert "cut.jpg" in report.format() and "truncated" in report.format()
    dataset = PairedImageFolder(tmp_path, resolution=64, on_problem="skip")
    assert len(dataset) == 2 and dataset[1]["gt"].shape == (3, 64, 64)


def test_a_file_broken_after_the_scan_is_skipped_on_request_and_named_otherwise(tmp_path, caplog):
    for i in range(3):
        _save(tmp_path / "gt" / f"img{i}.png", np.random.RandomState(i).randint(0, 255, (96, 96, 3), dtype=np.uint8))
    strict = PairedImageFolder(tmp_path, resolution=64)
    skipping = PairedImageFolder(tmp_path, resolution=64, on_problem="skip")
    data = (tmp_path / "gt" / "img1.png").read_bytes()
    (tmp_path / "gt" / "img1.png").write_bytes(data[: len(data) // 3])  # broken mid-run
    with pytest.raises(OSError, match="img1.png"):
        strict[1]
    with caplog.at_level(logging.WARNING):
        item = skipping[1]
    assert item["stem"] == "img2" and "img1.png" in caplog.text


# ---------------------------------------------------------------------------------------------------------------------
# Nested folders (LSDIR's layout)
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def nested_root(tmp_path: Path) -> Path:
    """gt/, lq/ and captions/ trees like LSDIR's (folders of numbered photos), with the same stem in two folders."""
    for seed, key in enumerate(["0001000/0000001", "0001000/0000002", "0002000/0000001", "0002000/deep/x", "top"]):
        gt, lq = _pair_arrays(seed)
        _save(tmp_path / "gt" / f"{key}.png", gt)
        _save(tmp_path / "lq" / f"{key}.{'jpg' if key == 'top' else 'png'}", lq if key != "top" else lq * 0 + 128)
        (tmp_path / "captions" / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "captions" / f"{key}.txt").write_text(f"caption of {key}\n")
    _save(tmp_path / "gt" / ".hidden" / "0000001.png", _pair_arrays(9)[0])  # hidden: not read
    return tmp_path


def test_nested_folders_pair_gt_lq_and_captions_by_their_path(nested_root):
    dataset = PairedImageFolder(nested_root, resolution=RESOLUTION, scale=SCALE, recursive=True)
    assert dataset.report.ok, dataset.report.format()
    keys = ["0001000/0000001", "0001000/0000002", "0002000/0000001", "0002000/deep/x", "top"]
    assert [pair.key for pair in dataset.pairs] == keys
    assert [pair.stem for pair in dataset.pairs] == ["0000001", "0000002", "0000001", "x", "top"]
    for index, pair in enumerate(dataset.pairs):
        assert pair.gt_path == nested_root / "gt" / f"{pair.key}.png"
        assert pair.caption == f"caption of {pair.key}"
        if pair.key != "top":  # the same stem in two folders: each GT with its own LQ
            item = dataset[index]
            torch.testing.assert_close(F.avg_pool2d(item["gt"][None], SCALE)[0], item["lq"], atol=1e-5, rtol=0)
    assert dataset.report.folder_counts() == {
        "": (1, 0), "0001000": (2, 0), "0002000": (1, 0), "0002000/deep": (1, 0)
    }  # fmt: skip
    assert "By subfolder:\n  ./: 1 usable, 0 problems\n  0001000/: 2 usable, 0 problems" in dataset.report.format()


def test_nested_problems_are_counted_in_their_subfolder_and_same_stems_only_clash_in_one_folder(nested_root):
    (nested_root / "lq" / "0002000" / "0000001.png").unlink()
    _save(nested_root / "gt" / "0001000" / "0000002.jpg", _pair_arrays(3)[0])  # a second file for one key
    (nested_root / "captions" / "0001000" / "orphan.txt").write_text("no image")
    report = scan_image_folder(nested_root, scale=SCALE, recursive=True)
    problems = {path.relative_to(nested_root).as_posix(): message for path, message in report.problems}
    assert set(problems) == {"gt/0002000/0000001.png", "gt/0001000/0000002.png", "gt/0001000/0000002.jpg"}
    assert "no image with path '0002000/0000001' (without extension) in lq/" in problems["gt/0002000/0000001.png"]
    assert (
        "duplicate stem '0000002' (also 0000002.jpg); keep exactly one file per stem in gt/0001000/"
        in problems["gt/0001000/0000002.png"]
    )
    assert report.folder_counts() == {"": (1, 0), "0001000": (1, 2), "0002000": (0, 1), "0002000/deep": (1, 0)}
    notes = {path.relative_to(nested_root).as_posix(): message for path, message in report.notes}
    assert "path '0001000/orphan' (without extension)" in notes["captions/0001000/orphan.txt"]


def test_without_recursive_subfolders_are_noted_with_the_way_to_read_them(nested_root):
    report = scan_image_folder(nested_root, scale=SCALE)
    assert [pair.key for pair in report.pairs] == ["top"]
    notes = {path.relative_to(nested_root).as_posix(): message for path, message in report.notes}
    assert "recursive=True, --train_data_recursive in training" in notes["gt/0001000"]
    with pytest.raises(ValueError, match="`recursive` must be a bool"):
        PairedImageFolder(nested_root, resolution=RESOLUTION, scale=SCALE, recursive="yes")


def test_a_plain_nested_folder_keeps_its_top_level_captions_out_of_the_images(tmp_path):
    _save(tmp_path / "a" / "b.png", _pair_arrays(0)[0])
    _save(tmp_path / "c.png", _pair_arrays(1)[0])
    (tmp_path / "captions" / "a").mkdir(parents=True)
    (tmp_path / "captions" / "a" / "b.txt").write_text("nested")
    _save(tmp_path / "captions" / "stray.png", _pair_arrays(2)[0])  # in captions/: not a training image
    dataset = PairedImageFolder(tmp_path, resolution=RESOLUTION, scale=SCALE, recursive=True)
    assert not dataset.has_lq
    assert [(pair.key, pair.caption) for pair in dataset.pairs] == [("a/b", "nested"), ("c", "")]
