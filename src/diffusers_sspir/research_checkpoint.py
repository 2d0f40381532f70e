"""Converts a training checkpoint of the authors' SSP-IR code (GitHub zyhrainbow/SSP-IR, a diffusers 0.21 fork) into
an `SSPIRPipeline` folder.

A research checkpoint is the folder its `train.py` writes at every checkpoint: `unet/` and `controlnet/` (diffusers
0.21 `save_pretrained` of the forked classes, safetensors or `.bin`) and `refine/refine.pt` (a `torch.save`d state
dict of the refine layer). The conversion is pure renames, except the RGB heads of the structure processor, which
the research code trains against the image in `[-1, 1]` and ours in `[0, 1]` (their weights are rescaled):

- UNet, every key → `SSPIRUNet2DConditionModel(branch_type="transformer", up_block_0_pixel_heads=1)`, same key;
- ControlNet `controlnet_cond_embedding.conv_in` / `blocks.{2k}` / `blocks.{2k+1}` / `to_rgbs.k` / `conv_out` →
  `StructureProcessor` `conv_in` / `stages.k.0` / `stages.k.2` / `rgb_heads.k` / `conv_out`;
- ControlNet, every other key → `SSPIRControlNetModel(branch_type="transformer")`, same key;
- `refine.pt` `visual_projection.N` → `ImageTokenRefiner` `layers.N`.

The VAE, text encoder, tokenizer and scheduler come from the Stable Diffusion folder the model was trained from, the
CLIP vision encoder (and its image processor) from its folder. See docs/architecture.md for the settings the
research test script used.
"""

import json
import os
import re
import shutil
import uuid

import torch
from safetensors.torch import load_file

from .models import ImageTokenRefiner, SSPIRControlNetModel, SSPIRUNet2DConditionModel, StructureProcessor

# Config keys of the research classes that stock diffusers does not have.
RESEARCH_UNET_KEYS = ("use_image_cross_attention", "use_textual_restore")
RESEARCH_CONTROLNET_KEYS = ("use_image_cross_attention", "use_srresnet", "return_rgbs")
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
STRUCTURE_KEY = re.compile(
    r"controlnet_cond_embedding\.(conv_in|conv_out|blocks\.(\d+)|to_rgbs\.(\d+))\.(weight|bias)$"
)


class ResearchCheckpointError(ValueError):
    """A research checkpoint that cannot be converted (the message says why and what to do)."""


def _read_config(folder: str) -> dict:
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        raise ResearchCheckpointError(f"{folder} has no config.json: it is not a saved research model.")
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def _read_weights(folder: str) -> dict[str, torch.Tensor]:
    for name in WEIGHT_FILES:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        if name.endswith(".safetensors"):
            return load_file(path)
        # The format forces torch.load here; weights_only=True never unpickles anything but tensors.
        return torch.load(path, map_location="cpu", weights_only=True)
    raise ResearchCheckpointError(f"{folder} holds none of {WEIGHT_FILES} (sharded checkpoints are not supported).")


def _model_config(config: dict, research_keys: tuple[str, ...], model_class, what: str) -> dict:
    config = {key: value for key, value in config.items() if not key.startswith("_") and key not in research_keys}
    accepted = set(model_class.extract_init_dict({})[0]) | set(model_class.__init__.__signature__.parameters)
    unknown = sorted(set(config) - accepted)
    if unknown:
        raise ResearchCheckpointError(
            f"The research {what} config has settings this converter does not know: {unknown}."
        )
    return config


def _load_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ResearchCheckpointError(
            f"The research {what} does not match the paper's layout: {len(unexpected)} unknown keys "
            f"{unexpected[:3]}, {len(missing)} missing keys {missing[:3]}."
        )
    wrong = [key for key, value in state.items() if value.shape != expected[key].shape]
    if wrong:
        key = wrong[0]
        raise ResearchCheckpointError(
            f"The research {what} has {len(wrong)} weights of unexpected shape, e.g. {key}: "
            f"{tuple(state[key].shape)} where its config gives {tuple(expected[key].shape)}."
        )
    model.load_state_dict({key: value.to(expected[key].dtype) for key, value in state.items()})


