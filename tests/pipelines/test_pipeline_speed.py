"""The pipeline's speed options keep the output, compile to one graph per model without recompiling, and the
denoising loop never waits for the device (that last check needs CUDA)."""

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0, FusedAttnProcessor2_0

from diffusers_sspir import SSPIRPipeline, testing
from diffusers_sspir.models.attention import dual_prior_kernel

STEPS = 3
# Fused projections and channels-last reorder float32 sums: the outputs agree to rounding, not bit for bit.
ATOL = 1e-5


def make_pipe(seed=0) -> SSPIRPipeline:
    pipe = SSPIRPipeline(**testing.make_sspir_components(seed))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def call_kwargs(**overrides):
    image = np.random.RandomState(0).rand(16, 16, 3).astype(np.float32)
    kwargs = dict(
        image=image, upscale=4, num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0),
        output_type="np",
    )  # fmt: skip
    kwargs.update(overrides)
    return kwargs


@pytest.fixture
def dynamo():
    """Fresh dynamo state and counters, reset afterwards so no compiled code leaks into other tests."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    yield torch._dynamo
    torch._dynamo.reset()


@pytest.fixture
def mark_steps(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: calls.append(1))
    return calls


def kernels(model) -> set[type]:
    """The kernel types of every attention layer, SD's and the branches' (inside their DualPriorAttnProcessor)."""
    return {type(dual_prior_kernel(processor)) for processor in model.attn_processors.values()}


def test_fuse_qkv_projections_covers_the_controlnet_and_keeps_the_output():
    pipe = make_pipe()
    expected = pipe(**call_kwargs()).images
    pipe.fuse_qkv_projections()
    for model in (pipe.unet, pipe.controlnet):
        assert kernels(model) == {FusedAttnProcessor2_0}
        assert all(m.fused_projections for m in model.modules() if isinstance(m, Attention))
    np.testing.assert_allclose(pipe(**call_kwargs()).images, expected, atol=ATOL)
    pipe.unfuse_qkv_projections()
    assert kernels(pipe.unet) == kernels(pipe.controlnet) == {AttnProcessor2_0}
    np.testing.assert_allclose(pipe(**call_kwargs()).images, expected, atol=ATOL)


def test_fuse_qkv_projections_can_leave_the_controlnet_alone():
    pipe = make_pipe()
    pipe.fuse_qkv_projections(controlnet=False)
    assert kernels(pipe.unet) == {FusedAttnProcessor2_0} and kernels(pipe.controlnet) == {AttnProcessor2_0}


def test_channels_last_keeps_the_output():
    pipe = make_pipe()
    expected = pipe(**call_kwargs()).images
    pipe.enable_channels_last()
    for model in (pipe.unet, pipe.controlnet):
        assert model.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(pipe(**call_kwargs()).images, expected, atol=ATOL)
    pipe.disable_channels_last()
    assert pipe.unet.conv_in.weight.is_contiguous() and pipe.controlnet.conv_in.weight.is_contiguous()
    np.testing.assert_allclose(pipe(**call_kwargs()).images, expected, atol=ATOL)


def test_compile_gives_one_graph_per_model_that_is_never_recompiled(dynamo, mark_steps):
    """`backend="eager"` runs dynamo's capture (graph breaks, guards, recompilations) without a compiler, so the
    output is the eager one exactly."""
    pipe = make_pipe()
    expected = pipe(**call_kwargs()).images
    assert not mark_steps  # uncompiled models need no CUDA-graph steps
    pipe.compile(backend="eager", fullgraph=True)  # fullgraph: a graph break would raise
    assert pipe.unet._compiled_call_impl is not None and pipe.controlnet._compiled_call_impl is not None
    np.testing.assert_array_equal(pipe(**call_kwargs()).images, expected)
    assert dynamo.utils.counters["stats"]["unique_graphs"] == 2  # the ControlNet and the UNet
    assert len(mark_steps) == STEPS  # one CUDA-graph step per ControlNet + UNet evaluation
    with dynamo.config.patch(error_on_recompile=True):  # other timesteps, step counts, seeds, guidance: same graphs
        pipe(**call_kwargs(num_inference_steps=5, generator=torch.Generator().manual_seed(1), guidance_scale=3.0))


def test_compile_after_fusing_and_channels_last(dynamo):
    pipe = make_pipe()
    expected = pipe(**call_kwargs()).images
    pipe.fuse_qkv_projections()
    pipe.enable_channels_last()
    pipe.compile(backend="eager", fullgraph=True)
    np.testing.assert_allclose(pipe(**call_kwargs()).images, expected, atol=ATOL)


def test_compiled_tiles_share_one_graph(dynamo):
    pipe = make_pipe()
    kwargs = call_kwargs(image=np.random.RandomState(0).rand(40, 40, 3).astype(np.float32), tile_size=64)
    expected = pipe(**kwargs).images
    pipe.compile(backend="eager", fullgraph=True)
    np.testing.assert_array_equal(pipe(**{**kwargs, "generator": torch.Generator().manual_seed(0)}).images, expected)
    assert dynamo.utils.counters["stats"]["unique_graphs"] == 2  # 20x20 latent, 8x8 tiles: all the same shape


@pytest.mark.slow
def test_inductor_compile_keeps_the_output(dynamo):
    """The real compiler on the CPU (slow: about a minute)."""
    pipe = make_pipe()
    expected = pipe(**call_kwargs()).images
    pipe.fuse_qkv_projections()
    pipe.compile(fullgraph=True)
    np.testing.assert_allclose(pipe(**call_kwargs()).images, expected, atol=1e-4)


class SyncTrap:
    """Sets CUDA's sync debug mode to "error" from the end of the first step to the end of the last."""

    def __init__(self, steps):
        self.steps = steps

    def __call__(self, pipe, step, timestep, callback_kwargs):
        torch.cuda.set_sync_debug_mode("error" if step < self.steps - 1 else "default")
        return {}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="host-device syncs exist only with CUDA")
