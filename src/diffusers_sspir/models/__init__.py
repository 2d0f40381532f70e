from .attention import DualPriorAttnProcessor, DualPriorInputs, install_dual_prior_processors
from .controlnet import SSPIRControlNetModel
from .refiner import ImageTokenRefiner
from .structure_processor import StructureProcessor, StructureProcessorOutput
from .unet import SSPIRUNet2DConditionModel

__all__ = [
    "DualPriorAttnProcessor",
    "DualPriorInputs",
    "ImageTokenRefiner",
    "SSPIRControlNetModel",
    "SSPIRUNet2DConditionModel",
    "StructureProcessor",
    "StructureProcessorOutput",
    "install_dual_prior_processors",
]
