"""Plumbing shared by the SSP-IR subclasses of diffusers models."""

import inspect
from collections.abc import Callable

import torch


def extend_init_signature(base_init: Callable, **extra: inspect.Parameter) -> Callable:
    """Gives a subclass `__init__(self, *, <new args>, **base_kwargs)` the full signature of `base_init` plus the new
    keyword arguments.

    diffusers' `@register_to_config` and `from_config` read the constructor's signature to decide which config keys
    exist. Declaring the combined signature lets an SSP-IR model inherit every option of the stock model (and its
    saved configs) without restating 50 arguments.
    """

    def decorate(init: Callable) -> Callable:
        base = inspect.signature(base_init)
        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in base.parameters.values()]
        self_param, base_params = params[0].replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD), params[1:]
        new = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=p.default, annotation=p.annotation)
            for name, p in extra.items()
        ]
        init.__signature__ = inspect.Signature([self_param, *base_params, *new])
        return init

    return decorate


def keyword(default, annotation=inspect.Parameter.empty) -> inspect.Parameter:
    """A keyword-only parameter description for [`extend_init_signature`]."""
    return inspect.Parameter("_", inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def place_like(model: torch.nn.Module, reference: torch.nn.Module) -> torch.nn.Module:
    """Moves a freshly built `model` to the device and dtype of `reference`'s parameters.

    Uses `torch.nn.Module.to`: diffusers' `ModelMixin.to` warns on every dtype cast about modules to keep in float32,
    which SSP-IR's new modules do not have.
    """
    parameter = next(reference.parameters())
    return torch.nn.Module.to(model, device=parameter.device, dtype=parameter.dtype)


def check_config(owner: str, counts: dict[str, tuple[object, int]], parameters: Callable[[], int]) -> None:
    """A model's configuration checked before any module is built, so that a bad or hostile `config.json` is
    refused with its class and key named rather than building for minutes until memory runs out.

    Args:
        owner (`str`): the model class, for the messages.
        counts (`dict`): each integer setting → `(value, least)`; it must be an `int` >= `least`.
        parameters (`Callable[[], int]`): the number of parameters those settings build (called once they pass);
            a model whose float32 weights would not fit in the host's available memory is refused.
    """
    from ..memory import available_memory, format_bytes
    from ..validation import check_integer

    for name, (value, least) in counts.items():
        try:
            check_integer(name, value, minimum=least)
        except ValueError as error:
            raise ValueError(f"{owner} config: {error}") from None
    count = parameters()
    available = available_memory("cpu")
    if available is not None and 4 * count > available:
        settings = ", ".join(f"{name}={value}" for name, (value, _) in counts.items())
        raise ValueError(
            f"{owner} config ({settings}) would build {count:,} parameters ({format_bytes(4 * count)} in float32), "
            f"more than the {format_bytes(available)} this machine has available; check its config.json."
        )


def conv_parameters(in_channels: int, out_channels: int, kernel: int = 3) -> int:
    """Parameters of a `kernel` x `kernel` convolution with bias."""
    return in_channels * out_channels * kernel * kernel + out_channels
