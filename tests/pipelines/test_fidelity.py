"""Fidelity controls: `strength` (img2img) and restoration guidance towards the structure prior (SUPIR), and the
recommended call settings a pipeline carries."""

import importlib.util
import json

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, EulerDiscreteScheduler

from diffusers_sspir import SSPIRPipeline
from diffusers_sspir.defaults import CALL_DEFAULTS, SCHEDULER_NEEDS
from diffusers_sspir.schedulers import SCHEDULERS, make_scheduler
from diffusers_sspir.testing import SCHEDULER_CONFIG

from .test_pipeline_sspir import call_kwargs, make_image, make_pipe


@pytest.fixture(scope="module")
def pipe():
    return make_pipe()


def latents_of(pipe, **kwargs):
    return pipe(**call_kwargs(output_type="latent", **kwargs)).images


def test_full_strength_and_zero_guidance_are_todays_output(pipe):
    expected = pipe(**call_kwargs(num_inference_steps=4)).images
    for extra in (dict(strength=1.0), dict(restoration_guidance_scale=0.0), dict(restoration_guidance_decay=0.0)):
        np.testing.assert_array_equal(pipe(**call_kwargs(num_inference_steps=4, **extra)).images, expected)


def test_strength_runs_the_last_part_of_the_schedule_from_its_exact_first_timestep(pipe, monkeypatch):
    noised_to, steps = [], []
    original = pipe.scheduler.add_noise
    monkeypatch.setattr(pipe.scheduler, "add_noise", lambda x, n, t: noised_to.append(t.clone()) or original(x, n, t))
    callback = lambda p, i, t, kw: steps.append(int(t)) or {}  # noqa: E731
    pipe(**call_kwargs(num_inference_steps=10, strength=0.3, callback_on_step_end=callback))
    pipe.scheduler.set_timesteps(10)
    assert steps == pipe.scheduler.timesteps[7:].tolist()  # int(10 * 0.3) = 3 steps
    assert noised_to[0].tolist() == [pipe.scheduler.timesteps[7].item()]
    more_fidelity = latents_of(pipe, strength=0.3, num_inference_steps=10)
    less_fidelity = latents_of(pipe, strength=1.0, num_inference_steps=10)
    start = pipe.vae.encode(torch.zeros(1, 3, 24, 16)).latent_dist.mode()  # only the shape matters here
    assert more_fidelity.shape == less_fidelity.shape == start.shape[:1] + more_fidelity.shape[1:]


def _one_step(scheduler, output, sample, t):
    """The scheduler's own prediction of the clean sample from one step (a fresh state each time)."""
    scheduler.set_timesteps(10)
    scheduler.set_begin_index(0) if hasattr(scheduler, "set_begin_index") else None
    scheduler.scale_model_input(sample, t)
    return scheduler.step(output, t, sample).pred_original_sample


@pytest.mark.parametrize("scheduler_class", [DDIMScheduler, EulerDiscreteScheduler])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_guidance_moves_the_schedulers_own_clean_prediction_towards_the_reference(scheduler_class, prediction_type):
    """Checked against the scheduler's own `pred_original_sample`, not against this code's formulas."""
    pipe = make_pipe()
    scheduler = scheduler_class.from_config({**SCHEDULER_CONFIG, "prediction_type": prediction_type})
    pipe.scheduler = scheduler
    generator = torch.Generator().manual_seed(0)
    sample, output, reference = (torch.randn(2, 4, 3, 2, generator=generator, dtype=torch.float64) for _ in range(3))
    scheduler.set_timesteps(10)
    t = scheduler.timesteps[0]
    x0 = _one_step(scheduler, output, sample, t)
    for scale, decay in ((1.0, 0.0), (0.5, 0.0), (0.7, 4.0)):
        scheduler.set_timesteps(10)
        scheduler.set_begin_index(0) if hasattr(scheduler, "set_begin_index") else None
        scheduler.scale_model_input(sample, t)  # initialises the step index, as the loop has
        guided = pipe.guide_towards(output, sample, reference, t.cpu(), scale, decay)
        alphas = scheduler.alphas_cumprod.double()
        sigma, sigma_max = (((1 - a) / a).sqrt() for a in (alphas[int(t)], alphas[-1]))
        if scheduler_class is EulerDiscreteScheduler:
            sigma = scheduler.sigmas[0].double()
        weight = min(scale * float(sigma / sigma_max) ** decay, 1.0)
        expected = x0 + weight * (reference - x0)
        torch.testing.assert_close(_one_step(scheduler, guided, sample, t), expected, rtol=1e-5, atol=1e-5)  # float32


