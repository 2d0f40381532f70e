from .attention import DualPriorAttention, DualPriorAttnProcessor, DualPriorInputs
from .branches import BRANCH_TYPES, install_dual_prior_branches, is_branch_parameter
from .controlnet import SSPIRControlNetModel
from .refiner import ImageTokenRefiner
from .rrdbnet import RRDBNet
from .structure_processor import StructureProcessor, StructureProcessorOutput
from .unet import SSPIRUNet2DConditionModel

__all__ = [
    "BRANCH_TYPES",
    "DualPriorAttention",
    "DualPriorAttnProcessor",
    "DualPriorInputs",
    "ImageTokenRefiner",
    "RRDBNet",
    "SSPIRControlNetModel",
    "SSPIRUNet2DConditionModel",
    "StructureProcessor",
    "StructureProcessorOutput",
    "install_dual_prior_branches",
    "is_branch_parameter",
]
