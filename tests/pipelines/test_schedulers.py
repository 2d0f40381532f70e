"""The pipeline runs with every Karras scheduler that fits Stable Diffusion 1.5."""

import importlib.util
import re
from pathlib import Path

import diffusers
import numpy as np
import pytest
from diffusers.schedulers import KarrasDiffusionSchedulers

from diffusers_sspir.defaults import SCHEDULER_NEEDS, UNSUPPORTED_SCHEDULERS

from .test_pipeline_sspir import call_kwargs, make_pipe

# EDM-parameterised schedulers are for EDM models, not SD-1.5's discrete DDPM training: the pipeline refuses them.
NOT_FOR_SD = set(UNSUPPORTED_SCHEDULERS)
NEEDS = {name: module for name, (module, _) in SCHEDULER_NEEDS.items()}
# Stable Diffusion 1.5 ships PNDM with `skip_prk_steps=True`; the PRK warm-up needs more steps than these tests run.
SD_OPTIONS = {"PNDMScheduler": {"skip_prk_steps": True}}
SCHEDULERS = [s.name for s in KarrasDiffusionSchedulers if s.name not in NOT_FOR_SD]


@pytest.fixture(scope="module")
def pipe():
    return make_pipe()


@pytest.mark.parametrize("name", SCHEDULERS)
@pytest.mark.parametrize("start_point", ["lr", "noise"])
def test_every_scheduler(pipe, name, start_point):
    if name in NEEDS and importlib.util.find_spec(NEEDS[name]) is None:
        pytest.skip(f"{name} needs {NEEDS[name]}")
    pipe.scheduler = getattr(diffusers, name).from_config(pipe.scheduler.config, **SD_OPTIONS.get(name, {}))
    first = pipe(**call_kwargs(num_inference_steps=3, start_point=start_point)).images
    second = pipe(**call_kwargs(num_inference_steps=3, start_point=start_point)).images
    assert first.shape == (1, 18, 14, 3) and np.isfinite(first).all()
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("name,first", [("DDIMScheduler", 981), ("UniPCMultistepScheduler", 999)])
def test_lr_start_uses_the_schedulers_first_timestep(pipe, name, first):
    pipe.scheduler = getattr(diffusers, name).from_config(pipe.scheduler.config)
    seen = []
    original = pipe.scheduler.add_noise
    pipe.scheduler.add_noise = lambda x, noise, t: seen.append(int(t[0])) or original(x, noise, t)
    pipe(**call_kwargs(num_inference_steps=50, guidance_scale=1.0))
    assert seen == [first]


@pytest.mark.parametrize("name", sorted(UNSUPPORTED_SCHEDULERS))
def test_schedulers_that_cannot_serve_sspir_are_refused(pipe, name):
    if name in NEEDS and importlib.util.find_spec(NEEDS[name]) is None:
        pytest.skip(f"{name} needs {NEEDS[name]}")
    original = pipe.scheduler
    pipe.scheduler = getattr(diffusers, name)()
    try:
        with pytest.raises(ValueError, match=f"{name} cannot run SSP-IR: it is made for EDM"):
            pipe(**call_kwargs(num_inference_steps=2))
    finally:
        pipe.scheduler = original


def test_usage_docs_list_the_refused_schedulers():
    usage = (Path(__file__).parents[2] / "docs" / "usage.md").read_text()
    listed = set(re.findall(r"^- `(\w+Scheduler)`: refused", usage, flags=re.M))
    assert listed == set(UNSUPPORTED_SCHEDULERS)
