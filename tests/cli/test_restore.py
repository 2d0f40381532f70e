"""`sspir restore` on a tiny saved pipeline: outputs, skip/overwrite, failures, names, seeds, schedulers."""

import importlib.util
import inspect
import io
import shutil

import numpy as np
import PIL.Image
import pytest
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

from diffusers_sspir.cli import restore
from diffusers_sspir.defaults import COLOR_FIX_NAMES, SCHEDULER_NEEDS
from diffusers_sspir.pipelines import pipeline_sspir
from diffusers_sspir.schedulers import SCHEDULERS, make_scheduler

from .files import write_broken, write_image

FAST = ("--steps", 2, "--upscale", 2)


def test_restores_a_folder_with_captions_and_comparisons(sspir, model_dir, tmp_path):
    write_image(tmp_path / "in" / "a.png", 16, 16, seed=0)
    write_image(tmp_path / "in" / "b.jpg", 12, 20, seed=1)
    out = tmp_path / "out"
    run = sspir("restore", tmp_path / "in", "-o", out, "--model", model_dir, *FAST, "--save-caption",
                "--save-comparison", "--save-structure", "--captioner", "fixed:a red house")  # fmt: skip
    assert run.code == 0, run.err
    assert "restored 2" in run.out and "failed 0" in run.out
    assert PIL.Image.open(out / "a.png").size == (32, 32)
    assert PIL.Image.open(out / "b.png").size == (40, 24)
    assert (out / "a.txt").read_text() == f"a red house, {pipeline_sspir.DEFAULT_ADDED_PROMPT}"

    comparison = PIL.Image.open(out / "comparison" / "b.png")
    assert comparison.width == 3 * 40 and comparison.height > 24
    label_height = comparison.height - 24
    panels = [comparison.crop((i * 40, label_height, (i + 1) * 40, comparison.height)) for i in range(3)]
    upscaled = PIL.Image.open(tmp_path / "in" / "b.jpg").convert("RGB").resize((40, 24), PIL.Image.Resampling.BICUBIC)
    np.testing.assert_array_equal(np.asarray(panels[0]), np.asarray(upscaled))
    np.testing.assert_array_equal(np.asarray(panels[2]), np.asarray(PIL.Image.open(out / "b.png")))
    assert np.asarray(comparison.crop((0, 0, 40, label_height))).min() < 128  # a label is drawn
    np.testing.assert_array_equal(np.asarray(panels[1]), np.asarray(PIL.Image.open(out / "structure" / "b.png")))


def test_rerun_skips_and_overwrite_redoes(sspir, model_dir, tmp_path, monkeypatch):
    image = write_image(tmp_path / "a.png")
    out = tmp_path / "out"
    assert sspir("restore", image, "-o", out, "--model", model_dir, *FAST).code == 0
    (out / "a.png").write_bytes(b"not an image")  # in the way: named, kept, not counted as done
    run = sspir("restore", image, "-o", out, "--model", model_dir, *FAST)
    assert run.code == 1 and "a.png exists but is not a readable image" in run.out and "--overwrite" in run.out
    assert (out / "a.png").read_bytes() == b"not an image"
    marker = io.BytesIO()
    PIL.Image.new("RGB", (3, 3), "red").save(marker, format="PNG")
    (out / "a.png").write_bytes(marker.getvalue())  # a whole image: a re-run must not touch it

    run = sspir("restore", image, "-o", out, "--model", model_dir, *FAST)
    assert run.code == 0 and "skipped 1" in run.out and "restored 0" in run.out
    assert (out / "a.png").read_bytes() == marker.getvalue()

    calls = []
    monkeypatch.setattr(pipeline_sspir.SSPIRPipeline, "__call__", lambda *a, **k: calls.append(1))
    run = sspir("restore", image, "-o", out, "--model", model_dir, *FAST, "--save-caption", "--captioner", "fixed:x")
    assert run.code == 0 and "restored 1" in run.out
    assert not calls  # only the caption is new: no restoration ran
    assert (out / "a.png").read_bytes() == marker.getvalue()
    assert (out / "a.txt").read_text() == f"x, {pipeline_sspir.DEFAULT_ADDED_PROMPT}"
    monkeypatch.undo()

    assert sspir("restore", image, "-o", out, "--model", model_dir, *FAST, "--overwrite").code == 0
    assert PIL.Image.open(out / "a.png").size == (32, 32)


