"""A model folder's configs are checked before anything is built: a hostile or broken `config.json` of the custom
models (refine layer, structure processor, stage-1 upscaler) is refused at once, naming the class and the key,
instead of building modules until memory runs out or silently dropping trained weights."""

import json
import time

import pytest

from diffusers_sspir import SSPIRPipeline
from diffusers_sspir.models import ImageTokenRefiner, RRDBNet, StructureProcessor
from diffusers_sspir.testing import make_sspir_components


@pytest.mark.parametrize(
    "model, settings, message",
    [
        (ImageTokenRefiner, {"num_blocks": 100_000_000}, "ImageTokenRefiner config .* would build 105,164,800,52"),
        (ImageTokenRefiner, {"num_blocks": -3}, "ImageTokenRefiner config: `num_blocks` must be an integer >= 0"),
        (ImageTokenRefiner, {"hidden_dim": "64"}, "`hidden_dim` must be an integer, got '64'"),
        (RRDBNet, {"num_blocks": 10_000_000}, "RRDBNet config .* parameters .* more than the"),
        (RRDBNet, {"num_features": 0}, "RRDBNet config: `num_features` must be an integer >= 1"),
        (StructureProcessor, {"residual_blocks": 10**9}, "StructureProcessor config .* more than the"),
        (StructureProcessor, {"block_out_channels": (16, -32)}, "`block_out_channels\\[1\\]` must be an integer >= 1"),
    ],
)  # fmt: skip
def test_absurd_configs_are_refused_before_building(model, settings, message):
    start = time.perf_counter()
    with pytest.raises(ValueError, match=message):
        model(**settings)
    assert time.perf_counter() - start < 1.0


def test_a_hostile_config_in_a_saved_folder_is_refused_naming_it(tmp_path):
    SSPIRPipeline(**make_sspir_components()).save_pretrained(tmp_path)
    config_file = tmp_path / "image_refiner" / "config.json"
    config = json.loads(config_file.read_text())
    for value, message in ((100_000_000, "would build"), (-3, "must be an integer >= 0")):
        config_file.write_text(json.dumps({**config, "num_blocks": value}))
        start = time.perf_counter()
        with pytest.raises(ValueError, match=f"ImageTokenRefiner config.*{message}"):
            SSPIRPipeline.from_pretrained(tmp_path)
        assert time.perf_counter() - start < 30  # the other components load; nothing huge is built


@pytest.mark.parametrize(
    "component, file, key, value",
    [("vae", "config.json", "latent_channels", "four"),
     ("scheduler", "scheduler_config.json", "num_train_timesteps", "1000"),
     ("unet", "config.json", "in_channels", 4.5),
     ("image_refiner", "config.json", "num_blocks", True)],
)  # fmt: skip
def test_a_config_value_of_the_wrong_type_is_refused_naming_the_file_and_key(tmp_path, component, file, key, value):
    SSPIRPipeline(**make_sspir_components()).save_pretrained(tmp_path)
    config_file = tmp_path / component / file
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), key: value}))
    with pytest.raises(ValueError, match=f"^{component}/{file}: `{key}` of .* must be .*, got {value!r}"):
        SSPIRPipeline.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    "component, key, value, message",
    [("unet", "layers_per_block", 100_000, r"^unet/config.json: block_out_channels, layers_per_block.* would build "
      r"1,000,010 blocks, more than the 10,000"),
     ("controlnet", "transformer_layers_per_block", [1, 10**6], "^controlnet/config.json: .* would build"),
     ("unet", "block_out_channels", [10**5, 10**5], r"the largest, `unet`, gets .* from block_out_channels, layers_"),
     ("vae", "block_out_channels", [10**6] * 4, r"the largest, `vae`.* in vae/config.json"),
     ("text_encoder", "num_hidden_layers", 10**9, "^text_encoder/config.json: num_hidden_layers would build"),
     ("text_encoder", "hidden_size", 10**6, "the largest, `text_encoder`"),
     ("image_encoder", "hidden_size", 10**7, "the largest, `image_encoder`"),
     ("unet", "layers_per_block", -3, r"^unet/config.json: `layers_per_block` must be a whole number >= 1"),
     ("text_encoder", "num_hidden_layers", "12", r"^text_encoder/config.json: `num_hidden_layers` must be a whole")],
)  # fmt: skip
def test_a_stock_component_too_large_for_the_machine_is_refused_before_anything_loads(
    tmp_path, component, key, value, message
):
    """The diffusers and transformers components (UNet, ControlNet, VAE, CLIP encoders) are sized from their configs
    before any is built: an absurd size is refused at once, naming the component, the file and the keys."""
    SSPIRPipeline(**make_sspir_components()).save_pretrained(tmp_path)
    config_file = tmp_path / component / "config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), key: value}))
    start = time.perf_counter()
    with pytest.raises(ValueError, match=message):
        SSPIRPipeline.from_pretrained(tmp_path)
    assert time.perf_counter() - start < 2.0  # refused from the files: nothing was built
