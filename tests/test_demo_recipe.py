"""The demo model's recipe (examples/demo_model/) runs end to end at a few steps, with stand-ins for the Debian
photos, and ends in a pipeline folder that loads and restores: the recipe that made the shipped weights keeps
working."""

import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from accelerate.state import AcceleratorState

from diffusers_sspir import SSPIRPipeline
from diffusers_sspir.training.train_sspir import main as train_sspir

from .scripts import load_script


def load(name: str):
    return load_script(f"examples/demo_model/{name}.py", f"demo_recipe_{name}")


def fake_debian_photos(folder: Path, prepare) -> None:
    """Random smooth JPEGs under the package paths the recipe expects, big enough for its crops once downscaled."""
    rng = np.random.default_rng(0)
    for photo in prepare.PHOTOS:
        if photo.source == "skimage":
            continue
        path = folder / photo.source / photo.path
        path.parent.mkdir(parents=True, exist_ok=True)
        size = (1800, 1320) if photo.name == "LadyBird" else (720, 560)
        small = PIL.Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8))
        small.resize(size, PIL.Image.Resampling.BICUBIC).save(path, quality=90)


def test_evaluation_sets_split_by_source_share_no_source_with_training():
    prepare = load("prepare_data")
    prepare.check_splits(prepare.PHOTOS)
    sources = {split: {p.source for p in prepare.PHOTOS if p.split == split} for split in prepare.SPLITS}
    assert len(sources["holdout_new"]) >= 2 and sources["validation_new"]
    assert not (sources["validation_new"] | sources["holdout_new"]) & sources["train"]
    assert {p.source for p in prepare.PHOTOS} <= {"skimage", *prepare.PACKAGES}

    def photo(split: str, source: str = "palapeli-data", path: str = "a.jpg"):
        return prepare.Photo(source, path, "someone", "CC0", split, (1, 1))

    with pytest.raises(ValueError, match="also give training photos"):
        prepare.check_splits((photo("train"), photo("holdout_new", path="b.jpg")))
    with pytest.raises(ValueError, match="share the sources"):
        prepare.check_splits((photo("validation_new"), photo("holdout_new", path="b.jpg")))
    with pytest.raises(ValueError, match="listed twice"):
        prepare.check_splits((photo("train"), photo("validation")))
    with pytest.raises(ValueError, match="outside check"):
        prepare.check_splits((photo("train", source="scipy"),))
    with pytest.raises(ValueError, match="unknown splits"):
        prepare.check_splits((photo("test"),))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_recipe_runs_end_to_end_and_exports_a_loadable_pipeline(tmp_path):
    pytest.importorskip("skimage", reason="the recipe's data include scikit-image's bundled photos")
    pytest.importorskip("matplotlib", reason="the recipe draws its fidelity curves with matplotlib (the plots extra)")
    prepare = load("prepare_data")
    work = tmp_path / "work"
    debian = tmp_path / "debian"
    with pytest.raises(SystemExit, match="90 photos missing .* pass --fetch"):  # checked before anything is written
        prepare.main(["--debian_dir", str(debian), "--output_dir", str(work / "data")])
    assert not (work / "data").exists()
    fake_debian_photos(debian, prepare)
    prepare.main(["--debian_dir", str(debian), "--output_dir", str(work / "data")])
    with pytest.raises(SystemExit, match="--overwrite"):
        prepare.main(["--debian_dir", str(debian), "--output_dir", str(work / "data")])
    splits = {split: [p for p in prepare.PHOTOS if p.split == split] for split in prepare.SPLITS}
    assert len(list((work / "data" / "train").iterdir())) == len(splits["train"]) == 66
    assert sum(p.split == "train" for p in prepare.PHOTOS_04) == 31  # 0.4's sets, unchanged
    assert len(list((work / "data" / "train_0.4").iterdir())) == 31  # what the diffusion stages read
    # crops per evaluation split: the old ones (split by photo) as in 0.4, the new ones split by source
    for split, count in {"validation": 14, "holdout": 22, "validation_new": 29, "holdout_new": 54}.items():
        crops = sorted((work / "data" / split / "gt").iterdir())
        assert len(crops) == sum(p.grid[0] * p.grid[1] for p in splits[split]) == count
        assert all(PIL.Image.open(path).size == (256, 256) for path in crops)
    assert PIL.Image.open(work / "data" / "sample" / "gt" / "ladybird.png").size == (512, 512)
    listed = (work / "data" / "photos.tsv").read_text().splitlines()
    assert len(listed) == 1 + len(prepare.PHOTOS) and all(len(row.split("\t")) == 5 for row in listed)

    load("train_vae").main(["--train_dir", str(work / "data" / "train_0.4"), "--output_dir", str(work / "vae"),
                            "--steps", "2", "--batch_size", "2", "--resolution", "32"])  # fmt: skip
    load("build_components").main(["--vae", str(work / "vae"), "--output_dir", str(work / "base")])
    train_sspir(["--pretrained_model_name_or_path", str(work / "base" / "sd"), "--image_encoder",
                 str(work / "base" / "clip"), "--branch_type", "attention", "--image_embed_dim", "64",
                 "--train_unet", "--freeze_text_attention",
                 "--train_data_dir", str(work / "data" / "train_0.4"), "--resolution", "64",
                 "--train_batch_size", "2",
                 "--max_train_steps", "2", "--output_dir", str(work / "sspir"), "--report_to", "none"])  # fmt: skip
    AcceleratorState._reset_state(reset_partial_state=True)
    train_sspir(["--pretrained_sspir", str(work / "sspir"), "--structure_residual_blocks", "1",
                 "--structure_residual_channels", "4", "--train_unet", "--freeze_text_attention",
                 "--train_data_dir", str(work / "data" / "train"), "--resolution", "32", "--train_batch_size", "2",
                 "--max_train_steps", "1", "--rgb_l1_weight", "1.0", "--rgb_fft_weight", "0.1",
                 "--output_dir", str(work / "sspir_restorer"), "--report_to", "none"])  # fmt: skip
    AcceleratorState._reset_state(reset_partial_state=True)
    train_sspir(["--pretrained_sspir", str(work / "sspir_restorer"), "--train_restorer_only",
                 "--train_data_dir", str(work / "data" / "train"), "--resolution", "32", "--train_batch_size", "2",
                 "--max_train_steps", "1", "--rgb_l1_weight", "1.0", "--rgb_fft_weight", "0",
                 "--output_dir", str(work / "sspir_final"), "--report_to", "none"])  # fmt: skip
    AcceleratorState._reset_state(reset_partial_state=True)
    # Stage 4: the decoder fine-tuned for texture (a few steps of each term), the encoder left as it was
    train_vae = load("train_vae")
    train_vae.main(["--train_dir", str(work / "data" / "train"), "--output_dir", str(work / "vae_texture"),
                    "--init_from", str(work / "vae"), "--decoder_only", "--fft_weight", "0.1",
                    "--adversarial_weight", "0.05", "--adversarial_start", "1", "--steps", "2", "--batch_size", "2",
                    "--resolution", "32"])  # fmt: skip
    export = load("export")
    settings = {"num_inference_steps": 2, "guidance_scale": 1.0, "restoration_guidance_scale": 0.5}
    train_vae.main(["--train_dir", str(work / "data" / "train"), "--output_dir", str(work / "vae_other"),
                    "--steps", "1", "--batch_size", "2", "--resolution", "32", "--seed", "1"])  # fmt: skip
    with pytest.raises(SystemExit, match="encodes differently"):  # a VAE trained anew is not a decoder fine-tune
        export.main([str(work / "sspir_final"), "--output_dir", str(work / "refused"), "--vae",
                     str(work / "vae_other")])  # fmt: skip
    assert not (work / "refused").exists()
    export.main([str(work / "sspir_final"), "--output_dir", str(work / "exported"), "--vae",
                 str(work / "vae_texture"), "--recommended_settings", json.dumps(settings)])  # fmt: skip
    with pytest.raises(SystemExit, match="--overwrite"):
        export.main([str(work / "sspir_final"), "--output_dir", str(work / "exported")])
    with pytest.raises(SystemExit, match="no pipeline"):  # --overwrite never deletes a folder that is not a model
        export.main([str(work / "sspir_final"), "--output_dir", str(work / "data"), "--overwrite"])
    assert not any("_name_or_path" in path.read_text() for path in (work / "exported").rglob("*.json"))

    load("fidelity").main(["--data_dir", str(work / "data"), "--output_dir", str(work / "fidelity"), "--model",
                           str(work / "exported"), "--steps", "5", "--strength_steps", "5",
                           "--crops", "1"])  # fmt: skip
    curves = json.loads((work / "fidelity" / "fidelity.json").read_text())
    assert (
        len(curves["guidance"]) == 6
        and len(curves["decay"]) == 7
        and len(curves["strength"]) == 5
        and curves["crops"] == 1
    )
    assert PIL.Image.open(work / "fidelity" / "fidelity.png").size[0] > 500
    assert PIL.Image.open(work / "fidelity" / "strip.png").size == (
        9 * 256,
        256 + PIL.Image.open(work / "fidelity" / "strip.png").size[1] - 256,
    )

    pipe = SSPIRPipeline.from_pretrained(work / "exported")
    pipe.set_progress_bar_config(disable=True)
    assert pipe.vae_scale_factor == 4 and pipe.scheduler.config.prediction_type == "v_prediction"
    assert pipe.structure_processor.config.residual_blocks == 1
    assert {k: pipe.recommended_settings[k] for k in settings} == settings
    # the third stage trained the restorer and nothing else
    before = SSPIRPipeline.from_pretrained(work / "sspir_restorer")
    # the shipped VAE encodes as the one the model was trained with, and decodes as the fine-tuned one
    texture = train_vae.AutoencoderKL.from_pretrained(work / "vae_texture").state_dict()
    for name, tensor in pipe.vae.state_dict().items():
        reference = texture if name.startswith(("decoder.", "post_quant_conv.")) else before.vae.state_dict()
        torch.testing.assert_close(tensor, reference[name], rtol=0, atol=0)
    assert not torch.equal(pipe.vae.decoder.conv_out.weight, before.vae.decoder.conv_out.weight)
    for name, tensor in pipe.unet.state_dict().items():
        torch.testing.assert_close(tensor, before.unet.state_dict()[name], rtol=0, atol=0)
    assert not torch.equal(pipe.structure_processor.preprocessor.conv_last.weight,
                           before.structure_processor.preprocessor.conv_last.weight)  # fmt: skip
    low_quality = PIL.Image.open(sorted((work / "data" / "holdout" / "gt").iterdir())[0]).resize((16, 16))
    prompts = ["a red house", "dotted, noise"]
    images = [pipe(low_quality, prompt=p, num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                   output_type="np").images[0] for p in prompts]  # fmt: skip
    assert images[0].shape == (64, 64, 3)
    # The text cross-attention is built at zero and stays frozen: prompts change nothing.
    np.testing.assert_array_equal(images[0], images[1])
