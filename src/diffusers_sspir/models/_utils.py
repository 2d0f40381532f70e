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
