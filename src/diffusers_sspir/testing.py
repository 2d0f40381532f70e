"""Tiny random SSP-IR models for tests, benchmarks and examples, built from configs in seconds without a download;
and [`SSPIRPipelineTesterMixin`], the pipeline's contract as reusable checks in the manner of diffusers'
`PipelineTesterMixin`.

Everything here loads through the same code paths as real checkpoints: save what these functions build with
`save_pretrained` and load it with `from_pretrained`. Imports torch, diffusers and transformers.

    >>> from diffusers_sspir import SSPIRPipeline
    >>> from diffusers_sspir.testing import make_sspir_components
    >>> pipe = SSPIRPipeline(**make_sspir_components())
"""

import contextlib
import inspect
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

from .defaults import BRANCH_TYPES, DEFAULT_NEGATIVE_PROMPT
from .models import ImageTokenRefiner, SSPIRControlNetModel, SSPIRUNet2DConditionModel, StructureProcessor
from .models.branches import BRANCH_KEY_MARKERS
from .pipelines import SSPIRPipeline

__all__ = [
    "BRANCH_TYPES",
    "IMAGE_EMBED_DIM",
    "SCHEDULER_CONFIG",
    "UNET_CONFIG",
    "VAE_CONFIG",
    "ZERO_INIT_MARKERS",
    "SSPIRPipelineTesterMixin",
    "byte_symbols",
    "make_feature_extractor",
    "make_image_encoder",
    "make_tiny_llava",
    "make_tiny_qwen2_vl",
    "make_vlm_tokenizer",
    "make_sspir_components",
    "make_stable_diffusion_components",
    "make_text_encoder",
    "make_tokenizer",
    "randomize_branches",
    "save_stable_diffusion",
]

UNET_CONFIG = dict(
    block_out_channels=(8, 16),
    layers_per_block=1,
    sample_size=16,
    in_channels=4,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=16,
    attention_head_dim=4,
    norm_num_groups=4,
)
VAE_CONFIG = dict(
    block_out_channels=(8, 8, 8, 8),
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    latent_channels=4,
    norm_num_groups=4,
    sample_size=32,
)
SCHEDULER_CONFIG = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
)
IMAGE_EMBED_DIM = 12