def test_an_unreadable_image_fails_alone(sspir, model_dir, tmp_path):
    write_image(tmp_path / "in" / "good.png")
    write_broken(tmp_path / "in" / "bad.png")
    run = sspir("restore", tmp_path / "in", "-o", tmp_path / "out", "--model", model_dir, *FAST)
    assert run.code == 1
    assert (tmp_path / "out" / "good.png").is_file() and not (tmp_path / "out" / "bad.png").exists()
    assert "restored 1" in run.out and "failed 1" in run.out and "bad.png: cannot read the image" in run.out
    assert not list((tmp_path / "out").glob(".*partial"))


def test_same_seed_same_output_and_another_seed_differs(sspir, model_dir, tmp_path):
    image = write_image(tmp_path / "a.png")
    for name, seed in (("one", 0), ("two", 0), ("three", 1)):
        assert sspir("restore", image, "-o", tmp_path / name, "--model", model_dir, *FAST, "--seed", seed).code == 0
    read = lambda name: np.asarray(PIL.Image.open(tmp_path / name / "a.png"))  # noqa: E731
    np.testing.assert_array_equal(read("one"), read("two"))
    assert not np.array_equal(read("one"), read("three"))


def test_options_reach_the_pipeline(sspir, model_dir, tmp_path, monkeypatch):
    seen = {}
    original = pipeline_sspir.SSPIRPipeline.__call__

    def spy(pipe, image, **kwargs):
        seen.update(kwargs, scheduler=type(pipe.scheduler).__name__, karras=pipe.scheduler.config.use_karras_sigmas)
        return original(pipe, image, **kwargs)

    monkeypatch.setattr(pipeline_sspir.SSPIRPipeline, "__call__", spy)
    image = write_image(tmp_path / "a.png")
    run = sspir("restore", str(tmp_path / "*.png"), "-o", tmp_path / "out", "--model", model_dir, *FAST,
                "--scheduler", "DPM++2M-Karras", "--guidance-scale", 1, "--prompt", "", "--negative-prompt", "noise",
                "--color-fix", "none", "--tile-size", 64, "--tile-overlap", 16, "--save-caption",
                "--captioner", "fixed:a cat", "--strength", 0.5, "--restoration-guidance", 0.3,
                "--restoration-guidance-decay", 2, "--color-fix-levels", 3)  # fmt: skip
    assert run.code == 0, run.err
    assert seen["scheduler"] == "DPMSolverMultistepScheduler" and seen["karras"] is True
    expected = dict(upscale=2.0, num_inference_steps=2, guidance_scale=1.0, added_prompt="", negative_prompt="noise",
                    color_fix=None, tile_size=64, tile_overlap=16, strength=0.5, restoration_guidance_scale=0.3,
                    restoration_guidance_decay=2.0, color_fix_levels=3)  # fmt: skip
    assert {key: seen[key] for key in expected} == expected
    assert (tmp_path / "out" / "a.txt").read_text() == "a cat"
    assert image.is_file()


def test_duplicate_stems_are_an_error_up_front(sspir, tmp_path):
    first, second = write_image(tmp_path / "x" / "photo.png"), write_image(tmp_path / "y" / "photo.jpg")
    run = sspir("restore", tmp_path / "x", tmp_path / "y", "-o", tmp_path / "out", "--model", tmp_path)
    assert run.code == 2
    assert str(first) in run.err and str(second) in run.err and "same name stem" in run.err
    assert len(run.err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "extra,message",
    [
        (("--guidance-scale", "1e300"), "--guidance-scale: must be a finite number >= 0 and <= 100, got 1e+300"),
        (("--upscale", "64"), "--upscale: must be a finite number > 0 and <= 16, got 64"),
        (("--seed", str(2**64)), "--seed: must be an integer >= 0 and <= 9223372036854775807"),
        (("--color-fix-levels", "11"), "--color-fix-levels: must be an integer >= 1 and <= 10, got 11"),
        (("--color-fix-levels", "2.5"), "--color-fix-levels: must be an integer, got 2.5"),
    ],
)
def test_absurd_numbers_are_refused_before_anything_loads(sspir, tmp_path, extra, message):
    image = write_image(tmp_path / "a.png")
    run = sspir("restore", image, "-o", tmp_path / "out", *extra)
    assert run.code == 2 and message in run.err.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "extra,message",
    [
        (("--model", "./no/such/model"), "no such folder"),
        (("--model", "{tmp}"), "cannot load an SSP-IR pipeline"),
        (("--model", "{tmp}", "--tile-overlap", "16"), "--tile-overlap (16) needs --tile-size"),
        (("--model", "{tmp}", "--tile-size", "64", "--tile-overlap", "64"), "must be smaller than --tile-size"),
        (("--model", "{tmp}", "--captioner", "fixed:"), "needs a text"),
        (("--model", "{tmp}", "--captioner", "./no/vlm"), "--captioner ./no/vlm: no such folder"),
        (("--model", "{tmp}/a.png"), "a file, not a folder"),
        (("--model", "{tmp}", "-o", "{tmp}"), "would replace the input"),
    ],
)
def test_argument_errors_are_one_line(sspir, tmp_path, extra, message):
    image = write_image(tmp_path / "a.png")
    extra = [str(arg).format(tmp=tmp_path) for arg in extra]
    output = ["-o", tmp_path / "out"] if "-o" not in extra else []
    run = sspir("restore", image, *output, *extra)
    assert run.code == 2 and message in run.err
    assert len(run.err.strip().splitlines()) == 1