def test_full_guidance_pulls_the_result_onto_the_structure_prior(pipe):
    captured = {}
    original = pipe.encode_structure_reference
    pipe.encode_structure_reference = lambda *a: captured.setdefault("z", original(*a))
    try:
        distances = []
        for scale in (0.0, 0.5, 1.0):
            latents = latents_of(pipe, num_inference_steps=6, restoration_guidance_scale=scale,
                                 restoration_guidance_decay=0.0)  # fmt: skip
            reference = captured.get("z", original(*_reference_args(pipe)))
            distances.append(float((latents - reference).pow(2).mean()))
    finally:
        del pipe.encode_structure_reference
    assert distances[0] > distances[1] > distances[2]
    assert distances[2] < 0.05 * distances[0]


def _reference_args(pipe):
    image = torch.from_numpy(make_image()).permute(2, 0, 1)[None]
    upscaled = torch.nn.functional.interpolate(image, size=(18, 14), mode="bicubic").clamp(0, 1)
    padded = torch.nn.functional.pad(upscaled, (0, 2, 0, 6), mode="reflect")
    return pipe.structure_processor(padded), padded.shape[-2:], 1


def test_guidance_and_strength_keep_a_batch_equal_to_its_images_alone(pipe):
    images = [make_image(seed=0), make_image(seed=1)]
    settings = dict(strength=0.6, restoration_guidance_scale=0.5, num_inference_steps=5)
    batched = pipe(**call_kwargs(image=images, generator=[torch.Generator().manual_seed(s) for s in (0, 1)],
                                 **settings)).images  # fmt: skip
    for i in range(2):
        alone = pipe(**call_kwargs(image=images[i], generator=torch.Generator().manual_seed(i), **settings)).images
        np.testing.assert_allclose(batched[i], alone[0], atol=1e-4)


def test_guidance_with_tiling(pipe):
    out = pipe(**call_kwargs(image=make_image(40, 36), upscale=4, num_inference_steps=2, tile_size=64,
                             restoration_guidance_scale=0.5, strength=0.5)).images  # fmt: skip
    assert out.shape == (1, 160, 144, 3) and np.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_every_scheduler_runs_the_fidelity_controls(pipe, name):
    needs = SCHEDULER_NEEDS.get(SCHEDULERS[name][0])
    if needs and importlib.util.find_spec(needs[0]) is None:
        pytest.skip(f"{SCHEDULERS[name][0]} needs {needs[0]} ({needs[1]})")
    original = pipe.scheduler
    pipe.scheduler = make_scheduler(name, original.config)
    try:
        out = pipe(**call_kwargs(num_inference_steps=4, strength=0.5, restoration_guidance_scale=0.5)).images
    finally:
        pipe.scheduler = original
    assert np.isfinite(out).all()


BAD = {
    "strength 0": (dict(strength=0), "`strength` must be a finite number > 0 and <= 1"),
    "strength above 1": (dict(strength=1.5), "`strength` must be a finite number > 0 and <= 1"),
    "strength nan": (dict(strength=float("nan")), "`strength` must be a finite number"),
    "strength too small for the steps": (dict(strength=0.1, num_inference_steps=5), "runs no step"),
    "strength from noise": (dict(strength=0.5, start_point="noise"), "needs `start_point='lr'`"),
    "guidance above 1": (dict(restoration_guidance_scale=1.5), "`restoration_guidance_scale` must be"),
    "guidance negative": (dict(restoration_guidance_scale=-0.1), "`restoration_guidance_scale` must be"),
    "decay negative": (dict(restoration_guidance_decay=-1), "`restoration_guidance_decay` must be"),
}


