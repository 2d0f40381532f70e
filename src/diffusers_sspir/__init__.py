"""diffusers-sspir: SSP-IR (semantic and structure priors for realistic image restoration) for diffusers.

The public names below are imported on first use, so `import diffusers_sspir` stays cheap until a model, pipeline
or captioner is needed (torch, diffusers and transformers take seconds to import).
"""

import importlib
from typing import TYPE_CHECKING

from .compat import quiet_image_processor_fallback

__version__ = "0.5.0"

quiet_image_processor_fallback()  # a logging filter only: cheap, and in place before transformers is imported

_EXPORTS = {
    "Captioner": ".captioners",
    "FixedCaptioner": ".captioners",
    "VLMCaptioner": ".captioners",
    "DualPriorAttention": ".models",
    "DualPriorAttnProcessor": ".models",
    "DualPriorInputs": ".models",
    "ImageTokenRefiner": ".models",
    "SSPIRControlNetModel": ".models",
    "SSPIRUNet2DConditionModel": ".models",
    "StructureProcessor": ".models",
    "StructureProcessorOutput": ".models",
    "SSPIRPipeline": ".pipelines",
    "SSPIRPipelineOutput": ".pipelines",
    "demo_model_path": ".demo",
}

__all__ = [
    "Captioner",
    "DualPriorAttention",
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
    "demo_model_path",
]

if TYPE_CHECKING:
    from .captioners import Captioner, FixedCaptioner, VLMCaptioner
    from .demo import demo_model_path
    from .models import (
        DualPriorAttention,
        DualPriorAttnProcessor,
        DualPriorInputs,
        ImageTokenRefiner,
        SSPIRControlNetModel,
        SSPIRUNet2DConditionModel,
        StructureProcessor,
        StructureProcessorOutput,
    )
    from .pipelines import SSPIRPipeline, SSPIRPipelineOutput


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
