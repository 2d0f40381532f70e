"""SSPIRPipeline checks in the spirit of diffusers' PipelineTesterMixin, on tiny random components."""

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import DiffusionPipeline

from diffusers_sspir import FixedCaptioner, SSPIRPipeline, SSPIRPipelineOutput, testing
from diffusers_sspir.pipelines.pipeline_sspir import DEFAULT_ADDED_PROMPT
from diffusers_sspir.testing import SSPIRPipelineTesterMixin

STEPS = 2


def make_pipe(seed=0, **kwargs) -> SSPIRPipeline:
    pipe = SSPIRPipeline(**testing.make_sspir_components(seed), **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def make_image(height=9, width=7, seed=0) -> np.ndarray:
    return np.random.RandomState(seed).rand(height, width, 3).astype(np.float32)


def call_kwargs(**overrides):
    kwargs = dict(
        image=make_image(), upscale=2, num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0),
        output_type="np",
    )  # fmt: skip
    kwargs.update(overrides)
    return kwargs


class TestSSPIRPipeline(SSPIRPipelineTesterMixin):
    """The pipeline's contract (`diffusers_sspir.testing.SSPIRPipelineTesterMixin`), on the paper's branches."""


class TestSSPIRPipelineLightBranches(SSPIRPipelineTesterMixin):
    """The same contract with the light branch kind."""

    def get_dummy_components(self, seed: int = 0) -> dict:
        return testing.make_sspir_components(seed, branch_type="attention")