def convert_unet(folder: str) -> SSPIRUNet2DConditionModel:
    """The research UNet in `folder` (its `save_pretrained` output) as an `SSPIRUNet2DConditionModel`."""
    config = _read_config(folder)
    if not config.get("use_image_cross_attention", False) or config.get("use_textual_restore", False):
        raise ResearchCheckpointError(
            f"{folder}: only UNets saved with use_image_cross_attention=True and use_textual_restore=False (the "
            "released configuration) can be converted."
        )
    state = _read_weights(folder)
    image_key = next((key for key in state if ".image_attentions." in key and key.endswith("attn2.to_k.weight")), None)
    if image_key is None:
        raise ResearchCheckpointError(f"{folder} has no image-transformer weights: not an SSP-IR research UNet.")
    unet = SSPIRUNet2DConditionModel.from_config(
        {
            **_model_config(config, RESEARCH_UNET_KEYS, SSPIRUNet2DConditionModel, "UNet"),
            "branch_type": "transformer",
            "image_embed_dim": state[image_key].shape[1],
            "pixel_attention": any(".pixel_attentions." in key for key in state),
            "up_block_0_pixel_heads": 1,  # the research UpBlock2D never receives the head count
        }
    )
    _load_strict(unet, state, "UNet")
    return unet.eval()


def _structure_key(key: str) -> str:
    part, block, head, kind = STRUCTURE_KEY.match(key).groups()
    if block is not None:
        stage, conv = divmod(int(block), 2)
        return f"stages.{stage}.{2 * conv}.{kind}"
    if head is not None:
        return f"rgb_heads.{head}.{kind}"
    return f"{part}.{kind}"


def convert_controlnet(folder: str, image_embed_dim: int) -> tuple[SSPIRControlNetModel, StructureProcessor]:
    """The research ControlNet in `folder` as an `SSPIRControlNetModel` and the `StructureProcessor` that was its
    hint encoder."""
    config = _read_config(folder)
    if config.get("use_srresnet", True):
        raise ResearchCheckpointError(
            f"{folder} was trained with use_srresnet=True (an MSRResNet before the structure processor), which this "
            "converter does not support; the released configuration has use_srresnet=False."
        )
    state = _read_weights(folder)
    hint = {key: value for key, value in state.items() if key.startswith("controlnet_cond_embedding.")}
    unknown = [key for key in hint if not STRUCTURE_KEY.match(key)]
    if unknown:
        raise ResearchCheckpointError(f"{folder}: unknown structure-processor weights {unknown[:3]}.")
    controlnet = SSPIRControlNetModel.from_config(
        {
            **_model_config(config, RESEARCH_CONTROLNET_KEYS, SSPIRControlNetModel, "ControlNet"),
            "branch_type": "transformer",
            "image_embed_dim": image_embed_dim,
        }
    )
    _load_strict(controlnet, {key: value for key, value in state.items() if key not in hint}, "ControlNet")

    processor = StructureProcessor(
        in_channels=config.get("conditioning_channels", 3),
        block_out_channels=tuple(config["conditioning_embedding_out_channels"]),
        conditioning_embedding_channels=config["block_out_channels"][0],
    )
    converted = {_structure_key(key): value.float() for key, value in hint.items()}
    for key in [key for key in converted if key.startswith("rgb_heads.")]:
        # research heads predict x in [-1, 1]; ours (x + 1) / 2 in [0, 1]
        converted[key] = converted[key] * 0.5 + (0.5 if key.endswith("bias") else 0.0)
    _load_strict(processor, converted, "structure processor (controlnet_cond_embedding)")
    return controlnet.eval(), processor.eval()


