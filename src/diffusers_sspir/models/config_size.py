"""How many parameters a stock component's config builds, read from the config alone (nothing is built), so that a
saved pipeline whose `config.json` would build more than the machine can hold is refused before loading.

Our own models bound their configs themselves (`_utils.check_config`); this covers the diffusers and transformers
classes a pipeline folder names: the UNet, ControlNet and VAE of Stable Diffusion, and CLIP's text and vision
encoders. The counts are estimates, within 5 % of SD-1.5's stock models (UNet: 868 M estimated, 860 M built; VAE
80 M / 84 M; CLIP text 123 M / 123 M, vision 303 M / 303 M); SSP-IR's branches are not counted, so a check built on
them errs on the side of loading. Enough to tell a real model from an absurd one.
"""

from typing import Any

UNET_LIKE = {
    "UNet2DConditionModel", "SSPIRUNet2DConditionModel", "ControlNetModel", "SSPIRControlNetModel", "AutoencoderKL",
}  # fmt: skip
CLIP_LIKE = {"CLIPTextModel", "CLIPTextModelWithProjection", "CLIPVisionModel", "CLIPVisionModelWithProjection"}
# The most repeated blocks (resnets and transformers of a UNet, layers of an encoder) a config may ask for: a hundred
# times the largest published models (SD-1.5's UNet has 50, SDXL's 140; CLIP ViT-L 24, LLMs ~100). Tiny blocks in
# huge numbers build for minutes while fitting in memory, so the count is bounded as well as the size.
MAX_BLOCKS = 10_000


def _integers(value: Any, key: str, where: str) -> list[int]:
    """`value` (an int, or a list of them, nested once at most) as a flat list of ints >= 1, or a `ValueError` naming
    the file and the key."""
    items = value if isinstance(value, (list, tuple)) else [value]
    flat = []
    for item in items:
        flat.extend(item if isinstance(item, (list, tuple)) else [item])
    if not flat or any(isinstance(item, bool) or not isinstance(item, int) or item < 1 for item in flat):
        raise ValueError(f"{where}: `{key}` must be a whole number >= 1 (or a list of them), got {value!r}.")
    return flat


def _check_blocks(blocks: int, keys: list[str], where: str) -> None:
    if blocks > MAX_BLOCKS:
        raise ValueError(
            f"{where}: {', '.join(keys)} would build {blocks:,} blocks, more than the {MAX_BLOCKS:,} this library "
            "loads (a hundred times the largest published models); check that file."
        )


def estimate_parameters(class_name: str, config: dict[str, Any], where: str) -> tuple[int, list[str]] | None:
    """`(parameters, the keys the count rests on)` for a component of class `class_name` with `config`, or `None` for
    a class not covered here. `where` names the file in errors.

    Raises:
        ValueError: if a size setting is not a whole number >= 1, or the config repeats more than `MAX_BLOCKS`
            blocks, naming `where` and the keys.
    """
    if class_name in UNET_LIKE:
        keys = ["block_out_channels", "layers_per_block"]
        channels = _integers(config.get("block_out_channels", [320, 640, 1280, 1280]), keys[0], where)
        layers = max(_integers(config.get("layers_per_block", 2), keys[1], where))
        depth, context = 0, 0
        if class_name != "AutoencoderKL":  # cross-attention transformers in every block (an upper estimate)
            keys += ["transformer_layers_per_block", "cross_attention_dim"]
            depth = max(_integers(config.get("transformer_layers_per_block", 1), keys[2], where))
            context = max(_integers(config.get("cross_attention_dim", 1280), keys[3], where))

        blocks = (2 * len(channels) + 1) * (layers + 1) * (1 + depth)
        _check_blocks(blocks, keys, where)

        def block(width: int) -> int:  # resnets of two 3x3 convolutions, self- and cross-attention, feed-forward
            return (layers + 1) * (18 * width * width + depth * (12 * width * width + 2 * width * context))

        return 2 * sum(block(width) for width in channels) + block(channels[-1]), keys
    if class_name in CLIP_LIKE:
        keys = ["hidden_size", "intermediate_size", "num_hidden_layers"]
        hidden, inner, layers = (_integers(config.get(key, 1), key, where)[0] for key in keys)
        _check_blocks(layers, keys[2:], where)
        if "Vision" in class_name:
            keys += ["image_size", "patch_size"]
            image, patch = (_integers(config.get(key, 1), key, where)[0] for key in keys[3:])
            embeddings = (3 * patch * patch + (image // patch) ** 2 + 1) * hidden
        else:
            keys += ["vocab_size", "max_position_embeddings"]
            vocab, positions = (_integers(config.get(key, 1), key, where)[0] for key in keys[3:])
            embeddings = (vocab + positions) * hidden
        return layers * (4 * hidden * hidden + 2 * hidden * inner) + embeddings, keys
    return None