@pytest.mark.parametrize("tile_size", [None, 64], ids=["whole", "tiled"])
def test_denoising_loop_does_not_sync_on_cuda(tile_size):
    pipe = make_pipe().to("cuda")
    kwargs = call_kwargs(
        image=np.random.RandomState(0).rand(40, 40, 3).astype(np.float32),
        tile_size=tile_size,
        num_inference_steps=4,
        generator=torch.Generator("cuda").manual_seed(0),
        callback_on_step_end=SyncTrap(4),
    )
    try:
        pipe(**kwargs)  # raises "called a synchronizing CUDA operation" on a sync
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need CUDA")
@pytest.mark.parametrize("compile_kwargs", [{"mode": "reduce-overhead"}, {"backend": "cudagraphs"}])
def test_cuda_graphs_keep_the_output(dynamo, compile_kwargs):
    """Compiled with CUDA graphs, the ControlNet's residuals must survive until the UNet reads them, at every step
    and every tile, and replays must give the same images."""
    pipe = make_pipe().to("cuda")
    image = np.random.RandomState(0).rand(40, 40, 3).astype(np.float32)
    cases = [{}, {"tile_size": 64}]

    def run(extra):
        return pipe(**call_kwargs(image=image, generator=torch.Generator("cuda").manual_seed(0), **extra)).images

    expected = [run(extra) for extra in cases]
    pipe.compile(fullgraph=True, **compile_kwargs)
    for _ in range(2):
        for extra, reference in zip(cases, expected):
            np.testing.assert_allclose(run(extra), reference, atol=1e-3)


def test_unfuse_after_a_second_fuse_without_controlnet_unfuses_the_controlnet():
    pipe = make_pipe()
    pipe.fuse_qkv_projections()
    pipe.fuse_qkv_projections(controlnet=False)
    pipe.unfuse_qkv_projections()
    assert FusedAttnProcessor2_0 not in kernels(pipe.controlnet)
