"""A captioner backed by a vision-language model (LLaVA-1.5, Qwen2/2.5-VL, SmolVLM, ...) from transformers."""

import os
from typing import Any

import PIL.Image
import torch
from diffusers.utils import logging
from transformers import AutoModelForImageTextToText, AutoProcessor

logger = logging.get_logger(__name__)

DEFAULT_CAPTION_PROMPT = (
    "Describe the image in a very detailed manner if we remove the degradation artifacts from the image."
)
"""The question SSP-IR asks LLaVA-1.5-7B about each degraded image."""

FALLBACK_PROMPT_TEMPLATE = "USER: {image_token}\n{prompt} ASSISTANT:"


def _check_positive_int(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive `int`, got {value!r}.")


def _check_images(images: Any) -> list[PIL.Image.Image]:
    """Returns `images` as a non-empty list of RGB PIL images, or raises a clear error."""
    if isinstance(images, PIL.Image.Image):
        images = [images]
    if not isinstance(images, (list, tuple)):
        raise TypeError(
            f"`images` must be a `PIL.Image.Image` or a non-empty `list` of them, got {type(images).__name__}."
        )
    if len(images) == 0:
        raise ValueError("`images` must be a non-empty `list` of `PIL.Image.Image`, got an empty list.")
    checked = []
    for i, image in enumerate(images):
        if not isinstance(image, PIL.Image.Image):
            raise TypeError(f"`images[{i}]` must be a `PIL.Image.Image`, got {type(image).__name__}.")
        checked.append(image if image.mode == "RGB" else image.convert("RGB"))
    return checked


class VLMCaptioner:
    """Describes images with a vision-language model loaded through transformers.

    This is the explicit semantic prior of SSP-IR: the paper asks LLaVA-1.5-7B to describe each degraded image as if
    the degradation artifacts were removed (`DEFAULT_CAPTION_PROMPT`). Any model that
    `transformers.AutoModelForImageTextToText` loads works, e.g. LLaVA-1.5 in the llava-hf format
    (`llava-hf/llava-1.5-7b-hf`), Qwen2-VL / Qwen2.5-VL or SmolVLM.

    The prompt is built with the processor's chat template (a single user turn holding the image and `prompt`); a
    processor without a chat template gets the LLaVA-1.5 form `"USER: <image>\\n{prompt} ASSISTANT:"`. Batches are
    left-padded (`processor.tokenizer.padding_side` is set to `"left"`), and only the newly generated tokens are
    decoded.

    Args:
        model (`str`, `os.PathLike` or `transformers.PreTrainedModel`):
            a local folder or a Hub id, loaded with `AutoModelForImageTextToText.from_pretrained`, or an already
            loaded model (then `processor` is required).
        processor (`transformers.ProcessorMixin`, `str` or `os.PathLike`, *optional*):
            the model's processor, or where to load it from with `AutoProcessor.from_pretrained`. Defaults to loading
            it from `model` when `model` is a path or a Hub id.
        prompt (`str`, *optional*, defaults to `DEFAULT_CAPTION_PROMPT`): the question asked about each image.
        max_new_tokens (`int`, *optional*, defaults to 512): the most tokens generated per caption.
        temperature (`float`, *optional*, defaults to 0.2): sampling temperature (used only when `do_sample`).
        top_p (`float`, *optional*, defaults to 0.7): nucleus sampling mass (used only when `do_sample`).
        do_sample (`bool`, *optional*, defaults to `True`): sample (as in the paper) rather than decode greedily.
        batch_size (`int`, *optional*, defaults to 4): how many images go through the model at once.
        device (`str` or `torch.device`, *optional*): where to move the model; defaults to leaving it where it is
            (on the CPU for a freshly loaded model).
        dtype (`torch.dtype` or `str`, *optional*): the dtype to load the model in (passed to `from_pretrained`
            as `dtype=`); defaults to the transformers default. Ignored (with a warning) for an already loaded model.
        torch_dtype (`torch.dtype` or `str`, *optional*): the older name of `dtype`.
        model_kwargs (`dict`, *optional*): further arguments for `AutoModelForImageTextToText.from_pretrained`
            (e.g. `revision`, `device_map`, `quantization_config`, `attn_implementation`).

    Raises:
        TypeError: if `model`, `processor`, `prompt` or `do_sample` have the wrong type, or `processor` is missing
            for an already loaded model.
        ValueError: if a number is out of range or `prompt` is empty.

    Example:

    ```py
    >>> import torch
    >>> from diffusers_sspir import VLMCaptioner

    >>> captioner = VLMCaptioner("llava-hf/llava-1.5-7b-hf", device="cuda", dtype=torch.float16)
    >>> captions = captioner([image], generator_seed=0)
    ```
    """

    def __init__(
        self,
        model: "str | os.PathLike | torch.nn.Module",
        processor: "Any | str | os.PathLike | None" = None,
        prompt: str = DEFAULT_CAPTION_PROMPT,
        max_new_tokens: int = 512,
        temperature: float = 0.2,
        top_p: float = 0.7,
        do_sample: bool = True,
        batch_size: int = 4,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        torch_dtype: torch.dtype | str | None = None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(prompt, str):
            raise TypeError(f"`prompt` must be a non-empty `str`, got {type(prompt).__name__}.")
        if not prompt.strip():
            raise ValueError(f"`prompt` must be a non-empty `str`, got {prompt!r}.")
        _check_positive_int(max_new_tokens, "max_new_tokens")
        _check_positive_int(batch_size, "batch_size")
        if not isinstance(do_sample, bool):
            raise TypeError(f"`do_sample` must be a `bool`, got {type(do_sample).__name__}.")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature <= 0:
            raise ValueError(f"`temperature` must be a positive number, got {temperature!r}.")
        if isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
            raise ValueError(f"`top_p` must be a number in (0, 1], got {top_p!r}.")
        dtype = dtype if dtype is not None else torch_dtype
        if dtype is not None and not isinstance(dtype, (torch.dtype, str)):
            raise TypeError(f"`dtype` must be a `torch.dtype`, a `str` or `None`, got {dtype!r}.")
        if device is not None and not isinstance(device, (str, torch.device)):
            raise TypeError(f"`device` must be a `str`, a `torch.device` or `None`, got {device!r}.")

        if isinstance(model, (str, os.PathLike)):
            path = os.fspath(model)
            load_kwargs = dict(model_kwargs or {})
            if dtype is not None:
                load_kwargs["dtype"] = dtype
            logger.info(f"Loading the captioning model from {path!r}.")
            model = AutoModelForImageTextToText.from_pretrained(path, **load_kwargs)
            if processor is None:
                processor = path
        elif isinstance(model, torch.nn.Module) and callable(getattr(model, "generate", None)):
            if processor is None:
                raise TypeError(
                    "`processor` is required when `model` is an already loaded model; pass its "
                    "`transformers` processor (or the folder / Hub id to load it from)."
                )
            if dtype is not None:
                logger.warning("`dtype` is ignored for an already loaded `model`; cast the model yourself.")
            if model.training:
                logger.warning("The captioning `model` is in training mode (dropout active); call `model.eval()`.")
        else:
            raise TypeError(
                "`model` must be a local folder or Hub id (`str` / `os.PathLike`) or a loaded transformers model "
                f"with a `generate` method, got {type(model).__name__}."
            )
        if isinstance(processor, (str, os.PathLike)):
            processor = AutoProcessor.from_pretrained(os.fspath(processor))
        if not callable(processor):
            raise TypeError(
                "`processor` must be a transformers processor (callable on `images=` and `text=`) or a folder / Hub "
                f"id to load one from, got {type(processor).__name__}."
            )
        if device is not None:
            model = model.to(device)

        tokenizer = getattr(processor, "tokenizer", None)
        if tokenizer is not None:
            tokenizer.padding_side = "left"

        self.model = model
        self.processor = processor
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.do_sample = do_sample
        self.batch_size = batch_size

        if getattr(processor, "chat_template", None) is None:
            logger.warning(
                f"The processor {type(processor).__name__} has no chat template; prompting with "
                f"{FALLBACK_PROMPT_TEMPLATE!r}."
            )

    @classmethod
    def from_pretrained(cls, path_or_repo: str | os.PathLike, **kwargs: Any) -> "VLMCaptioner":
        """Loads the model and processor from a local folder or a Hub id.

        Same as `VLMCaptioner(path_or_repo, **kwargs)`.

        Args:
            path_or_repo (`str` or `os.PathLike`): a local folder or a Hub id.
            **kwargs: the other arguments of `VLMCaptioner`.

        Returns:
            `VLMCaptioner`: the captioner.
        """
        if not isinstance(path_or_repo, (str, os.PathLike)):
            raise TypeError(
                f"`path_or_repo` must be a local folder or a Hub id (`str` / `os.PathLike`), got "
                f"{type(path_or_repo).__name__}; pass a loaded model to `VLMCaptioner(model, processor=...)` instead."
            )
        return cls(path_or_repo, **kwargs)

    @property
    def device(self) -> torch.device:
        """`torch.device`: where the model's (first) weights are."""
        device = getattr(self.model, "device", None)
        return device if isinstance(device, torch.device) else next(self.model.parameters()).device

    def build_prompt(self) -> str:
        """Returns the text given to the processor with each image.

        Returns:
            `str`: `prompt` in the processor's chat template (one user turn holding the image and the text, followed
            by the generation prompt), or in `"USER: <image>\\n{prompt} ASSISTANT:"` without a chat template.
        """
        if getattr(self.processor, "chat_template", None) is not None:
            conversation = [
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.prompt}]},
            ]
            return self.processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        image_token = getattr(self.processor, "image_token", None) or "<image>"
        return FALLBACK_PROMPT_TEMPLATE.format(image_token=image_token, prompt=self.prompt)

    def _generation_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
        generation_config = getattr(self.model, "generation_config", None)
        tokenizer = getattr(self.processor, "tokenizer", None)
        if getattr(generation_config, "pad_token_id", None) is None and tokenizer is not None:
            pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
            if pad_token_id is not None:
                kwargs["pad_token_id"] = pad_token_id
        return kwargs

    def _decode(self, token_ids: torch.Tensor) -> list[str]:
        decode = getattr(self.processor, "batch_decode", None)
        if decode is None:
            decode = self.processor.tokenizer.batch_decode
        return decode(token_ids, skip_special_tokens=True)

    @staticmethod
    def _to_model(value: Any, device: torch.device, dtype: torch.dtype | None) -> Any:
        if not isinstance(value, torch.Tensor):
            return value
        if value.is_floating_point() and dtype is not None:
            return value.to(device, dtype=dtype)
        return value.to(device)

    def __call__(self, images: list[PIL.Image.Image], generator_seed: int | None = None) -> list[str]:
        """Describes each image.

        Args:
            images (`list[PIL.Image.Image]` or `PIL.Image.Image`): the images to describe (non-RGB images are
                converted to RGB); a single image is treated as a list of one.
            generator_seed (`int`, *optional*): when given, sampling runs from `torch.manual_seed(generator_seed)`
                inside `torch.random.fork_rng`, so sampled captions are reproducible for the same images,
                `batch_size` and device, and torch's global random state is left as it was. Without it, sampling uses
                the current global state.

        Returns:
            `list[str]`: one caption per image, in order, stripped of surrounding whitespace.

        Raises:
            TypeError: if `images` is not a `PIL.Image.Image` or a `list` of them, or `generator_seed` is not an `int`.
            ValueError: if `images` is empty.
        """
        images = _check_images(images)
        if generator_seed is not None and (isinstance(generator_seed, bool) or not isinstance(generator_seed, int)):
            raise TypeError(f"`generator_seed` must be an `int` or `None`, got {generator_seed!r}.")

        text = self.build_prompt()
        generation_kwargs = self._generation_kwargs()
        is_encoder_decoder = bool(getattr(getattr(self.model, "config", None), "is_encoder_decoder", False))
        device = self.device
        dtype = getattr(self.model, "dtype", None)
        fork_devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=fork_devices, enabled=generator_seed is not None):
            if generator_seed is not None:
                torch.manual_seed(generator_seed)
            captions: list[str] = []
            for start in range(0, len(images), self.batch_size):
                batch = images[start : start + self.batch_size]
                inputs = self.processor(images=batch, text=[text] * len(batch), return_tensors="pt", padding=True)
                inputs = {key: self._to_model(value, device, dtype) for key, value in inputs.items()}
                with torch.inference_mode():
                    output_ids = self.model.generate(**inputs, **generation_kwargs)
                if not is_encoder_decoder:
                    output_ids = output_ids[:, inputs["input_ids"].shape[1] :]
                captions.extend(caption.strip() for caption in self._decode(output_ids))
        return captions

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={type(self.model).__name__}, prompt={self.prompt!r}, "
            f"max_new_tokens={self.max_new_tokens}, do_sample={self.do_sample}, temperature={self.temperature}, "
            f"top_p={self.top_p}, batch_size={self.batch_size})"
        )