def byte_symbols() -> list[str]:
    """The 256 printable stand-ins of byte-level BPE for the bytes 0-255 (GPT-2's `bytes_to_unicode`)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = iter(range(256, 512))
    return [chr(byte) if byte in printable else chr(next(shifted)) for byte in range(256)]


def make_tokenizer(kind: str = "letters") -> CLIPTokenizer:
    r"""
    A CLIP BPE tokenizer built in code (transformers ships no tokenizer files, and nothing is downloaded).

    Args:
        kind (`str`, defaults to `"letters"`):
            `"letters"`: single lowercase letters, digits and `,.!?-`, alone and word-final, and three merges (`er`,
            `th`, `the`): every lowercase word encodes, with a vocabulary of ~100 (the tests' text encoders).
            `"bytes"`: the 256 byte symbols alone and word-final, no merges: every text encodes, one token per
            byte (the bundled model's tokenizer, `examples/demo_model/build_components.py`).
    """
    if kind == "bytes":
        symbols = byte_symbols()
        vocab = {symbol: i for i, symbol in enumerate(symbols + [symbol + "</w>" for symbol in symbols])}
        vocab |= {"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1}
        return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    if kind != "letters":
        raise ValueError(f"`kind` must be 'letters' or 'bytes', got {kind!r}.")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in "abcdefghijklmnopqrstuvwxyz,.!?-0123456789":
        vocab.setdefault(char, len(vocab))
        vocab.setdefault(char + "</w>", len(vocab))
    merges = [("e", "r</w>"), ("t", "h"), ("th", "e</w>")]
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def make_text_encoder(vocab_size: int) -> CLIPTextModel:
    config = CLIPTextConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        vocab_size=vocab_size,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        projection_dim=16,
    )
    return CLIPTextModel(config).eval()


def make_image_encoder() -> CLIPVisionModel:
    config = CLIPVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        projection_dim=16,
    )
    return CLIPVisionModel(config).eval()


def make_feature_extractor() -> CLIPImageProcessor:
    return CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})


def make_stable_diffusion_components(seed: int = 0) -> dict:
    """The components of a tiny random Stable Diffusion 1.5-shaped pipeline."""
    torch.manual_seed(seed)
    tokenizer = make_tokenizer()
    return {
        "unet": UNet2DConditionModel(**UNET_CONFIG).eval(),
        "vae": AutoencoderKL(**VAE_CONFIG).eval(),
        "text_encoder": make_text_encoder(len(tokenizer)),
        "tokenizer": tokenizer,
        "scheduler": DDIMScheduler(**SCHEDULER_CONFIG),
    }


ZERO_INIT_MARKERS = (*BRANCH_KEY_MARKERS, "controlnet_", "conv_out")
"""Parameter-name fragments of what starts at zero in an untrained SSP-IR model (its branches, the ControlNet's zero
convolutions, the structure processor's output), and so computes nothing until it is given values."""


def randomize_branches(
    model: torch.nn.Module,
    seed: int | torch.Generator = 0,
    std: float = 0.3,
    names: tuple[str, ...] = ZERO_INIT_MARKERS,
) -> None:
    r"""
    Gives the parameters whose name contains one of `names` random normal values, as training would: an untrained
    model's zero-initialised parts otherwise compute nothing and a test or benchmark of them means nothing.

    Args:
        model (`torch.nn.Module`): changed in place.
        seed (`int` or `torch.Generator`, defaults to 0): the values are drawn on the CPU from this seed (or CPU
            generator), so they are the same on every device.
        std (`float`, defaults to 0.3): standard deviation.
        names (`tuple[str, ...]`, defaults to [`ZERO_INIT_MARKERS`]): which parameters.
    """
    generator = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if any(part in name for part in names):
                param.copy_(torch.randn(param.shape, generator=generator) * std)


def make_sspir_components(seed: int = 0, trained: bool = True, branch_type: str = "transformer") -> dict:
    """The components of a tiny SSP-IR pipeline with branches of `branch_type`; `trained` gives the zero-initialised
    parts random values."""
    sd = make_stable_diffusion_components(seed)
    torch.manual_seed(seed)
    unet = SSPIRUNet2DConditionModel(**UNET_CONFIG, branch_type=branch_type, image_embed_dim=IMAGE_EMBED_DIM).eval()
    unet.load_state_dict(sd["unet"].state_dict(), strict=False)
    controlnet = SSPIRControlNetModel.from_unet(unet).eval()
    structure_processor = StructureProcessor(
        block_out_channels=(4, 4, 8, 8), conditioning_embedding_channels=UNET_CONFIG["block_out_channels"][0]
    ).eval()
    components = {
        **sd,
        "unet": unet,
        "controlnet": controlnet,
        "structure_processor": structure_processor,
        "image_encoder": make_image_encoder(),
        "feature_extractor": make_feature_extractor(),
        "image_refiner": ImageTokenRefiner(in_dim=16, hidden_dim=16, out_dim=IMAGE_EMBED_DIM).eval(),
    }
    if trained:
        for i, name in enumerate(("unet", "controlnet", "structure_processor")):
            randomize_branches(components[name], seed=seed + i)
    return components


def save_stable_diffusion(root) -> tuple:
    """Saves a tiny Stable Diffusion pipeline and a tiny CLIP vision encoder (with its processor) under `root`, as
    `from_stable_diffusion` finds real checkpoints; returns `(sd_pipeline, sd_folder, clip_folder)`."""
    from diffusers import StableDiffusionPipeline

    sd = StableDiffusionPipeline(
        **make_stable_diffusion_components(),
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    sd.save_pretrained(root / "sd")
    make_image_encoder().save_pretrained(root / "clip")
    make_feature_extractor().save_pretrained(root / "clip")
    return sd, root / "sd", root / "clip"


# ---------------------------------------------------------------------------------------------------------------------
# A tiny vision-language captioner (LLaVA-1.5 in the llava-hf layout)
# ---------------------------------------------------------------------------------------------------------------------

VLM_IMAGE_SIZE = 32
VLM_PATCH_SIZE = 8
VLM_SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
VLM_WORDS = [
    "USER",
    "ASSISTANT",
    ":",
    ".",
    ",",
    "a",
    "an",
    "the",
    "image",
    "in",
    "of",
    "if",
    "we",
    "very",
    "detailed",
    "manner",
    "remove",
    "degradation",
    "artifacts",
    "from",
    "describe",
    "Describe",
    "photo",
    "cat",
    "dog",
    "red",
    "blue",
    "sky",
    "tree",
    "house",
    "with",
    "and",
]
# LLaVA-1.5 template of llava-hf, simplified: "USER: <image>\n{text} ASSISTANT:".
VLM_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' ' }}"
    "{% endfor %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def _word_tokenizer(tokens: list[str], **kwargs: Any) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer over `tokens` (ids in order; `<unk>` for unknown words), left-padded;
    `kwargs` name its special tokens and chat template."""
    backend = Tokenizer(models.WordLevel(vocab={token: i for i, token in enumerate(tokens)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", **kwargs)
    tokenizer.padding_side = "left"
    return tokenizer


def make_vlm_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer with the LLaVA special tokens; unknown words encode to `<unk>`."""
    return _word_tokenizer(
        VLM_SPECIAL_TOKENS + VLM_WORDS,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
        chat_template=VLM_CHAT_TEMPLATE,
    )


def make_tiny_llava(path: str | os.PathLike) -> str:
    """Builds a tiny random LLaVA-1.5 model (llava-hf layout) and its processor, saves both to `path` and returns
    `str(path)`: a folder that `VLMCaptioner.from_pretrained` (transformers' `AutoModelForImageTextToText` and
    `AutoProcessor`) loads like `llava-hf/llava-1.5-7b-hf`. Its captions are random words."""
    torch.manual_seed(0)
    tokenizer = make_vlm_tokenizer()
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    vision_config = CLIPVisionConfig(
        image_size=VLM_IMAGE_SIZE,
        patch_size=VLM_PATCH_SIZE,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        projection_dim=32,
    )
    text_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    num_patches = (VLM_IMAGE_SIZE // VLM_PATCH_SIZE) ** 2
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=image_token_id,
        image_seq_length=num_patches,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    # A random model may pick `</s>` (or another special token) first and caption nothing: keep to plain words.
    model.generation_config.suppress_tokens = tokenizer.convert_tokens_to_ids(VLM_SPECIAL_TOKENS)

    image_processor = CLIPImageProcessor(
        size={"shortest_edge": VLM_IMAGE_SIZE},
        crop_size={"height": VLM_IMAGE_SIZE, "width": VLM_IMAGE_SIZE},
    )
    # CLIP adds a CLS token that the "default" strategy drops again: `num_patches` image tokens per image.
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=VLM_PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=VLM_CHAT_TEMPLATE,
    )
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)


QWEN2_VL_SPECIAL_TOKENS = [
    "<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
    "<|video_pad|>",
]  # fmt: skip
# Qwen2-VL's template, simplified: "<|im_start|>user <|vision_start|><|image_pad|><|vision_end|>{text}<|im_end|> ...".
QWEN2_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }} "
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% else %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|> {% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant {% endif %}"
)


