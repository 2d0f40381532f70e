"""Training SSP-IR: losses, the trainable module, atomic checkpoints and the accelerate training loop behind
`examples/train_sspir.py` and `examples/train_sspir_lora.py`."""

from .checkpoint import TrainingProgress, list_checkpoints, load_checkpoint, save_checkpoint
from .losses import diffusion_target, fft_l1, structure_prior_loss
from .module import (
    RestorerTrainingModule,
    SSPIRTrainingModule,
    select_full_training_parameters,
    select_restorer_parameters,
    trainable_parameters,
)

__all__ = [
    "RestorerTrainingModule",
    "SSPIRTrainingModule",
    "TrainingProgress",
    "diffusion_target",
    "fft_l1",
    "list_checkpoints",
    "load_checkpoint",
    "save_checkpoint",
    "select_full_training_parameters",
    "select_restorer_parameters",
    "structure_prior_loss",
    "trainable_parameters",
]