def convert_refiner(path: str) -> ImageTokenRefiner:
    """The research refine layer (`refine/refine.pt`) as an `ImageTokenRefiner`."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(key.startswith("visual_projection.") for key in state):
        raise ResearchCheckpointError(
            f"{path} is not a state dict of the research refine layer (visual_projection.*)."
        )
    state = {key.replace("visual_projection.", "layers.", 1): value for key, value in state.items()}
    linears = sorted({int(key.split(".")[1]) for key, value in state.items() if value.dim() == 2})
    first, last = state[f"layers.{linears[0]}.weight"], state[f"layers.{linears[-1]}.weight"]
    refiner = ImageTokenRefiner(
        in_dim=first.shape[1], hidden_dim=first.shape[0], out_dim=last.shape[0], num_blocks=len(linears) - 1
    )
    _load_strict(refiner, state, "refine layer")
    return refiner.eval()


def _check_output(output: str, overwrite: bool) -> None:
    if not os.path.exists(output):
        return
    if not os.path.isdir(output):
        raise ResearchCheckpointError(f"--output {output} is a file; give a folder for the pipeline.")
    if os.listdir(output) and not overwrite:
        raise ResearchCheckpointError(f"--output {output} already exists; pass --overwrite to replace it.")
    if os.listdir(output) and not os.path.isfile(os.path.join(output, "model_index.json")):
        raise ResearchCheckpointError(
            f"--output {output} is not empty and not a saved pipeline; it is not replaced even with --overwrite."
        )


def convert_research_checkpoint(
    checkpoint: "str | os.PathLike",
    stable_diffusion: "str | os.PathLike",
    image_encoder: "str | os.PathLike",
    output: "str | os.PathLike | None" = None,
    overwrite: bool = False,
):
    r"""
    Converts a research training checkpoint into an [`~diffusers_sspir.SSPIRPipeline`] and, with `output`, saves it.

    Args:
        checkpoint (`str` or `os.PathLike`): the research checkpoint folder (`unet/`, `controlnet/`,
            `refine/refine.pt`).
        stable_diffusion (`str` or `os.PathLike`): the Stable Diffusion 1.5 folder or Hub id it was trained from (VAE,
            text encoder, tokenizer, scheduler).
        image_encoder (`str` or `os.PathLike`): the CLIP vision encoder folder or Hub id (with its image processor).
        output (`str` or `os.PathLike`, *optional*): folder to save the pipeline to; written in full or not at all.
        overwrite (`bool`, defaults to `False`): replace an existing pipeline folder at `output`.

    Returns:
        `SSPIRPipeline`: the converted pipeline (float32).
    """
    from .pipelines import SSPIRPipeline

    checkpoint = os.fspath(checkpoint)
    parts = {name: os.path.join(checkpoint, name) for name in ("unet", "controlnet")}
    refine = os.path.join(checkpoint, "refine", "refine.pt")
    for path in [*parts.values(), refine]:
        if not os.path.exists(path):
            raise ResearchCheckpointError(
                f"{checkpoint} is not a research SSP-IR checkpoint: {path} is missing (expected unet/, controlnet/ "
                "and refine/refine.pt, as the research train.py writes them in each checkpoint-N folder)."
            )
    if output is not None:
        output = os.fspath(output)
        _check_output(output, overwrite)

    unet = convert_unet(parts["unet"])
    controlnet, structure_processor = convert_controlnet(parts["controlnet"], unet.config.image_embed_dim)
    image_refiner = convert_refiner(refine)
    pipe = SSPIRPipeline.from_stable_diffusion(
        stable_diffusion,
        image_encoder=image_encoder,
        unet=unet,
        controlnet=controlnet,
        structure_processor=structure_processor,
        image_refiner=image_refiner,
        dtype=torch.float32,
    )
    if output is not None:
        partial = f"{output.rstrip(os.sep)}.partial-{uuid.uuid4().hex[:8]}"
        try:
            pipe.save_pretrained(partial)
            if os.path.isdir(output):
                shutil.rmtree(output)  # checked above: empty, or a pipeline folder the user asked to replace
            os.replace(partial, output)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return pipe