def test_missing_inputs_are_errors(sspir, tmp_path):
    (tmp_path / "empty").mkdir()
    for item, message in ((tmp_path / "nothing.png", "no such file"), (tmp_path / "empty", "holds no images"),
                          (str(tmp_path / "*.webp"), "no image matches")):  # fmt: skip
        run = sspir("restore", item, "-o", tmp_path / "out", "--model", tmp_path)
        assert run.code == 2 and message in run.err


def test_scheduler_list_and_unknown_names(sspir, tmp_path):
    run = sspir("restore", "--scheduler", "list")
    assert run.code == 0
    assert all(name in run.out for name in SCHEDULERS)
    run = sspir("restore", "a.png", "-o", tmp_path, "--scheduler", "fancy")
    assert run.code == 2 and "unknown name 'fancy'" in run.err


# A model saved with a DPM++ SDE scheduler, Karras sigmas and unusual solver settings: a name keeps only its noise
# schedule (the last five keys) and is otherwise its own sampler.
SAVED_SCHEDULER = DPMSolverMultistepScheduler(
    algorithm_type="sde-dpmsolver++", solver_type="heun", euler_at_final=True, final_sigmas_type="sigma_min",
    use_karras_sigmas=True, lower_order_final=False, solver_order=3,
    beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, prediction_type="v_prediction",
    timestep_spacing="trailing",
)  # fmt: skip
NOISE_SCHEDULE = ("beta_schedule", "beta_start", "beta_end", "prediction_type", "timestep_spacing")


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_every_scheduler_name_is_its_sampler_whatever_the_saved_scheduler(name):
    class_name, options = SCHEDULERS[name]
    if class_name in SCHEDULER_NEEDS and importlib.util.find_spec(SCHEDULER_NEEDS[class_name][0]) is None:
        with pytest.raises(ValueError, match=f"needs {SCHEDULER_NEEDS[class_name][0]}, which is not installed"):
            make_scheduler(name, SAVED_SCHEDULER.config)
        pytest.skip(f"{class_name} needs {SCHEDULER_NEEDS[class_name][0]}")
    scheduler = make_scheduler(name, SAVED_SCHEDULER.config)
    assert type(scheduler).__name__ == class_name
    for key, parameter in inspect.signature(type(scheduler).__init__).parameters.items():
        if key in options:
            expected = options[key]
        elif key in NOISE_SCHEDULE:
            expected = SAVED_SCHEDULER.config[key]
        elif key == "clip_sample":
            expected = False  # latents are not clipped to [-1, 1]
        elif key in ("self", "kwargs"):
            continue
        else:
            expected = parameter.default
        assert scheduler.config[key] == expected, key
    scheduler.set_timesteps(4)


def test_scheduler_names_keep_the_saved_clipping():
    saved = DDIMScheduler(clip_sample=True, clip_sample_range=2.0, set_alpha_to_one=False, steps_offset=1).config
    ddim = make_scheduler("ddim", saved)
    assert ddim.config.clip_sample and ddim.config.clip_sample_range == 2.0 and not ddim.config.set_alpha_to_one
    assert make_scheduler("pndm", saved).config.set_alpha_to_one is False
    assert make_scheduler("euler", saved).config.steps_offset == 1


def test_settings_left_out_are_the_models_recommended_ones(sspir, model_dir, tmp_path, monkeypatch):
    seen = {}
    original = pipeline_sspir.SSPIRPipeline.__call__
    spy = lambda pipe, image, **kwargs: seen.update(kwargs) or original(pipe, image, **kwargs)  # noqa: E731
    monkeypatch.setattr(pipeline_sspir.SSPIRPipeline, "__call__", spy)
    run = sspir("restore", write_image(tmp_path / "a.png"), "-o", tmp_path / "out", "--model", model_dir, "--steps", 1)
    assert run.code == 0, run.err
    assert seen["guidance_scale"] is None and seen["strength"] is None and seen["restoration_guidance_scale"] is None


