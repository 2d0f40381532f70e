"""The converter for the authors' research checkpoints, against outputs of the research code itself.

`tests/fixtures/research_parity/` was made by running the research code (see its README): random weights, their
`train.py` checkpoint layout, the inputs and the research model's outputs.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import CLIPVisionConfig, CLIPVisionModel

from diffusers_sspir import SSPIRPipeline, testing
from diffusers_sspir.research_checkpoint import ResearchCheckpointError, convert_research_checkpoint

FIXTURE = Path(__file__).parent / "fixtures" / "research_parity"
ROOT = Path(__file__).parent.parent
ATOL = 1e-5


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Tiny Stable Diffusion (text width 16, as the fixture's cross-attention) and CLIP vision (width 32, the
    fixture's refine layer input) folders."""
    root = tmp_path_factory.mktemp("sources")
    _, sd_folder, _ = testing.save_stable_diffusion(root)
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=8)  # fmt: skip
    CLIPVisionModel(config).save_pretrained(root / "clip")
    testing.make_feature_extractor().save_pretrained(root / "clip")
    return sd_folder, root / "clip"


@pytest.fixture(scope="module")
def converted(sources, tmp_path_factory):
    output = tmp_path_factory.mktemp("converted") / "sspir"
    convert_research_checkpoint(FIXTURE / "checkpoint", *sources, output=output)
    return output


@torch.no_grad()
def test_converted_checkpoint_reproduces_the_research_code(converted):
    pipe = SSPIRPipeline.from_pretrained(converted)
    io = load_file(FIXTURE / "io.safetensors")
    latents, t, text, image_tokens = io["latents"], io["t"].long(), io["text"], io["image_tokens"]
    structure = pipe.structure_processor(io["lq"])
    for ours, theirs in zip(structure.rgb, [io[f"rgb.{i}"] for i in range(3)]):
        torch.testing.assert_close(ours * 2 - 1, theirs, rtol=0, atol=ATOL)  # research heads predict in [-1, 1]
    down, mid = pipe.controlnet(latents, t, text, structure.features, image_embeds=image_tokens, return_dict=False)
    for i, residual in enumerate(down):
        torch.testing.assert_close(residual, io[f"down.{i}"], rtol=0, atol=ATOL)
    torch.testing.assert_close(mid, io["mid"], rtol=0, atol=ATOL)
    prediction = pipe.unet(latents, t, text, image_embeds=image_tokens, down_block_additional_residuals=down,
                           mid_block_additional_residual=mid).sample  # fmt: skip
    assert io["pred"].abs().max() > 0.1
    torch.testing.assert_close(prediction, io["pred"], rtol=0, atol=ATOL)
    # the refine layer reads CLIP's last hidden state without the class token
    torch.testing.assert_close(pipe.image_refiner(io["refine_in"][:, 1:]), io["refine_out"], rtol=0, atol=ATOL)


def test_converted_folder_loads_strictly(converted):
    from diffusers_sspir import ImageTokenRefiner, SSPIRControlNetModel, SSPIRUNet2DConditionModel, StructureProcessor

    for name, cls in [("unet", SSPIRUNet2DConditionModel), ("controlnet", SSPIRControlNetModel),
                      ("structure_processor", StructureProcessor), ("image_refiner", ImageTokenRefiner)]:  # fmt: skip
        _, info = cls.from_pretrained(converted, subfolder=name, output_loading_info=True)
        assert not any(info[kind] for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")), (name, info)
    config = json.loads((converted / "unet" / "config.json").read_text())
    assert config["branch_type"] == "transformer" and config["up_block_0_pixel_heads"] == 1


def copy_fixture(tmp_path) -> Path:
    return Path(shutil.copytree(FIXTURE / "checkpoint", tmp_path / "checkpoint"))


def edit_config(folder: Path, **changes):
    path = folder / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def edit_weights(folder: Path, edit):
    path = folder / "diffusion_pytorch_model.safetensors"
    state = load_file(path)
    edit(state)
    save_file(state, path)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: edit_config(c / "controlnet", use_srresnet=True), "use_srresnet=True"),
        (lambda c: edit_weights(c / "unet", lambda s: s.update(extra=torch.zeros(1))), "1 unknown keys \\['extra'\\]"),
        (lambda c: edit_weights(c / "controlnet", lambda s: s.update({"controlnet_cond_embedding.preprocessor.w":
                                                                     torch.zeros(1)})), "unknown structure-processor"),
        (lambda c: edit_weights(c / "unet", lambda s: s.update({"conv_in.bias": torch.zeros(3)})), "unexpected shape"),
        (lambda c: edit_config(c / "unet", use_image_cross_attention=False), "use_image_cross_attention=True"),
        (lambda c: edit_config(c / "unet", new_setting=1), "does not know: \\['new_setting'\\]"),
        (lambda c: (c / "refine" / "refine.pt").unlink(), "refine.pt is missing"),
    ],
    ids=["srresnet", "unknown-key", "preprocessor", "shape", "no-image-branch", "unknown-setting", "no-refine"],
)  # fmt: skip
def test_refuses_what_it_cannot_convert(tmp_path, sources, change, message):
    checkpoint = copy_fixture(tmp_path)
    change(checkpoint)
    with pytest.raises(ResearchCheckpointError, match=message):
        convert_research_checkpoint(checkpoint, *sources, output=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_refine_file_is_read_without_unpickling_code(tmp_path, sources):
    checkpoint = copy_fixture(tmp_path)
    torch.save({"visual_projection.0.weight": torch.zeros(2, 2), "obj": object}, checkpoint / "refine" / "refine.pt")
    with pytest.raises(Exception, match="[Ww]eights only load failed|Unsupported global"):
        convert_research_checkpoint(checkpoint, *sources)


def test_script_never_overwrites_without_being_asked(tmp_path, sources):
    output = tmp_path / "out"
    output.mkdir()
    (output / "notes.txt").write_text("mine")
    command = [sys.executable, str(ROOT / "scripts" / "convert_sspir_research_checkpoint.py"), "--checkpoint",
               str(FIXTURE / "checkpoint"), "--stable_diffusion", str(sources[0]), "--image_encoder",
               str(sources[1]), "--output", str(output)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 2 and "pass --overwrite" in result.stderr
    result = subprocess.run([*command, "--overwrite"], capture_output=True, text=True)
    assert result.returncode == 2 and "not a saved pipeline" in result.stderr  # a folder that is not a model
    assert (output / "notes.txt").read_text() == "mine"
    (output / "notes.txt").unlink()
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (output / "model_index.json").is_file()
    result = subprocess.run([*command, "--overwrite"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert not list(tmp_path.glob("out.partial-*"))
