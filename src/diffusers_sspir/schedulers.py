"""Short scheduler names, as the Stable Diffusion tools call them, for `sspir restore --scheduler`, the web demo's
scheduler menu and Python (`pipe.scheduler = make_scheduler("dpm++2m-karras", pipe.scheduler.config)`).

Each name is a diffusers scheduler class and the options that make it that sampler. Only the model's noise schedule
(`NOISE_SCHEDULE_KEYS`: betas, prediction type, timestep spacing, …) is taken from the scheduler config the model was
saved with; every other setting (solver order and type, sigma schedule, final step, …) is the class default or the
name's option, so that a name means the same sampler whatever scheduler the model was saved with. Importing this
module is cheap; diffusers is imported only in `make_scheduler`.
"""

import importlib.util
import inspect
from typing import Any

from .defaults import SCHEDULER_NEEDS

SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),
    "lms": ("LMSDiscreteScheduler", {}),
    "lms-karras": ("LMSDiscreteScheduler", {"use_karras_sigmas": True}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler-karras": ("EulerDiscreteScheduler", {"use_karras_sigmas": True}),
    "euler-a": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "heun-karras": ("HeunDiscreteScheduler", {"use_karras_sigmas": True}),
    "dpm2": ("KDPM2DiscreteScheduler", {}),
    "dpm2-karras": ("KDPM2DiscreteScheduler", {"use_karras_sigmas": True}),
    "dpm2-a": ("KDPM2AncestralDiscreteScheduler", {}),
    "dpm2-a-karras": ("KDPM2AncestralDiscreteScheduler", {"use_karras_sigmas": True}),
    "dpm++2s": ("DPMSolverSinglestepScheduler", {"solver_order": 2, "algorithm_type": "dpmsolver++"}),
    "dpm++2s-karras": (
        "DPMSolverSinglestepScheduler",
        {"solver_order": 2, "algorithm_type": "dpmsolver++", "use_karras_sigmas": True},
    ),
    "dpm++2m": ("DPMSolverMultistepScheduler", {"solver_order": 2, "algorithm_type": "dpmsolver++"}),
    "dpm++2m-karras": (
        "DPMSolverMultistepScheduler",
        {"solver_order": 2, "algorithm_type": "dpmsolver++", "use_karras_sigmas": True},
    ),
    "dpm++2m-sde": ("DPMSolverMultistepScheduler", {"solver_order": 2, "algorithm_type": "sde-dpmsolver++"}),
    "dpm++2m-sde-karras": (
        "DPMSolverMultistepScheduler",
        {"solver_order": 2, "algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True},
    ),
    "dpm-sde": ("DPMSolverSDEScheduler", {}),
    "dpm-sde-karras": ("DPMSolverSDEScheduler", {"use_karras_sigmas": True}),
    "deis": ("DEISMultistepScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
}
"""Scheduler name → (diffusers class name, config options)."""

NOISE_SCHEDULE_KEYS = (
    "num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "prediction_type",
    "steps_offset", "timestep_spacing", "rescale_betas_zero_snr", "clip_sample", "clip_sample_range",
    "set_alpha_to_one",
)  # fmt: skip
"""What the model was trained with (or, for the last three, what its latents need): the keys of the saved scheduler
config that a name keeps, where its class takes them."""
NEEDS = SCHEDULER_NEEDS


def scheduler_table() -> str:
    """One line per name: the name, the class and its options."""
    lines = []
    for name, (class_name, options) in SCHEDULERS.items():
        described = ", ".join(f"{key}={value!r}" for key, value in options.items())
        needs = f"  [needs {NEEDS[class_name][0]}]" if class_name in NEEDS else ""
        lines.append(f"  {name:<19} {class_name}({described}){needs}")
    return "\n".join(lines)


def make_scheduler(name: str, config: dict) -> Any:
    """The scheduler called `name`: its class with the noise schedule of `config` (the model's scheduler config, see
    `NOISE_SCHEDULE_KEYS`), the name's options, and the class defaults for the rest. `clip_sample` is `False` unless
    `config` sets it: the `True` default of DDIM and DDPM is meant for pixels, and would clip latents to [-1, 1].

    Raises:
        ValueError: if the name is unknown or the scheduler needs a package that is not installed, naming it.
    """
    import diffusers

    if name not in SCHEDULERS:
        raise ValueError(f"{name}: unknown scheduler name; choose one of {', '.join(SCHEDULERS)}.")
    class_name, options = SCHEDULERS[name]
    if class_name in NEEDS and importlib.util.find_spec(NEEDS[class_name][0]) is None:
        module, install = NEEDS[class_name]
        raise ValueError(f"{name}: {class_name} needs {module}, which is not installed; {install}.")
    cls = getattr(diffusers, class_name)
    accepted = inspect.signature(cls.__init__).parameters
    kept = {key: config[key] for key in NOISE_SCHEDULE_KEYS if key in config and key in accepted}
    if "clip_sample" in accepted:
        kept.setdefault("clip_sample", False)
    return cls(**kept, **options)