def test_help_restates_the_pipeline_defaults():
    assert restore.DEFAULT_ADDED_PROMPT == pipeline_sspir.DEFAULT_ADDED_PROMPT
    assert restore.DEFAULT_NEGATIVE_PROMPT == pipeline_sspir.DEFAULT_NEGATIVE_PROMPT
    assert set(COLOR_FIX_NAMES) == {method or "none" for method in pipeline_sspir.COLOR_FIX_METHODS}


def test_comparison_layout():
    panels = [(f"label {i}", PIL.Image.new("RGB", (30, 20), (i * 100, 0, 0))) for i in range(3)]
    panels[1] = ("small", PIL.Image.new("RGB", (15, 10), (100, 0, 0)))  # resized to the first panel's size
    comparison = restore.make_comparison(panels)
    label_height = comparison.height - 20
    assert comparison.size == (90, label_height + 20) and label_height > 8
    for i in range(3):
        assert comparison.getpixel((i * 30 + 15, label_height + 10)) == (i * 100, 0, 0)


def test_without_model_the_bundled_demo_model_is_used_or_its_absence_explained(sspir, tmp_path, monkeypatch):
    from diffusers_sspir import demo

    monkeypatch.setattr(demo, "DEMO_MODEL_DIR", tmp_path / "no_demo")
    run = sspir("restore", write_image(tmp_path / "a.png"), "-o", tmp_path / "out")
    assert run.code == 2 and "bundled demo model is missing" in run.err and "--model" in run.err
    assert len(run.err.strip().splitlines()) == 1


@pytest.mark.parametrize("case", ["below-a-file", "is-a-file", "read-only"])
def test_unusable_output_folders_are_refused_before_the_model_loads(sspir, tmp_path, monkeypatch, case):
    import os

    from diffusers_sspir.cli import restore as restore_module

    image = write_image(tmp_path / "in" / "a.png")
    (tmp_path / "file").write_text("x")
    output = {"below-a-file": tmp_path / "file" / "out", "is-a-file": tmp_path / "file", "read-only": tmp_path / "ro"}
    if case == "read-only":
        (tmp_path / "ro").mkdir()
        monkeypatch.setattr("tempfile.mkstemp", lambda **k: (_ for _ in ()).throw(OSError(30, os.strerror(30))))
    monkeypatch.setattr(restore_module, "load_pipeline", lambda args: pytest.fail("the model was loaded"))
    run = sspir("restore", image, "-o", output[case], "--model", tmp_path)
    assert run.code == 2 and len(run.err.strip().splitlines()) == 1
    assert {"below-a-file": "is a file, so the folder cannot be made", "is-a-file": "is a file; pass a folder",
            "read-only": "Read-only file system); pass a folder you can write to"}[case] in run.err  # fmt: skip
    assert "Error" not in run.err  # no Python class names


def test_files_a_folder_holds_besides_images_are_listed_as_skipped(sspir, tmp_path, model_dir):
    write_image(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "drawing.svg").write_text("<svg/>")
    (tmp_path / "in" / "notes.txt").write_text("x")
    run = sspir("restore", tmp_path / "in", "-o", tmp_path / "out", "--model", model_dir, "--steps", "1",
                "--upscale", "2")  # fmt: skip
    assert run.code == 0 and "skipping 2 files that are not" in run.out and "drawing.svg, notes.txt" in run.out


