import logging

import numpy as np
import PIL.Image
import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from diffusers_sspir.captioners import DEFAULT_CAPTION_PROMPT, Captioner, FixedCaptioner, VLMCaptioner
from diffusers_sspir.testing import make_tiny_llava


def _images(n: int, mode: str = "RGB") -> list[PIL.Image.Image]:
    rng = np.random.default_rng(0)
    return [
        PIL.Image.fromarray(rng.integers(0, 256, (24 + 4 * i, 40, 3), dtype=np.uint8)).convert(mode) for i in range(n)
    ]


# ---------------------------------------------------------------------------------------------------------------------
# FixedCaptioner


def test_fixed_captioner_returns_text_per_image():
    captioner = FixedCaptioner("a cat on a sofa")
    assert captioner(_images(3)) == ["a cat on a sofa"] * 3
    assert captioner(_images(1)[0]) == ["a cat on a sofa"]
    assert FixedCaptioner("")(_images(2)) == ["", ""]
    assert isinstance(captioner, Captioner)
    assert "a cat on a sofa" in repr(captioner)


@pytest.mark.parametrize("text", [None, 3, ["a cat"], b"a cat"])
def test_fixed_captioner_rejects_non_str(text):
    with pytest.raises(TypeError, match="`text`"):
        FixedCaptioner(text)


def test_fixed_captioner_rejects_bad_images():
    captioner = FixedCaptioner("x")
    with pytest.raises(TypeError, match="`images`"):
        captioner("not an image")
    with pytest.raises(TypeError, match=r"`images\[1\]`"):
        captioner([_images(1)[0], np.zeros((4, 4, 3))])


def test_captioner_protocol():
    assert isinstance(lambda images: ["x"] * len(images), Captioner)
    assert not isinstance("not callable", Captioner)


# ---------------------------------------------------------------------------------------------------------------------
# VLMCaptioner on a tiny random LLaVA-1.5


@pytest.fixture(scope="module")
def tiny_llava_path(tmp_path_factory) -> str:
    return make_tiny_llava(tmp_path_factory.mktemp("tiny_llava"))


@pytest.fixture(scope="module")
def greedy_captioner(tiny_llava_path) -> VLMCaptioner:
    return VLMCaptioner(tiny_llava_path, max_new_tokens=5, do_sample=False, batch_size=2)


def test_vlm_captioner_loads_and_captions_batches(greedy_captioner):
    assert greedy_captioner.processor.tokenizer.padding_side == "left"
    assert greedy_captioner.prompt == DEFAULT_CAPTION_PROMPT
    assert isinstance(greedy_captioner, Captioner)
    captions = greedy_captioner(_images(3))
    assert len(captions) == 3
    assert all(isinstance(c, str) and c and c == c.strip() for c in captions)
    # Only new tokens are decoded: none of the prompt's words come back (the tiny model can't echo more than 5 words).
    assert all(len(c.split()) <= 5 for c in captions)


def test_vlm_captioner_greedy_is_deterministic_and_batch_independent(greedy_captioner):
    images = _images(3)
    first = greedy_captioner(images)
    assert greedy_captioner(images) == first
    # Batching does not change greedy captions: one at a time gives the same as in batches of 2.
    assert [greedy_captioner([image])[0] for image in images] == first


def test_vlm_captioner_accepts_single_and_non_rgb_images(greedy_captioner):
    image = _images(1)[0]
    expected = greedy_captioner([image])
    assert greedy_captioner(image) == expected
    assert len(greedy_captioner(_images(2, mode="L"))) == 2
    assert len(greedy_captioner(_images(1, mode="RGBA"))) == 1


