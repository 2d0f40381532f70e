"""Full SSP-IR training on tiny components: runs end to end, writes a pipeline that loads and restores, learns,
and resumes after an interruption exactly where it stopped."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate.state import AcceleratorState
from safetensors.torch import load_file

from diffusers_sspir import SSPIRPipeline
from diffusers_sspir.models import is_branch_parameter
from diffusers_sspir.training import checkpoint as checkpoint_module
from diffusers_sspir.training import trainer as trainer_module
from diffusers_sspir.training.arguments import FULL, parse_args
from diffusers_sspir.training.train_sspir import build, main
from diffusers_sspir.training.trainer import LossComputer

from .. import launch
from ..claims import held_claim
from .helpers import RESOLUTION, common_args, make_hq_folder, make_paired_folder, save_sspir, sd_args, smooth_image


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    return sd_args(tmp_path_factory.mktemp("models"))


@pytest.mark.parametrize("layout, branch_type", [("hq_only", "transformer"), ("paired", "attention")])
def test_two_steps_from_stable_diffusion_give_a_loadable_pipeline(tmp_path, sd, layout, branch_type):
    data = (make_hq_folder if layout == "hq_only" else make_paired_folder)(tmp_path / "data")
    smooth_image(7, 16).save(tmp_path / "val.png")
    output = tmp_path / "run"
    main([*sd, *common_args(data, output), "--validation_image", str(tmp_path / "val.png"),
          "--validation_steps", "2", "--validation_inference_steps", "2", "--branch_type", branch_type])  # fmt: skip

    assert (output / "checkpoint-2" / "state.json").is_file()
    assert (output / "validation" / "step-0000002" / "val.png").is_file()
    pipe = SSPIRPipeline.from_pretrained(output)
    assert pipe.unet.config.branch_type == pipe.controlnet.config.branch_type == branch_type
    result = pipe(smooth_image(3, 16), prompt="a photo", num_inference_steps=2, output_type="np")
    assert result.images.shape == (1, 64, 64, 3) and np.isfinite(result.images).all()
    # The frozen parts are Stable Diffusion's, unchanged; the trained ones moved.
    trained = load_file(output / "checkpoint-2" / "trainable.safetensors")
    assert any(".image_att" in name and name.startswith("unet.") for name in trained)
    assert not any(name.startswith("unet.") and not is_branch_parameter(name) for name in trained)
    assert any(name.startswith("structure_processor.") for name in trained)


def test_overfitting_a_tiny_set_lowers_the_loss(tmp_path, sd):
    data = make_paired_folder(tmp_path / "data", count=1)
    options = ["--learning_rate", "2e-3", "--checkpointing_steps", "100", "--null_text_ratio", "0", "--no_random_flip"]
    args = parse_args(FULL, [*sd, *common_args(data, tmp_path / "run", steps=30), *options])

    def loss_on_fixed_batch(parts):
        from diffusers_sspir.data.datasets import PairedImageFolder, collate_fn

        dataset = PairedImageFolder(data, resolution=RESOLUTION, random_crop=False, random_flip=False)
        batch = collate_fn([dataset[0]] * 4)
        computer = LossComputer(parts, parts.module, None, torch.float32)
        with torch.no_grad():
            terms = computer(batch, torch.Generator().manual_seed(123), torch.device("cpu"))
        return {name: float(value) for name, value in terms.items()}

    before = loss_on_fixed_batch(build(args))
    after = loss_on_fixed_batch(trainer_module.train(args, build, lambda *_: None))
    assert after["rgb_l1"] < 0.5 * before["rgb_l1"]
    assert after["diffusion"] < before["diffusion"]
    assert after["loss"] < before["loss"]


@pytest.mark.parametrize("stop_at", [4, 8], ids=["epoch0", "epoch1"])
def test_resume_after_interruption_matches_an_uninterrupted_run(tmp_path, sd, monkeypatch, stop_at):
    # 6 images, 5 batches per epoch (the last image is dropped: drop_last) of 1 image: epoch 1 begins at step 6.
    data = make_hq_folder(tmp_path / "data", count=5)
    run_args = lambda output: [*sd, *common_args(data, output, steps=10), "--lr_scheduler", "cosine"]  # noqa: E731
    main(run_args(tmp_path / "straight"))

    real_save = checkpoint_module.save_checkpoint

    def save_then_die(output_dir, progress, *args, **kwargs):
        path = real_save(output_dir, progress, *args, **kwargs)
        if progress.global_step == stop_at:
            raise KeyboardInterrupt  # killed right after this checkpoint
        return path

    monkeypatch.setattr(trainer_module, "save_checkpoint", save_then_die)
    with pytest.raises(SystemExit) as interrupted:  # Ctrl-C: exit status 130, no traceback
        main(run_args(tmp_path / "resumed"))
    assert interrupted.value.code == 130
    assert not (tmp_path / "resumed" / "model_index.json").exists()
    monkeypatch.setattr(trainer_module, "save_checkpoint", real_save)
    main([*run_args(tmp_path / "resumed"), "--resume_from_checkpoint", "latest"])

    progress = json.loads((tmp_path / "resumed" / "checkpoint-10" / "state.json").read_text())["progress"]
    assert progress == {"global_step": 10, "epoch": 1, "batches_in_epoch": 5}
    straight = load_file(tmp_path / "straight" / "checkpoint-10" / "trainable.safetensors")
    resumed = load_file(tmp_path / "resumed" / "checkpoint-10" / "trainable.safetensors")
    assert straight.keys() == resumed.keys()
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], rtol=0, atol=0, msg=name)


def test_new_run_refuses_a_folder_holding_another_run(tmp_path, sd):
    data = make_hq_folder(tmp_path / "data", count=1)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model_index.json").write_text("{}")
    for resume in ([], ["--resume_from_checkpoint", "latest"]):  # 'latest' without a checkpoint is a new run
        with pytest.raises(SystemExit, match="already holds a training run"):
            main([*sd, *common_args(data, tmp_path / "run"), *resume])
    assert (tmp_path / "run" / "model_index.json").read_text() == "{}"


@pytest.mark.parametrize(
    "options, message",
    [
        (["--resolution", "60"], "--resolution must be a multiple of 8"),
        (["--null_text_ratio", "1.5"], "--null_text_ratio must be a finite number >= 0 and <= 1"),
        (["--max_train_steps", "0"], "--max_train_steps must be an integer >= 1"),
    ],
)
def test_bad_options_are_named(tmp_path, sd, capsys, options, message):
    data = make_hq_folder(tmp_path / "data", count=1)
    with pytest.raises(SystemExit):
        parse_args(FULL, [*sd, *common_args(data, tmp_path / "run"), *options])
    assert message in capsys.readouterr().err


def test_start_needs_stable_diffusion_or_sspir(tmp_path, capsys):
    data = make_hq_folder(tmp_path / "data", count=1)
    with pytest.raises(SystemExit):
        parse_args(FULL, common_args(data, tmp_path / "run"))
    assert "--pretrained_model_name_or_path" in capsys.readouterr().err


def test_bf16_run_saves_float32_pipeline_with_stable_diffusion_frozen_weights_intact(tmp_path, sd):
    data = make_paired_folder(tmp_path / "data", count=1)
    output = tmp_path / "run"
    main([*sd, *common_args(data, output, steps=1), "--mixed_precision", "bf16", "--gradient_checkpointing"])
    pipe = SSPIRPipeline.from_pretrained(output)
    assert {p.dtype for p in pipe.unet.parameters()} == {torch.float32}
    source = SSPIRPipeline.from_stable_diffusion(sd[1], image_encoder=sd[3], image_embed_dim=12)
    for name in ("vae", "text_encoder", "image_encoder"):
        for (key, saved), original in zip(
            getattr(pipe, name).state_dict().items(), getattr(source, name).state_dict().values()
        ):
            torch.testing.assert_close(saved, original, rtol=0, atol=0, msg=f"{name}.{key}")
    unet, trained = pipe.unet.state_dict(), load_file(output / "checkpoint-1" / "trainable.safetensors")
    torch.testing.assert_close(unet["conv_in.weight"], source.unet.state_dict()["conv_in.weight"], rtol=0, atol=0)
    branch = next(name for name in trained if name.startswith("unet.") and "to_out.0.weight" in name)
    torch.testing.assert_close(unet[branch.removeprefix("unet.")], trained[branch], rtol=0, atol=0)
    assert trained[branch].abs().max() > 0  # the zero-initialised branch output moved


def test_gradient_accumulation_counts_optimizer_steps(tmp_path, sd):
    data = make_hq_folder(tmp_path / "data", count=3)
    output = tmp_path / "run"
    main([*sd, *common_args(data, output, steps=2), "--gradient_accumulation_steps", "2"])
    progress = json.loads((output / "checkpoint-2" / "state.json").read_text())["progress"]
    # 3 batches per epoch: 2 make the first optimizer step, the last one the second (accelerate steps at the end
    # of an epoch whatever was accumulated).
    assert progress == {"global_step": 2, "epoch": 0, "batches_in_epoch": 3}


def test_two_processes_train_with_distributed_data_parallel(tmp_path, sd):
    """The script under `torchrun` (what `accelerate launch --multi_gpu` runs), on two CPU processes (gloo)."""
    data = make_hq_folder(tmp_path / "data", count=4)
    output = tmp_path / "run"
    script = Path(__file__).parents[2] / "examples" / "train_sspir.py"
    code, _, stderr = launch.run(2, [str(script), *sd, *common_args(data, output, steps=2)])
    assert code == 0, stderr[-3000:]
    assert "2 processes, 2 batches per epoch per process" in stderr
    assert (output / "checkpoint-2" / "state.json").is_file()
    SSPIRPipeline.from_pretrained(output)


def test_a_full_resolution_restorer_is_added_to_a_saved_model_at_identity_and_trains(tmp_path):
    start = tmp_path / "start"
    save_sspir(start)
    config_file = start / "structure_processor" / "config.json"
    config = json.loads(config_file.read_text())  # as a model saved before the restorer existed: no such keys
    config_file.write_text(json.dumps({k: v for k, v in config.items() if not k.startswith("residual_")}))
    data = make_hq_folder(tmp_path / "data", count=1)
    output = tmp_path / "run"
    restorer = ["--structure_residual_blocks", "1", "--structure_residual_channels", "4"]
    main(["--pretrained_sspir", str(start), *common_args(data, output, steps=1), *restorer])

    before = SSPIRPipeline.from_pretrained(start).structure_processor
    after = SSPIRPipeline.from_pretrained(output).structure_processor
    assert (after.config.residual_blocks, after.config.residual_channels) == (1, 4)
    assert after.preprocessor.conv_last.weight.abs().max() > 0  # started at zero (identity) and moved
    trained = load_file(output / "checkpoint-1" / "trainable.safetensors")
    assert "structure_processor.preprocessor.conv_last.weight" in trained
    image = torch.rand(1, 3, RESOLUTION, RESOLUTION)
    after.preprocessor.conv_last.weight.data.zero_()
    after.preprocessor.conv_last.bias.data.zero_()
    # with the restorer back at identity, only the one optimizer step on the trunk separates the two
    torch.testing.assert_close(after(image).rgb[1], before(image).rgb[0], rtol=0, atol=0.05)

    AcceleratorState._reset_state(reset_partial_state=True)
    with pytest.raises(SystemExit, match="already has a restorer of 1 blocks x 4 channels"):
        main(["--pretrained_sspir", str(output), *common_args(data, tmp_path / "again", steps=1),
              "--structure_residual_blocks", "2"])  # fmt: skip


def test_bad_restorer_options_are_refused_naming_them(tmp_path, capsys):
    data = make_hq_folder(tmp_path / "data", count=1)
    for option, value in (("--structure_residual_blocks", "-1"), ("--structure_residual_channels", "0")):
        with pytest.raises(SystemExit):
            main(["--pretrained_sspir", str(tmp_path), *common_args(data, tmp_path / "run"), option, value])
        assert option in capsys.readouterr().err


def test_overwrite_output_dir_removes_the_old_runs_checkpoints(tmp_path, sd):
    data = make_hq_folder(tmp_path / "data", count=1)
    old = tmp_path / "run" / "checkpoint-1000"
    old.mkdir(parents=True)
    (old / "state.json").write_text("{}")
    main([*sd, *common_args(data, tmp_path / "run", steps=1), "--overwrite_output_dir"])
    assert not old.exists()
    assert (tmp_path / "run" / "checkpoint-1" / "state.json").is_file()


def test_setup_problems_are_one_error_naming_the_option(tmp_path, sd):
    data = make_paired_folder(tmp_path / "data", count=2)
    (data / "lq" / "img1.png").unlink()
    with pytest.raises(SystemExit, match="--skip_bad_files") as error:
        main([*sd, *common_args(data, tmp_path / "run")])
    assert "img1" in str(error.value) and "on_problem" not in str(error.value)
    AcceleratorState._reset_state(reset_partial_state=True)
    with pytest.raises(SystemExit, match="needs a GPU; on the CPU use bf16"):
        main([*sd, *common_args(data, tmp_path / "run2"), "--mixed_precision", "fp16", "--skip_bad_files"])


def test_leftovers_of_a_save_killed_midway_are_cleaned_up(tmp_path, sd):
    data = make_hq_folder(tmp_path / "data", count=1)
    output = tmp_path / "run"
    main([*sd, *common_args(data, output, steps=2)])
    (output / ".checkpoint-4.abc123").mkdir()  # killed while writing checkpoint-4
    retired = output / ".retired-2.xyz"  # killed while replacing checkpoint-2: the old one was moved aside
    retired.mkdir()
    (output / "checkpoint-2").rename(retired / "old")
    main([*sd, *common_args(data, output, steps=3), "--resume_from_checkpoint", "latest"])
    assert sorted(p.name for p in output.iterdir() if p.name.startswith((".", "checkpoint"))) == [
        "checkpoint-2",
        "checkpoint-3",
    ]


@pytest.mark.parametrize(
    "options, message",
    [
        (["--image_embed_dim", "0"], "--image_embed_dim must be an integer >= 1"),
        (["--max_grad_norm", "-1"], "--max_grad_norm must be a finite number >= 0"),
        (["--learning_rate", "inf"], "--learning_rate must be a finite number > 0 and <= 1"),
        (["--learning_rate", "nan"], "--learning_rate must be a finite number"),
        (["--seed", str(2**64)], "--seed must be an integer >= 0 and <= 9223372036854775807"),
        (["--null_text_ratio", "nan"], "--null_text_ratio must be a finite number >= 0 and <= 1"),
        (["--validation_image", "junk.png"], "is not a readable image"),
    ],
)
def test_more_bad_options(tmp_path, sd, capsys, monkeypatch, options, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "junk.png").write_text("junk")
    data = make_hq_folder(tmp_path / "data", count=1)
    with pytest.raises(SystemExit):
        parse_args(FULL, [*sd, *common_args(data, tmp_path / "run"), *options])
    assert message in capsys.readouterr().err


def test_train_unet_trains_all_of_the_unet_and_can_keep_the_text_attention(tmp_path, sd):
    data = make_hq_folder(tmp_path / "data")
    args = parse_args(FULL, [*sd, *common_args(data, tmp_path / "run"), "--train_unet", "--freeze_text_attention"])
    parts = build(args)
    unet_names = {f"unet.{name}" for name, _ in parts.pipe.unet.named_parameters()}
    text_attention = {name for name in unet_names if ".attn2.to_" in name and not is_branch_parameter(name)}
    assert text_attention and unet_names - text_attention <= set(parts.trainable)
    assert not text_attention & set(parts.trainable)
    assert not any(".attn2.to_" in name and not is_branch_parameter(name) for name in parts.trainable)
    assert any(".attn2.to_" in name and is_branch_parameter(name) for name in parts.trainable)  # branches train
    assert any(name.startswith("controlnet.") for name in parts.trainable)
    # Without the flags, SSP-IR's own selection: only the UNet's branches.
    default = build(parse_args(FULL, [*sd, *common_args(data, tmp_path / "run2")]))
    assert all(is_branch_parameter(name) for name in default.trainable if name.startswith("unet."))
    assert any(".attn2.to_k." in name for name in default.trainable if name.startswith("controlnet."))


def test_a_non_finite_loss_stops_training_with_the_step(tmp_path, sd, monkeypatch):
    from diffusers_sspir.training import trainer

    original = trainer.LossComputer.__call__

    def poisoned(self, *args, **kwargs):
        terms = original(self, *args, **kwargs)
        return {**terms, "loss": terms["loss"] * float("nan")}

    monkeypatch.setattr(trainer.LossComputer, "__call__", poisoned)
    data = make_hq_folder(tmp_path / "data", count=1)
    with pytest.raises(SystemExit, match="stopped being a finite number at step 1"):
        main([*sd, *common_args(data, tmp_path / "run")])
    assert not list((tmp_path / "run").glob("checkpoint-*"))


def test_a_second_run_on_the_same_output_dir_refuses_and_a_stale_lock_is_taken_over(tmp_path, sd, capsys):
    import socket
    import subprocess
    import sys

    data = make_hq_folder(tmp_path / "data", count=1)
    output = tmp_path / "run"
    output.mkdir()
    with held_claim(output / "training"), pytest.raises(SystemExit, match="is in use by another training run"):
        main([*sd, *common_args(data, output)])  # a live run holds it
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (output / ".training.claim").write_text(f"{socket.gethostname()} {dead.stdout.strip()}\n")  # killed run
    main([*sd, *common_args(data, output)])
    assert (output / "checkpoint-2").is_dir() and not (output / ".training.claim").exists()


def test_an_intermediate_checkpoint_exports_to_a_pipeline_folder(tmp_path, sd, capsys):
    from diffusers_sspir.training.export import main as export

    data = make_hq_folder(tmp_path / "data", count=1)
    output = tmp_path / "run"
    main([*sd, *common_args(data, output, steps=2), "--checkpointing_steps", "1"])
    assert export([str(output / "checkpoint-1"), "--output", str(tmp_path / "step1")]) == 0
    assert "load it with SSPIRPipeline.from_pretrained" in capsys.readouterr().out
    step1 = SSPIRPipeline.from_pretrained(tmp_path / "step1")
    trained = load_file(output / "checkpoint-1" / "trainable.safetensors")
    name = next(key for key in trained if key.startswith("controlnet."))
    torch.testing.assert_close(step1.controlnet.state_dict()[name.removeprefix("controlnet.")], trained[name])
    assert export([str(output / "checkpoint-1"), "--output", str(tmp_path / "step1")]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert export([str(output / "checkpoint-1"), "--output", str(tmp_path / "step1"), "--overwrite"]) == 0


@pytest.mark.parametrize("case", ["not-a-model", "ctrl-c"])
def test_user_errors_and_ctrl_c_end_without_a_traceback(tmp_path, sd, capsys, caplog, monkeypatch, case):
    from diffusers_sspir.training import trainer

    data = make_hq_folder(tmp_path / "data", count=1)
    if case == "not-a-model":
        (tmp_path / "junk").mkdir()
        (tmp_path / "junk" / "model_index.json").write_text("{}")
        with pytest.raises(SystemExit, match="cannot build the model to train from"):
            main(["--pretrained_sspir", str(tmp_path / "junk"), *common_args(data, tmp_path / "run")])
        return

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer.LossComputer, "__call__", interrupt)
    with pytest.raises(SystemExit) as exit_info:
        main([*sd, *common_args(data, tmp_path / "run")])
    assert exit_info.value.code == 130
    assert "Interrupted; no checkpoint was written yet" in capsys.readouterr().err + caplog.text


def test_train_data_recursive_reads_a_nested_set_matching_gt_lq_and_captions_by_path(tmp_path, sd):
    data = make_paired_folder(tmp_path / "data", count=2)
    for kind, suffix in (("gt", ".png"), ("lq", ".png"), ("captions", ".txt")):
        (data / kind / "0001000").mkdir()
        (data / kind / f"img1{suffix}").rename(data / kind / "0001000" / f"img1{suffix}")
    flat, _ = trainer_module.make_dataset(parse_args(FULL, [*sd, *common_args(data, tmp_path / "run")]))
    assert [pair.key for pair in flat.pairs] == ["img0"]
    nested, _ = trainer_module.make_dataset(
        parse_args(FULL, [*sd, *common_args(data, tmp_path / "run"), "--train_data_recursive"])
    )
    assert [(pair.key, pair.caption) for pair in nested.pairs] == [("0001000/img1", "a photo number 1"),
                                                                 ("img0", "a photo number 0")]  # fmt: skip
    assert nested.has_lq and nested.pairs[0].lq_path == data / "lq" / "0001000" / "img1.png"


def test_train_restorer_only_trains_the_restorer_alone_and_learns(tmp_path, monkeypatch):
    start = tmp_path / "start"
    save_sspir(start)
    data = make_hq_folder(tmp_path / "data", count=2)
    restorer = ["--structure_residual_blocks", "1", "--structure_residual_channels", "16"]
    grown = tmp_path / "grown"  # the start, given a restorer by one ordinary step
    main(["--pretrained_sspir", str(start), *common_args(data, grown, steps=1), *restorer])

    args = parse_args(FULL, ["--pretrained_sspir", str(grown), *common_args(data, tmp_path / "unused"),
                             "--train_restorer_only", "--rgb_l1_weight", "1"])  # fmt: skip
    parts = build(args)
    assert set(parts.trainable) == {
        name for name, _ in parts.pipe.structure_processor.named_parameters(prefix="structure_processor")
        if ".preprocessor." in name
    }  # fmt: skip
    # nothing but the restorer runs: the diffusion models would fail if they were called
    for name in ("unet", "controlnet", "vae", "image_encoder", "text_encoder"):
        monkeypatch.setattr(getattr(parts.pipe, name), "forward", lambda *a, name=name, **k: pytest.fail(name))
    compute = LossComputer(parts, parts.module, trainer_module.make_dataset(args)[1], torch.float32)
    batch = {"gt": torch.stack([torch.from_numpy(np.array(smooth_image(i, RESOLUTION))).permute(2, 0, 1) / 255
                                for i in range(2)]), "caption": ["", ""]}  # fmt: skip

    def loss() -> float:
        return compute(batch, torch.Generator().manual_seed(0), torch.device("cpu"))["loss"].item()

    optimizer = torch.optim.Adam(list(parts.trainable.values()), lr=1e-2)
    first = loss()
    for _ in range(40):
        terms = compute(batch, torch.Generator().manual_seed(0), torch.device("cpu"))
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
    assert set(terms) == {"rgb_l1", "rgb_fft", "loss"}
    assert loss() < 0.97 * first  # measured 0.957: from 16-px LQ crops there is little a small restorer can recover
    monkeypatch.undo()

    output = tmp_path / "run"
    AcceleratorState._reset_state(reset_partial_state=True)
    main(["--pretrained_sspir", str(grown), *common_args(data, output, steps=2), "--train_restorer_only"])
    before, after = SSPIRPipeline.from_pretrained(grown), SSPIRPipeline.from_pretrained(output)
    changed = {
        name for name, tensor in after.structure_processor.state_dict().items()
        if not torch.equal(tensor, before.structure_processor.state_dict()[name])
    }  # fmt: skip
    assert changed and all(name.startswith("preprocessor.") for name in changed)
    for name in ("unet", "controlnet", "image_refiner", "vae"):
        for key, tensor in getattr(after, name).state_dict().items():
            assert torch.equal(tensor, getattr(before, name).state_dict()[key]), (name, key)


@pytest.mark.parametrize(
    "options, message",
    [
        (
            [],
            "has no full-resolution restorer to train (its config has residual_blocks=0). Give it one with "
            "--structure_residual_blocks",
        ),
        (["--train_unet"], "--train_unet has no effect with --train_restorer_only"),
        (["--gradient_checkpointing"], "--gradient_checkpointing has no effect with --train_restorer_only"),
    ],
)
def test_train_restorer_only_refuses_what_it_cannot_do(tmp_path, capsys, options, message):
    start = tmp_path / "start"
    save_sspir(start)
    data = make_hq_folder(tmp_path / "data", count=1)
    with pytest.raises(SystemExit) as exit_info:
        main(["--pretrained_sspir", str(start), *common_args(data, tmp_path / "run"), "--train_restorer_only",
              *options])  # fmt: skip
    assert message in f"{exit_info.value.code} {capsys.readouterr().err}"


def test_a_stage1_upscaler_feeds_every_prior_in_training_stays_frozen_and_is_saved(tmp_path, monkeypatch):
    from diffusers_sspir.models import RRDBNet

    start, upscaler_dir = tmp_path / "start", tmp_path / "upscaler"
    save_sspir(start)
    upscaler = RRDBNet(scale=4, num_features=8, num_blocks=1, growth_channels=4).eval()
    upscaler.save_pretrained(upscaler_dir)
    data = make_hq_folder(tmp_path / "data", count=1)
    seen = []
    original = SSPIRPipeline.upscale

    def recording(self, low_quality, size, tile_size=None):
        seen.append(self.upscaler is not None)
        return original(self, low_quality, size, tile_size)

    monkeypatch.setattr(SSPIRPipeline, "upscale", recording)
    output = tmp_path / "run"
    main(["--pretrained_sspir", str(start), *common_args(data, output, steps=1), "--upscaler", str(upscaler_dir)])

    assert seen and all(seen)  # the loss read the upscaler's output, not bicubic
    trained = load_file(output / "checkpoint-1" / "trainable.safetensors")
    assert not any(name.startswith("upscaler.") for name in trained)
    saved = SSPIRPipeline.from_pretrained(output).upscaler
    assert isinstance(saved, RRDBNet)
    for name, value in upscaler.state_dict().items():  # frozen: saved exactly as given
        torch.testing.assert_close(saved.state_dict()[name], value, rtol=0, atol=0)
    assert json.loads((output / "checkpoint-1" / "run.json").read_text())["upscaler"] == str(upscaler_dir.resolve())