def test_an_animated_gif_is_restored_from_its_first_frame_and_said_so(sspir, tmp_path, model_dir, caplog):
    frames = [PIL.Image.fromarray(np.full((12, 12, 3), value, np.uint8)) for value in (40, 200, 120)]
    (tmp_path / "in").mkdir()
    frames[0].save(tmp_path / "in" / "clip.gif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "in" / "first.png")
    run = sspir("restore", tmp_path / "in", "-o", tmp_path / "out", "--model", model_dir, *FAST)
    assert run.code == 0 and "restored 2" in run.out
    assert "clip.gif: an animated image of 3 frames; its first frame is used." in caplog.text
    restored = [np.asarray(PIL.Image.open(tmp_path / "out" / name)) for name in ("clip.png", "first.png")]
    np.testing.assert_array_equal(*restored)  # the palette frame decodes to the first frame's colours


def test_a_restoration_too_large_for_memory_fails_with_the_pipeline_advice(sspir, model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline_sspir, "available_memory", lambda device: 1000)
    image = write_image(tmp_path / "a.png")
    run = sspir("restore", image, "-o", tmp_path / "out", "--model", model_dir, *FAST)
    assert run.code == 1 and "failed 1" in run.out
    assert "a.png: Restoring 1 image(s) of 32x32 needs about" in run.out
    assert "(`--tile-size 512` on the command line)" in run.out


def test_an_output_folder_that_holds_an_input_is_refused_up_front(sspir, tmp_path, model_dir):
    """`b.jpg` restored into `b.png` beside it would clash with it on the next run of the folder."""
    image = write_image(tmp_path / "same" / "b.jpg")
    run = sspir("restore", image, "-o", tmp_path / "same", "--model", model_dir, *FAST)
    assert run.code == 2 and "the output folder holds the input" in run.err and "b.jpg" in run.err
    assert sorted(p.name for p in (tmp_path / "same").iterdir()) == ["b.jpg"]


def test_names_with_control_characters_are_printed_escaped(sspir, tmp_path, model_dir):
    folder = tmp_path / "in"
    bad = write_broken(folder / "evil\n\x1b[2Jname.png")  # a newline and a clear-screen escape in a file name
    run = sspir("restore", folder, "-o", tmp_path / "out", "--model", model_dir, *FAST)
    assert run.code == 1 and bad.is_file()
    assert "evil\\n\\x1b[2Jname.png: cannot read the image" in run.out
    assert "\x1b" not in run.out + run.err and "evil\n" not in run.out


def test_the_captioner_saved_with_the_model_is_used_unless_another_is_given(sspir, tmp_path):
    from diffusers_sspir import FixedCaptioner, SSPIRPipeline, VLMCaptioner, testing

    model = tmp_path / "model"
    SSPIRPipeline(**testing.make_sspir_components(), captioner=FixedCaptioner("a stone bridge")).save_pretrained(model)
    write_image(tmp_path / "in" / "a.png", 16, 16, seed=0)
    cases = [((), "a stone bridge, "), (("--captioner", "none"), ""), (("--captioner", "fixed:a boat"), "a boat, ")]
    for extra, caption in cases:
        out = tmp_path / f"out{len(extra)}{caption[:3]}"
        run = sspir("restore", tmp_path / "in", "-o", out, "--model", model, *FAST, "--save-caption", *extra)
        assert run.code == 0, run.err
        assert (out / "a.txt").read_text() == caption + pipeline_sspir.DEFAULT_ADDED_PROMPT

    # a saved vision-language captioner whose model is gone: a clear stop before any image, unless another is given
    llava = testing.make_tiny_llava(tmp_path / "llava")
    captioner = VLMCaptioner(llava, max_new_tokens=2, do_sample=False)
    SSPIRPipeline(**testing.make_sspir_components(), captioner=captioner).save_pretrained(tmp_path / "vlm_model")
    shutil.rmtree(llava)
    run = sspir("restore", tmp_path / "in", "-o", tmp_path / "vlm_out", "--model", tmp_path / "vlm_model", *FAST)
    assert run.code == 2 and "cannot load its vision-language model" in run.err and "--captioner" in run.err
    assert not (tmp_path / "vlm_out" / "a.png").exists()
    run = sspir("restore", tmp_path / "in", "-o", tmp_path / "vlm_out", "--model", tmp_path / "vlm_model", *FAST,
                "--captioner", "none")  # fmt: skip
    assert run.code == 0, run.err


def test_inputs_that_cannot_work_are_refused_from_their_headers_before_the_model_loads(sspir, model_dir, tmp_path,
                                                                                      monkeypatch):  # fmt: skip
    loads = []
    load_pipeline = restore.load_pipeline
    monkeypatch.setattr(restore, "load_pipeline", lambda args: loads.append(1) or load_pipeline(args))
    monkeypatch.setenv("SSPIR_MAX_INPUT_PIXELS", "200")
    write_image(tmp_path / "big" / "a.png", 16, 16, seed=0)  # 256 pixels
    run = sspir("restore", tmp_path / "big", "-o", tmp_path / "out", "--model", model_dir, *FAST)
    assert run.code == 1 and "above the limit of 200" in run.err and "failed 1" in run.out
    assert not loads  # refused from its header alone: the model never loaded

    write_image(tmp_path / "mixed" / "a.png", 16, 16, seed=0)
    write_broken(tmp_path / "mixed" / "b.png")
    write_image(tmp_path / "mixed" / "c.png", 8, 8, seed=1)
    run = sspir("restore", tmp_path / "mixed", "-o", tmp_path / "out2", "--model", model_dir, *FAST)
    assert run.code == 1 and "restored 1" in run.out and "failed 2" in run.out
    assert loads == [1] and (tmp_path / "out2" / "c.png").exists()
