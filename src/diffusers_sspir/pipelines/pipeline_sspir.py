"""SSPIRPipeline: realistic image restoration with semantic and structure priors (SSP-IR) on Stable Diffusion."""

import contextlib
import functools
import importlib
import inspect
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, DiffusionPipeline, UNet2DConditionModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.image_processor import PipelineImageInput, VaeImageProcessor
from diffusers.loaders import StableDiffusionLoraLoaderMixin
from diffusers.pipelines.pipeline_utils import StableDiffusionMixin
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils import (
    USE_PEFT_BACKEND,
    BaseOutput,
    logging,
    replace_example_docstring,
    scale_lora_layers,
    unscale_lora_layers,
)
from diffusers.utils.torch_utils import is_compiled_module, randn_tensor
from transformers import CLIPImageProcessor, CLIPTextModel, CLIPTokenizer, CLIPVisionModel

from ..captioners.base import Captioner, CaptionerMixin, accepts_generator_seed
from ..compat import muted_log_messages
from ..defaults import CALL_DEFAULTS, DEFAULT_ADDED_PROMPT, DEFAULT_NEGATIVE_PROMPT, UNSUPPORTED_SCHEDULERS
from ..image_ops import (
    COLOR_FIX_METHODS,
    apply_color_fix,
    gaussian_weights,
    map_tiles,
    pad_to_multiple,
    tile_starts,
    to_tensor_batch,
    upscale_bicubic,
)
from ..memory import available_memory, format_bytes, memory_check_skipped
from ..models import ImageTokenRefiner, RRDBNet, SSPIRControlNetModel, SSPIRUNet2DConditionModel, StructureProcessor
from ..models._utils import place_like
from ..models.structure_processor import STRUCTURE_PROCESSOR_WIDTHS, StructureProcessorOutput
from ..validation import check_call_setting, check_integer, check_setting, check_tiling

logger = logging.get_logger(__name__)

