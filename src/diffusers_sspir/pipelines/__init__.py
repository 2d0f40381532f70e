from ..compat import quiet_image_processor_fallback

quiet_image_processor_fallback()  # before the pipeline module imports transformers' CLIPImageProcessor

from .pipeline_sspir import (  # noqa: E402
    DEFAULT_ADDED_PROMPT,
    DEFAULT_NEGATIVE_PROMPT,
    SSPIRPipeline,
    SSPIRPipelineOutput,
)

__all__ = ["DEFAULT_ADDED_PROMPT", "DEFAULT_NEGATIVE_PROMPT", "SSPIRPipeline", "SSPIRPipelineOutput"]
