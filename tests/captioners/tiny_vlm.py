"""A tiny random LLaVA-1.5 (llava-hf format) built from configs, with no network, shared by the tests.

`make_tiny_llava(path)` saves a model and a processor that `AutoModelForImageTextToText.from_pretrained` and
`AutoProcessor.from_pretrained` load back, like a real `llava-hf/llava-1.5-7b-hf` folder.
"""

import os

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

IMAGE_SIZE = 32
PATCH_SIZE = 8
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
WORDS = [
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
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' ' }}"
    "{% endfor %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def make_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer with the LLaVA special tokens; unknown words encode to `<unk>`."""
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
        chat_template=CHAT_TEMPLATE,
    )
    tokenizer.padding_side = "left"
    return tokenizer


def make_tiny_llava(path: str | os.PathLike) -> str:
    """Builds a tiny random LLaVA-1.5 model and processor, saves both to `path` and returns `str(path)`."""
    torch.manual_seed(0)
    tokenizer = make_tiny_tokenizer()
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    vision_config = CLIPVisionConfig(
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
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
    num_patches = (IMAGE_SIZE // PATCH_SIZE) ** 2
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
    model.generation_config.suppress_tokens = tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS)

    image_processor = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
    )
    # CLIP adds a CLS token that the "default" strategy drops again: `num_patches` image tokens per image.
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)
