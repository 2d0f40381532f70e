"""A batch gives each image what it would get alone, whatever the lengths of the prompts beside it."""

import numpy as np
import pytest
import torch

from diffusers_sspir import testing

from .test_pipeline_sspir import make_image, make_pipe

LONG = " ".join(["the"] * 120)  # two windows of 75 tokens, where a short prompt needs one
ATOL = 1e-4


def restore(pipe, images, prompts, **kwargs):
    generators = [
        torch.Generator().manual_seed(10 + i) for i in range(len(images) * kwargs.get("num_images_per_prompt", 1))
    ]
    return pipe(image=images, prompt=prompts, upscale=2, num_inference_steps=3, generator=generators,
                output_type="np", **kwargs).images  # fmt: skip


@pytest.fixture(scope="module", params=testing.BRANCH_TYPES)
def pipe(request):
    pipe = make_pipe()
    if request.param == "attention":
        pipe = type(pipe)(**testing.make_sspir_components(branch_type="attention"))
        pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("guidance_scale", [1.0, 5.0], ids=["no-cfg", "cfg"])
@pytest.mark.parametrize("extra", [{}, {"num_images_per_prompt": 2}, {"tile_size": 64, "tile_overlap": 32}],
                         ids=["plain", "two-per-prompt", "tiled"])  # fmt: skip
def test_each_image_of_a_batch_gets_what_it_gets_alone(pipe, guidance_scale, extra):
    side = 40 if "tile_size" in extra else 8  # 80 output pixels: 2 x 2 tiles of 64
    images = [make_image(side, side, seed=1), make_image(side, side, seed=2)]
    prompts = ["a cat", LONG]
    per_prompt = extra.get("num_images_per_prompt", 1)
    together = restore(pipe, images, prompts, guidance_scale=guidance_scale, **extra)
    for i, (image, prompt) in enumerate(zip(images, prompts)):
        alone = pipe(image=[image], prompt=[prompt], upscale=2, num_inference_steps=3, output_type="np",
                     generator=[torch.Generator().manual_seed(10 + i * per_prompt + k) for k in range(per_prompt)],
                     guidance_scale=guidance_scale, **extra).images  # fmt: skip
        np.testing.assert_allclose(together[i * per_prompt : (i + 1) * per_prompt], alone, atol=ATOL, rtol=0)


def test_a_long_caption_does_change_its_own_image(pipe):
    image = [make_image(8, 8, seed=1)]
    short = pipe(image=image, prompt="a cat", upscale=2, num_inference_steps=3, output_type="np",
                 generator=torch.Generator().manual_seed(0)).images  # fmt: skip
    long = pipe(image=image, prompt="a cat " + LONG, upscale=2, num_inference_steps=3, output_type="np",
                generator=torch.Generator().manual_seed(0)).images  # fmt: skip
    assert np.abs(short - long).max() > 1e-3  # the mask hides padding, not the caption's own tokens


def test_prompts_of_one_length_need_no_mask(pipe):
    embeds, negatives, mask = pipe.encode_prompts_alone(["a cat", "a dog"], ["", ""], torch.device("cpu"))
    assert mask is None and embeds.shape == negatives.shape == (2, 77, 16)
    embeds, negatives, mask = pipe.encode_prompts_alone(["a cat", LONG], ["", ""], torch.device("cpu"))
    assert embeds.shape == (2, 152, 16) and mask.shape == (2, 152)
    assert mask[0].sum() == 77 and mask[1].sum() == 152
    alone, negative_alone, _ = pipe.encode_prompts_alone(["a cat"], [""], torch.device("cpu"))
    torch.testing.assert_close(embeds[0, :77], alone[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(negatives[0, :77], negative_alone[0], rtol=0, atol=1e-6)
    assert embeds[0, 77:].abs().max() == 0