@contextlib.contextmanager
def _video_processor_optional() -> Iterator[None]:
    """transformers' `Qwen2VLProcessor` insists on a video processor, which needs torchvision; inside the block a
    processor may be built without one (images only), as here where torchvision is not installed."""
    from transformers import processing_utils

    check = processing_utils.ProcessorMixin.check_argument_for_proper_class

    def check_unless_no_video(self, argument_name, argument):
        if argument_name == "video_processor" and argument is None:
            return None
        return check(self, argument_name, argument)

    processing_utils.ProcessorMixin.check_argument_for_proper_class = check_unless_no_video
    try:
        yield
    finally:
        processing_utils.ProcessorMixin.check_argument_for_proper_class = check


def make_tiny_qwen2_vl() -> tuple[torch.nn.Module, Any]:
    """A tiny random Qwen2-VL (M-RoPE, images as patch grids) and its processor, in memory: `(model, processor)` for
    `VLMCaptioner(model, processor=processor)`. Its captions are random words. The processor has no video processor
    when torchvision is missing (transformers needs torchvision for one), so it cannot be saved then."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tokenizer = _word_tokenizer(
        QWEN2_VL_SPECIAL_TOKENS + VLM_WORDS + ["user", "assistant"],
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_start_token": "<|vision_start|>",
            "vision_end_token": "<|vision_end|>",
        },
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN2_VL_SPECIAL_TOKENS}
    text_config = dict(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, bos_token_id=None, eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        rope_parameters={"rope_type": "default", "mrope_section": [1, 1, 2], "rope_theta": 10000.0},
    )  # fmt: skip
    vision_config = dict(
        depth=2, embed_dim=32, hidden_size=32, num_heads=4, mlp_ratio=2, patch_size=14, spatial_merge_size=2,
        temporal_patch_size=2,
    )  # fmt: skip
    config = Qwen2VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.suppress_tokens = list(ids.values())  # plain words only (see `make_tiny_llava`)
    image_processor = Qwen2VLImageProcessorPil(min_pixels=28 * 28, max_pixels=56 * 56, patch_size=14, merge_size=2)
    with _video_processor_optional():
        processor = Qwen2VLProcessor(
            image_processor=image_processor, tokenizer=tokenizer, video_processor=None,
            chat_template=QWEN2_VL_CHAT_TEMPLATE,
        )  # fmt: skip
    return model, processor


class SSPIRPipelineTesterMixin:
    r"""
    The contract of [`SSPIRPipeline`] as checks any subclass or variant can run, in the manner of diffusers'
    `PipelineTesterMixin`: mix it into a test class (pytest collects its `test_*` methods), set `pipeline_class`
    and override [`get_dummy_components`] / [`get_dummy_inputs`] for your components.

        class TestMyPipeline(SSPIRPipelineTesterMixin):
            pipeline_class = MyPipeline

            def get_dummy_components(self):
                return {**make_sspir_components(), "scheduler": MyScheduler()}

    Outputs are compared on `[0, 1]` with `expected_max_difference`; a batch must give each image what it gets alone
    within `batch_max_difference`, for prompts of different lengths (one of several text windows).
    """

    pipeline_class = SSPIRPipeline
    expected_max_difference = 1e-5
    batch_max_difference = 1e-4
    optional_components = ("captioner", "text_encoder", "tokenizer")

    # ------------------------------------------------------------------ hooks

    def get_dummy_components(self, seed: int = 0) -> dict:
        """The pipeline's components (tiny and random by default)."""
        return make_sspir_components(seed)

    def get_dummy_inputs(self, seed: int = 0, **overrides) -> dict:
        """Keyword arguments of one fast call: a random 9×7 image, ×2, two steps, `output_type="np"`."""
        image = np.random.RandomState(seed).rand(9, 7, 3).astype(np.float32)
        inputs = dict(image=image, upscale=2, num_inference_steps=2, output_type="np",
                      generator=torch.Generator().manual_seed(seed))  # fmt: skip
        inputs.update(overrides)
        return inputs

    def get_pipeline(self, **components) -> SSPIRPipeline:
        pipe = self.pipeline_class(**{**self.get_dummy_components(), **components})
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def assert_close(self, actual, expected, max_difference: float | None = None) -> None:
        difference = np.abs(np.asarray(actual, dtype=np.float64) - np.asarray(expected, dtype=np.float64)).max()
        limit = self.expected_max_difference if max_difference is None else max_difference
        assert difference <= limit, f"outputs differ by {difference:.3g} (allowed {limit:.3g})"

    # ------------------------------------------------------------------ checks

    def test_components_function(self):
        pipe = self.get_pipeline()
        parameters = inspect.signature(self.pipeline_class.__init__).parameters
        required = {name for name, p in parameters.items() if name != "self" and p.default is inspect.Parameter.empty}
        expected = required | (set(self.pipeline_class._optional_components) & set(parameters))  # may hold None
        assert set(pipe.components) == expected, set(pipe.components) ^ expected
        self.pipeline_class(**pipe.components)  # the components go back into the constructor

    def test_deterministic_with_generator(self):
        pipe = self.get_pipeline()
        first, second = (pipe(**self.get_dummy_inputs()).images for _ in range(2))
        np.testing.assert_array_equal(first, second)
        other = pipe(**self.get_dummy_inputs(generator=torch.Generator().manual_seed(1))).images
        assert np.abs(first - other).max() > 1e-4, "another seed gives the same image"

    def test_dict_tuple_outputs_equivalent(self):
        pipe = self.get_pipeline()
        output = pipe(**self.get_dummy_inputs())
        images, prompts, structure = pipe(**self.get_dummy_inputs(), return_dict=False)
        np.testing.assert_array_equal(output.images, images)
        np.testing.assert_array_equal(output.structure_images, structure)
        assert output.prompts == prompts

    def test_inference_batch_single_identical(self):
        """Each image of a batch gets what it gets alone: different images, seeds and prompt lengths (the second
        prompt needs several text windows), with and without classifier-free guidance."""
        pipe = self.get_pipeline()
        images = [self.get_dummy_inputs(seed)["image"] for seed in (0, 1)]
        prompts = ["a red house", " ".join(["a green tree by the lake"] * 20)]
        for guidance_scale in (1.0, 7.5):
            generators = [torch.Generator().manual_seed(seed) for seed in (0, 1)]
            batched = pipe(**self.get_dummy_inputs(image=images, prompt=prompts, generator=generators,
                                                   guidance_scale=guidance_scale)).images  # fmt: skip
            for i in range(2):
                alone = pipe(**self.get_dummy_inputs(i, image=images[i], prompt=prompts[i],
                                                     guidance_scale=guidance_scale)).images[0]  # fmt: skip
                self.assert_close(batched[i], alone, self.batch_max_difference)

    def test_num_images_per_prompt(self):
        pipe = self.get_pipeline()
        inputs = self.get_dummy_inputs(num_images_per_prompt=3)
        inputs["image"] = [inputs["image"], self.get_dummy_inputs(1)["image"]]
        output = pipe(**inputs)
        height, width = (round(side * inputs["upscale"]) for side in inputs["image"][0].shape[:2])
        assert output.images.shape == (6, height, width, 3)
        assert output.structure_images.shape == (6, height, width, 3) and len(output.prompts) == 6

    def test_save_load_local(self):
        pipe = self.get_pipeline()
        expected = pipe(**self.get_dummy_inputs()).images
        with tempfile.TemporaryDirectory() as folder:
            pipe.save_pretrained(folder)
            loaded = self.pipeline_class.from_pretrained(folder)
        loaded.set_progress_bar_config(disable=True)
        for name, component in pipe.components.items():
            assert type(loaded.components[name]) is type(component), name
        self.assert_close(loaded(**self.get_dummy_inputs()).images, expected)

    def test_save_load_optional_components(self):
        """Without its optional components (the text encoder and tokenizer, given embeddings instead), the pipeline
        saves, loads and restores as before."""
        pipe = self.get_pipeline()
        prompt_embeds, negative_embeds, _ = pipe.encode_prompts_alone(
            ["a red house"], [DEFAULT_NEGATIVE_PROMPT], torch.device("cpu")
        )
        embeds = dict(prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_embeds)
        expected = pipe(**self.get_dummy_inputs(**embeds)).images
        for name in self.optional_components:
            setattr(pipe, name, None)
        self.assert_close(pipe(**self.get_dummy_inputs(**embeds)).images, expected)
        with tempfile.TemporaryDirectory() as folder:
            pipe.save_pretrained(folder)
            loaded = self.pipeline_class.from_pretrained(folder)
        loaded.set_progress_bar_config(disable=True)
        for name in self.optional_components:
            assert getattr(loaded, name) is None, f"{name} came back after saving without it"
        self.assert_close(loaded(**self.get_dummy_inputs(**embeds)).images, expected)

    def test_encode_prompt_works_in_isolation(self):
        """diffusers' check of the same name, step by step: `encode_prompt` on a pipeline holding only the text
        encoder and tokenizer, called with the call's own arguments (required ones from `__call__`'s defaults),
        gives embeddings that make a pipeline without them restore exactly what the full pipeline restores."""
        components = self.get_dummy_components()
        is_text = {name: "text" in name or "tokenizer" in name for name in components}
        text_only = self.get_pipeline(**{name: c if is_text[name] else None for name, c in components.items()})
        call_parameters = inspect.signature(self.pipeline_class.__call__).parameters
        for guidance_scale in (1.0, 7.5):
            inputs = self.get_dummy_inputs(prompt="a red house", guidance_scale=guidance_scale)
            encode_inputs = {"device": torch.device("cpu"), "do_classifier_free_guidance": guidance_scale > 1}
            for name, parameter in inspect.signature(text_only.encode_prompt).parameters.items():
                if name in inputs:
                    encode_inputs[name] = inputs.pop(name)
                elif name not in encode_inputs and parameter.default is inspect.Parameter.empty:
                    assert name in call_parameters, f"`encode_prompt` needs `{name}`, which `__call__` lacks"
                    encode_inputs[name] = call_parameters[name].default
            with torch.no_grad():
                prompt_embeds, negative_prompt_embeds = text_only.encode_prompt(**encode_inputs)
            assert (negative_prompt_embeds is not None) == (guidance_scale > 1)
            without_text = self.get_pipeline(**{name: None if is_text[name] else c for name, c in components.items()})
            embeds = dict(prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_prompt_embeds)
            isolated = without_text(**inputs, **embeds, negative_prompt=None).images
            full = self.get_pipeline(**components)(
                **self.get_dummy_inputs(prompt="a red house", guidance_scale=guidance_scale)
            ).images
            self.assert_close(isolated, full, 1e-4)

    def test_encode_prompt_has_diffusers_signature(self):
        """A notebook user who knows diffusers calls `encode_prompt(prompt, device, num_images_per_prompt,
        do_classifier_free_guidance, negative_prompt, prompt_embeds, negative_prompt_embeds, lora_scale,
        clip_skip)` and gets `(prompt_embeds, negative_prompt_embeds)`."""
        names = list(inspect.signature(self.pipeline_class.encode_prompt).parameters)[1:10]
        diffusers_names = (
            "prompt device num_images_per_prompt do_classifier_free_guidance negative_prompt prompt_embeds "
            "negative_prompt_embeds lora_scale clip_skip"
        ).split()
        assert names == diffusers_names
        pipe = self.get_pipeline()
        embeds, negative = pipe.encode_prompt(["a red house", "a tree"], "cpu", 2, True, "blur")
        assert embeds.shape == negative.shape and embeds.shape[0] == 4
        torch.testing.assert_close(embeds[0], embeds[1], rtol=0, atol=0)  # copies of one prompt, one after another
        assert not torch.equal(embeds[1], embeds[2]) and not torch.equal(embeds[0], negative[0])
        again, none = pipe.encode_prompt(None, "cpu", 1, False, prompt_embeds=embeds[:1])
        assert none is None and torch.equal(again, embeds[:1])
        skipped, _ = pipe.encode_prompt("a red house", "cpu", clip_skip=1)
        assert skipped.shape == embeds[:1].shape and not torch.equal(skipped, embeds[:1])

    def test_callback_inputs(self):
        """The callback gets every tensor it asks for, at every step, and what it returns replaces it."""
        pipe = self.get_pipeline()
        steps = []

        def callback(pipeline, step, timestep, tensors):
            assert set(tensors) == set(pipeline._callback_tensor_inputs)
            steps.append(step)
            return {"latents": torch.zeros_like(tensors["latents"])}

        inputs = self.get_dummy_inputs(output_type="latent", callback_on_step_end=callback)
        output = pipe(**inputs, callback_on_step_end_tensor_inputs=pipe._callback_tensor_inputs)
        assert steps == list(range(self.get_dummy_inputs()["num_inference_steps"]))
        assert output.images.abs().max() == 0

    def test_to_dtype(self):
        pipe = self.get_pipeline().to(torch.bfloat16)
        models = {name: c for name, c in pipe.components.items() if isinstance(c, torch.nn.Module)}
        assert all(model.dtype == torch.bfloat16 for model in models.values())
        images = pipe(**self.get_dummy_inputs(output_type="pt")).images
        assert images.dtype == torch.float32 and torch.isfinite(images).all()
