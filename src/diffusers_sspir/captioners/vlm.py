"""A captioner backed by a vision-language model (LLaVA-1.5, Qwen2/2.5-VL, SmolVLM, ...) from transformers."""

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

import PIL.Image
import torch
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401  (diffusers' pipeline loader looks it up here)
from diffusers.utils import logging
from transformers import AutoModelForImageTextToText, AutoProcessor

from .base import CaptionerMixin, check_images

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
    checked = check_images(images)
    if len(checked) == 0:
        raise ValueError("`images` must be a non-empty `list` of `PIL.Image.Image`, got an empty list.")
    return [image if image.mode == "RGB" else image.convert("RGB") for image in checked]


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _dtype_name(dtype: "torch.dtype | str | None") -> str | None:
    """`"float16"` for `torch.float16` (or `"float16"`, `"auto"`), as a record keeps it; `None` stays `None`."""
    if dtype is None or isinstance(dtype, str):
        return dtype
    return str(dtype).removeprefix("torch.")


def _model_reference(model: Any) -> str | None:
    """Where a model can be loaded from again: an existing local folder as an absolute path, else the name given
    (a Hub id); for a loaded transformers model, the folder or Hub id it was loaded from (`None` if unknown)."""
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        return os.path.abspath(path) if os.path.isdir(path) else path
    name = getattr(model, "name_or_path", None) or getattr(getattr(model, "config", None), "_name_or_path", None)
    return _model_reference(name) if isinstance(name, str) and name else None


def _is_placed_by_its_loader(model: torch.nn.Module) -> bool:
    """Whether `model` is quantized or dispatched over devices by a `device_map`, and so must not be moved."""
    device_map = getattr(model, "hf_device_map", None)
    dispatched = isinstance(device_map, dict) and len(set(device_map.values())) > 1
    quantized = any(getattr(model, flag, False) for flag in ("is_quantized", "is_loaded_in_8bit", "is_loaded_in_4bit"))
    return dispatched or quantized


class VLMCaptioner(CaptionerMixin):
    """Describes images with a vision-language model loaded through transformers.

    This is the explicit semantic prior of SSP-IR: the paper asks LLaVA-1.5-7B to describe each degraded image as if
    the degradation artifacts were removed (`DEFAULT_CAPTION_PROMPT`). Any model that
    `transformers.AutoModelForImageTextToText` loads works, e.g. LLaVA-1.5 in the llava-hf format
    (`llava-hf/llava-1.5-7b-hf`), Qwen2-VL / Qwen2.5-VL or SmolVLM.

    The prompt is built with the processor's chat template (a single user turn holding the image and `prompt`); a
    processor without a chat template gets the LLaVA-1.5 form `"USER: <image>\\n{prompt} ASSISTANT:"`. Batches are
    left-padded (`processor.tokenizer.padding_side` is set to `"left"`), and only the newly generated tokens are
    decoded.

    As a pipeline's `captioner` it is a component like the others: `pipe.to(device, dtype)` moves it (unless it was
    placed on a device of its own, see [`SSPIRPipeline.to`]), CPU offload puts it on the accelerator only while it
    describes, and `pipe.save_pretrained` records where its model comes from and its settings in
    `captioner/config.json`, without copying the model's weights. A pipeline loaded from that folder recreates it
    with `lazy=True`: the model loads when the first caption is needed.

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
            (e.g. `revision`, `device_map`, `quantization_config`, `attn_implementation`). Weights are read from
            safetensors unless `model_kwargs` says `use_safetensors=False`.
        lazy (`bool`, *optional*, defaults to `False`): with a path or Hub id, load the model and processor on first
            use (or on [`load`]) instead of now, so that a pipeline loads fast and works without the model until a
            caption is needed.

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

    _recorded_attributes = ("prompt", "max_new_tokens", "temperature", "top_p", "do_sample", "batch_size")

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
        lazy: bool = False,
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
        if model_kwargs is not None and not isinstance(model_kwargs, dict):
            raise TypeError(f"`model_kwargs` must be a `dict` or `None`, got {type(model_kwargs).__name__}.")
        if not isinstance(lazy, bool):
            raise TypeError(f"`lazy` must be a `bool`, got {type(lazy).__name__}.")
        is_path = isinstance(model, (str, os.PathLike))
        if not is_path and not (isinstance(model, torch.nn.Module) and callable(getattr(model, "generate", None))):
            raise TypeError(
                "`model` must be a local folder or Hub id (`str` / `os.PathLike`) or a loaded transformers model "
                f"with a `generate` method, got {type(model).__name__}."
            )
        if not is_path and processor is None:
            raise TypeError(
                "`processor` is required when `model` is an already loaded model; pass its "
                "`transformers` processor (or the folder / Hub id to load it from)."
            )
        super().__init__()
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.do_sample = do_sample
        self.batch_size = batch_size
        self.model = None
        self.processor = None
        self._source = (os.fspath(model) if is_path else None, processor, dict(model_kwargs or {}), dtype)
        self._target_device = torch.device(device) if device is not None else None
        self._target_dtype = None
        self._save_model = False

        processor_reference = processor if isinstance(processor, (str, os.PathLike)) else None
        record_kwargs = {key: value for key, value in (model_kwargs or {}).items() if _is_json(value)}
        self.register_to_config(
            model=_model_reference(model),
            processor=_model_reference(processor_reference) if processor_reference is not None else None,
            prompt=prompt,
            max_new_tokens=max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            do_sample=do_sample,
            batch_size=batch_size,
            dtype=_dtype_name(dtype) if is_path else _dtype_name(getattr(model, "dtype", None)),
            model_kwargs=record_kwargs or None,
        )
        if not is_path:
            if dtype is not None:
                logger.warning("`dtype` is ignored for an already loaded `model`; cast the model yourself.")
            if model.training:
                logger.warning("The captioning `model` is in training mode (dropout active); call `model.eval()`.")
            if isinstance(processor, (str, os.PathLike)):
                processor = AutoProcessor.from_pretrained(os.fspath(processor))
            self._attach(model, processor)
        elif not lazy:
            self.load()

    @classmethod
    def from_record(cls, record: dict[str, Any], folder: str, **loading_kwargs: Any) -> "VLMCaptioner":
        """The captioner `captioner/config.json` records, to be loaded on first use. A model saved inside the record's
        folder (`save_pretrained(..., save_model=True)`) is found there; a `torch_dtype` the pipeline loader passes
        wins over the recorded dtype; `trust_remote_code` in a record is not followed (pass the captioner yourself)."""
        record = dict(record)
        if not isinstance(record.get("model"), str) or not record["model"]:
            raise ValueError(
                f"{folder}/{cls.config_name}: `model` must name the vision-language model (a folder or Hub id), got "
                f"{record.get('model')!r}."
            )
        for key in ("model", "processor"):
            if isinstance(record.get(key), str) and not os.path.isabs(record[key]):
                inside = os.path.join(folder, record[key])
                if os.path.isdir(inside):
                    record[key] = inside
        model_kwargs = dict(record.get("model_kwargs") or {})
        if model_kwargs.pop("trust_remote_code", False):
            logger.warning(
                f"{folder}/{cls.config_name} asks to run the captioning model's own code (`trust_remote_code`), which "
                "a saved pipeline may not do: it is loaded without. Pass `captioner=VLMCaptioner(..., model_kwargs="
                "{'trust_remote_code': True})` to `from_pretrained` if you trust it."
            )
        record["model_kwargs"] = model_kwargs or None
        if loading_kwargs.get("torch_dtype") is not None:
            record["dtype"] = loading_kwargs["torch_dtype"]
        return cls(**record, lazy=True)

    @classmethod
    def from_pretrained(cls, path_or_repo: str | os.PathLike, **kwargs: Any) -> "VLMCaptioner":
        """Loads the model and processor from a local folder or a Hub id, as `VLMCaptioner(path_or_repo, **kwargs)`;
        or, from the `captioner/` folder of a saved pipeline (its `config.json` is a `VLMCaptioner` record), the
        captioner it records, to be loaded on first use (see [`CaptionerMixin.from_pretrained`]).

        Args:
            path_or_repo (`str` or `os.PathLike`): a local folder or a Hub id.
            **kwargs: the other arguments of `VLMCaptioner` (for a record: the pipeline loader's settings).

        Returns:
            `VLMCaptioner`: the captioner.
        """
        if not isinstance(path_or_repo, (str, os.PathLike)):
            raise TypeError(
                f"`path_or_repo` must be a local folder or a Hub id (`str` / `os.PathLike`), got "
                f"{type(path_or_repo).__name__}; pass a loaded model to `VLMCaptioner(model, processor=...)` instead."
            )
        record = os.path.join(os.fspath(path_or_repo), cls.config_name)
        if os.path.isfile(record):
            try:
                with open(record, encoding="utf-8") as file:
                    is_record = json.load(file).get("_class_name") == cls.__name__
            except (OSError, ValueError, AttributeError):
                is_record = False
            if is_record:
                return super().from_pretrained(path_or_repo, **kwargs)
        return cls(path_or_repo, **kwargs)

    # ------------------------------------------------------------------ loading and placement

    # `model` is both a recorded setting (where the model comes from: `captioner.config.model`) and the loaded
    # submodule: the attribute is the submodule (`None` until a lazy captioner loads), never the config value.
    @property
    def model(self) -> torch.nn.Module | None:
        """`transformers.PreTrainedModel`: the vision-language model (`None` before a lazy captioner loads)."""
        return self._modules.get("model")

    @model.setter
    def model(self, value: torch.nn.Module | None) -> None:
        self._modules["model"] = value

    @property
    def is_loaded(self) -> bool:
        """`bool`: whether the model and processor are loaded (a lazy captioner loads them on first use)."""
        return self.model is not None

    def load(self) -> "VLMCaptioner":
        """Loads the model and processor now (a no-op once loaded), in the recorded dtype and on the device the
        captioner was moved to meanwhile.

        Returns:
            `VLMCaptioner`: `self`.

        Raises:
            OSError: if the model or processor cannot be loaded, naming where it was looked for.
        """
        if self.model is not None:
            return self
        path, processor, model_kwargs, dtype = self._source
        dtype = self._target_dtype or dtype
        load_kwargs = {"use_safetensors": True, **model_kwargs}
        if dtype is not None:
            load_kwargs["dtype"] = dtype
        logger.info(f"Loading the captioning model from {path!r}.")
        try:
            model = AutoModelForImageTextToText.from_pretrained(path, **load_kwargs)
            if processor is None or isinstance(processor, (str, os.PathLike)):
                processor = AutoProcessor.from_pretrained(os.fspath(processor if processor is not None else path))
        except Exception as error:
            raise OSError(
                f"The captioner cannot load its vision-language model {path!r} ({type(error).__name__}: {error}). "
                "Make the model available (download it, or fix the folder), or give the pipeline another captioner: "
                "`from_pretrained(..., captioner=...)` or `pipe.captioner = ...` (`None` for none)."
            ) from error
        if self._target_device is not None and not _is_placed_by_its_loader(model):
            model = model.to(self._target_device)
        self._attach(model, processor)
        return self

    def _attach(self, model: torch.nn.Module, processor: Any) -> None:
        if not callable(processor):
            raise TypeError(
                "`processor` must be a transformers processor (callable on `images=` and `text=`) or a folder / Hub "
                f"id to load one from, got {type(processor).__name__}."
            )
        tokenizer = getattr(processor, "tokenizer", None)
        if tokenizer is not None:
            tokenizer.padding_side = "left"
        if self._target_device is not None and _model_device(model) != self._target_device:
            model = model.to(self._target_device)
        self.model = model
        self.processor = processor
        if getattr(processor, "chat_template", None) is None:
            logger.warning(
                f"The processor {type(processor).__name__} has no chat template; prompting with "
                f"{FALLBACK_PROMPT_TEMPLATE!r}."
            )

    def to(self, *args: Any, **kwargs: Any) -> "VLMCaptioner":
        """Moves (or casts) the model, as `torch.nn.Module.to`; before a lazy captioner loads, remembers where it is
        to go. A quantized model, or one dispatched over devices by a `device_map`, stays where its loader put it
        (with a warning)."""
        device, dtype, _, _ = torch._C._nn._parse_to(*args, **kwargs)
        if self.model is not None and _is_placed_by_its_loader(self.model):
            logger.warning(
                f"The captioning model {type(self.model).__name__} is quantized or spread over devices by its "
                "`device_map`, so it stays where its loader placed it."
            )
            return self
        if self.model is not None:
            self.model = self.model.to(*args, **kwargs)
        if device is not None:
            self._target_device = torch.device(device)
        if dtype is not None:
            self._target_dtype = dtype
            self.register_to_config(dtype=_dtype_name(dtype))
        return self

    @property
    def device(self) -> torch.device:
        """`torch.device`: where the model's (first) weights are; before a lazy captioner loads, where it will go."""
        if self.model is None:
            return self._target_device or torch.device("cpu")
        return _model_device(self.model)

    @property
    def dtype(self) -> torch.dtype:
        """`torch.dtype`: the dtype of the model's weights (before a lazy captioner loads, `torch.float32`, or the
        dtype it was cast to)."""
        if self.model is None:
            return self._target_dtype or torch.float32
        return self.model.dtype

    @property
    def _execution_device(self) -> torch.device:
        """Where inputs go: the device accelerate's offload hooks compute on, else the model's device."""
        for module in self.modules():
            execution_device = getattr(getattr(module, "_hf_hook", None), "execution_device", None)
            if execution_device is not None:
                return torch.device(execution_device)
        return self.device

    @contextlib.contextmanager
    def saving_model(self) -> Iterator[None]:
        """Inside the block, [`save_pretrained`] also saves the model (as `save_model=True`): what the pipeline's
        `save_pretrained(..., save_captioner_model=True)` uses, since the pipeline saver calls this one without it."""
        self._save_model = True
        try:
            yield
        finally:
            self._save_model = False

    def save_pretrained(
        self, save_directory: str | os.PathLike, save_model: bool | None = None, **kwargs: Any
    ) -> None:
        """Writes the captioner's record, `config.json`: where the model comes from (an absolute folder or a Hub
        id), the processor, the prompt, the generation settings and the dtype. The model's weights are not copied
        unless `save_model`.

        Args:
            save_directory (`str` or `os.PathLike`): the folder (created if missing).
            save_model (`bool`, *optional*): also save the model and processor (safetensors) in
                `save_directory/model`, which the record then names: a folder that needs nothing else. Defaults to
                `False` (`True` inside [`saving_model`]).
            **kwargs: the pipeline saver's settings; not used.

        Raises:
            ValueError: if the model has no known source (a model built in memory) and `save_model` is not set.
        """
        os.makedirs(save_directory, exist_ok=True)
        save_model = self._save_model if save_model is None else save_model
        if save_model:
            self.load()
            folder = os.path.join(save_directory, "model")
            self.model.save_pretrained(folder, safe_serialization=True)
            self.processor.save_pretrained(folder)
            reference = {key: self.config[key] for key in ("model", "processor", "dtype")}
            self.register_to_config(model="model", processor=None, dtype=_dtype_name(self.model.dtype))
            try:
                super().save_pretrained(save_directory)
            finally:  # the captioner itself still names where it came from
                self.register_to_config(**reference)
            return
        if self.config.model is None:
            raise ValueError(
                f"The captioning model {type(self.model).__name__} was not loaded from a folder or the Hub, so a "
                "saved record could not find it again: save it with `save_model=True` (the pipeline's "
                "`save_pretrained(..., save_captioner_model=True)`), or save the model yourself and make the "
                "captioner from that folder."
            )
        super().save_pretrained(save_directory)

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

    def forward(self, images: list[PIL.Image.Image], generator_seed: int | None = None) -> list[str]:
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

        self.load()
        text = self.build_prompt()
        generation_kwargs = self._generation_kwargs()
        is_encoder_decoder = bool(getattr(getattr(self.model, "config", None), "is_encoder_decoder", False))
        device = self._execution_device
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
        model = type(self.model).__name__ if self.model is not None else f"{self.config.model!r} (not loaded yet)"
        return (
            f"{type(self).__name__}(model={model}, prompt={self.prompt!r}, "
            f"max_new_tokens={self.max_new_tokens}, do_sample={self.do_sample}, temperature={self.temperature}, "
            f"top_p={self.top_p}, batch_size={self.batch_size})"
        )


def _model_device(model: torch.nn.Module) -> torch.device:
    device = getattr(model, "device", None)
    return device if isinstance(device, torch.device) else next(model.parameters()).device
