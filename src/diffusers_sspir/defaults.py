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

# Accepted ranges of numeric settings, `(lowest, highest)` with both ends included, for the pipeline, the command line
# and the training scripts alike. Beyond them the arithmetic overflows (guidance 1e300 gives NaN images) or the
# setting means nothing for SSP-IR. `upscale` must also be > 0.
RANGES = {
    "upscale": (0, 16),
    "guidance_scale": (0, 100),
    "conditioning_scale": (0, 10),
    "eta": (0, 1),
    "strength": (0, 1),
    "restoration_guidance_scale": (0, 1),
    "restoration_guidance_decay": (0, 20),
    "learning_rate": (0, 1),
}
# Settings that must be > their lowest value, not >= it.
POSITIVE_SETTINGS = ("upscale", "strength", "learning_rate")

# What `SSPIRPipeline.__call__` does for the settings a call leaves out, unless the pipeline carries its own
# (`recommended_settings`, saved in model_index.json): the paper's sampling, without fidelity controls.
CALL_DEFAULTS = {
    "num_inference_steps": 50,
    "guidance_scale": 7.5,
    "conditioning_scale": 1.0,
    "strength": 1.0,
    "restoration_guidance_scale": 0.0,
    "restoration_guidance_decay": 4.0,
    "color_fix_levels": 5,
}
# Integer call settings and their ranges, `(lowest, highest)`, both ends included (`None`: no upper end). The wavelet
# colour fix's levels: its blur reaches 2**levels - 1 pixels, so 10 levels already keep only the mean colour.
INTEGER_SETTINGS = {"num_inference_steps": (1, None), "color_fix_levels": (1, 10)}
MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a signed 64-bit seed

# Images larger than this many pixels are refused before their pixels are decoded (Pillow's own decompression-bomb
# guard only fires at about 179 MP); the environment variable SSPIR_MAX_INPUT_PIXELS sets another limit (0: none).
MAX_INPUT_PIXELS = 40_000_000
MAX_INPUT_PIXELS_VARIABLE = "SSPIR_MAX_INPUT_PIXELS"

# The web demo (`sspir demo`) refuses uploads and outputs larger than these many pixels (its `--max-input-pixels` and
# `--max-output-pixels`), before anything is decoded or allocated.
DEMO_MAX_INPUT_PIXELS = 1024 * 1024
DEMO_MAX_OUTPUT_PIXELS = 2048 * 2048

# The pipeline's colour corrections (`color_fix=`), and the same choices as the command line and the web demo name
# them ("none" for no correction; `validation.color_fix_from_name` turns a name into the argument).
COLOR_FIX_METHODS = ("wavelet", "adain", None)
COLOR_FIX_NAMES = tuple("none" if method is None else method for method in COLOR_FIX_METHODS)
