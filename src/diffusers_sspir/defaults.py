"""Settings shared by the models, the pipeline, the command line and the training scripts, in one torch-free module
(the command-line parsers import it without loading torch)."""

# Prompts added to every caption and used as the negative prompt, as the restoration peers (SeeSR, PASD) do.
DEFAULT_ADDED_PROMPT = "clean, high-resolution, 8k"
DEFAULT_NEGATIVE_PROMPT = "dotted, noise, blur, lowres, smooth"

# Kinds of SSP-IR dual-prior branches: the paper's layout (whole transformers around SD's, the default) and the
# light one (one attention per branch inside SD's cross-attention layers). See docs/architecture.md.
BRANCH_TYPES = ("transformer", "attention")

# Schedulers that cannot serve SSP-IR's LR-embedded start on a Stable Diffusion model, and why; the pipeline refuses
# them (docs/usage.md lists this table).
UNSUPPORTED_SCHEDULERS = {
    "EDMEulerScheduler": "made for EDM-parameterised models (Karras preconditioning of a continuous sigma), not for "
    "Stable Diffusion's discrete-time noise prediction",
    "EDMDPMSolverMultistepScheduler": "made for EDM-parameterised models, not for Stable Diffusion's discrete-time "
    "noise prediction",
    "CosineDPMSolverMultistepScheduler": "made for EDM-parameterised models with a cosine sigma schedule (Stable "
    "Audio), not for Stable Diffusion's discrete-time noise prediction",
}

# Scheduler classes that need a package the library does not depend on: class → (module, how to install it).
SCHEDULER_NEEDS = {
    "DPMSolverSDEScheduler": ("torchsde", "pip install 'diffusers-sspir[sde]'"),
    "CosineDPMSolverMultistepScheduler": ("torchsde", "pip install 'diffusers-sspir[sde]'"),
    "LMSDiscreteScheduler": ("scipy", "pip install scipy"),
}
