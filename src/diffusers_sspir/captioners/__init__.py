"""Captioners: turn (degraded) images into text prompts, the explicit semantic prior of SSP-IR."""

from .base import Captioner, FixedCaptioner
from .folder import CaptionFolderResult, caption_folder
from .vlm import DEFAULT_CAPTION_PROMPT, VLMCaptioner

__all__ = [
    "DEFAULT_CAPTION_PROMPT",
    "CaptionFolderResult",
    "Captioner",
    "FixedCaptioner",
    "VLMCaptioner",
    "caption_folder",
]
