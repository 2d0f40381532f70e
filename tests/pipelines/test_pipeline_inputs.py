"""Bad input gets a clear error; unusual but valid images are converted (one table of cases each)."""

import numpy as np
import PIL.Image
import pytest
import torch

from .test_pipeline_sspir import call_kwargs, make_image, make_pipe


@pytest.fixture(scope="module")
def pipe():
    return make_pipe()


BAD_INPUTS = {
    "image=None": (dict(image=None), ValueError, "image"),
    "empty list": (dict(image=[]), ValueError, "image"),
    "non-image object": (dict(image=object()), TypeError, "image"),
    "a path string": (dict(image="photo.png"), TypeError, "image"),
    "0-pixel image": (dict(image=np.zeros((0, 5, 3), np.float32)), ValueError, "image"),
    "upscale 0": (dict(upscale=0), ValueError, "`upscale` must be a finite number > 0"),
    "upscale negative": (dict(upscale=-2), ValueError, "`upscale` must be a finite number > 0"),
    "upscale inf": (dict(upscale=float("inf")), ValueError, "`upscale` must be a finite number > 0"),
    "guidance_scale str": (dict(guidance_scale="7"), ValueError, "`guidance_scale` must be a finite number"),
    "conditioning_scale list": (dict(conditioning_scale=[1.0]), ValueError, "`conditioning_scale` must be"),
    "prompt_embeds width": (dict(prompt_embeds=torch.zeros(1, 77, 5)), ValueError, r"shape \(batch, tokens, 16\)"),
    "prompt_embeds tokens": (dict(prompt_embeds=torch.zeros(1, 80, 16)), ValueError, "has 80 tokens"),
    "steps 0": (dict(num_inference_steps=0), ValueError, "`num_inference_steps` must be an integer >= 1"),
    "images per prompt 0": (dict(num_images_per_prompt=0), ValueError, "`num_images_per_prompt`"),
    "prompt batch": (dict(prompt=["a", "b"]), ValueError, "`prompt` has 2 entries but 1 images"),
    "negative prompt batch": (dict(negative_prompt=["a", "b"]), ValueError, "`negative_prompt` has 2 entries"),
    "generator batch": (
        dict(generator=[torch.Generator().manual_seed(0)] * 2),
        ValueError,
        "`generator` is a list of 2 generators",
    ),
    "prompt type": (dict(prompt=3), TypeError, "`prompt` must be a string or a list of strings"),
    "tile_overlap >= tile_size": (dict(tile_size=64, tile_overlap=64), ValueError, r"`tile_overlap` \(64\)"),
    "tile_size too small": (dict(tile_size=16), ValueError, "`tile_size` must be a multiple of 8 >= 64 .* this model"),
    "tile_size not a multiple of 8": (dict(tile_size=100), ValueError, "`tile_size` must be a multiple of 8"),
    "tile_overlap not a multiple of 8": (dict(tile_size=64, tile_overlap=12), ValueError, "multiple of 8"),
    "tile_overlap without tile_size": (dict(tile_overlap=16), ValueError, "`tile_overlap` .* needs `tile_size`"),
    "color_fix unknown": (dict(color_fix="histogram"), ValueError, "`color_fix` must be one of"),
    "start_point unknown": (dict(start_point="hr"), ValueError, "`start_point` must be one of"),
    "output_type unknown": (dict(output_type="jpg"), ValueError, "`output_type` must be one of"),
    "mixed sizes": (dict(image=[make_image(9, 7), make_image(8, 8)]), ValueError, "same size"),
    "prompt and embeds": (dict(prompt="a", prompt_embeds=torch.zeros(1, 77, 16)), ValueError, "either `prompt`"),
    "callback inputs": (dict(callback_on_step_end_tensor_inputs=["noise"]), ValueError, "callback_on_step_end"),
    "latents shape": (dict(latents=torch.zeros(1, 4, 2, 2)), ValueError, "`latents` must have shape"),
    "guidance_scale absurd": (dict(guidance_scale=1e300), ValueError, "`guidance_scale` must be .*<= 100"),
    "conditioning_scale absurd": (dict(conditioning_scale=1e30), ValueError, "`conditioning_scale` must be .*<= 10"),
    "conditioning_scale negative": (dict(conditioning_scale=-1), ValueError, "`conditioning_scale` must be .*>= 0"),
    "eta nan": (dict(eta=float("nan")), ValueError, "`eta` must be a finite number >= 0 and <= 1"),
    "upscale absurd": (dict(upscale=64), ValueError, "`upscale` must be a finite number > 0 and <= 16"),
}


def test_numpy_scalars_and_default_tile_overlap_are_accepted(pipe):
    out = pipe(**call_kwargs(upscale=np.float32(2.0), num_inference_steps=np.int64(1), guidance_scale=np.float64(3)))
    assert out.images.shape == (1, 18, 14, 3)
    assert pipe(**call_kwargs(num_inference_steps=1, tile_size=64)).images.shape == (1, 18, 14, 3)


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_input_raises_a_clear_error(pipe, case):
    overrides, error, message = BAD_INPUTS[case]
    with pytest.raises(error, match=message):
        pipe(**call_kwargs(**overrides))


def rgb_uint8():
    return (make_image() * 255).round().astype(np.uint8)


CONVERTED = {
    "RGBA PIL": lambda: PIL.Image.fromarray(rgb_uint8()).convert("RGBA"),
    "grayscale PIL": lambda: PIL.Image.fromarray(rgb_uint8()).convert("L"),
    "16-bit PIL": lambda: PIL.Image.fromarray((make_image()[..., 0] * 65535).astype(np.uint16)),
    "16-bit array": lambda: (make_image() * 65535).astype(np.uint16),
    "grayscale array": lambda: make_image()[..., 0],
    "RGBA array": lambda: np.concatenate([make_image(), np.ones((9, 7, 1), np.float32)], axis=-1),
    "CHW tensor": lambda: torch.from_numpy(make_image()).permute(2, 0, 1),
    "palette PIL": lambda: PIL.Image.fromarray(rgb_uint8()).convert("P"),
}


@pytest.mark.parametrize("case", list(CONVERTED), ids=list(CONVERTED))
def test_unusual_images_are_converted(pipe, case):
    out = pipe(**call_kwargs(image=CONVERTED[case](), num_inference_steps=1))
    assert out.images.shape == (1, 18, 14, 3)


def test_numpy_batch_is_accepted(pipe):
    batch = np.stack([make_image(seed=0), make_image(seed=1)])  # (B, H, W, C), as diffusers' image processor takes
    out = pipe(**call_kwargs(image=batch, generator=None, num_inference_steps=1))
    assert out.images.shape == (2, 18, 14, 3)


def test_non_finite_latents_stop_the_call_with_the_step(tmp_path):
    """A model that starts producing NaN (here: a NaN weight in the ControlNet's zero convolutions) stops the call
    with the step it happened at, instead of returning a black image."""
    from .test_pipeline_sspir import make_pipe

    pipe = make_pipe()
    with torch.no_grad():
        pipe.controlnet.controlnet_mid_block.bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="at denoising step 1 of 2"):
        pipe(**call_kwargs(num_inference_steps=2))
