"""Captioners: turn (degraded) images into text prompts, the explicit semantic prior of SSP-IR.

Every name is loaded on first use (`VLMCaptioner` imports transformers, the others torch and diffusers), so that
the command line can parse a captioner spec without paying for imports it does not need.
"""

import importlib
from typing import TYPE_CHECKING

_LAZY = {
    "CAPTIONER_SPEC_HELP": ".spec",
    "CaptionFolderResult": ".folder",
    "Captioner": ".base",
    "CaptionerMixin": ".base",
    "DEFAULT_CAPTION_PROMPT": ".vlm",
    "FixedCaptioner": ".base",
    "VLMCaptioner": ".vlm",
    "caption_folder": ".folder",
    "captioner_from_spec": ".spec",
    "default_caption_dir": ".folder",
    "parse_captioner_spec": ".spec",
}

__all__ = [
    "CAPTIONER_SPEC_HELP",
    "DEFAULT_CAPTION_PROMPT",
    "CaptionFolderResult",
    "Captioner",
    "CaptionerMixin",
    "FixedCaptioner",
    "VLMCaptioner",
    "caption_folder",
    "captioner_from_spec",
    "default_caption_dir",
    "parse_captioner_spec",
]

if TYPE_CHECKING:
    from .base import Captioner, CaptionerMixin, FixedCaptioner
    from .folder import CaptionFolderResult, caption_folder, default_caption_dir
    from .spec import CAPTIONER_SPEC_HELP, captioner_from_spec, parse_captioner_spec
    from .vlm import DEFAULT_CAPTION_PROMPT, VLMCaptioner


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
