"""diffusers-sspir: SSP-IR (semantic and structure priors for realistic image restoration) for diffusers."""

from .captioners import Captioner, FixedCaptioner, VLMCaptioner
from .models import (
    DualPriorAttnProcessor,
    DualPriorInputs,
    ImageTokenRefiner,
    SSPIRControlNetModel,
    SSPIRUNet2DConditionModel,
    StructureProcessor,
    StructureProcessorOutput,
)
from .pipelines import SSPIRPipeline, SSPIRPipelineOutput

__version__ = "0.1.0"

__all__ = [
    "Captioner",
    "DualPriorAttnProcessor",
    "DualPriorInputs",
    "FixedCaptioner",
    "ImageTokenRefiner",
    "SSPIRControlNetModel",
    "SSPIRPipeline",
    "SSPIRPipelineOutput",
    "SSPIRUNet2DConditionModel",
    "StructureProcessor",
    "StructureProcessorOutput",
    "VLMCaptioner",
]
