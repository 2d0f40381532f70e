"""`--recursive`: the commands read nested folders (LSDIR's layout), their outputs mirror the input tree, and the
rules that keep outputs apart (same names, outputs inside inputs) still hold."""

import json

import pytest

from diffusers_sspir.cli.degrade import image_seed

from .files import write_image


def nested(root, names=("a/0001.png", "a/0002.png", "b/c/0001.jpg", "top.png"), size=16):
    for seed, name in enumerate(names):
        write_image(root / name, size, size, seed)
    return root


def files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_restore_reads_subfolders_only_when_asked_and_mirrors_the_tree(sspir, model_dir, tmp_path):
    photos = nested(tmp_path / "photos")
    common = ["--model", model_dir, "--steps", "1", "--upscale", "2"]
    flat = sspir("restore", photos, "-o", tmp_path / "flat", *common)
    assert flat.code == 0 and files(tmp_path / "flat") == ["top.png"], flat.out + flat.err

    deep = sspir("restore", photos, "-o", tmp_path / "deep", *common, "--recursive", "--save-caption",
                 "--save-structure")  # fmt: skip
    assert deep.code == 0, deep.err
    assert files(tmp_path / "deep") == [
        "a/0001.png", "a/0001.txt", "a/0002.png", "a/0002.txt", "b/c/0001.png", "b/c/0001.txt",
        "structure/a/0001.png", "structure/a/0002.png", "structure/b/c/0001.png", "structure/top.png",
        "top.png", "top.txt",
    ]  # fmt: skip
    assert "restored 4, failed 0." in deep.out


def test_the_same_stem_clashes_only_within_one_folder(sspir, tmp_path):
    photos = nested(tmp_path / "photos", ("a/x.png", "b/x.png", "b/y.png", "b/Y.jpg"))
    run = sspir("restore", photos, "-o", tmp_path / "out", "--recursive", "--model", tmp_path)
    assert run.code == 2
    assert "b/Y.jpg and" in run.err and "b/y.png have the same path (without extension) 'b/y'" in run.err, run.err
    assert "a/x" not in run.err


def test_an_output_folder_inside_a_recursive_input_is_refused(sspir, tmp_path):
    photos = nested(tmp_path / "photos")
    for command in (["restore", photos], ["degrade", photos]):
        run = sspir(*command, "-o", photos / "out", "--recursive")
        assert run.code == 2 and "lies inside the input folder" in run.err and "--recursive" in run.err, run.err


def test_degrade_seeds_a_nested_image_by_its_path_and_a_top_level_one_by_its_stem(sspir, tmp_path, monkeypatch):
    from diffusers_sspir.cli import degrade

    photos = nested(tmp_path / "photos", ("a/0001.png", "b/0001.png", "0001x.png"))
    seen = {}
    original = degrade.image_seed
    monkeypatch.setattr(degrade, "image_seed", lambda seed, key: seen.setdefault(key, original(seed, key)))
    run = sspir("degrade", photos, "-o", tmp_path / "pairs", "--recursive", "--seed", 4, "--scale", 2)
    assert run.code == 0, run.err
    assert seen == {key: image_seed(4, key) for key in ("a/0001", "b/0001", "0001x")}
    assert files(tmp_path / "pairs") == ["gt/0001x.png", "gt/a/0001.png", "gt/b/0001.png", "lq/0001x.png",
                                         "lq/a/0001.png", "lq/b/0001.png"]  # fmt: skip
    assert (tmp_path / "pairs" / "lq" / "a" / "0001.png").read_bytes() != (
        tmp_path / "pairs" / "lq" / "b" / "0001.png"
    ).read_bytes()  # same stem, different noise


def test_caption_and_evaluate_follow_the_tree(sspir, tmp_path):
    gt = nested(tmp_path / "set" / "gt")
    run = sspir("caption", gt, "--captioner", "fixed:a photo", "--recursive")
    assert run.code == 0, run.err
    assert files(tmp_path / "set" / "captions") == ["a/0001.txt", "a/0002.txt", "b/c/0001.txt", "top.txt"]

    pred = nested(tmp_path / "restored")
    write_image(pred / "comparison" / "a" / "0001.png", 16, 48)  # what restore --save-comparison adds
    write_image(pred / "extra" / "z.png")
    run = sspir("evaluate", "--pred", pred, "--gt", gt, "--recursive", "--crop-border", 0)
    assert run.code == 0, run.err
    report = json.loads((pred / "metrics.json").read_text())
    assert sorted(report["images"]) == ["a/0001", "a/0002", "b/c/0001", "top"]
    assert report["unpaired"] == {"pred": ["extra/z.png"], "gt": []}
    assert report["identical"] == ["a/0001", "a/0002", "b/c/0001", "top"]  # each matched with its own partner


@pytest.mark.parametrize("command", ["restore", "degrade", "caption", "evaluate"])
def test_every_command_that_reads_folders_offers_recursive(sspir, command, capsys):
    from diffusers_sspir.cli import build_parser

    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args([command, "--help"])
    assert "--recursive" in capsys.readouterr().out
