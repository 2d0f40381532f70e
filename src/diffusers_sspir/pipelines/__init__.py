from .pipeline_sspir import (
    DEFAULT_ADDED_PROMPT,
    DEFAULT_NEGATIVE_PROMPT,
    SSPIRPipeline,
    SSPIRPipelineOutput,
)

__all__ = ["DEFAULT_ADDED_PROMPT", "DEFAULT_NEGATIVE_PROMPT", "SSPIRPipeline", "SSPIRPipelineOutput"]