@pytest.mark.parametrize("kwargs, message", BAD.values(), ids=BAD.keys())
def test_bad_fidelity_settings_are_refused(pipe, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        pipe(**call_kwargs(**kwargs))


# ------------------------------------------------------------------ recommended settings


def test_recommended_settings_are_the_defaults_of_a_call_and_survive_save_load(tmp_path):
    recommended = {"num_inference_steps": 3, "guidance_scale": 1.0, "strength": 0.7}
    pipe = make_pipe(recommended_settings=recommended)
    assert pipe.recommended_settings == {**CALL_DEFAULTS, **recommended}
    steps = []
    callback = lambda p, i, t, kw: steps.append(i) or {}  # noqa: E731
    kwargs = call_kwargs(callback_on_step_end=callback)
    del kwargs["num_inference_steps"]
    by_default = pipe(**kwargs).images
    assert steps == [0, 1] and not pipe.do_classifier_free_guidance  # int(3 * 0.7) = 2 steps, no CFG
    explicit = make_pipe()(**call_kwargs(num_inference_steps=3, guidance_scale=1.0, strength=0.7)).images
    np.testing.assert_array_equal(by_default, explicit)
    assert pipe(**call_kwargs(num_inference_steps=4, guidance_scale=7.5)).images.shape == by_default.shape

    pipe.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "model_index.json").read_text())["recommended_settings"] == recommended
    loaded = SSPIRPipeline.from_pretrained(tmp_path)
    assert loaded.recommended_settings == pipe.recommended_settings
    loaded.set_progress_bar_config(disable=True)
    fresh = call_kwargs()
    del fresh["num_inference_steps"]
    np.testing.assert_allclose(loaded(**fresh).images, by_default, atol=1e-5)  # loading picks SDPA
    assert make_pipe().recommended_settings == CALL_DEFAULTS


@pytest.mark.parametrize(
    "settings, message",
    [({"steps": 4}, "unknown settings \\['steps'\\]"), ({"guidance_scale": 1e9}, "`guidance_scale` must be"),
     ({"num_inference_steps": 0}, "`num_inference_steps` must be an integer >= 1"), ([1], "must be a dict"),
     ({"color_fix_levels": 11}, "`color_fix_levels` must be an integer >= 1 and <= 10"),
     ({"color_fix_levels": 2.5}, "`color_fix_levels` must be an integer")],
)  # fmt: skip
def test_bad_recommended_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        make_pipe(recommended_settings=settings)


# ------------------------------------------------------------------ the colour fix's levels


def test_color_fix_levels_keep_more_of_the_input_with_fewer_and_can_be_recommended(tmp_path):
    import torch.nn.functional as F

    image = make_image(18, 14)
    upscaled = F.interpolate(torch.from_numpy(image).permute(2, 0, 1)[None], size=(36, 28), mode="bicubic")
    target = upscaled.clamp(0, 1)[0].permute(1, 2, 0).numpy()
    pipe = make_pipe()
    default = pipe(**call_kwargs(image=image)).images[0]
    np.testing.assert_array_equal(default, pipe(**call_kwargs(image=image, color_fix_levels=5)).images[0])
    errors = [
        np.abs(pipe(**call_kwargs(image=image, color_fix_levels=n)).images[0] - target).mean() for n in (1, 3, 5)
    ]
    assert errors[0] < errors[1] < errors[2]  # fewer levels: closer to the upscaled input
    for fix in ("adain", None):  # the levels are the wavelet's only
        np.testing.assert_array_equal(pipe(**call_kwargs(image=image, color_fix=fix, color_fix_levels=2)).images,
                                      pipe(**call_kwargs(image=image, color_fix=fix)).images)  # fmt: skip

    recommending = make_pipe(recommended_settings={"color_fix_levels": 3})
    three = pipe(**call_kwargs(image=image, color_fix_levels=3)).images[0]
    np.testing.assert_array_equal(recommending(**call_kwargs(image=image)).images[0], three)
    recommending.save_pretrained(tmp_path)
    assert SSPIRPipeline.from_pretrained(tmp_path).recommended_settings["color_fix_levels"] == 3
    for bad, message in ((0, ">= 1"), (11, "<= 10"), (True, "must be an integer"), (3.0, "must be an integer")):
        with pytest.raises(ValueError, match=f"`color_fix_levels` .*{message}"):
            pipe(**call_kwargs(image=image, color_fix_levels=bad))
