"""The one spelling of a captioner on the command line and in the examples: `none`, `fixed:TEXT` or a model.

Cheap to import (no PIL, torch or transformers until a captioner is made)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import Captioner

CAPTIONER_SPEC_HELP = (
    "none (an empty caption), fixed:TEXT (the same caption for every image), or a vision-language model folder or "
    "Hub id that transformers' AutoModelForImageTextToText loads"
)


def parse_captioner_spec(spec: str) -> tuple[str, str]:
    """`("none", "")`, `("fixed", TEXT)` or `("model", PATH_OR_ID)`; a `ValueError` for `fixed:` without a text."""
    if spec == "none":
        return "none", ""
    if spec.startswith("fixed:"):
        text = spec[len("fixed:") :]
        if not text.strip():
            raise ValueError(f"captioner {spec!r}: fixed:TEXT needs a text after 'fixed:' (or use none).")
        return "fixed", text
    return "model", spec


def describe_captioner(captioner: Any, saved: bool = False) -> str:
    """How a page or a log names `captioner`: `fixed text 'TEXT'`, the model's folder or Hub id in backquotes, or
    its class; with `saved`, marked as the one saved with the model. `""` for none."""
    if captioner is None:
        return ""
    config = getattr(captioner, "config", None) or {}
    if isinstance(config.get("text"), str):
        name = f"fixed text {config['text']!r}"
    elif isinstance(config.get("model"), str):
        name = f"`{config['model']}`"
    else:
        name = type(captioner).__name__
    return f"{name} (saved with the model)" if saved else name


def captioner_from_spec(spec: str, **model_kwargs) -> Captioner | None:
    r"""
    The captioner a spec names: `None` for `none`, a [`FixedCaptioner`] for `fixed:TEXT`, else a [`VLMCaptioner`]
    loaded with `model_kwargs` (`device`, `dtype`, `batch_size`, `max_new_tokens`, ...; not used by the others).
    """
    kind, value = parse_captioner_spec(spec)
    if kind == "none":
        return None
    if kind == "fixed":
        from .base import FixedCaptioner

        return FixedCaptioner(value)
    from .vlm import VLMCaptioner

    return VLMCaptioner(value, **model_kwargs)
