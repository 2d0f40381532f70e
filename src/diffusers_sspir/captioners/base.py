"""The captioner interface, the base of the captioners a pipeline saves, and a captioner that returns a fixed text."""

import inspect
import os
from typing import Any, Protocol, runtime_checkable

import PIL.Image
import torch
from diffusers.configuration_utils import ConfigMixin
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401  (diffusers' pipeline loader looks it up here)
from diffusers.utils import logging

logger = logging.get_logger(__name__)


@runtime_checkable
class Captioner(Protocol):
    """Anything that describes images with text.

    A captioner is a callable that takes a `list` of `PIL.Image.Image` and returns a `list` of `str`, one caption per
    image and in the same order. `isinstance(obj, Captioner)` only checks that `obj` is callable. Any such callable
    can be a pipeline's `captioner`; the subclasses of [`CaptionerMixin`] are also saved with the pipeline.
    """

    def __call__(self, images: list[PIL.Image.Image]) -> list[str]:
        """Describes each image.

        Args:
            images (`list[PIL.Image.Image]`): the images to describe.

        Returns:
            `list[str]`: one caption per image.
        """
        ...


def accepts_generator_seed(captioner: Any) -> bool:
    """Whether a call of `captioner` takes `generator_seed` (for a `torch.nn.Module`, its `forward`)."""
    call = captioner.forward if isinstance(captioner, torch.nn.Module) else captioner
    try:
        return "generator_seed" in inspect.signature(call).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        return False


def check_images(images: Any) -> list[PIL.Image.Image]:
    """`images` as a list of PIL images (a single image is a list of one), or a `TypeError` naming the bad item."""
    if isinstance(images, PIL.Image.Image):
        return [images]
    if not isinstance(images, (list, tuple)):
        raise TypeError(f"`images` must be a `PIL.Image.Image` or a `list` of them, got {type(images).__name__}.")
    for i, image in enumerate(images):
        if not isinstance(image, PIL.Image.Image):
            raise TypeError(f"`images[{i}]` must be a `PIL.Image.Image`, got {type(image).__name__}.")
    return list(images)


class CaptionerMixin(ModelMixin, ConfigMixin):
    r"""
    The base of the captioners that are a pipeline component: `pipe.to(...)`, CPU offload and `pipe.components` treat
    them as models, and `save_pretrained` saves them **by reference**: `captioner/config.json` records what the
    captioner is (its class and settings; for a vision-language model, where to load it from), not its weights.

    A subclass registers its settings with `self.register_to_config(...)` (JSON values only), computes captions in
    `forward(images, ...)` (called through `__call__`, so that offload hooks run) and rebuilds itself from its record
    in [`from_record`].
    """

    config_name = "config.json"
    # The settings kept as attributes too (`captioner.prompt = ...`): a save records their values at that moment.
    _recorded_attributes: tuple[str, ...] = ()

    @classmethod
    def from_record(cls, record: dict[str, Any], folder: str, **loading_kwargs: Any) -> "CaptionerMixin":
        """Builds the captioner a saved record describes; `folder` is the record's folder, `loading_kwargs` what the
        pipeline loader passes (`torch_dtype`, ...). Subclasses override it."""
        return cls(**record)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> "CaptionerMixin":
        """Recreates the captioner recorded in a folder (`captioner/` of a saved pipeline) by [`save_pretrained`].

        Args:
            pretrained_model_name_or_path (`str` or `os.PathLike`): the folder holding `config.json`.
            **kwargs: loading settings, as the pipeline loader passes them (`torch_dtype`, `device_map`, ...); a
                captioner uses those that apply to it.

        Returns:
            `CaptionerMixin`: the captioner (a vision-language model loads on first use).

        Raises:
            OSError: if the folder has no readable record.
            ValueError: if the record is of another captioner class or has a setting the class does not take.
        """
        folder = os.fspath(pretrained_model_name_or_path)
        record = cls.load_config(folder)
        class_name = record.get("_class_name")
        if class_name is not None and class_name != cls.__name__:
            raise ValueError(f"{folder}: the record is of a {class_name}, not a {cls.__name__}.")
        record = {key: value for key, value in record.items() if not key.startswith("_")}
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown = sorted(set(record) - accepted)
        if unknown:
            raise ValueError(
                f"{folder}/{cls.config_name}: {cls.__name__} takes no settings {unknown}; accepted: "
                f"{sorted(accepted)}."
            )
        return cls.from_record(record, folder, **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Writes the captioner's record, `config.json`, to `save_directory` (created if missing); weights are not
        copied. Loading arguments of diffusers' savers (`safe_serialization`, `variant`, ...) are accepted and have
        no effect."""
        os.makedirs(save_directory, exist_ok=True)
        self.register_to_config(**{name: getattr(self, name) for name in self._recorded_attributes})
        self.save_config(save_directory)

    @property
    def device(self) -> torch.device:
        """`torch.device`: where the captioner computes (the CPU for one without weights)."""
        return next((p.device for p in self.parameters()), torch.device("cpu"))

    @property
    def dtype(self) -> torch.dtype:
        """`torch.dtype`: the dtype of its weights (`torch.float32` for one without weights)."""
        return next((p.dtype for p in self.parameters() if p.is_floating_point()), torch.float32)


class FixedCaptioner(CaptionerMixin):
    """A captioner that gives every image the same caption.

    Args:
        text (`str`): the caption returned for each image (may be empty).

    Raises:
        TypeError: if `text` is not a `str`.
    """

    _recorded_attributes = ("text",)

    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise TypeError(f"`text` must be a `str`, got {type(text).__name__}: {text!r}.")
        super().__init__()
        self.register_to_config(text=text)
        self.text = text

    def forward(self, images: list[PIL.Image.Image]) -> list[str]:
        """Returns `text` once per image.

        Args:
            images (`list[PIL.Image.Image]` or `PIL.Image.Image`): the images; a single image counts as one.

        Returns:
            `list[str]`: `[text] * len(images)`.

        Raises:
            TypeError: if `images` is not a `PIL.Image.Image` or a `list`/`tuple` of them.
        """
        return [self.text] * len(check_images(images))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(text={self.text!r})"
