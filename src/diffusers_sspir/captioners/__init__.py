"""Captioners: turn (degraded) images into text prompts, the explicit semantic prior of SSP-IR."""

from .base import Captioner, FixedCaptioner
from .vlm import DEFAULT_CAPTION_PROMPT, VLMCaptioner

__all__ = ["DEFAULT_CAPTION_PROMPT", "Captioner", "FixedCaptioner", "VLMCaptioner"]