def test_vlm_captioner_sampling_with_seed_is_reproducible(tiny_llava_path):
    captioner = VLMCaptioner.from_pretrained(
        tiny_llava_path, max_new_tokens=5, do_sample=True, temperature=1.0, top_p=1.0, batch_size=2
    )
    images = _images(3)
    first = captioner(images, generator_seed=123)
    assert len(first) == 3 and all(isinstance(c, str) for c in first)
    assert captioner(images, generator_seed=123) == first
    others = [captioner(images, generator_seed=seed) for seed in range(5)]
    assert any(other != first for other in others)
    # The seed does not leak into torch's global random state.
    state = torch.random.get_rng_state()
    captioner(images, generator_seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_vlm_captioner_drives_the_pipeline(greedy_captioner):
    from tests.pipelines.test_pipeline_sspir import call_kwargs, make_pipe

    pipe = make_pipe(captioner=greedy_captioner)
    result = pipe(**call_kwargs(num_inference_steps=1))
    caption = greedy_captioner([PIL.Image.fromarray((call_kwargs()["image"] * 255).astype("uint8"))])[0]
    assert caption and result.prompts[0].startswith(caption)


def test_vlm_captioner_does_not_pass_sampling_args_when_greedy(greedy_captioner, tiny_llava_path, monkeypatch):
    seen = {}
    generate = greedy_captioner.model.generate

    def spy(**kwargs):
        seen.update(kwargs)
        return generate(**kwargs)

    monkeypatch.setattr(greedy_captioner.model, "generate", spy)
    greedy_captioner(_images(1))
    assert seen["do_sample"] is False and seen["max_new_tokens"] == 5
    assert "temperature" not in seen and "top_p" not in seen
    assert "pixel_values" in seen and seen["input_ids"].shape[0] == 1

    sampler = VLMCaptioner(tiny_llava_path, max_new_tokens=2, temperature=0.3, top_p=0.5)
    monkeypatch.setattr(sampler.model, "generate", spy)
    seen.clear()
    sampler(_images(1), generator_seed=0)
    assert seen["do_sample"] is True and seen["temperature"] == 0.3 and seen["top_p"] == 0.5


def test_vlm_captioner_uses_chat_template_or_fallback(greedy_captioner, tiny_llava_path, caplog):
    assert greedy_captioner.build_prompt() == f"USER: <image>\n{DEFAULT_CAPTION_PROMPT} ASSISTANT:"

    model = AutoModelForImageTextToText.from_pretrained(tiny_llava_path)
    processor = AutoProcessor.from_pretrained(tiny_llava_path)
    processor.chat_template = None
    with caplog.at_level(logging.WARNING):
        captioner = VLMCaptioner(model, processor=processor, prompt="Describe the image.", max_new_tokens=3)
    assert "no chat template" in caplog.text
    assert captioner.build_prompt() == "USER: <image>\nDescribe the image. ASSISTANT:"
    assert processor.tokenizer.padding_side == "left"
    captions = VLMCaptioner(model, processor=processor, max_new_tokens=3, do_sample=False)(_images(2))
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions)


def test_vlm_captioner_loaded_model_needs_processor(tiny_llava_path):
    model = AutoModelForImageTextToText.from_pretrained(tiny_llava_path)
    with pytest.raises(TypeError, match="`processor`"):
        VLMCaptioner(model)
    captioner = VLMCaptioner(model, processor=tiny_llava_path, max_new_tokens=2, do_sample=False)
    assert captioner.model is model
    assert len(captioner(_images(1))) == 1


def test_vlm_captioner_loads_with_dtype_and_device(tiny_llava_path):
    captioner = VLMCaptioner(tiny_llava_path, torch_dtype=torch.float64, device="cpu", max_new_tokens=2)
    assert captioner.model.dtype == torch.float64
    assert captioner.device == torch.device("cpu")
    assert len(captioner(_images(1), generator_seed=0)) == 1


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"model": 3}, TypeError, "`model`"),
        ({"model": torch.nn.Linear(2, 2), "processor": object()}, TypeError, "`model`"),
        ({"prompt": ""}, ValueError, "`prompt`"),
        ({"prompt": None}, TypeError, "`prompt`"),
        ({"max_new_tokens": 0}, ValueError, "`max_new_tokens`"),
        ({"batch_size": 1.5}, ValueError, "`batch_size`"),
        ({"temperature": 0}, ValueError, "`temperature`"),
        ({"top_p": 1.5}, ValueError, "`top_p`"),
        ({"do_sample": "yes"}, TypeError, "`do_sample`"),
        ({"device": 3.0}, TypeError, "`device`"),
    ],
)
def test_vlm_captioner_rejects_bad_arguments(tiny_llava_path, kwargs, error, match):
    kwargs = {"model": tiny_llava_path, **kwargs}
    with pytest.raises(error, match=match):
        VLMCaptioner(**kwargs)


def test_vlm_captioner_rejects_bad_images(greedy_captioner):
    with pytest.raises(ValueError, match="`images`.*empty"):
        greedy_captioner([])
    with pytest.raises(TypeError, match="`images`"):
        greedy_captioner(np.zeros((8, 8, 3), dtype=np.uint8))
    with pytest.raises(TypeError, match=r"`images\[1\]`"):
        greedy_captioner([_images(1)[0], "cat.png"])
    with pytest.raises(TypeError, match="`generator_seed`"):
        greedy_captioner(_images(1), generator_seed=1.5)


def test_vlm_captioner_from_pretrained_rejects_non_paths():
    with pytest.raises(TypeError, match="`path_or_repo`"):
        VLMCaptioner.from_pretrained(torch.nn.Linear(2, 2))