def test_saved_weights_are_safetensors(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    assert list(tmp_path.rglob("*.safetensors")) and not list(tmp_path.rglob("*.bin"))


@pytest.fixture(scope="module")
def pipe():
    return make_pipe()


def test_output_size_matches_input_times_upscale(pipe):
    out = pipe(**call_kwargs())
    assert isinstance(out, SSPIRPipelineOutput)
    assert out.images.shape == (1, 18, 14, 3)
    assert out.structure_images.shape == (1, 18, 14, 3)
    assert np.isfinite(out.images).all() and 0 <= out.images.min() and out.images.max() <= 1
    assert out.prompts == [DEFAULT_ADDED_PROMPT]


@pytest.mark.parametrize(
    "size,upscale,expected", [((9, 7), 4, (36, 28)), ((13, 5), 3, (39, 15)), ((10, 6), 1.5, (15, 9))]
)
def test_exact_output_size_for_odd_sizes(pipe, size, upscale, expected):
    out = pipe(**call_kwargs(image=make_image(*size), upscale=upscale, num_inference_steps=1))
    assert out.images.shape[1:3] == expected


def test_num_images_per_prompt_repeats_prompts(pipe):
    out = pipe(**call_kwargs(image=[make_image(seed=0), make_image(seed=1)], num_images_per_prompt=3, prompt="a cat"))
    assert out.images.shape == (6, 18, 14, 3)
    assert out.structure_images.shape == (6, 18, 14, 3)
    assert out.prompts == [f"a cat, {DEFAULT_ADDED_PROMPT}"] * 6


@pytest.mark.parametrize("output_type", ["pil", "np", "pt", "latent"])
def test_output_types(pipe, output_type):
    out = pipe(**call_kwargs(output_type=output_type, num_inference_steps=1))
    if output_type == "pil":
        assert isinstance(out.images[0], PIL.Image.Image) and out.images[0].size == (14, 18)
        assert isinstance(out.structure_images[0], PIL.Image.Image)
    elif output_type == "pt":
        assert out.images.shape == (1, 3, 18, 14)
    elif output_type == "latent":
        assert out.images.shape == (1, 4, 3, 2)  # padded 24x16 / 8
        assert out.structure_images is None
    else:
        assert out.images.shape == (1, 18, 14, 3)


def test_optional_captioner_survives_save_load(tmp_path):
    pipe = make_pipe(captioner=FixedCaptioner("a stone wall"))
    assert pipe(**call_kwargs(num_inference_steps=1)).prompts == [f"a stone wall, {DEFAULT_ADDED_PROMPT}"]
    pipe.save_pretrained(tmp_path)
    loaded = SSPIRPipeline.from_pretrained(tmp_path)
    assert loaded(**call_kwargs(num_inference_steps=1)).prompts == [f"a stone wall, {DEFAULT_ADDED_PROMPT}"]
    loaded = SSPIRPipeline.from_pretrained(tmp_path, captioner=FixedCaptioner("a lake"))
    assert loaded(**call_kwargs(num_inference_steps=1)).prompts == [f"a lake, {DEFAULT_ADDED_PROMPT}"]


def test_captioner_can_be_swapped_and_prompt_wins(pipe):
    pipe.captioner = FixedCaptioner("a dog")
    try:
        assert pipe(**call_kwargs(num_inference_steps=1)).prompts == [f"a dog, {DEFAULT_ADDED_PROMPT}"]
        assert pipe(**call_kwargs(num_inference_steps=1, prompt="a cat", added_prompt=None)).prompts == ["a cat"]
    finally:
        pipe.captioner = None


def test_generic_diffusion_pipeline_loader(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    loaded = DiffusionPipeline.from_pretrained(tmp_path, custom_pipeline="pipeline_sspir", trust_remote_code=True)
    assert type(loaded).__name__ == "SSPIRPipeline"
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(loaded(**call_kwargs()).images, pipe(**call_kwargs()).images)


def test_missing_component_error_names_component_and_folder(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    for path in (tmp_path / "structure_processor").iterdir():
        path.unlink()
    (tmp_path / "structure_processor").rmdir()
    with pytest.raises(OSError, match=r"missing the component `structure_processor`") as error:
        SSPIRPipeline.from_pretrained(tmp_path)
    assert str(tmp_path) in str(error.value)


def test_classifier_free_guidance_on_and_off():
    pipe = make_pipe()
    calls = []
    original = pipe._encode_windows  # the text encoder's passes
    pipe._encode_windows = lambda prompts, *a, **k: calls.append(list(prompts)) or original(prompts, *a, **k)
    without = pipe(**call_kwargs(guidance_scale=1.0)).images
    assert calls == [[DEFAULT_ADDED_PROMPT]]
    with_cfg = pipe(**call_kwargs(guidance_scale=7.5)).images
    assert calls[-1] == ["dotted, noise, blur, lowres, smooth", DEFAULT_ADDED_PROMPT]
    assert np.abs(without - with_cfg).max() > 1e-4


def test_callback_receives_tensors_and_can_change_latents(pipe):
    seen = []

    def callback(p, step, timestep, tensors):
        seen.append((step, sorted(tensors)))
        assert tensors["latents"].shape == (1, 4, 3, 2)
        assert tensors["image_embeds"].shape[-1] == testing.IMAGE_EMBED_DIM
        return {"latents": torch.zeros_like(tensors["latents"])}

    out = pipe(**call_kwargs(
        output_type="latent", callback_on_step_end=callback,
        callback_on_step_end_tensor_inputs=["latents", "prompt_embeds", "image_embeds"],
    ))  # fmt: skip
    assert [step for step, _ in seen] == list(range(STEPS))
    assert seen[0][1] == ["image_embeds", "latents", "prompt_embeds"]
    assert out.images.abs().max() == 0


def test_prompt_embeds_replace_prompt(pipe):
    embeds, negative = pipe.encode_prompt(["a cat"], torch.device("cpu"), do_classifier_free_guidance=True)
    from_embeds = pipe(**call_kwargs(prompt_embeds=embeds, negative_prompt_embeds=negative)).images
    from_text = pipe(**call_kwargs(prompt="a cat")).images
    np.testing.assert_allclose(from_embeds, from_text, atol=1e-6)


def test_long_prompts_use_up_to_four_windows(pipe):
    def tokens(words):
        return pipe.encode_prompt([" ".join(["ab"] * words)], "cpu", added_prompt=None)[0].shape[1]

    # "ab" is two tokens ("a", "b</w>") in the tiny vocabulary; windows hold 75 tokens.
    assert [tokens(n) for n in (1, 37, 38, 75, 150, 400)] == [77, 77, 152, 152, 302, 302]
    out = pipe(**call_kwargs(prompt=" ".join(["ab"] * 100), num_inference_steps=1))
    assert out.images.shape == (1, 18, 14, 3)


def test_tiled_equals_untiled_when_one_tile_covers_the_image(pipe):
    untiled = pipe(**call_kwargs()).images
    tiled = pipe(**call_kwargs(tile_size=64, tile_overlap=16)).images
    np.testing.assert_allclose(tiled, untiled, atol=1e-5)
    assert not pipe.vae.use_tiling


def test_tile_blend_reproduces_a_pointwise_model_exactly(monkeypatch):
    """With a model that acts on each latent pixel alone, tiles cannot change the result: the Gaussian blend must
    then give the untiled prediction everywhere, overlaps and borders included."""
    import contextlib

    pipe = make_pipe()
    monkeypatch.setattr(pipe, "predict_noise", lambda latents, *args: torch.tanh(latents * 1.7) - 0.3 * latents)
    monkeypatch.setattr(pipe, "vae_tiling", lambda enabled: contextlib.nullcontext())  # isolate the latent blend
    kwargs = call_kwargs(image=make_image(30, 22), upscale=4, output_type="latent", num_inference_steps=3)
    untiled = pipe(**kwargs).images
    tiled = pipe(**{**kwargs, "generator": torch.Generator().manual_seed(0)}, tile_size=64, tile_overlap=24).images
    assert untiled.shape[-2:] == (15, 11)  # several 8-latent tiles in both directions
    torch.testing.assert_close(tiled, untiled, rtol=1e-5, atol=1e-5)


def test_guidance_cutoff_callback(pipe):
    from diffusers.callbacks import SDCFGCutoffCallback

    out = pipe(**call_kwargs(num_inference_steps=4, callback_on_step_end=SDCFGCutoffCallback(cutoff_step_ratio=0.5)))
    assert out.images.shape == (1, 18, 14, 3) and np.isfinite(out.images).all()
    full = pipe(**call_kwargs(num_inference_steps=4)).images
    assert np.abs(out.images - full).max() > 1e-5


def test_sampling_captioner_is_seeded_by_the_generator():
    seen = []

    class SamplingCaptioner:
        def __call__(self, images, generator_seed=None):
            seen.append(generator_seed)
            return [f"caption {generator_seed}" for _ in images]

    pipe = make_pipe(captioner=SamplingCaptioner())
    first = pipe(**call_kwargs(num_inference_steps=1))
    second = pipe(**call_kwargs(num_inference_steps=1))
    assert seen[0] is not None and seen[0] == seen[1] and first.prompts == second.prompts
    np.testing.assert_array_equal(first.images, second.images)
    pipe(**call_kwargs(num_inference_steps=1, generator=None))
    assert seen[-1] is None
    # Re-running with the caption as the prompt (and no captioner) gives the same image: seeding the captioner does
    # not consume the generator's stream.
    pipe.captioner = None
    again = pipe(**call_kwargs(num_inference_steps=1, prompt=first.prompts[0], added_prompt=None))
    np.testing.assert_array_equal(again.images, first.images)


def test_tiling_over_several_tiles(pipe):
    out = pipe(**call_kwargs(image=make_image(20, 12), upscale=4, tile_size=64, tile_overlap=32, output_type="pt"))
    assert out.images.shape == (1, 3, 80, 48) and torch.isfinite(out.images).all()
    calls = []
    original = pipe.predict_noise
    pipe.predict_noise = lambda latents, *a: calls.append(latents.shape[-2:]) or original(latents, *a)
    try:
        pipe(**call_kwargs(image=make_image(20, 12), upscale=4, tile_size=64, tile_overlap=32, num_inference_steps=1))
    finally:
        del pipe.predict_noise
    assert len(calls) == 2 and all(tuple(c) == (8, 6) for c in calls)  # 10x6 latent: two 8-row tiles


def test_color_fix_pulls_the_colours_towards_the_upscaled_input(pipe):
    import torch.nn.functional as F

    image = make_image(18, 14)
    upscaled = F.interpolate(torch.from_numpy(image).permute(2, 0, 1)[None], size=(36, 28), mode="bicubic")
    target = upscaled.clamp(0, 1)[0].permute(1, 2, 0).numpy()
    outputs = {fix: pipe(**call_kwargs(image=image, color_fix=fix)).images[0] for fix in ("wavelet", "adain", None)}

    def mean_colour_error(result):
        return np.abs(result.mean(axis=(0, 1)) - target.mean(axis=(0, 1))).max()

    # Measured here: adain 0.002, wavelet 0.026, no fix 0.12 (the random model shifts the colours).
    assert mean_colour_error(outputs["adain"]) < 0.01
    assert mean_colour_error(outputs["wavelet"]) < 0.05
    assert mean_colour_error(outputs[None]) > 2 * mean_colour_error(outputs["wavelet"])
    assert np.abs(outputs["wavelet"] - outputs[None]).max() > 1e-3


def test_start_point_lr_noises_to_the_first_timestep():
    pipe = make_pipe()
    seen = []
    original = pipe.scheduler.add_noise
    pipe.scheduler.add_noise = lambda x, noise, t: seen.append(t.clone()) or original(x, noise, t)
    pipe(**call_kwargs(num_inference_steps=50))
    assert seen[0].tolist() == [981]
    seen.clear()
    noise_start = pipe(**call_kwargs(start_point="noise")).images
    assert not seen
    assert noise_start.shape == (1, 18, 14, 3)


def test_cpu_offload_sequence_names_every_model(pipe):
    names = pipe.model_cpu_offload_seq.split("->")
    models = {name for name, c in pipe.components.items() if isinstance(c, torch.nn.Module)}
    assert models - {"controlnet"} <= set(names) and len(names) == len(set(names))
    assert set(names) - models <= set(pipe._optional_components)  # an optional model left out (None) is skipped


def test_model_cpu_offload_runs():
    """Accelerate's offload hooks on every model, in `model_cpu_offload_seq` order (the ControlNet with its own hook).
    Without a GPU the hooks use the CPU as execution device, which still runs the whole hook chain."""
    pipe = make_pipe()
    expected = pipe(**call_kwargs()).images
    device = "cuda" if torch.cuda.is_available() else "cpu"
    pipe.enable_model_cpu_offload(device=device)
    assert len(pipe._all_hooks) == 7  # six chained models and the ControlNet
    generator = torch.Generator(device).manual_seed(0) if device == "cuda" else torch.Generator().manual_seed(0)
    out = pipe(**call_kwargs(generator=generator)).images
    if device == "cpu":
        np.testing.assert_array_equal(out, expected)
    assert all(p.device.type == "cpu" for p in pipe.unet.parameters())  # offloaded again after the call


@pytest.mark.parametrize(
    "keyword,dtype", [("dtype", torch.bfloat16), ("dtype", torch.float16), ("torch_dtype", torch.bfloat16)]
)
def test_from_pretrained_in_half_precision(pipe, tmp_path, keyword, dtype):
    pipe.save_pretrained(tmp_path)
    loaded = SSPIRPipeline.from_pretrained(tmp_path, **{keyword: dtype})
    loaded.set_progress_bar_config(disable=True)
    for name in ("unet", "controlnet", "structure_processor", "image_refiner", "vae", "text_encoder", "image_encoder"):
        assert getattr(loaded, name).dtype == dtype, name
    reference = pipe(**call_kwargs(output_type="pt")).images
    out = loaded(**call_kwargs(output_type="pt")).images
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert (out - reference).abs().mean() < 0.05  # half precision follows the float32 result


def test_sdpa_is_the_default_kernel_after_loading(pipe, tmp_path):
    from diffusers.models.attention_processor import AttnProcessor2_0

    from diffusers_sspir.models.attention import dual_prior_kernel

    pipe.save_pretrained(tmp_path)
    loaded = SSPIRPipeline.from_pretrained(tmp_path)
    for model in (loaded.unet, loaded.controlnet):  # SD's layers and the branches' alike
        assert all(isinstance(dual_prior_kernel(p), AttnProcessor2_0) for p in model.attn_processors.values())


@pytest.mark.parametrize(
    "switch",
    [
        pytest.param(lambda p: (p.fuse_qkv_projections(), p.controlnet.fuse_qkv_projections()), id="fuse_qkv"),
        pytest.param(lambda p: p.enable_attention_slicing(1), id="attention_slicing"),
        pytest.param(lambda p: p.disable_xformers_memory_efficient_attention(), id="disable_xformers"),
    ],
)
def test_pipeline_level_attention_switches_keep_the_output(switch):
    pipe = make_pipe()
    expected = pipe(**call_kwargs()).images
    switch(pipe)
    np.testing.assert_allclose(pipe(**call_kwargs()).images, expected, atol=1e-4)


def test_long_caption_is_cut_before_the_added_prompt(pipe):
    caption = " ".join(["ab"] * 200)  # 400 tokens: more than the 4 windows hold
    prompt = pipe.join_prompt(caption, DEFAULT_ADDED_PROMPT)
    assert prompt.endswith(f", {DEFAULT_ADDED_PROMPT}")
    assert len(pipe._token_ids(prompt)) <= 300
    with_added, _ = pipe.encode_prompt([caption], torch.device("cpu"))
    without, _ = pipe.encode_prompt([caption], torch.device("cpu"), added_prompt=None)
    assert with_added.shape == without.shape == (1, 302, 16)
    assert not torch.equal(with_added, without)
    out = pipe(**call_kwargs(prompt=caption, num_inference_steps=1))
    assert out.prompts == [prompt]


class _SeededCaptioner:
    """Describes each image by its mean and the seed it was given: a caption that depends on pixels and seed."""

    def __call__(self, images, generator_seed=None):
        return [f"mean {np.asarray(image).mean():.3f} seed {generator_seed}" for image in images]


def test_describe_gives_the_prompts_a_call_encodes(pipe):
    pipe.captioner = _SeededCaptioner()
    try:
        kwargs = call_kwargs(image=[make_image(seed=0), make_image(seed=1)], generator=None, num_inference_steps=1)
        for generator_seed in (0, 1):
            kwargs["generator"] = torch.Generator().manual_seed(generator_seed)
            prompts = pipe(**kwargs).prompts
            generator = torch.Generator().manual_seed(generator_seed)
            described = pipe.describe(kwargs["image"], upscale=2, generator=generator)
            assert described == prompts and len(set(described)) == 2
        assert pipe.describe(make_image(), prompt="a cat", added_prompt=None) == ["a cat"]
        assert pipe.describe(make_image(), prompt="a cat") == [f"a cat, {DEFAULT_ADDED_PROMPT}"]
    finally:
        pipe.captioner = None
    with pytest.raises(ValueError, match="`prompt` has 2 entries but 1 images"):
        pipe.describe(make_image(), prompt=["a", "b"])


def test_pickle_weights_are_refused_unless_asked_for(tmp_path):
    pipe = make_pipe()
    pipe.save_pretrained(tmp_path)
    pipe.image_refiner.save_pretrained(tmp_path / "image_refiner", safe_serialization=False)
    (tmp_path / "image_refiner" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(OSError, match=r"`image_refiner` .* only pickle weights \(diffusion_pytorch_model.bin\)"):
        SSPIRPipeline.from_pretrained(tmp_path)
    trusted = SSPIRPipeline.from_pretrained(tmp_path, use_safetensors=False)  # the user's explicit choice
    for name, tensor in pipe.image_refiner.state_dict().items():
        torch.testing.assert_close(trusted.image_refiner.state_dict()[name], tensor, rtol=0, atol=0)
