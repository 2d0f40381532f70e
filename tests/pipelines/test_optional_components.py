"""Text encoder and tokenizer are optional: precomputed embeddings run without them, and the pipeline says what is
missing otherwise (diffusers' `_optional_components`; saving and loading without them is
`SSPIRPipelineTesterMixin.test_save_load_optional_components`)."""

import numpy as np
import pytest
import torch

from diffusers_sspir import SSPIRPipeline

from .test_pipeline_sspir import call_kwargs, make_pipe


@pytest.fixture(scope="module")
def embeds():
    pipe = make_pipe()
    positive, negative, _ = pipe.encode_prompts_alone(["a photo"], ["blur"], torch.device("cpu"))
    expected = pipe(**call_kwargs(prompt_embeds=positive, negative_prompt_embeds=negative, guidance_scale=5.0))
    return positive, negative, expected.images


def without_text_encoder(pipe):
    pipe = SSPIRPipeline(**{**pipe.components, "text_encoder": None, "tokenizer": None})
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_embeddings_run_without_text_encoder_and_tokenizer(embeds):
    positive, negative, expected = embeds
    pipe = without_text_encoder(make_pipe())
    out = pipe(**call_kwargs(prompt_embeds=positive, negative_prompt_embeds=negative, guidance_scale=5.0)).images
    np.testing.assert_allclose(out, expected, atol=1e-6)
    pipe(**call_kwargs(prompt_embeds=positive, guidance_scale=1.0))  # no negatives needed without guidance


@pytest.mark.parametrize(
    "kwargs",
    [dict(prompt="a photo"), dict(prompt_embeds="positive", guidance_scale=5.0)],
    ids=["prompt", "guidance-without-negative-embeds"],
)
def test_missing_text_encoder_is_named(embeds, kwargs):
    pipe = without_text_encoder(make_pipe())
    kwargs = {k: (embeds[0] if v == "positive" else v) for k, v in kwargs.items()}
    with pytest.raises(ValueError, match="no text_encoder and no tokenizer .* pass `prompt_embeds`"):
        pipe(**call_kwargs(**kwargs))


def test_from_pretrained_with_text_encoder_none(tmp_path, embeds):
    make_pipe().save_pretrained(tmp_path)
    loaded = SSPIRPipeline.from_pretrained(tmp_path, text_encoder=None, tokenizer=None)
    assert loaded.text_encoder is None
    loaded.set_progress_bar_config(disable=True)
    out = loaded(**call_kwargs(prompt_embeds=embeds[0], negative_prompt_embeds=embeds[1], guidance_scale=5.0))
    np.testing.assert_allclose(out.images, embeds[2], atol=1e-6)