START_POINTS = ("lr", "noise")
# Input pixels each tile of the stage-1 upscaler reads around itself (Real-ESRGAN tiles with 10). Its receptive field
# is wider (RRDBNet's: hundreds of pixels), so a tiled upscale is close to, not equal to, the untiled one.
UPSCALER_TILE_HALO = 16
OUTPUT_TYPES = ("pil", "np", "pt", "latent")
# Weight files that are pickles (torch.save): refused unless a call opts in with `use_safetensors=False`.
PICKLE_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
MAX_PROMPT_WINDOWS = 4
# Written next to every saved pipeline (and shipped with the bundled demo model), so that diffusers' generic loader
# finds the pipeline class in the folder itself and never looks for a community pipeline on the Hub.
CUSTOM_PIPELINE_STUB = (
    '"""Lets `DiffusionPipeline.from_pretrained(folder, custom_pipeline="pipeline_sspir", trust_remote_code=True)`\n'
    'load this folder (needs `pip install diffusers-sspir`)."""\n\n'
    "from diffusers_sspir.pipelines.pipeline_sspir import SSPIRPipeline  # noqa: F401\n"
)

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> import torch
        >>> from PIL import Image
        >>> from diffusers import UniPCMultistepScheduler
        >>> from diffusers_sspir import SSPIRPipeline, VLMCaptioner

        >>> pipe = SSPIRPipeline.from_pretrained("path/to/sspir", dtype=torch.float16).to("cuda")
        >>> pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config)  # swap the scheduler
        >>> pipe.captioner = VLMCaptioner("llava-hf/llava-1.5-7b-hf", device="cuda", dtype=torch.float16)

        >>> low_quality = Image.open("photo.png")
        >>> result = pipe(low_quality, upscale=4, generator=torch.Generator("cuda").manual_seed(0))
        >>> result.images[0].save("restored.png")
        >>> print(result.prompts[0])  # the caption the restoration was conditioned on
        ```
"""


def draw_seed(generator: torch.Generator | list[torch.Generator]) -> int:
    """An integer seed for components seeded by integers, drawn from a copy of `generator` (the first of a list), so
    that the generator's own stream, and with it the starting noise, is the same whether or not a seed is drawn."""
    first = generator[0] if isinstance(generator, list) else generator
    copy = torch.Generator(device=first.device)
    copy.set_state(first.get_state())
    return int(torch.randint(0, 2**31 - 1, (1,), generator=copy, device=first.device))


def is_compiled(model: torch.nn.Module) -> bool:
    """Whether `model` was compiled as a whole, by `torch.compile(model)` or in place by `model.compile()`."""
    return is_compiled_module(model) or getattr(model, "_compiled_call_impl", None) is not None


@dataclass
class SSPIRPipelineOutput(BaseOutput):
    """
    Output of [`SSPIRPipeline`].

    Args:
        images (`list[PIL.Image.Image] | np.ndarray | torch.Tensor`):
            The restored images (or latents with `output_type="latent"`).
        prompts (`list[str]`):
            The prompt each image was restored with (caption plus added prompt), one per output image.
        structure_images (`list[PIL.Image.Image] | np.ndarray | torch.Tensor | None`):
            The structure processor's finest RGB prediction, resized to the output size, in the same format as
            `images` (`None` with `output_type="latent"`).
    """

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    prompts: list[str]
    structure_images: list[PIL.Image.Image] | np.ndarray | torch.Tensor | None = None


_SIMPLE_TYPES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _read_config(name: str, subfolder: str, config_name: str) -> dict[str, Any] | None:
    """The JSON object in `subfolder/config_name` (`None` if there is no such file), or a `ValueError` naming
    `name/config_name` for a file that is not one."""
    path = os.path.join(subfolder, config_name)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as file:
            config = json.load(file)
    except (OSError, ValueError) as error:
        raise ValueError(f"{name}/{config_name}: not a readable JSON file ({error}).") from None
    if not isinstance(config, dict):
        raise ValueError(f"{name}/{config_name}: must hold a JSON object, got {type(config).__name__}.")
    return config


def _check_config_types(name: str, subfolder: str, library: str, class_name: str) -> None:
    """Refuses a config value whose type cannot be what the component's class takes, before anything is built, naming
    the file and the key (`latent_channels: "four"` would otherwise fail deep inside the model with an unrelated
    message). Only the settings the class annotates as exactly `bool`, `int`, `float` or `str` are checked, for the
    classes of diffusers and of this library; transformers validates its own configs."""
    if library != "diffusers" and not library.startswith("diffusers_sspir"):
        return
    try:
        model_class = getattr(importlib.import_module(library), class_name)
    except (ImportError, AttributeError):
        return  # diffusers names what it cannot find
    config_name = getattr(model_class, "config_name", None)
    config = _read_config(name, subfolder, config_name) if isinstance(config_name, str) else None
    if config is None:
        return
    parameters = inspect.signature(model_class.__init__).parameters
    for key, value in config.items():
        parameter = parameters.get(key)
        if parameter is None or value is None:
            continue
        expected = next((kind for kind in _SIMPLE_TYPES if parameter.annotation in (kind, kind.__name__)), None)
        if expected is None:
            continue
        fits = isinstance(value, expected) and (expected is bool or not isinstance(value, bool))
        if expected is float:
            fits = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not fits:
            raise ValueError(
                f"{name}/{config_name}: `{key}` of {class_name} must be {_SIMPLE_TYPES[expected]}, got {value!r}."
            )


def _config_size(name: str, subfolder: str, class_name: str) -> tuple[int, list[str]] | None:
    """`(parameters, keys)` a stock component's `config.json` would build (`models.config_size`), read before
    anything is built; `None` for a class not covered or a folder without that file."""
    from ..models.config_size import estimate_parameters

    config = _read_config(name, subfolder, "config.json")
    return estimate_parameters(class_name, config, f"{name}/config.json") if config is not None else None


def _check_sizes(folder: str, sizes: dict[str, tuple[int, list[str]]]) -> None:
    """Refuses a folder whose components would not fit in the host's available memory even in 16 bits, naming the
    largest component, its file and the keys its size comes from."""
    from ..memory import available_memory, format_bytes

    available = available_memory("cpu")
    total = sum(count for count, _ in sizes.values())
    if available is None or not sizes or 2 * total <= available:
        return
    name, (count, keys) = max(sizes.items(), key=lambda item: item[1][0])
    raise ValueError(
        f"{folder}: the components would build about {total:,} parameters ({format_bytes(2 * total)} even in 16 "
        f"bits), more than the {format_bytes(available)} this machine has available; the largest, `{name}`, gets "
        f"{count:,} from {', '.join(keys)} in {name}/config.json. Check that file."
    )


class SSPIRPipeline(DiffusionPipeline, StableDiffusionMixin, StableDiffusionLoraLoaderMixin):
    r"""
    Realistic image restoration with semantic and structure priors (SSP-IR, Zhang et al., IEEE TCSVT 2025) on
    Stable Diffusion 1.5.

    The low-quality image is upscaled (bicubic, or a stage-1 `upscaler` network), then conditions a frozen SD-1.5
    UNet three ways: a caption (explicit semantic prior, from `captioner` or `prompt`), CLIP image tokens refined by
    `image_refiner` (implicit semantic prior, read by the dual-prior attention), and a structure prior from
    `structure_processor` that drives the `controlnet`, whose residuals also feed the UNet's pixel attention.

    Args:
        vae (`AutoencoderKL`): Stable Diffusion's VAE.
        text_encoder (`CLIPTextModel`): Stable Diffusion's text encoder.
        tokenizer (`CLIPTokenizer`): its tokenizer.
        unet (`SSPIRUNet2DConditionModel`): the UNet with dual-prior attention.
        controlnet (`SSPIRControlNetModel`): the ControlNet fed with the structure prior.
        structure_processor (`StructureProcessor`): the pixel-level structure processor.
        image_encoder (`CLIPVisionModel`): CLIP vision encoder (ViT-L/14 in the paper).
        feature_extractor (`CLIPImageProcessor`): gives the image encoder's input size and normalisation.
        image_refiner (`ImageTokenRefiner`): the refine layer for the CLIP image tokens.
        scheduler (`KarrasDiffusionSchedulers`): any Stable Diffusion scheduler.
        captioner (`Captioner`, *optional*): describes each image when no prompt is given (the explicit semantic
            prior). An optional component: `pipe.to`, CPU offload and `pipe.components` include it, and
            `save_pretrained` records a [`VLMCaptioner`] or [`FixedCaptioner`] by reference in `captioner/`
            (see [`save_pretrained`]); any other callable works but is not saved.
        recommended_settings (`dict`, *optional*): the call settings the model recommends (see
            [`recommended_settings`]).
        upscaler (`RRDBNet`, *optional*): a stage-1 restoration network (DiffBIR's design: e.g. Real-ESRGAN's
            RRDBNet) that upscales the low-quality image in place of bicubic, so that every prior starts from a clean
            image; saved with the pipeline. Any diffusers model whose config has an integer `scale` and that maps
            `[0, 1]` images to `scale`-times larger ones fits. Set `pipe.upscaler = None` for bicubic.
    """

    # The ControlNet is called with the UNet at every step, so it stays out of the chain (as in diffusers' ControlNet
    # pipelines): `enable_model_cpu_offload` gives it its own hook, it is loaded once and offloaded after the call.
    # In call order: the captioner describes the upscaled image, so it comes after the upscaler.
    model_cpu_offload_seq = (
        "upscaler->captioner->text_encoder->image_encoder->image_refiner->structure_processor->unet->vae"
    )
    # Without the text encoder and tokenizer, the pipeline runs on precomputed `prompt_embeds` (and
    # `negative_prompt_embeds` with guidance); without a captioner, on given prompts (or empty captions).
    _optional_components = ["text_encoder", "tokenizer", "upscaler", "captioner"]
    # The ControlNet's adapters (loaded with `pipe.controlnet.load_lora_adapter`) then follow the pipeline's
    # `set_adapters`, `disable_lora`/`enable_lora`, `delete_adapters`, `unload_lora_weights` and
    # `fuse_lora(components=[..., "controlnet"])`.
    _lora_loadable_modules = ["unet", "text_encoder", "controlnet"]
    _callback_tensor_inputs = ["latents", "prompt_embeds", "image_embeds", "structure_features"]

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        unet: SSPIRUNet2DConditionModel,
        controlnet: SSPIRControlNetModel,
        structure_processor: StructureProcessor,
        image_encoder: CLIPVisionModel,
        feature_extractor: CLIPImageProcessor,
        image_refiner: ImageTokenRefiner,
        scheduler: KarrasDiffusionSchedulers,
        captioner: Captioner | None = None,
        recommended_settings: dict[str, Any] | None = None,
        upscaler: RRDBNet | None = None,
    ):
        super().__init__()
        self.register_to_config(recommended_settings=self.check_recommended_settings(recommended_settings))
        self.register_modules(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            controlnet=controlnet,
            structure_processor=structure_processor,
            image_encoder=image_encoder,
            feature_extractor=feature_extractor,
            image_refiner=image_refiner,
            scheduler=scheduler,
            upscaler=upscaler,
            captioner=captioner,
        )
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1) if vae is not None else 8
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)

    def __setattr__(self, name: str, value: Any) -> None:
        # diffusers leaves the config entry of a component saved as None at (None, None) when a model is assigned
        # to it, so `save_pretrained` would drop it: register it instead (`pipe.upscaler = RRDBNet...` is saved).
        if (
            value is not None
            and name in self._optional_components
            and name in self.__dict__
            and tuple(self.config.get(name) or (None, None)) == (None, None)
        ):
            self.register_modules(**{name: value})
            return
        super().__setattr__(name, value)

    # ------------------------------------------------------------------ devices

    def _models(self) -> list[torch.nn.Module]:
        """The pipeline's models, without the captioner (which may live on a device of its own)."""
        names, _ = self._get_signature_keys(self)
        models = (getattr(self, name, None) for name in names if name != "captioner")
        return [model for model in models if isinstance(model, torch.nn.Module)]

    # Adapted from diffusers.pipelines.pipeline_utils.DiffusionPipeline.device, leaving out the captioner.
    @property
    def device(self) -> torch.device:
        r"""
        `torch.device`: where the pipeline's models are (an accelerator where some are on one). The captioner does
        not count: it may be kept on a device of its own (see [`to`]).
        """
        models = self._models()
        for model in models:
            if model.device.type not in ("cpu", "meta"):
                return model.device
        return models[0].device if models else torch.device("cpu")

    # Adapted from diffusers.pipelines.pipeline_utils.DiffusionPipeline.dtype, leaving out the captioner.
    @property
    def dtype(self) -> torch.dtype:
        r"""`torch.dtype`: the dtype of the pipeline's first model (the captioner does not count)."""
        models = self._models()
        return models[0].dtype if models else torch.float32

    def _captioner_kept_apart(self) -> bool:
        captioner = self.captioner
        if not isinstance(captioner, torch.nn.Module) or not getattr(captioner, "is_loaded", True):
            return False
        if not any(True for _ in captioner.parameters()):
            return False
        return captioner.device != self.device

    def to(self, *args, **kwargs) -> "SSPIRPipeline":
        r"""
        Moves and casts the pipeline's models, as [`~diffusers.DiffusionPipeline.to`] does, the captioner with them
        when it is where the pipeline is (or not loaded yet). A captioner on a device of its own (say
        `VLMCaptioner(..., device="cuda:1")` beside a pipeline on `cuda:0`, or one kept on the CPU while the pipeline
        is on the GPU) stays there, and a warning says so: move it with `pipe.captioner.to(...)`.
        """
        if not self._captioner_kept_apart():
            return super().to(*args, **kwargs)
        captioner = self.captioner
        object.__setattr__(self, "captioner", None)  # hidden from diffusers' loop over the models, for this call
        try:
            super().to(*args, **kwargs)
        finally:
            object.__setattr__(self, "captioner", captioner)
        if captioner.device != self.device:
            logger.warning(
                f"The captioner stays on {captioner.device}, where it was placed apart from the pipeline (now on "
                f"{self.device}); move it with `pipe.captioner.to(...)` if it should follow."
            )
        return self

    def enable_sequential_cpu_offload(self, gpu_id: int | None = None, device: "torch.device | str" = None) -> None:
        r"""
        Offloads every model to the CPU and streams its layers to the accelerator as they run, as
        [`~diffusers.DiffusionPipeline.enable_sequential_cpu_offload`] does, the captioner included: a captioner that
        loads on first use is loaded now, so that its layers get their hooks.
        """
        if hasattr(self.captioner, "load"):
            self.captioner.load()
        super().enable_sequential_cpu_offload(gpu_id=gpu_id, device=device)

    # ------------------------------------------------------------------ recommended settings

    @staticmethod
    def check_recommended_settings(settings: dict[str, Any] | None) -> dict[str, Any] | None:
        """`settings` if every key is a setting of `CALL_DEFAULTS` with a value in its range, else a `ValueError`."""
        if settings is None:
            return None
        if not isinstance(settings, dict):
            raise ValueError(f"`recommended_settings` must be a dict of call settings, got {type(settings).__name__}.")
        unknown = sorted(set(settings) - set(CALL_DEFAULTS))
        if unknown:
            raise ValueError(
                f"`recommended_settings` has unknown settings {unknown}; accepted: {sorted(CALL_DEFAULTS)}."
            )
        for name, value in settings.items():
            check_call_setting(name, value)
        return dict(settings)

    @property
    def recommended_settings(self) -> dict[str, Any]:
        r"""
        The call settings this pipeline uses for the arguments a call leaves out: the library's defaults
        (`diffusers_sspir.defaults.CALL_DEFAULTS`: 50 steps, guidance 7.5, no fidelity controls) updated with the
        model's own, saved in `model_index.json` (`SSPIRPipeline(..., recommended_settings={...})`, or
        `pipe.register_to_config(recommended_settings=...)` before `save_pretrained`). The bundled model, whose
        text path is inert, recommends sampling without classifier-free guidance and with fewer steps.
        """
        return {**CALL_DEFAULTS, **(self.config.get("recommended_settings") or {})}

    # ------------------------------------------------------------------ building and loading

    @classmethod
    def from_stable_diffusion(
        cls,
        sd: "str | os.PathLike | DiffusionPipeline",
        image_encoder: "str | os.PathLike | CLIPVisionModel",
        feature_extractor: "str | os.PathLike | CLIPImageProcessor | None" = None,
        captioner: Captioner | None = None,
        branch_type: str = "transformer",
        image_embed_dim: int = 512,
        pixel_attention: bool = True,
        up_block_0_pixel_heads: int | None = None,
        dtype: torch.dtype | None = None,
        torch_dtype: torch.dtype | None = None,
        **overrides,
    ) -> "SSPIRPipeline":
        r"""
        Builds an **untrained** SSP-IR from Stable Diffusion: the start of every training run.

        Stable Diffusion's VAE, text encoder, tokenizer and UNet weights are reused (the UNet gains zero-initialised
        dual-prior branches of `branch_type`, so it still computes exactly what SD computes), the ControlNet is
        copied from the UNet, and the structure processor (one stride-2 stage per halving of the VAE, so its output
        lands on the latent grid) and refine layer are freshly initialised. The scheduler is a `DDIMScheduler`
        with Stable Diffusion's scheduler config.

        Args:
            sd (`str`, `os.PathLike` or `DiffusionPipeline`): a Stable Diffusion 1.5 folder or Hub id, or a loaded
                pipeline with `vae`, `text_encoder`, `tokenizer`, `unet` and `scheduler`.
            image_encoder (`str`, `os.PathLike` or `CLIPVisionModel`): CLIP vision encoder (ViT-L/14 in the paper).
            feature_extractor (`str`, `os.PathLike` or `CLIPImageProcessor`, *optional*): defaults to the processor
                saved with `image_encoder` when that is a path.
            captioner (`Captioner`, *optional*): the captioner to attach.
            branch_type (`str`, defaults to `"transformer"`): the paper's layout (`"transformer"`: a whole
                transformer per branch, ≈ 998 M trainable parameters at SD-1.5 size) or the light one
                (`"attention"`: one attention per branch, ≈ 443 M); see docs/architecture.md.
            image_embed_dim (`int`, defaults to 512): width of the refined image tokens.
            pixel_attention (`bool`, defaults to `True`): pixel branches in the UNet's up blocks.
            up_block_0_pixel_heads (`int`, *optional*): heads of the pixel transformers of SD-1.5's up block 0;
                `None` gives them the block's head count (8), the authors' code has 1.
            dtype (`torch.dtype`, *optional*): dtype to load the models in.
            torch_dtype (`torch.dtype`, *optional*): the older name of `dtype`, as in diffusers.
            **overrides: components to use as given instead (e.g. `scheduler=`, `structure_processor=`).

        Examples:
            ```py
            >>> pipe = SSPIRPipeline.from_stable_diffusion(
            ...     "stable-diffusion-v1-5/stable-diffusion-v1-5", image_encoder="openai/clip-vit-large-patch14"
            ... )
            ```
        """
        unknown = set(overrides) - set(cls._get_signature_keys(cls)[0])
        if unknown:
            raise TypeError(f"from_stable_diffusion() got unknown components {sorted(unknown)}.")
        dtype = dtype if dtype is not None else torch_dtype
        dtype_kwargs = {"dtype": dtype} if dtype is not None else {}
        if isinstance(sd, DiffusionPipeline):
            parts = {name: getattr(sd, name) for name in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")}
        else:  # what `overrides` replaces is not loaded (a converted checkpoint brings its own UNet)
            loaders = {
                "vae": lambda: AutoencoderKL.from_pretrained(sd, subfolder="vae", **dtype_kwargs),
                "text_encoder": lambda: CLIPTextModel.from_pretrained(sd, subfolder="text_encoder", **dtype_kwargs),
                "tokenizer": lambda: CLIPTokenizer.from_pretrained(sd, subfolder="tokenizer"),
                "unet": lambda: UNet2DConditionModel.from_pretrained(sd, subfolder="unet", **dtype_kwargs),
                "scheduler": lambda: DDIMScheduler.from_pretrained(sd, subfolder="scheduler"),
            }
            parts = {name: load() for name, load in loaders.items() if name not in overrides or name == "scheduler"}
        components = {**parts, "scheduler": DDIMScheduler.from_config(parts["scheduler"].config)}

        sd_unet = components.pop("unet", None)
        if "unet" not in overrides:
            components["unet"] = SSPIRUNet2DConditionModel.from_stable_diffusion_unet(
                sd_unet,
                branch_type=branch_type,
                image_embed_dim=image_embed_dim,
                pixel_attention=pixel_attention,
                up_block_0_pixel_heads=up_block_0_pixel_heads,
            )
        unet = overrides.get("unet", components.get("unet"))

        if isinstance(image_encoder, (str, os.PathLike)):
            if feature_extractor is None:
                feature_extractor = image_encoder
            image_encoder = CLIPVisionModel.from_pretrained(image_encoder, **dtype_kwargs)
        if isinstance(feature_extractor, (str, os.PathLike)):
            feature_extractor = CLIPImageProcessor.from_pretrained(feature_extractor)
        if feature_extractor is None:
            raise ValueError(
                "`feature_extractor` is required when `image_encoder` is a loaded model: pass the CLIPImageProcessor "
                "saved with it."
            )

        if "controlnet" not in overrides:
            components["controlnet"] = SSPIRControlNetModel.from_unet(unet)
        if "structure_processor" not in overrides:
            # One stride-2 stage per halving of the VAE, so the structure prior lands on the latent grid.
            stages = len(overrides.get("vae", components["vae"]).config.block_out_channels) - 1
            if not 1 <= stages < len(STRUCTURE_PROCESSOR_WIDTHS):
                raise ValueError(
                    f"The VAE downsamples {2**stages}x; the structure processor built here supports 2x to "
                    f"{2 ** (len(STRUCTURE_PROCESSOR_WIDTHS) - 1)}x. Pass `structure_processor=` to build your own."
                )
            components["structure_processor"] = place_like(
                StructureProcessor(
                    block_out_channels=STRUCTURE_PROCESSOR_WIDTHS[: stages + 1],
                    conditioning_embedding_channels=unet.config.block_out_channels[0],
                ),
                unet,
            )
        if "image_refiner" not in overrides:
            refiner = ImageTokenRefiner(
                in_dim=image_encoder.config.hidden_size,
                hidden_dim=image_encoder.config.hidden_size,
                out_dim=unet.config.image_embed_dim,
            )
            components["image_refiner"] = place_like(refiner, unet)
        components.update(image_encoder=image_encoder, feature_extractor=feature_extractor, captioner=captioner)
        components.update(overrides)
        return cls(**components)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: "str | os.PathLike", **kwargs) -> "SSPIRPipeline":
        r"""
        Loads a saved SSP-IR pipeline (folder or Hub id), as [`~diffusers.DiffusionPipeline.from_pretrained`] does,
        with a clear error when a local folder lacks a component.

        A folder saved with a captioner recreates it from its record (`captioner/config.json`); a vision-language
        model then loads when the first caption is needed, so loading stays fast and works without the model until
        then. `captioner=` overrides the record: any captioner, or `None` for none.

        Weights are read from safetensors only (`use_safetensors=True` unless given): a component whose weights are
        pickles (`.bin`, `.pt`, `.ckpt`) is refused, since unpickling can run code. Pass `use_safetensors=False` to
        load such a folder you trust (its pickles where a component has no safetensors, read by torch's weights-only
        unpickler), then `save_pretrained` it once to write safetensors.
        """
        folder = os.fspath(pretrained_model_name_or_path)
        safetensors_only = kwargs.get("use_safetensors") is not False
        # diffusers' None: safetensors where a component has them, its pickle otherwise (False would mean pickles only)
        kwargs["use_safetensors"] = True if safetensors_only else None
        if os.path.isdir(folder):
            cls._check_folder(folder, passed=set(kwargs), safetensors_only=safetensors_only)
        if "captioner" not in kwargs:
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        # diffusers checks a passed component against the class the folder names; any callable may caption here
        captioner = kwargs.pop("captioner")
        pipe = super().from_pretrained(pretrained_model_name_or_path, captioner=None, **kwargs)
        if captioner is not None:
            pipe.captioner = captioner
        return pipe

    @classmethod
    def _check_folder(cls, folder: str, passed: set[str], safetensors_only: bool = True) -> None:
        index_file = os.path.join(folder, "model_index.json")
        if not os.path.isfile(index_file):
            raise OSError(f"{folder} is not a saved pipeline: it has no model_index.json.")
        expected, _ = cls._get_signature_keys(cls)
        with open(index_file, encoding="utf-8") as file:
            index = json.load(file)
        saved_as_none = {name for name, entry in index.items() if isinstance(entry, list) and entry[0] is None}
        # An optional component that the folder's index does not name (a folder saved before it existed) is None.
        unnamed_optional = set(cls._optional_components) - set(index)
        sizes = {}
        for name in sorted(set(expected) - passed - saved_as_none - unnamed_optional):
            subfolder = os.path.join(folder, name)
            if not os.path.isdir(subfolder) or not os.listdir(subfolder):
                raise OSError(
                    f"The pipeline folder {folder} is missing the component `{name}` (no folder {subfolder}). Save "
                    f"the pipeline again with `save_pretrained`, or pass `{name}=` to `from_pretrained`."
                )
            entry = index.get(name)
            if isinstance(entry, list) and len(entry) == 2 and all(isinstance(part, str) for part in entry):
                _check_config_types(name, subfolder, *entry)
                size = _config_size(name, subfolder, entry[1])
                if size is not None:
                    sizes[name] = size
            files = os.listdir(subfolder)
            pickles = sorted(f for f in files if f.endswith(PICKLE_WEIGHT_SUFFIXES))
            if safetensors_only and pickles and not any(f.endswith(".safetensors") for f in files):
                raise OSError(
                    f"The component `{name}` of {folder} has only pickle weights ({', '.join(pickles)}), which are "
                    "not loaded: unpickling can run code. Pass `use_safetensors=False` to load a folder you trust, "
                    "then `save_pretrained` it to write safetensors."
                )
        _check_sizes(folder, sizes)

    def save_pretrained(
        self, save_directory: "str | os.PathLike", save_captioner_model: bool = False, **kwargs
    ) -> None:
        r"""
        Saves every component as [`~diffusers.DiffusionPipeline.save_pretrained`] does, plus a `pipeline_sspir.py`
        stub so that `DiffusionPipeline.from_pretrained(folder, custom_pipeline="pipeline_sspir",
        trust_remote_code=True)` also loads the folder.

        The captioner is saved **by reference**: `captioner/config.json` records its class and settings (for a
        [`VLMCaptioner`]: the model's folder or Hub id, processor, prompt, generation settings and dtype), not the
        vision-language model's weights, unless `save_captioner_model`. A captioner that is not a
        [`~diffusers_sspir.captioners.CaptionerMixin`] (a function, your own class) is not saved, with a warning.

        Args:
            save_directory (`str` or `os.PathLike`): the folder.
            save_captioner_model (`bool`, defaults to `False`): also copy a [`VLMCaptioner`]'s model and processor
                into `captioner/model`, so that the folder needs nothing else.
            **kwargs: as for [`~diffusers.DiffusionPipeline.save_pretrained`] (`safe_serialization`, `variant`,
                `push_to_hub`, ...).
        """
        captioner = self.captioner
        if save_captioner_model and not hasattr(captioner, "saving_model"):
            raise ValueError(
                "`save_captioner_model=True` copies a vision-language captioner's model, but the pipeline's captioner "
                f"is {type(captioner).__name__ if captioner is not None else None}."
            )
        unsaved = captioner is not None and not isinstance(captioner, CaptionerMixin)
        if unsaved:
            logger.warning(
                f"The captioner {type(captioner).__name__} is not saved: only captioners built on CaptionerMixin "
                "(VLMCaptioner, FixedCaptioner) are. Pass it again with `from_pretrained(..., captioner=...)`."
            )
        os.makedirs(save_directory, exist_ok=True)  # the stub goes first, so that `push_to_hub=True` uploads it
        with open(os.path.join(save_directory, "pipeline_sspir.py"), "w", encoding="utf-8") as stub:
            stub.write(CUSTOM_PIPELINE_STUB)
        entry = self.config.get("captioner")
        saving = captioner.saving_model() if save_captioner_model else contextlib.nullcontext()
        if unsaved:  # diffusers would warn and forget the entry for good; the folder says "no captioner"
            self.register_to_config(captioner=(None, None))
        try:
            with saving:
                super().save_pretrained(save_directory, **kwargs)
        finally:
            if unsaved:
                self.register_to_config(captioner=entry)

    def load_lora_weights(self, pretrained_model_name_or_path_or_dict, adapter_name=None, **kwargs) -> None:
        r"""
        Loads LoRA weights into the UNet and text encoder, as diffusers'
        [`~diffusers.loaders.StableDiffusionLoraLoaderMixin.load_lora_weights`] does, and refuses a training
        checkpoint (`checkpoint-<step>/` or its `trainable.safetensors`), which is not a LoRA file: export it first
        with `python -m diffusers_sspir.training.export CHECKPOINT --output OUT`.
        """
        from ..checkpoint_format import is_training_checkpoint_file

        source = pretrained_model_name_or_path_or_dict
        if isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            if os.path.isdir(path):
                path = os.path.join(path, kwargs.get("weight_name") or "trainable.safetensors")
            if os.path.isfile(path) and is_training_checkpoint_file(path):
                raise ValueError(
                    f"{source} is a training checkpoint, not a LoRA file: export it with `python -m "
                    f"diffusers_sspir.training.export {os.path.dirname(path) or '.'} --output OUT` and load OUT."
                )
        # diffusers warns on every load of a LoRA that has no text-encoder part (most SSP-IR LoRA): say nothing.
        with muted_log_messages("diffusers.loaders.lora_base", "No LoRA keys associated to CLIPTextModel"):
            super().load_lora_weights(pretrained_model_name_or_path_or_dict, adapter_name=adapter_name, **kwargs)

    # ------------------------------------------------------------------ speed

    def fuse_qkv_projections(self, unet: bool = True, vae: bool = True, controlnet: bool = True) -> None:
        r"""
        Fuses the query, key and value projections (key and value in cross-attention) into one matrix product, in
        Stable Diffusion's layers and in the dual-prior branches. Unlike diffusers' pipelines, the ControlNet is fused
        too. The output is the same up to rounding. Call it before [`~SSPIRPipeline.compile`].

        Args:
            unet (`bool`, defaults to `True`): fuse the UNet's projections.
            vae (`bool`, defaults to `True`): fuse the VAE's projections.
            controlnet (`bool`, defaults to `True`): fuse the ControlNet's projections.
        """
        super().fuse_qkv_projections(unet=unet, vae=vae)
        if controlnet:
            self.fusing_controlnet = True
            self.controlnet.fuse_qkv_projections()

    def unfuse_qkv_projections(self, unet: bool = True, vae: bool = True, controlnet: bool = True) -> None:
        r"""Undoes [`~SSPIRPipeline.fuse_qkv_projections`] for the models named."""
        super().unfuse_qkv_projections(unet=unet, vae=vae)
        if controlnet and getattr(self, "fusing_controlnet", False):
            self.controlnet.unfuse_qkv_projections()
            self.fusing_controlnet = False

    def enable_channels_last(self) -> None:
        r"""
        Stores the weights of the UNet and the ControlNet, the models run at every step, in channels-last memory
        format, which convolution kernels on recent GPUs prefer; activations follow. Same output up to rounding.
        """
        for model in (self.unet, self.controlnet):
            model.to(memory_format=torch.channels_last)

    def disable_channels_last(self) -> None:
        r"""Returns the UNet and the ControlNet to the default (contiguous) memory format."""
        for model in (self.unet, self.controlnet):
            model.to(memory_format=torch.contiguous_format)

    def compile(self, **compile_kwargs) -> None:
        r"""
        Compiles the UNet and the ControlNet, the two models run at every denoising step, with `torch.compile`.

        The models are compiled in place (`torch.nn.Module.compile`), so `pipe.unet` and `pipe.controlnet` stay the
        same objects: saving, LoRA and attention switches keep working, but a switch made after compiling compiles
        again, so switch first. Each model compiles to a single graph (`fullgraph=True` works) that is reused at
        every step and every call; a new image or tile size, batch size, dtype or `conditioning_scale` compiles
        again (pass `dynamic=False` to keep every size static). The first call after compiling is slow. With CUDA
        graphs (`mode="reduce-overhead"`) each ControlNet + UNet evaluation is marked as one graph step. See
        `docs/performance.md` for measurements.

        Compiling only the repeated transformer blocks (`compile_repeated_blocks`) is not offered: the dual-prior
        blocks differ from layer to layer (pixel branch, its residual index), so they exceed dynamo's recompilation
        limit and run uncompiled.

        Args:
            **compile_kwargs: passed to `torch.compile`, e.g. `fullgraph=True`, `mode="reduce-overhead"` (CUDA
                graphs), `mode="max-autotune-no-cudagraphs"`, `backend="cudagraphs"`, `dynamic=False`.

        Examples:
            ```py
            >>> pipe.fuse_qkv_projections()
            >>> pipe.compile(mode="reduce-overhead", fullgraph=True)
            ```
        """
        for model in (self.unet, self.controlnet):
            model.compile(**compile_kwargs)

    # ------------------------------------------------------------------ properties

    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        return self._guidance_scale > 1.0

    @property
    def cross_attention_kwargs(self) -> dict[str, Any] | None:
        return self._cross_attention_kwargs

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    # ------------------------------------------------------------------ steps

    def check_inputs(
        self,
        images: list[torch.Tensor],
        prompt: str | list[str] | None,
        negative_prompt: str | list[str] | None,
        prompt_embeds: torch.Tensor | None,
        negative_prompt_embeds: torch.Tensor | None,
        upscale: float,
        num_inference_steps: int,
        num_images_per_prompt: int,
        guidance_scale: float,
        conditioning_scale: float,
        start_point: str,
        color_fix: str | None,
        tile_size: int | None,
        tile_overlap: int | None,
        output_type: str,
        generator: torch.Generator | list[torch.Generator] | None,
        callback_on_step_end_tensor_inputs: list[str] | None,
        eta: float = 0.0,
        strength: float = 1.0,
        restoration_guidance_scale: float = 0.0,
        restoration_guidance_decay: float = 4.0,
        color_fix_levels: int = 5,
    ) -> None:
        scheduler = type(self.scheduler).__name__
        if scheduler in UNSUPPORTED_SCHEDULERS:
            raise ValueError(
                f"{scheduler} cannot run SSP-IR: it is {UNSUPPORTED_SCHEDULERS[scheduler]}. Use a Stable Diffusion "
                "scheduler, e.g. `pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)`."
            )
        batch_size = len(images)
        sizes = {tuple(image.shape[-2:]) for image in images}
        if len(sizes) > 1:
            raise ValueError(
                f"All images of one call must have the same size, got sizes {sorted(sizes)}; restore images of "
                "different sizes in separate calls."
            )
        for name, value in (("upscale", upscale), ("guidance_scale", guidance_scale), ("eta", eta),
                            ("conditioning_scale", conditioning_scale), ("strength", strength),
                            ("restoration_guidance_scale", restoration_guidance_scale),
                            ("restoration_guidance_decay", restoration_guidance_decay)):  # fmt: skip
            check_setting(name, value)
        if strength < 1 and start_point != "lr":
            raise ValueError(
                f"`strength`={strength} needs `start_point='lr'` (it starts from the noised upscaled input part of "
                f"the way through the schedule), got start_point={start_point!r}."
            )
        if restoration_guidance_scale > 0 and getattr(self.scheduler, "alphas_cumprod", None) is None:
            raise ValueError(
                f"`restoration_guidance_scale` needs a scheduler with a discrete noise schedule (`alphas_cumprod`); "
                f"{scheduler} has none."
            )
        height, width = next(iter(sizes))
        if round(height * upscale) < 1 or round(width * upscale) < 1:
            raise ValueError(f"`upscale`={upscale} turns the {height}x{width} input into an empty image.")
        check_integer("num_inference_steps", num_inference_steps, minimum=1)
        if int(num_inference_steps * strength) < 1:
            raise ValueError(
                f"`strength`={strength} of {num_inference_steps} steps runs no step (int(steps x strength) = 0); "
                "raise `strength` or `num_inference_steps`."
            )
        check_integer("num_images_per_prompt", num_images_per_prompt, minimum=1)
        if start_point not in START_POINTS:
            raise ValueError(f"`start_point` must be one of {START_POINTS}, got {start_point!r}.")
        if color_fix not in COLOR_FIX_METHODS:
            raise ValueError(f"`color_fix` must be one of {COLOR_FIX_METHODS}, got {color_fix!r}.")
        check_call_setting("color_fix_levels", color_fix_levels)
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"`output_type` must be one of {OUTPUT_TYPES}, got {output_type!r}.")
        check_tiling(tile_size, tile_overlap, self.vae_scale_factor)
        for name, value in (("prompt", prompt), ("negative_prompt", negative_prompt)):
            if value is not None and not isinstance(value, str):
                if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
                    raise TypeError(f"`{name}` must be a string or a list of strings, got {type(value).__name__}.")
                if len(value) != batch_size:
                    raise ValueError(
                        f"`{name}` has {len(value)} entries but {batch_size} images were given; pass one per image "
                        "or a single string."
                    )
        if prompt is not None and prompt_embeds is not None:
            raise ValueError("Pass either `prompt` or `prompt_embeds`, not both.")
        if negative_prompt_embeds is not None and prompt_embeds is None:
            raise ValueError("`negative_prompt_embeds` needs `prompt_embeds` as well.")
        needs_text = prompt_embeds is None or (guidance_scale > 1 and negative_prompt_embeds is None)
        missing = [name for name in ("text_encoder", "tokenizer") if getattr(self, name, None) is None]
        if needs_text and missing:
            raise ValueError(
                f"This pipeline has no {' and no '.join(missing)} (loaded with {missing[0]}=None), so it cannot "
                "encode prompts: pass `prompt_embeds`, and `negative_prompt_embeds` too when `guidance_scale` > 1, or "
                f"load the pipeline with its {' and '.join(missing)}."
            )
        width = self.unet.config.cross_attention_dim
        window = self._window_tokens
        lengths = [self._tokens_in(n) for n in range(1, MAX_PROMPT_WINDOWS + 1)]
        for name, embeds in (("prompt_embeds", prompt_embeds), ("negative_prompt_embeds", negative_prompt_embeds)):
            if embeds is None:
                continue
            if embeds.ndim != 3 or embeds.shape[0] not in (1, batch_size) or embeds.shape[2] != width:
                raise ValueError(
                    f"`{name}` must have shape (batch, tokens, {width}) with batch 1 or {batch_size}, got "
                    f"{tuple(embeds.shape)}."
                )
            if embeds.shape[1] not in lengths:
                raise ValueError(
                    f"`{name}` has {embeds.shape[1]} tokens; `encode_prompt` gives one of {lengths} (1 to "
                    f"{MAX_PROMPT_WINDOWS} windows of {window} tokens)."
                )
        if prompt_embeds is not None and negative_prompt_embeds is not None:
            if prompt_embeds.shape[1:] != negative_prompt_embeds.shape[1:]:
                raise ValueError(
                    f"`prompt_embeds` {tuple(prompt_embeds.shape)} and `negative_prompt_embeds` "
                    f"{tuple(negative_prompt_embeds.shape)} must have the same tokens and width."
                )
        if isinstance(generator, list) and len(generator) != batch_size * num_images_per_prompt:
            raise ValueError(
                f"`generator` is a list of {len(generator)} generators, but {batch_size} images x "
                f"{num_images_per_prompt} images per prompt = {batch_size * num_images_per_prompt} outputs are "
                "requested; pass one generator per output or a single generator."
            )
        unknown = set(callback_on_step_end_tensor_inputs or []) - set(self._callback_tensor_inputs)
        if unknown:
            raise ValueError(
                f"`callback_on_step_end_tensor_inputs` has {sorted(unknown)}, but only {self._callback_tensor_inputs} "
                "are available."
            )

    def estimate_peak_memory(
        self,
        batch_size: int,
        height: int,
        width: int,
        tile_size: int | None = None,
        classifier_free_guidance: bool = True,
        encode_image: bool = True,
    ) -> int:
        r"""
        Bytes a restoration needs beyond the weights, by its most demanding stage: the structure processor and the
        VAE at the output resolution (per tile with tiling: the structure processor's tile and the VAE's own tile),
        the UNet and ControlNet at the latent resolution, plus the full-size images kept throughout. An estimate
        (within a factor of about 2 of the measured peak on the CPU, see docs/performance.md), used to refuse a
        request that cannot fit before anything is allocated.

        Args:
            batch_size (`int`): output images (inputs × `num_images_per_prompt`).
            height, width (`int`): the output size.
            tile_size (`int`, *optional*): as in `__call__`.
            classifier_free_guidance (`bool`, defaults to `True`): whether the models see each image twice
                (`guidance_scale > 1`).
            encode_image (`bool`, defaults to `True`): whether the VAE encodes the image (`start_point="lr"`).
        """
        factor = self.vae_scale_factor
        padded = (-(-height // factor) * factor) * (-(-width // factor) * factor)
        tiled = tile_size is not None and max(height, width) > tile_size

        def nbytes(module: torch.nn.Module) -> int:
            return 4 if getattr(getattr(module, "config", None), "force_upcast", False) else module.dtype.itemsize

        # Live activations per pixel, in channels, measured on the CPU (benchmarks/bench_memory.py): the structure
        # processor holds ~4 tensors of its first width; the VAE encoder ~5 of its first width; the decoder ~4 of
        # its second width (the last upsampler's output) and ~3 of its first; the wavelet colour fix ~20 copies of
        # the RGB image.
        structure_widths = self.structure_processor.config.block_out_channels
        structure_halo = 2 * -(-self.structure_processor.receptive_field // factor) * factor
        structure_pixels = min(padded, (tile_size + structure_halo) ** 2) if tiled else padded
        # A full-resolution restorer holds about three of its feature maps (a block's input, middle and output).
        processor_config = self.structure_processor.config
        restorer = 3 * processor_config.get("residual_channels", 0) if processor_config.get("residual_blocks") else 0
        structure_channels = max(4 * structure_widths[0], restorer)
        structure = structure_channels * structure_pixels * nbytes(self.structure_processor) * batch_size
        vae_widths = self.vae.config.block_out_channels
        vae_pixels = min(padded, self.vae.tile_sample_min_size**2) if tiled or self.vae.use_tiling else padded
        decoder = (4 * vae_widths[min(1, len(vae_widths) - 1)] + 3 * vae_widths[0]) * vae_pixels
        encoder = 5 * vae_widths[0] * vae_pixels if encode_image else 0
        vae = max(decoder, encoder) * nbytes(self.vae) * batch_size
        color_pixels = min(padded, (tile_size + 2 * 31) ** 2) if tiled else padded
        color_fix = 20 * 3 * color_pixels * 4 * batch_size
        latent_pixels = min(padded, tile_size**2) // factor**2 if tiled else padded // factor**2
        unet_config = self.unet.config
        skips = sum(
            channels * (latent_pixels // 4**level) * (unet_config.layers_per_block + 1)
            for level, channels in enumerate(unet_config.block_out_channels)
        )
        unet_batch = batch_size * (2 if classifier_free_guidance else 1)
        unet = (2 * skips + 4 * unet_config.block_out_channels[0] * latent_pixels) * nbytes(self.unet) * unet_batch
        # A stage-1 upscaler (RRDBNet) holds about three feature maps of its width at the output size (the last
        # upsampling and the convolutions after it), per tile with tiling.
        upscaler = 0
        if self.upscaler is not None:
            upscaler_pixels = (
                min(height * width, (tile_size + 2 * UPSCALER_TILE_HALO * 4) ** 2) if tiled else height * width
            )
            width_of = self.upscaler.config.get("num_features", 64)
            upscaler = 3 * width_of * upscaler_pixels * nbytes(self.upscaler) * batch_size
        # The full-size images kept throughout: input upscaled and padded, restoration, structure image, outputs.
        images = 8 * 3 * height * width * 4 * batch_size
        return images + max(structure, vae, color_fix, unet, upscaler)

    def check_memory(
        self, batch_size: int, height: int, width: int, tile_size: int | None, encode_image: bool
    ) -> None:
        """Refuses a restoration whose estimated peak memory ([`estimate_peak_memory`]) exceeds what the execution
        device has available, before anything is allocated; `SSPIR_SKIP_MEMORY_CHECK=1` skips the check."""
        if memory_check_skipped():
            return
        available = available_memory(self._execution_device)
        if available is None:
            return
        needed = self.estimate_peak_memory(
            batch_size, height, width, tile_size, self.do_classifier_free_guidance, encode_image
        )
        if needed <= available:
            return
        advice = (
            "pass a smaller `tile_size` (`--tile-size` on the command line)"
            if tile_size is not None
            else "pass `tile_size=512` (`--tile-size 512` on the command line) to restore it in tiles"
        )
        raise MemoryError(
            f"Restoring {batch_size} image(s) of {width}x{height} needs about {format_bytes(needed)} but the "
            f"{self._execution_device.type} device has {format_bytes(available)} available: {advice}, or restore "
            f"fewer images per call. (Set SSPIR_SKIP_MEMORY_CHECK=1 to try anyway.)"
        )

    def caption(
        self, images: list[torch.Tensor], generator: torch.Generator | list[torch.Generator] | None = None
    ) -> list[str]:
        """Describes each image with the pipeline's captioner (empty captions without one). A captioner whose call
        takes `generator_seed` (such as [`VLMCaptioner`], which samples by default) gets a seed drawn from
        `generator`, so that a generator makes the whole call reproducible."""
        if self.captioner is None:
            return [""] * len(images)
        pil_images = [self.image_processor.numpy_to_pil(self.image_processor.pt_to_numpy(i[None]))[0] for i in images]
        kwargs = {}
        if generator is not None and accepts_generator_seed(self.captioner):
            kwargs["generator_seed"] = draw_seed(generator)
        captions = self.captioner(pil_images, **kwargs)
        if (
            not isinstance(captions, list)
            or len(captions) != len(images)
            or not all(isinstance(c, str) for c in captions)
        ):
            raise ValueError(
                f"The captioner {type(self.captioner).__name__} must return one string per image; got {captions!r} "
                f"for {len(images)} images."
            )
        return captions

    @torch.no_grad()
    def describe(
        self,
        image: PipelineImageInput,
        prompt: str | list[str] | None = None,
        added_prompt: str | None = DEFAULT_ADDED_PROMPT,
        upscale: float = 4,
        generator: torch.Generator | list[torch.Generator] | None = None,
    ) -> list[str]:
        r"""
        The prompts a call with the same arguments encodes, without restoring anything: the captioner's description
        of each upscaled image (or `prompt`), joined with `added_prompt`. To review or edit the semantic prior before
        a restoration: pass the (edited) text back as `prompt` with `added_prompt=None`.

        Args:
            image, prompt, added_prompt, upscale, generator: as in `__call__` (a fresh generator seeded alike gives
                the caption that call makes).

        Returns:
            `list[str]`: one prompt per image.
        """
        images = to_tensor_batch(image, argument_name="image")
        check_setting("upscale", upscale)
        if self.tokenizer is None:
            raise ValueError("This pipeline has no tokenizer, so it cannot tell which prompt it would encode.")
        if prompt is not None and not isinstance(prompt, str) and len(prompt) != len(images):
            raise ValueError(f"`prompt` has {len(prompt)} entries but {len(images)} images were given.")
        captions = [prompt] * len(images) if isinstance(prompt, str) else prompt
        if captions is None:
            height, width = (round(s * upscale) for s in images[0].shape[-2:])
            upscaled = self.upscale(torch.stack(images).to(self._execution_device), (height, width))
            captions = self.caption(list(upscaled), generator=generator)
        return [self.join_prompt(caption, added_prompt) for caption in captions]

    @property
    def _window_tokens(self) -> int:
        """Text tokens per prompt window: the tokenizer's length less BOS/EOS (CLIP's 75 without a tokenizer)."""
        return self.tokenizer.model_max_length - 2 if self.tokenizer is not None else 75

    def _token_ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False, truncation=False, verbose=False).input_ids

    def join_prompt(self, caption: str, added_prompt: str | None) -> str:
        """`caption, added_prompt` (skipping empty parts), with the caption shortened at a token boundary when the
        whole would not fit the text windows, so that the added prompt is never the part that is cut. Returns the
        text that is actually encoded."""
        caption, added = caption.strip(), (added_prompt or "").strip()
        limit = MAX_PROMPT_WINDOWS * (self.tokenizer.model_max_length - 2)
        budget = limit - (len(self._token_ids(f", {added}")) if added else 0)
        caption_ids = self._token_ids(caption)
        if len(caption_ids) > budget:
            logger.warning(
                f"The caption has {len(caption_ids)} tokens; it is cut to {max(budget, 0)} so that it fits the "
                f"{MAX_PROMPT_WINDOWS} text windows of {limit // MAX_PROMPT_WINDOWS} tokens together with the added "
                "prompt."
            )
            caption = self.tokenizer.decode(caption_ids[: max(budget, 0)]).strip()
        return ", ".join(part for part in (caption, added) if part)

    def _tokenize_windows(self, prompt: str) -> list[list[int]]:
        """Splits a prompt into windows of `model_max_length - 2` tokens, each wrapped in BOS/EOS and padded."""
        tokenizer = self.tokenizer
        window = tokenizer.model_max_length - 2
        ids = self._token_ids(prompt)
        chunks = [ids[i : i + window] for i in range(0, len(ids), window)] or [[]]
        if len(chunks) > MAX_PROMPT_WINDOWS:
            logger.warning(
                f"The prompt has {len(ids)} tokens; only the first {MAX_PROMPT_WINDOWS * window} are used "
                f"({MAX_PROMPT_WINDOWS} windows of {window})."
            )
            chunks = chunks[:MAX_PROMPT_WINDOWS]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        return [
            [tokenizer.bos_token_id, *chunk, tokenizer.eos_token_id] + [pad] * (window - len(chunk))
            for chunk in chunks
        ]

    def _encode_windows(
        self, prompts: list[str], device: torch.device, num_windows: int | None = None, clip_skip: int | None = None
    ) -> torch.Tensor:
        """The text encoder on the prompts as given, in windows (see [`encode_prompt`]), in one pass:
        `(len(prompts), 2 + 75 * windows, hidden_size)`, every prompt padded to the same number of windows (at least
        `num_windows`) with empty ones."""
        windows = [self._tokenize_windows(p) for p in prompts]
        count = max([len(w) for w in windows] + [num_windows or 1])
        empty = self._tokenize_windows("")[0]
        ids = torch.tensor([w + [empty] * (count - len(w)) for w in windows], device=device)
        if clip_skip is None:
            embeds = self.text_encoder(ids.flatten(0, 1))[0]
        else:  # as diffusers' Stable Diffusion pipelines: an earlier layer, through the final layer norm
            hidden = self.text_encoder(ids.flatten(0, 1), output_hidden_states=True).hidden_states[-(clip_skip + 1)]
            text_model = getattr(self.text_encoder, "text_model", self.text_encoder)  # transformers 5 flattened it
            embeds = text_model.final_layer_norm(hidden)
        embeds = embeds.unflatten(0, (len(prompts), count))
        if count == 1:
            return embeds[:, 0]
        first, middle, last = embeds[:, 0, :-1], embeds[:, 1:-1, 1:-1].flatten(1, 2), embeds[:, -1, 1:]
        return torch.cat([first, middle, last], dim=1)

    def encode_prompt(
        self,
        prompt: str | list[str] | None,
        device: torch.device | str,
        num_images_per_prompt: int = 1,
        do_classifier_free_guidance: bool = False,
        negative_prompt: str | list[str] | None = DEFAULT_NEGATIVE_PROMPT,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        lora_scale: float | None = None,
        clip_skip: int | None = None,
        *,
        added_prompt: str | None = DEFAULT_ADDED_PROMPT,
        num_windows: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        r"""
        Encodes prompts with the CLIP text encoder, as diffusers' Stable Diffusion pipelines do (same arguments, same
        returns), with the paper's long prompts: a prompt is split into up to 4 windows of 75 tokens, each wrapped in
        BOS/EOS and encoded separately; the windows are concatenated without the BOS/EOS between them, giving 77,
        152, 227 or 302 tokens. Every prompt of the call (and every negative prompt) gets as many windows as the
        longest needs, or `num_windows`; the text is what `__call__` encodes for the same arguments (each prompt
        joined with `added_prompt`), so the embeddings can be passed back as `prompt_embeds` and
        `negative_prompt_embeds`. (`__call__` itself encodes each image's prompt with the windows it needs alone,
        see [`encode_prompts_alone`].)

        Args:
            prompt (`str` or `list[str]`, *optional*): the prompt(s); not used with `prompt_embeds`.
            device (`torch.device`): where to put the embeddings.
            num_images_per_prompt (`int`, defaults to 1): copies of each prompt's embeddings, one after another.
            do_classifier_free_guidance (`bool`, defaults to `False`): also return negative embeddings.
            negative_prompt (`str` or `list[str]`, *optional*, defaults to `"dotted, noise, blur, lowres, smooth"`):
                one for all prompts or one per prompt; `None` is the empty prompt. Not used with
                `negative_prompt_embeds`.
            prompt_embeds (`torch.Tensor`, *optional*): embeddings to return instead of encoding `prompt` (their
                window count is then the negative prompt's).
            negative_prompt_embeds (`torch.Tensor`, *optional*): embeddings to return instead of encoding
                `negative_prompt`.
            lora_scale (`float`, *optional*): scale of the text encoder's LoRA layers while encoding.
            clip_skip (`int`, *optional*): layers to skip from the end of the text encoder (its output then goes
                through the final layer norm, as in diffusers); SSP-IR is trained on the last layer.
            added_prompt (`str`, *optional*, defaults to `"clean, high-resolution, 8k"`): appended to every prompt,
                as `__call__` does; `None` or `""` encodes the prompts as given.
            num_windows (`int`, *optional*): at least this many windows for every prompt.

        Returns:
            `tuple`: the prompt embeddings `(len(prompt) * num_images_per_prompt, 2 + 75 * windows, hidden_size)`
            and the negative ones of the same shape (`None` without classifier-free guidance).
        """
        device = torch.device(device)
        if clip_skip is not None:
            check_integer("clip_skip", clip_skip, minimum=0)
        check_integer("num_images_per_prompt", num_images_per_prompt, minimum=1)
        if prompt_embeds is None:
            if prompt is None:
                raise ValueError("Pass `prompt` or `prompt_embeds` to `encode_prompt`.")
            prompts = [prompt] if isinstance(prompt, str) else list(prompt)
            prompts = [self.join_prompt(p, added_prompt) for p in prompts]
        batch_size = len(prompts) if prompt_embeds is None else prompt_embeds.shape[0]
        encode_negatives = do_classifier_free_guidance and negative_prompt_embeds is None
        negatives = []
        if encode_negatives:
            negatives = negative_prompt if isinstance(negative_prompt, list) else [negative_prompt or ""] * batch_size
            if len(negatives) != batch_size:
                raise ValueError(
                    f"`negative_prompt` has {len(negatives)} entries for {batch_size} prompts: give one for all or "
                    "one per prompt."
                )
        with self.text_encoder_lora_scale(lora_scale):
            if prompt_embeds is None:  # negatives and prompts in one text-encoder pass
                embeds = self._encode_windows(negatives + prompts, device, num_windows, clip_skip)
                negative, prompt_embeds = embeds[: len(negatives)], embeds[len(negatives) :]
            elif encode_negatives:
                negative = self._encode_windows(negatives, device, self._windows_in(prompt_embeds), clip_skip)
        if encode_negatives:
            negative_prompt_embeds = negative
        if do_classifier_free_guidance and negative_prompt_embeds.shape[1:] != prompt_embeds.shape[1:]:
            raise ValueError(
                f"The negative prompt needs {negative_prompt_embeds.shape[1]} tokens but `prompt_embeds` has "
                f"{prompt_embeds.shape[1]}: shorten the negative prompt or pass `negative_prompt_embeds`."
            )
        prompt_embeds = prompt_embeds.to(device).repeat_interleave(num_images_per_prompt, dim=0)
        if not do_classifier_free_guidance:
            return prompt_embeds, None
        return prompt_embeds, negative_prompt_embeds.to(device).repeat_interleave(num_images_per_prompt, dim=0)

    def _tokens_in(self, windows: int) -> int:
        """Tokens of embeddings with `windows` text windows: 77, 152, 227 or 302 for CLIP."""
        return 2 + self._window_tokens * windows

    def _windows_in(self, prompt_embeds: torch.Tensor) -> int:
        return (prompt_embeds.shape[1] - 2) // self._window_tokens

    def _window_count(self, prompt: str) -> int:
        return max(1, min(MAX_PROMPT_WINDOWS, math.ceil(len(self._token_ids(prompt)) / self._window_tokens)))

    def encode_prompts_alone(
        self, prompts: list[str], negatives: list[str] | None, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        r"""
        Encodes each prompt (and its negative) exactly as a batch of one would: with the windows that prompt and its
        negative need, so a long caption never changes its neighbours. Rows of different lengths are right-padded
        with zeros to the longest and a mask marks the padding, which the text cross-attention then ignores.

        Args:
            prompts (`list[str]`): the prompts.
            negatives (`list[str]`, *optional*): one negative prompt per prompt (classifier-free guidance).
            device (`torch.device`): where to put the embeddings.

        Returns:
            `tuple`: prompt embeddings, negative embeddings (`None` without `negatives`), both `(batch, tokens,
            hidden)`, and the mask `(batch, tokens)` (1 = token, 0 = padding; `None` when no row is padded).
        """
        counts = [
            max(self._window_count(p), self._window_count(negatives[i]) if negatives else 1)
            for i, p in enumerate(prompts)
        ]
        tokens = self._tokens_in(max(counts))
        positive = negative = None
        for count in sorted(set(counts)):  # one text-encoder pass per window count
            rows = [i for i, c in enumerate(counts) if c == count]
            embeds, negative_embeds = self.encode_prompt(
                [prompts[i] for i in rows],
                device,
                do_classifier_free_guidance=bool(negatives),
                negative_prompt=[negatives[i] for i in rows] if negatives else None,
                added_prompt=None,
                num_windows=count,
            )
            if positive is None:
                positive = embeds.new_zeros(len(prompts), tokens, embeds.shape[-1])
                negative = torch.zeros_like(positive) if negatives else None
            index = torch.tensor(rows, device=device)
            positive[index] = F.pad(embeds, (0, 0, 0, tokens - embeds.shape[1]))
            if negatives:
                negative[index] = F.pad(negative_embeds, (0, 0, 0, tokens - embeds.shape[1]))
        mask = None
        if len(set(counts)) > 1:
            lengths = torch.tensor([self._tokens_in(c) for c in counts], device=device)
            mask = (torch.arange(tokens, device=device)[None] < lengths[:, None]).to(positive.dtype)
        return positive, negative, mask

    def prepare_prompt_embeds(
        self,
        images: torch.Tensor,
        prompt: str | list[str] | None,
        negative_prompt: str | list[str] | None,
        added_prompt: str | None,
        prompt_embeds: torch.Tensor | None,
        negative_prompt_embeds: torch.Tensor | None,
        device: torch.device,
        do_classifier_free_guidance: bool,
        lora_scale: float | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
    ) -> tuple[list[str], torch.Tensor, torch.Tensor | None]:
        r"""
        The explicit semantic prior: captions (from `prompt`, else the captioner) joined with `added_prompt`, and
        their text embeddings; negative embeddings with classifier-free guidance. Each image's embeddings are what
        it would get alone ([`encode_prompts_alone`]); positive and negative embeddings get the same tokens.

        Args:
            images (`torch.Tensor`): the upscaled images `(batch, 3, height, width)` in `[0, 1]`, for the captioner.
            prompt, negative_prompt, added_prompt, prompt_embeds, negative_prompt_embeds: as in `__call__`
                (`negative_prompt` is not used when `negative_prompt_embeds` is given).
            device (`torch.device`): where to put the embeddings.
            do_classifier_free_guidance (`bool`): also return negative embeddings.
            lora_scale (`float`, *optional*): scale of the text encoder's LoRA layers while encoding.
            generator (`torch.Generator`, *optional*): seeds a sampling captioner (see [`caption`]).

        Returns:
            `tuple`: the prompts used (one per image; empty strings with `prompt_embeds`), the prompt embeddings,
            the negative prompt embeddings (`None` without guidance), each with one row per image, and the text mask
            (`None` when no row is padded).
        """
        batch_size = images.shape[0]
        negatives = negative_prompt if isinstance(negative_prompt, list) else [negative_prompt or ""] * batch_size
        encode_negatives = do_classifier_free_guidance and negative_prompt_embeds is None
        text_mask = None
        with self.text_encoder_lora_scale(lora_scale):
            if prompt_embeds is None:
                captions = [prompt] * batch_size if isinstance(prompt, str) else prompt
                captions = captions or self.caption(list(images), generator=generator)
                prompts = [self.join_prompt(caption, added_prompt) for caption in captions]
                prompt_embeds, encoded_negatives, text_mask = self.encode_prompts_alone(
                    prompts, negatives if encode_negatives else None, device
                )
                if encode_negatives:
                    negative_prompt_embeds = encoded_negatives
            else:
                prompts = [""] * batch_size
                prompt_embeds = prompt_embeds.to(device).expand(batch_size, -1, -1)
                if negative_prompt_embeds is not None:
                    negative_prompt_embeds = negative_prompt_embeds.to(device).expand(batch_size, -1, -1)
                prompt_embeds, negative_prompt_embeds = self.encode_prompt(
                    None,
                    device,
                    do_classifier_free_guidance=do_classifier_free_guidance,
                    negative_prompt=negatives,
                    prompt_embeds=prompt_embeds,
                    negative_prompt_embeds=negative_prompt_embeds,
                )
        if not do_classifier_free_guidance:
            return prompts, prompt_embeds, None, text_mask
        negative_prompt_embeds = negative_prompt_embeds.to(device).expand(batch_size, -1, -1)
        return prompts, prompt_embeds, negative_prompt_embeds, text_mask

    @contextlib.contextmanager
    def text_encoder_lora_scale(self, scale: float | None):
        """Scales the text encoder's LoRA layers for the duration, as diffusers' Stable Diffusion pipelines do with
        `cross_attention_kwargs["scale"]`."""
        scaled = scale is not None and USE_PEFT_BACKEND and self.text_encoder is not None
        if scaled:
            scale_lora_layers(self.text_encoder, scale)
        try:
            yield
        finally:
            if scaled:
                unscale_lora_layers(self.text_encoder, scale)

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        r"""
        Implicit semantic prior: CLIP patch tokens of the (upscaled) low-quality image, without the class token,
        refined to the UNet's image tokens.

        Args:
            image (`torch.Tensor`): `(batch, 3, height, width)` in `[0, 1]`.
        """
        tokens = self.clip_image_tokens(image)
        return self.image_refiner(tokens.to(self.image_refiner.dtype))

    def clip_image_tokens(self, image: torch.Tensor) -> torch.Tensor:
        r"""
        The CLIP patch tokens (without the class token) of whole images, resized to the image encoder's input size
        and normalised as its feature extractor says; the input of the refine layer.

        Args:
            image (`torch.Tensor`): `(batch, 3, height, width)` in `[0, 1]`.
        """
        crop = self.feature_extractor.crop_size
        size = (crop, crop) if isinstance(crop, int) else (int(crop["height"]), int(crop["width"]))
        mean = torch.tensor(self.feature_extractor.image_mean, device=image.device).view(1, -1, 1, 1)
        std = torch.tensor(self.feature_extractor.image_std, device=image.device).view(1, -1, 1, 1)
        pixels = F.interpolate(image, size=size, mode="bicubic", align_corners=False, antialias=True)
        pixels = ((pixels.clamp(0, 1) - mean) / std).to(self.image_encoder.dtype)
        return self.image_encoder(pixel_values=pixels).last_hidden_state[:, 1:]

    def prepare_extra_step_kwargs(self, generator, eta: float) -> dict:
        parameters = set(inspect.signature(self.scheduler.step).parameters)
        kwargs = {}
        if "eta" in parameters:
            kwargs["eta"] = eta
        if "generator" in parameters:
            kwargs["generator"] = generator
        return kwargs

    def seed_scheduler_noise(self, generator) -> None:
        """Schedulers that draw their own noise (DPMSolverSDEScheduler's Brownian tree) get a seed from `generator`,
        unless their config fixes one, so that a generator makes every scheduler reproducible."""
        if not hasattr(self.scheduler, "noise_sampler_seed") or self.scheduler.config.get("noise_sampler_seed"):
            return
        self.scheduler.noise_sampler_seed = None if generator is None else draw_seed(generator)

    def get_timesteps(self, num_inference_steps: int, strength: float) -> tuple[torch.Tensor, int]:
        r"""
        The timesteps a call runs and their number of steps: the last `int(num_inference_steps * strength)` steps of
        the scheduler's schedule, as diffusers' img2img pipelines take them; the scheduler's begin index is set to
        the first of them (which also spares schedulers with a step index their device-side search for it).
        """
        run = min(int(num_inference_steps * strength), num_inference_steps)
        start = (num_inference_steps - run) * self.scheduler.order
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(start)
        return self.scheduler.timesteps[start:], run

    def upscale(self, low_quality: torch.Tensor, size: tuple[int, int], tile_size: int | None = None) -> torch.Tensor:
        r"""
        The low-quality images at the output `size`, as every prior (and the colour fix) reads them: the stage-1
        `upscaler`'s output when the pipeline has one, resized to `size` when its scale does not land there exactly
        (bicubic; antialiased when it shrinks); bicubic otherwise. Training calls it too, so that a model is trained
        on the images it is later given.

        Args:
            low_quality (`torch.Tensor`): `(batch, 3, h, w)` in `[0, 1]`.
            size (`tuple[int, int]`): the output height and width.
            tile_size (`int`, *optional*): with an upscaler, run it on tiles of this many output pixels when the
                output is larger, each reading `UPSCALER_TILE_HALO` input pixels around it (as Real-ESRGAN tiles):
                bounded memory, a result close to the untiled one.

        Returns:
            `torch.Tensor`: `(batch, 3, *size)` in `[0, 1]`, float32.
        """
        upscaler = self.upscaler
        if upscaler is None:
            return upscale_bicubic(low_quality.float(), size)
        scale = upscaler.config.scale
        multiple = getattr(upscaler, "input_multiple", 1)
        height, width = low_quality.shape[-2:]
        padded, _ = pad_to_multiple(low_quality, multiple)

        def run(crop: torch.Tensor) -> tuple[torch.Tensor]:
            # An upscaler's output folded back to its input's size, so that map_tiles can place it.
            restored = upscaler(crop.to(device=upscaler.device, dtype=upscaler.dtype))
            return (F.pixel_unshuffle(restored, scale) if scale > 1 else restored,)

        if tile_size is not None and max(size) > tile_size:
            in_tile = max(tile_size // scale // multiple, 1) * multiple
            halo = -(-UPSCALER_TILE_HALO // multiple) * multiple
            (folded,) = map_tiles(run, padded, in_tile, halo, (1,), multiple=multiple)
        else:
            (folded,) = run(padded)
        restored = F.pixel_shuffle(folded, scale) if scale > 1 else folded
        restored = restored[..., : height * scale, : width * scale].float().clamp_(0, 1).to(low_quality.device)
        if tuple(restored.shape[-2:]) == tuple(size):
            return restored
        shrinks = size[0] < restored.shape[-2] or size[1] < restored.shape[-1]
        return F.interpolate(restored, size=size, mode="bicubic", align_corners=False, antialias=shrinks).clamp(0, 1)

    def encode_structure_reference(
        self, structure: StructureProcessorOutput, size: tuple[int, int], num_images_per_prompt: int
    ) -> torch.Tensor:
        """The target of restoration guidance: the VAE latent (mode, scaled) of the structure processor's RGB image
        at the padded output size, one per output image."""
        rgb = F.interpolate(structure.rgb[0].float(), size=size, mode="bilinear", align_corners=False).clamp(0, 1)
        return self.encode_latents(rgb).to(self.unet.dtype).repeat_interleave(num_images_per_prompt, dim=0)

    def encode_latents(self, image: torch.Tensor) -> torch.Tensor:
        """The VAE latent (the posterior's mode, scaled by the VAE's `scaling_factor`) of `[0, 1]` images."""
        encoded = self.vae.encode(image.to(device=self._execution_device, dtype=self.vae.dtype) * 2 - 1)
        return encoded.latent_dist.mode() * self.vae.config.scaling_factor

    def guide_towards(
        self,
        noise_pred: torch.Tensor,
        latents: torch.Tensor,
        reference: torch.Tensor,
        timestep: torch.Tensor,
        scale: float,
        decay: float,
    ) -> torch.Tensor:
        r"""
        Restoration guidance (SUPIR's restoration-guided sampling) for one step: the model output, changed so that
        the clean latent it predicts, `x0`, becomes `x0 + w (reference - x0)`, with
        `w = scale * (sigma_t / sigma_max) ** decay` (`sigma = sqrt((1 - alpha_bar) / alpha_bar)`; `sigma_max` of the
        last training timestep). Works in the scheduler's own terms: variance-preserving schedulers (DDIM, DPM-Solver,
        UniPC, ...) read `alpha_bar` from `alphas_cumprod[t]`; schedulers whose latents carry sigma (Euler, Heun,
        LMS, ...) from `sigmas[step_index]`. Every prediction type (`epsilon`, `v_prediction`, `sample`).

        Args:
            noise_pred (`torch.Tensor`): the (guided) model output for `latents` at `timestep`.
            latents (`torch.Tensor`): the latents of this step, before the scheduler's input scaling.
            reference (`torch.Tensor`): the target clean latent, as [`encode_structure_reference`] gives it.
            timestep (`torch.Tensor`): the scheduler's timestep of this step (on the CPU).
            scale (`float`): the pull at `sigma_max`, in `[0, 1]`.
            decay (`float`): how fast the pull fades with the noise level.
        """
        scheduler = self.scheduler
        alphas_cumprod = scheduler.alphas_cumprod.to(torch.float64)
        sigma_max = ((1 - alphas_cumprod[-1]) / alphas_cumprod[-1]).sqrt()
        carries_sigma = float(scheduler.init_noise_sigma) > 1  # latents carry sigma: x = x0 + sigma * eps
        if carries_sigma:
            index = scheduler.step_index if scheduler.step_index is not None else 0
            sigma = scheduler.sigmas[index].to(torch.float64).cpu()
            alpha_bar = 1 / (1 + sigma**2)
        else:
            alpha_bar = alphas_cumprod[int(timestep)]
            sigma = ((1 - alpha_bar) / alpha_bar).sqrt()
        weight = min(float(scale * (sigma / sigma_max) ** decay), 1.0)
        a, b = float(alpha_bar.sqrt()), float((1 - alpha_bar).sqrt())
        dtype = noise_pred.dtype
        x = latents.float() * (a if carries_sigma else 1.0)  # in variance-preserving terms
        output = noise_pred.float()
        kind = scheduler.config.get("prediction_type", "epsilon")
        if kind == "epsilon":
            x0 = (x - b * output) / a
        elif kind == "v_prediction":
            x0 = a * x - b * output
        elif kind == "sample":
            x0 = output
        else:
            raise ValueError(f"Restoration guidance does not know the prediction type {kind!r}.")
        x0 = x0 + weight * (reference.float() - x0)
        epsilon = (x - a * x0) / b
        guided = {"epsilon": epsilon, "v_prediction": a * epsilon - b * x0, "sample": x0}[kind]
        return guided.to(dtype)

    def prepare_latents(
        self,
        image: torch.Tensor,
        num_images_per_prompt: int,
        timestep: torch.Tensor,
        start_point: str,
        generator,
        latents: torch.Tensor | None,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        r"""
        Starting latents: given `latents`; pure noise scaled by the scheduler (`start_point="noise"`); or the VAE
        latent of the upscaled (padded) image noised to the scheduler's actual first timestep (`start_point="lr"`).
        """
        device = self._execution_device
        batch = image.shape[0] * num_images_per_prompt
        shape = (batch, self.vae.config.latent_channels, *(s // self.vae_scale_factor for s in image.shape[-2:]))
        if latents is not None:
            if tuple(latents.shape) != shape:
                raise ValueError(f"`latents` must have shape {shape} for this input, got {tuple(latents.shape)}.")
            return latents.to(device=device, dtype=dtype)
        # Drawn in float32 so that a generator gives the same noise whatever the model dtype.
        noise = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32).to(dtype)
        if start_point == "noise":
            return noise * self.scheduler.init_noise_sigma
        encoded = self.encode_latents(image).to(dtype).repeat_interleave(num_images_per_prompt, dim=0)
        return self.scheduler.add_noise(encoded, noise, timestep.repeat(batch))

    @contextlib.contextmanager
    def vae_tiling(self, enabled: bool):
        """Switches the VAE's tiled encode/decode on for the duration (if it is not on already)."""
        switch = enabled and not self.vae.use_tiling
        if switch:
            self.vae.enable_tiling()
        try:
            yield
        finally:
            if switch:
                self.vae.disable_tiling()

    def predict_noise(
        self,
        latents: torch.Tensor,
        t: torch.Tensor,
        text_embeds: torch.Tensor,
        image_embeds: torch.Tensor,
        structure: torch.Tensor,
        conditioning_scale: float,
        text_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One ControlNet + UNet evaluation (the model input is already scaled by the scheduler); `text_mask` marks
        the text tokens of each row (see [`encode_prompts_alone`])."""
        compiled = is_compiled(self.unet) or is_compiled(self.controlnet)
        if compiled:
            # With CUDA graphs, every call of a compiled model would begin a new graph step and free the outputs of
            # the previous one, here the ControlNet residuals the UNet is about to read: one step per evaluation.
            torch.compiler.cudagraph_mark_step_begin()
        priors = dict(
            encoder_hidden_states=text_embeds,
            image_embeds=image_embeds,
            encoder_attention_mask=text_mask,
            cross_attention_kwargs=self.cross_attention_kwargs,
            return_dict=False,
        )
        down, mid = self.controlnet(
            latents, t, controlnet_cond=structure, conditioning_scale=conditioning_scale, **priors
        )
        noise = self.unet(
            latents, t, down_block_additional_residuals=down, mid_block_additional_residual=mid, **priors
        )[0]
        # The next evaluation overwrites a CUDA-graph output; schedulers that keep the prediction (PNDM) need a copy.
        return noise.clone() if compiled else noise

    def predict_noise_tiled(
        self,
        latents: torch.Tensor,
        t: torch.Tensor,
        text_embeds: torch.Tensor,
        image_embeds: torch.Tensor,
        structure: torch.Tensor,
        conditioning_scale: float,
        text_mask: torch.Tensor | None,
        tile: int,
        overlap: int,
    ) -> torch.Tensor:
        """Noise prediction over overlapping latent tiles, blended with Gaussian weights (one pass if it fits)."""
        height, width = latents.shape[-2:]
        if height <= tile and width <= tile:
            return self.predict_noise(latents, t, text_embeds, image_embeds, structure, conditioning_scale, text_mask)
        total = torch.zeros_like(latents)
        weight_sum = torch.zeros_like(latents[:1, :1])
        for top in tile_starts(height, tile, overlap):
            for left in tile_starts(width, tile, overlap):
                rows, cols = slice(top, top + tile), slice(left, left + tile)
                prediction = self.predict_noise(
                    latents[..., rows, cols],
                    t,
                    text_embeds,
                    image_embeds,
                    structure[..., rows, cols],
                    conditioning_scale,
                    text_mask,
                )
                weights = self._tile_weights(tuple(prediction.shape[-2:]), latents.device, latents.dtype)
                total[..., rows, cols] += prediction * weights
                weight_sum[..., rows, cols] += weights
        return total / weight_sum

    @staticmethod
    @functools.lru_cache(maxsize=16)
    def _tile_weights(shape: tuple[int, int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Gaussian blending weights, built once per tile shape (no host-to-device copy inside the loop)."""
        return gaussian_weights(*shape, device=device, dtype=dtype)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """VAE decode to `[0, 1]`."""
        image = self.vae.decode(latents.to(self.vae.dtype) / self.vae.config.scaling_factor, return_dict=False)[0]
        return (image.float() / 2 + 0.5).clamp(0, 1)

    def _format_images(self, images: torch.Tensor, output_type: str):
        if output_type == "pt":
            return images
        if output_type == "np":
            return self.image_processor.pt_to_numpy(images)
        # As `numpy_to_pil(pt_to_numpy(images))` (round half to even alike), one image at a time: at most one
        # float copy of one image besides the batch.
        return [
            PIL.Image.fromarray(image.mul(255).round_().to(torch.uint8).permute(1, 2, 0).numpy()) for image in images
        ]

    # ------------------------------------------------------------------ call

    @torch.no_grad()
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(
        self,
        image: PipelineImageInput = None,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = DEFAULT_NEGATIVE_PROMPT,
        added_prompt: str | None = DEFAULT_ADDED_PROMPT,
        upscale: float = 4,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        conditioning_scale: float | None = None,
        strength: float | None = None,
        restoration_guidance_scale: float | None = None,
        restoration_guidance_decay: float | None = None,
        start_point: str = "lr",
        num_images_per_prompt: int = 1,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        tile_size: int | None = None,
        tile_overlap: int | None = None,
        color_fix: str | None = "wavelet",
        color_fix_levels: int | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        cross_attention_kwargs: dict[str, Any] | None = None,
        callback_on_step_end: Callable[[DiffusionPipeline, int, int, dict], dict]
        | PipelineCallback
        | MultiPipelineCallbacks
        | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> SSPIRPipelineOutput | tuple:
        r"""
        Restores low-quality images.

        Args:
            image (`PIL.Image.Image`, `np.ndarray`, `torch.Tensor` or a list of them):
                The low-quality image(s), all of one size. RGBA, grayscale and 16-bit images are converted to RGB;
                arrays/tensors are HWC/CHW with values in `[0, 1]` (or uint8/uint16).
            prompt (`str` or `list[str]`, *optional*):
                What the image shows. Defaults to the captioner's description (an empty caption without a
                captioner). `added_prompt` is appended either way.
            negative_prompt (`str` or `list[str]`, *optional*, defaults to `"dotted, noise, blur, lowres, smooth"`):
                Used with classifier-free guidance; not used when `negative_prompt_embeds` is given.
            added_prompt (`str`, *optional*, defaults to `"clean, high-resolution, 8k"`):
                Appended to every prompt; `None` or `""` to disable.
            upscale (`float`, defaults to 4):
                Output size = round(input size × upscale), exactly, whatever the divisibility of the input.
            num_inference_steps (`int`, *optional*): denoising steps of the whole schedule (`strength` runs a part
                of it). The settings marked *recommended* default to [`~SSPIRPipeline.recommended_settings`]: the
                model's own when it carries them, else 50 steps, guidance 7.5, conditioning 1.0, strength 1.0, no
                restoration guidance.
            guidance_scale (`float`, *optional*, recommended): text classifier-free guidance; `<= 1` disables it
                (and halves the work: one model evaluation per step instead of two).
            conditioning_scale (`float`, *optional*, recommended): scale of the ControlNet residuals.
            strength (`float`, *optional*, recommended): in `(0, 1]`, as in diffusers' img2img pipelines: the
                LR-embedded start is noised to the timestep `strength` of the way through the schedule and only
                the last `int(num_inference_steps * strength)` steps run (the first of them exactly, per
                scheduler). Lower keeps more of the upscaled input: more fidelity, less generated detail. `1.0`
                runs the whole schedule. Needs `start_point="lr"`.
            restoration_guidance_scale (`float`, *optional*, recommended): in `[0, 1]`, SUPIR's restoration-guided
                sampling towards the structure prior: at each step the prediction of the clean latent `x0` is
                pulled towards the VAE latent of the structure processor's image `z`, `x0 + w (z - x0)` with
                `w = restoration_guidance_scale * (sigma_t / sigma_max) ** restoration_guidance_decay`, strongest
                at high noise. `0` (the default) turns it off. Works with every supported scheduler, with tiling,
                batches and callbacks.
            restoration_guidance_decay (`float`, *optional*, recommended): in `[0, 20]`, how fast the pull fades
                as the noise falls (SUPIR's `restore_cfg`, 4 by default); `0` pulls equally at every step.
            start_point (`str`, defaults to `"lr"`):
                `"lr"`: start from the upscaled image's latent noised to the scheduler's first timestep;
                `"noise"`: start from pure noise.
            num_images_per_prompt (`int`, defaults to 1): restorations per input image.
            eta (`float`, defaults to 0.0): DDIM's η; ignored by other schedulers.
            generator (`torch.Generator` or `list[torch.Generator]`, *optional*):
                For reproducible results; a list gives one generator per output image.
            latents (`torch.Tensor`, *optional*): starting latents (replaces `start_point`), of the padded size.
            prompt_embeds (`torch.Tensor`, *optional*): text embeddings instead of `prompt` (no caption is made).
            negative_prompt_embeds (`torch.Tensor`, *optional*): text embeddings instead of `negative_prompt`.
            tile_size (`int`, *optional*):
                For outputs larger than this many pixels (a multiple of 8): denoise in overlapping square tiles of this
                size, blended with Gaussian weights in latent space, encode/decode with the VAE's tiling, and run the
                structure processor and the wavelet colour fix in tiles (with their exact result), so that memory
                is bounded by the tile, not the image. `None` processes the whole image at once; so does an image
                that fits in one tile. A request whose estimated memory ([`~SSPIRPipeline.estimate_peak_memory`])
                exceeds what the device has available is refused with a `MemoryError` before anything is
                allocated.
            tile_overlap (`int`, *optional*): overlap of neighbouring tiles, in output pixels (a multiple of 8);
                defaults to a quarter of `tile_size`.
            color_fix (`str`, *optional*, defaults to `"wavelet"`):
                Colour correction towards the upscaled input: `"wavelet"`, `"adain"` or `None`.
            color_fix_levels (`int`, *optional*, *recommended*, library default 5):
                Levels of the wavelet colour fix, 1 to 10: the result keeps the upscaled input's frequencies below
                about 2**levels pixels and the restoration's above. Fewer levels hold the restoration closer to the
                input (more faithful), more leave it freer (the bundled model recommends its own; ignored by
                `"adain"` and `None`).
            output_type (`str`, defaults to `"pil"`): `"pil"`, `"np"`, `"pt"` or `"latent"`.
            return_dict (`bool`, defaults to `True`): return an [`SSPIRPipelineOutput`] instead of a tuple.
            cross_attention_kwargs (`dict`, *optional*): passed to the attention processors (e.g. `{"scale": 0.5}`
                for LoRA).
            callback_on_step_end (`Callable`, *optional*):
                Called after each step as `callback_on_step_end(pipe, step, timestep, callback_kwargs)`; may return
                a dict with new values of the tensors it asked for.
            callback_on_step_end_tensor_inputs (`list[str]`, *optional*, defaults to `["latents"]`):
                Tensors given to the callback, among `pipe._callback_tensor_inputs`: `latents`, `prompt_embeds`
                (with guidance: negative and positive rows concatenated, as the models see them), `image_embeds` and
                `structure_features`. Tensors the callback returns replace them for the next steps.

        Examples:

        Returns:
            [`SSPIRPipelineOutput`] or `tuple`: `(images, prompts, structure_images)`.
        """
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        callback_on_step_end_tensor_inputs = callback_on_step_end_tensor_inputs or ["latents"]

        images = to_tensor_batch(image, argument_name="image")
        given = dict(num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                     conditioning_scale=conditioning_scale, strength=strength,
                     restoration_guidance_scale=restoration_guidance_scale,
                     restoration_guidance_decay=restoration_guidance_decay,
                     color_fix_levels=color_fix_levels)  # fmt: skip
        settings = {**self.recommended_settings, **{k: v for k, v in given.items() if v is not None}}
        num_inference_steps, guidance_scale = settings["num_inference_steps"], settings["guidance_scale"]
        conditioning_scale, strength = settings["conditioning_scale"], settings["strength"]
        restoration_guidance_scale = settings["restoration_guidance_scale"]
        restoration_guidance_decay = settings["restoration_guidance_decay"]
        color_fix_levels = settings["color_fix_levels"]
        if tile_size is not None and tile_overlap is None:
            tile_overlap = tile_size // 4 // self.vae_scale_factor * self.vae_scale_factor
        self.check_inputs(
            images, prompt, negative_prompt, prompt_embeds, negative_prompt_embeds, upscale, num_inference_steps,
            num_images_per_prompt, guidance_scale, conditioning_scale, start_point, color_fix, tile_size,
            tile_overlap, output_type, generator, callback_on_step_end_tensor_inputs, eta, strength,
            restoration_guidance_scale, restoration_guidance_decay, color_fix_levels=color_fix_levels,
        )  # fmt: skip
        num_inference_steps, num_images_per_prompt = int(num_inference_steps), int(num_images_per_prompt)
        self._guidance_scale = guidance_scale
        self._cross_attention_kwargs = cross_attention_kwargs
        self._interrupt = False
        device = self._execution_device

        # 1. Upscale to the exact output size, pad to the VAE's multiple.
        height, width = (round(s * upscale) for s in images[0].shape[-2:])
        self.check_memory(
            len(images) * num_images_per_prompt, height, width, tile_size, start_point == "lr" and latents is None
        )
        low_quality = torch.stack(images).to(device)
        upscaled = self.upscale(low_quality, (height, width), tile_size=tile_size)
        padded, _ = pad_to_multiple(upscaled, self.vae_scale_factor)

        # 2. Semantic priors (caption → text tokens; CLIP image tokens) and the structure prior.
        prompts, prompt_embeds, negative_prompt_embeds, text_mask = self.prepare_prompt_embeds(
            upscaled, prompt, negative_prompt, added_prompt, prompt_embeds, negative_prompt_embeds, device,
            do_classifier_free_guidance=self.do_classifier_free_guidance,
            lora_scale=(cross_attention_kwargs or {}).get("scale"),
            generator=generator,
        )  # fmt: skip
        image_embeds = self.encode_image(upscaled)
        # Tiles (and the VAE's tiling) only when the image does not fit in one tile.
        tiled = tile_size is not None and max(padded.shape[-2:]) > tile_size
        structure = self.structure_processor(
            padded.to(self.structure_processor.dtype), tile_size=tile_size if tiled else None
        )

        # One image per prompt: the tensors themselves (no copy of full-size images).
        repeat = lambda x: x if num_images_per_prompt == 1 else x.repeat_interleave(num_images_per_prompt, dim=0)  # noqa: E731
        prompts = [p for p in prompts for _ in range(num_images_per_prompt)]
        dtype = self.unet.dtype
        prompt_embeds, image_embeds = repeat(prompt_embeds).to(dtype), repeat(image_embeds).to(dtype)
        structure_features = repeat(structure.features).to(dtype)
        text_mask = repeat(text_mask) if text_mask is not None else None
        if self.do_classifier_free_guidance:
            prompt_embeds = torch.cat([repeat(negative_prompt_embeds).to(dtype), prompt_embeds])
            image_embeds, structure_features = torch.cat([image_embeds] * 2), torch.cat([structure_features] * 2)
            text_mask = torch.cat([text_mask] * 2) if text_mask is not None else None

        # 3. Timesteps and starting latents.
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        self.seed_scheduler_noise(generator)
        timesteps, steps_run = self.get_timesteps(num_inference_steps, strength)
        with self.vae_tiling(tiled):
            latents = self.prepare_latents(
                padded, num_images_per_prompt, timesteps[:1], start_point, generator, latents, dtype
            )
        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, eta)
        reference_latents = None
        if restoration_guidance_scale > 0:
            with self.vae_tiling(tiled):
                reference_latents = self.encode_structure_reference(
                    structure, padded.shape[-2:], num_images_per_prompt
                )
        latent_tile = tile_size // self.vae_scale_factor if tiled else None
        latent_overlap = (tile_overlap or 0) // self.vae_scale_factor

        # 4. Denoising loop. The models get each timestep on the device, the scheduler a copy on the CPU: schedulers
        # index their CPU tables with it (DDIM: `alphas_cumprod[t]`), which for a device tensor means a host-device
        # sync at every step. Nothing else in the loop reads a device value on the host.
        num_warmup_steps = len(timesteps) - steps_run * self.scheduler.order
        self._num_timesteps = len(timesteps)
        scheduler_timesteps = timesteps.cpu()
        # The first step whose latents are not finite (-1: none), kept on the device and read once after the loop.
        first_bad_step = torch.full((), -1, device=latents.device)
        with self.progress_bar(total=steps_run) as progress_bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                model_input = torch.cat([latents] * 2) if self.do_classifier_free_guidance else latents
                model_input = self.scheduler.scale_model_input(model_input, scheduler_timesteps[i])
                conditioning = (prompt_embeds, image_embeds, structure_features, conditioning_scale, text_mask)
                if latent_tile is None:
                    noise_pred = self.predict_noise(model_input, t, *conditioning)
                else:
                    noise_pred = self.predict_noise_tiled(model_input, t, *conditioning, latent_tile, latent_overlap)
                if self.do_classifier_free_guidance:
                    noise_uncond, noise_text = noise_pred.chunk(2)
                    noise_pred = noise_uncond + self.guidance_scale * (noise_text - noise_uncond)
                if reference_latents is not None:
                    noise_pred = self.guide_towards(
                        noise_pred, latents, reference_latents, scheduler_timesteps[i],
                        restoration_guidance_scale, restoration_guidance_decay,
                    )  # fmt: skip
                latents = self.scheduler.step(
                    noise_pred, scheduler_timesteps[i], latents, **extra_step_kwargs, return_dict=False
                )[0]
                bad = (first_bad_step < 0) & ~torch.isfinite(latents).all()
                first_bad_step = torch.where(bad, i, first_bad_step)

                if callback_on_step_end is not None:
                    available = {"latents": latents, "prompt_embeds": prompt_embeds, "image_embeds": image_embeds,
                                 "structure_features": structure_features}  # fmt: skip
                    callback_kwargs = {name: available[name] for name in callback_on_step_end_tensor_inputs}
                    callback_outputs = callback_on_step_end(self, i, t, callback_kwargs) or {}
                    latents = callback_outputs.pop("latents", latents)
                    prompt_embeds = callback_outputs.pop("prompt_embeds", prompt_embeds)
                    image_embeds = callback_outputs.pop("image_embeds", image_embeds)
                    structure_features = callback_outputs.pop("structure_features", structure_features)
                    if not self.do_classifier_free_guidance and image_embeds.shape[0] != latents.shape[0]:
                        # A callback switched guidance off (e.g. diffusers' SDCFGCutoffCallback): keep the
                        # conditional half of every conditioning tensor.
                        prompt_embeds, image_embeds, structure_features = (
                            x[-latents.shape[0] :] for x in (prompt_embeds, image_embeds, structure_features)
                        )
                        text_mask = text_mask[-latents.shape[0] :] if text_mask is not None else None
                    if text_mask is not None and text_mask.shape != prompt_embeds.shape[:2]:
                        raise ValueError(
                            f"The callback returned `prompt_embeds` of {prompt_embeds.shape[1]} tokens for a batch "
                            f"whose prompts were padded to {text_mask.shape[1]}; keep the token count."
                        )
                if i == len(timesteps) - 1 or ((i + 1) > num_warmup_steps and (i + 1) % self.scheduler.order == 0):
                    progress_bar.update()

        if first_bad_step.item() >= 0:
            raise FloatingPointError(
                f"The latents stopped being finite numbers (NaN or inf) at denoising step {first_bad_step.item() + 1} "
                f"of {len(timesteps)}; check the inputs and settings (a very large guidance_scale or "
                "conditioning_scale, a model saved with NaN weights, float16 overflow: try float32 or bfloat16)."
            )
        if output_type == "latent":
            self.maybe_free_model_hooks()
            return SSPIRPipelineOutput(images=latents, prompts=prompts) if return_dict else (latents, prompts, None)

        # 5. Decode, crop to the exact size, colour fix towards the upscaled input.
        with self.vae_tiling(tiled):
            restored = self.decode_latents(latents)[..., :height, :width]
        restored = apply_color_fix(
            restored,
            repeat(upscaled).float(),
            color_fix,
            tile_size=tile_size if tiled else None,
            levels=color_fix_levels,
        ).clamp_(0, 1)
        padded_size = padded.shape[-2:]
        del upscaled, padded, low_quality  # full-size copies no longer needed
        structure_rgb = F.interpolate(
            repeat(structure.rgb[0].float()), size=padded_size, mode="bilinear", align_corners=False
        )[..., :height, :width].clamp_(0, 1)

        self.maybe_free_model_hooks()
        images_out = self._format_images(restored.cpu(), output_type)
        structure_out = self._format_images(structure_rgb.cpu(), output_type)
        if not return_dict:
            return images_out, prompts, structure_out
        return SSPIRPipelineOutput(images=images_out, prompts=prompts, structure_images=structure_out)
