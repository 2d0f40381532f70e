"""Tests for `diffusers_sspir.data.degradations` (CPU, fast; CUDA checks run when a GPU is present)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from diffusers_sspir.data import RealESRGANDegradation, RealESRGANDegradationConfig
from diffusers_sspir.data.degradations import (
    KERNEL_TYPES,
    SECOND_STAGE,
    DegradationStage,
    _add_random_noise,
    _filter,
    _jpeg,
    circular_lowpass_kernel,
    generalized_gaussian_kernel,
    plateau_kernel,
    random_mixed_kernels,
    usm_sharpen,
)

# Everything off except the resizes (area only) and JPEG at quality 100, which cannot be switched off.
RESIZE_ONLY = dict(
    kernel_size_range=(1, 1),
    sinc_prob=0.0,
    sinc_prob2=0.0,
    second_blur_prob=0.0,
    final_sinc_prob=0.0,
    resize_prob=(0.0, 0.0, 1.0),
    resize_prob2=(0.0, 0.0, 1.0),
    resize_modes=("area",),
    gaussian_noise_prob=1.0,
    noise_range=(0.0, 0.0),
    gaussian_noise_prob2=1.0,
    noise_range2=(0.0, 0.0),
    jpeg_range=(100.0, 100.0),
    jpeg_range2=(100.0, 100.0),
)


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _texture(batch: int = 2, height: int = 64, width: int = 64, seed: int = 0) -> torch.Tensor:
    """Random, detailed images in [0, 1]."""
    return torch.rand(batch, 3, height, width, generator=_generator(seed))


def _smooth(batch: int = 2, height: int = 64, width: int = 64) -> torch.Tensor:
    """Smooth colour gradients in [0.1, 0.9]."""
    y = torch.linspace(0, 1, height)[:, None]
    x = torch.linspace(0, 1, width)[None, :]
    channels = [0.5 + 0.4 * torch.sin(2 * math.pi * (k + 1) * 0.3 * (x + y) + k) for k in range(3)]
    return torch.stack(channels)[None].repeat(batch, 1, 1, 1)


def _high_frequency_energy(images: torch.Tensor) -> float:
    """Mean squared response of a discrete Laplacian."""
    laplacian = images[..., 1:-1, 1:-1] * 4 - images[..., :-2, 1:-1] - images[..., 2:, 1:-1]
    laplacian = laplacian - images[..., 1:-1, :-2] - images[..., 1:-1, 2:]
    return float(laplacian.pow(2).mean())


# ---------------------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------------------

# train_realesrgan_x4plus.yml
DEFAULTS = {
    "scale": 4,
    "kernel_size_range": (7, 21),
    "kernel_list": ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"),
    "kernel_prob": (0.45, 0.25, 0.12, 0.03, 0.12, 0.03),
    "sinc_prob": 0.1,
    "blur_sigma": (0.2, 3.0),
    "betag_range": (0.5, 4.0),
    "betap_range": (1.0, 2.0),
    "resize_prob": (0.2, 0.7, 0.1),
    "resize_range": (0.15, 1.5),
    "gaussian_noise_prob": 0.5,
    "noise_range": (1.0, 30.0),
    "poisson_scale_range": (0.05, 3.0),
    "gray_noise_prob": 0.4,
    "jpeg_range": (30.0, 95.0),
    "second_blur_prob": 0.8,
    "kernel_list2": ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"),
    "kernel_prob2": (0.45, 0.25, 0.12, 0.03, 0.12, 0.03),
    "sinc_prob2": 0.1,
    "blur_sigma2": (0.2, 1.5),
    "betag_range2": (0.5, 4.0),
    "betap_range2": (1.0, 2.0),
    "resize_prob2": (0.3, 0.4, 0.3),
    "resize_range2": (0.3, 1.2),
    "gaussian_noise_prob2": 0.5,
    "noise_range2": (1.0, 25.0),
    "poisson_scale_range2": (0.05, 2.5),
    "gray_noise_prob2": 0.4,
    "jpeg_range2": (30.0, 95.0),
    "final_sinc_prob": 0.8,
    "jpeg_first_prob": 0.5,
}


def _flat(config: RealESRGANDegradationConfig, name: str):
    """A config's value under Real-ESRGAN's flat option name."""
    stage, field = RealESRGANDegradationConfig.flat_names().get(name, (None, name))
    return getattr(getattr(config, stage) if stage else config, field)


def test_defaults_are_realesrgan_x4plus():
    config = RealESRGANDegradationConfig()
    assert {name: _flat(config, name) for name in DEFAULTS} == DEFAULTS
    assert config.resize_modes == ("area", "bilinear", "bicubic")
    assert config.rotation_range == (-math.pi, math.pi)
    assert config.first.blur_prob == 1.0 and config.second == SECOND_STAGE


def test_config_accepts_lists_and_stores_tuples():
    stage = DegradationStage(noise_range=[2, 3], kernel_list=["iso"], kernel_prob=[1.0])
    assert stage.noise_range == (2, 3) and stage.kernel_list == ("iso",) and stage.kernel_prob == (1.0,)
    config = RealESRGANDegradationConfig.from_dict({"resize_modes": ["area"], "first": {"noise_range": [2, 3]}})
    assert config.resize_modes == ("area",) and config.first.noise_range == (2, 3)


def test_from_dict_reads_flat_and_nested_names_alike_and_round_trips():
    flat = RealESRGANDegradationConfig.from_dict({"noise_range2": [1, 5], "second_blur_prob": 0.3, "sinc_prob": 0.2})
    nested = RealESRGANDegradationConfig.from_dict(
        {"second": {"noise_range": (1, 5), "blur_prob": 0.3}, "first": {"sinc_prob": 0.2}}
    )
    assert flat == nested
    assert flat.second.noise_range == (1, 5) and flat.second.blur_sigma == SECOND_STAGE.blur_sigma
    assert RealESRGANDegradationConfig.from_dict(flat.to_dict()) == flat
    assert RealESRGANDegradationConfig.from_dict({}) == RealESRGANDegradationConfig()
    with pytest.raises(ValueError, match=r"`noise_range2` and `second.noise_range` name one field"):
        RealESRGANDegradationConfig.from_dict({"noise_range2": (1, 5), "second": {"noise_range": (1, 5)}})
    with pytest.raises(ValueError, match=r"unknown degradation fields \['noise'\]"):
        RealESRGANDegradationConfig.from_dict({"noise": 1})
    with pytest.raises(ValueError, match=r"unknown `first` fields \['noise'\]"):
        RealESRGANDegradationConfig.from_dict({"first": {"noise": 1}})


BAD_CONFIGS = {
    "scale_zero": ({"scale": 0}, "`scale`"),
    "scale_float": ({"scale": 4.0}, "`scale`"),
    "kernel_size_even": ({"kernel_size_range": (6, 21)}, "odd"),
    "kernel_size_reversed": ({"kernel_size_range": (21, 7)}, "low <= high"),
    "kernel_type_unknown": ({"kernel_list": ("box",), "kernel_prob": (1.0,)}, "kernel types"),
    "kernel_prob_length": ({"kernel_prob": (0.5, 0.5)}, "6 non-negative probabilities"),
    "kernel_prob_sum": ({"kernel_prob2": (0.5, 0.25, 0.12, 0.03, 0.12, 0.03)}, "summing to 1"),
    "resize_prob_sum": ({"resize_prob": (0.2, 0.7, 0.2)}, "`resize_prob`"),
    "resize_prob_negative": ({"resize_prob2": (1.2, -0.2, 0.0)}, "`resize_prob2`"),
    "resize_range_without_one": ({"resize_range": (1.1, 1.5)}, "must contain 1"),
    "resize_range_zero": ({"resize_range2": (0.0, 1.2)}, "`resize_range2`"),
    "resize_mode_unknown": ({"resize_modes": ("lanczos",)}, "`resize_modes`"),
    "resize_modes_empty": ({"resize_modes": ()}, "`resize_modes`"),
    "sigma_zero": ({"blur_sigma": (0.0, 3.0)}, "`blur_sigma`"),
    "sigma_reversed": ({"blur_sigma2": (1.5, 0.2)}, "low <= high"),
    "beta_negative": ({"betag_range": (-1.0, 4.0)}, "`betag_range`"),
    "noise_negative": ({"noise_range": (-1.0, 30.0)}, "`noise_range`"),
    "noise_scalar": ({"noise_range2": 25.0}, "(low, high) pair"),
    "noise_nan": ({"poisson_scale_range": (0.05, float("nan"))}, "finite"),
    "jpeg_above_100": ({"jpeg_range": (30.0, 101.0)}, "`jpeg_range`"),
    "jpeg_zero": ({"jpeg_range2": (0.0, 95.0)}, "`jpeg_range2`"),
    "probability_above_one": ({"second_blur_prob": 1.5}, "`second_blur_prob`"),
    "probability_negative": ({"gray_noise_prob2": -0.1}, "`gray_noise_prob2`"),
    "probability_string": ({"final_sinc_prob": "0.8"}, "`final_sinc_prob`"),
}


@pytest.mark.parametrize(("kwargs", "fragment"), BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_config_rejects(kwargs, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        RealESRGANDegradationConfig.from_dict(kwargs)


# ---------------------------------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------------------------------


def _reference_kernel(kind: str, size: int, sigma_x: float, sigma_y: float, theta: float, beta: float) -> np.ndarray:
    """Real-ESRGAN's formulas written with a covariance matrix and its inverse (numpy, float64)."""
    axis = np.arange(size) - (size - 1) / 2
    xx, yy = np.meshgrid(axis, axis)
    grid = np.stack([xx, yy], axis=-1)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    covariance = rotation @ np.diag([sigma_x**2, sigma_y**2]) @ rotation.T
    quadratic = np.sum((grid @ np.linalg.inv(covariance)) * grid, axis=-1)
    kernel = np.exp(-0.5 * quadratic**beta) if kind == "gaussian" else 1.0 / (quadratic**beta + 1)
    return kernel / kernel.sum()


KERNEL_CASES = {
    # name: (kind, sigma_x, sigma_y, theta, beta, isotropic)
    "iso": ("gaussian", 1.7, 1.7, 0.0, 1.0, True),
    "aniso": ("gaussian", 3.0, 0.6, 0.7, 1.0, False),
    "generalized_iso_sharp": ("gaussian", 2.0, 2.0, 0.0, 0.5, True),
    "generalized_aniso_flat": ("gaussian", 2.5, 1.0, -2.0, 4.0, False),
    "plateau_iso": ("plateau", 1.2, 1.2, 0.0, 1.0, True),
    "plateau_aniso": ("plateau", 2.8, 0.9, 2.5, 2.0, False),
}


@pytest.mark.parametrize("case", KERNEL_CASES.values(), ids=KERNEL_CASES.keys())
def test_bivariate_kernels(case):
    kind, sigma_x, sigma_y, theta, beta, isotropic = case
    make = generalized_gaussian_kernel if kind == "gaussian" else plateau_kernel
    parameters = (torch.tensor([value], dtype=torch.float64) for value in (sigma_x, sigma_y, theta, beta))
    kernel = make(21, *parameters)[0]

    assert kernel.shape == (21, 21) and kernel.dtype == torch.float64
    assert float(kernel.sum()) == pytest.approx(1.0, abs=1e-12)
    assert torch.allclose(kernel, kernel.flip(0, 1), atol=1e-15)  # point symmetric
    assert int(kernel.argmax()) == 21 * 10 + 10
    if isotropic:
        assert torch.allclose(kernel, kernel.T, atol=1e-15) and torch.allclose(kernel, kernel.flip(1), atol=1e-15)
    else:
        assert not torch.allclose(kernel, kernel.T, atol=1e-6)
    np.testing.assert_allclose(kernel.numpy(), _reference_kernel(kind, 21, sigma_x, sigma_y, theta, beta), atol=1e-12)


def test_anisotropic_kernel_orientation():
    """theta = 0: sigma_x spreads along the width (last axis)."""
    ones = torch.ones(1, dtype=torch.float64)
    kernel = generalized_gaussian_kernel(21, 3 * ones, 0.5 * ones, 0 * ones, ones)[0]
    assert kernel[10, 13] > 100 * kernel[13, 10]


@pytest.mark.parametrize("omega_c", [math.pi / 5, math.pi / 3, 0.7 * math.pi, math.pi])
@pytest.mark.parametrize("size", [7, 13, 21])
def test_circular_lowpass_kernel(omega_c, size):
    special = pytest.importorskip("scipy.special")
    kernel = circular_lowpass_kernel(size, torch.tensor([omega_c], dtype=torch.float64))[0]

    assert float(kernel.sum()) == pytest.approx(1.0, abs=1e-12)
    assert torch.allclose(kernel, kernel.T, atol=1e-15) and torch.allclose(kernel, kernel.flip(0), atol=1e-15)
    axis = np.arange(size) - (size - 1) / 2
    radius = np.hypot(*np.meshgrid(axis, axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        reference = omega_c * special.j1(omega_c * radius) / (2 * np.pi * radius)
    reference[radius == 0] = omega_c**2 / (4 * np.pi)
    # torch's J1 is accurate to about 5e-7 (scipy's to machine precision).
    np.testing.assert_allclose(kernel.numpy(), reference / reference.sum(), atol=1e-6)


def test_kernel_support_zero_pads_smaller_kernels():
    sigma = torch.tensor([2.0, 2.0, 2.0], dtype=torch.float64)
    support = torch.tensor([7, 21, 1])
    padded = generalized_gaussian_kernel(21, sigma, sigma, torch.zeros(3), torch.ones(3), support=support)

    small = generalized_gaussian_kernel(7, sigma[:1], sigma[:1], torch.zeros(1), torch.ones(1))[0]
    assert torch.allclose(padded[0], F.pad(small, (7, 7, 7, 7)), atol=1e-15)
    assert float(padded[1].min()) > 0
    pulse = torch.zeros(21, 21, dtype=torch.float64)
    pulse[10, 10] = 1
    assert torch.equal(padded[2], pulse)


def test_random_mixed_kernels():
    kernels = random_mixed_kernels(
        64, KERNEL_TYPES, DEFAULTS["kernel_prob"], 0.1, (0.2, 3.0), (0.5, 4.0), (1.0, 2.0), generator=_generator()
    )
    size = kernels.shape[-1]
    assert kernels.shape == (64, size, size) and size % 2 == 1 and 7 <= size <= 21
    assert torch.allclose(kernels.sum(dim=(1, 2)), torch.ones(64, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(kernels, kernels.flip(1, 2), atol=1e-12)
    assert len({tuple(k.flatten().tolist()) for k in kernels}) == 64  # one kernel per sample
    assert not torch.allclose(kernels, kernels.transpose(1, 2), atol=1e-6)  # some are anisotropic

    again = random_mixed_kernels(
        64, KERNEL_TYPES, DEFAULTS["kernel_prob"], 0.1, (0.2, 3.0), (0.5, 4.0), (1.0, 2.0), generator=_generator()
    )
    assert torch.equal(kernels, again)


def test_random_mixed_kernels_isotropic_only_and_identity():
    kwargs = dict(kernel_list=("iso", "plateau_iso"), kernel_prob=(0.5, 0.5), sinc_prob=0.0, sigma_range=(0.2, 3.0))
    kernels = random_mixed_kernels(32, **kwargs, betag_range=(0.5, 4.0), betap_range=(1, 2), generator=_generator())
    assert torch.allclose(kernels, kernels.transpose(1, 2), atol=1e-15)

    identity = random_mixed_kernels(
        8, **kwargs, betag_range=(0.5, 4.0), betap_range=(1, 2), apply_prob=0.0, generator=_generator()
    )
    assert identity.shape == (8, 1, 1) and torch.equal(identity, torch.ones(8, 1, 1, dtype=torch.float64))


# ---------------------------------------------------------------------------------------------------------------------
# Stages in isolation
# ---------------------------------------------------------------------------------------------------------------------


def test_blur_lowers_high_frequencies_and_identity_keeps_them():
    images = _texture()
    sigma = torch.tensor([1.0, 2.0], dtype=torch.float64)
    kernels = generalized_gaussian_kernel(9, sigma, sigma, torch.zeros(2), torch.ones(2))
    blurred = _filter(images, kernels)

    assert blurred.shape == images.shape
    assert _high_frequency_energy(blurred[:1]) < 0.2 * _high_frequency_energy(images[:1])
    assert _high_frequency_energy(blurred[1:]) < _high_frequency_energy(blurred[:1])  # per-sample kernels
    assert torch.equal(_filter(images, torch.ones(2, 1, 1, dtype=torch.float64)), images)
    # Images smaller than the kernel radius fall back to edge replication.
    assert _filter(images[..., :4, :4], kernels).shape == (2, 3, 4, 4)


@pytest.mark.parametrize("gray", [False, True])
def test_gaussian_noise(gray):
    images = torch.full((2, 3, 64, 64), 0.5)
    noisy = _add_random_noise(images, 1.0, (10.0, 10.0), (1.0, 1.0), float(gray), _generator())
    noise = noisy - images

    assert float(noise.std()) == pytest.approx(10 / 255, rel=0.05)
    assert abs(float(noise.mean())) < 1e-3
    assert _high_frequency_energy(noisy) > 100 * _high_frequency_energy(images) + 1e-4
    channels_equal = torch.equal(noise[:, 0], noise[:, 1]) and torch.equal(noise[:, 1], noise[:, 2])
    assert channels_equal == gray
    assert not torch.equal(noise[0], noise[1])  # per-sample noise


@pytest.mark.parametrize("gray", [False, True])
def test_poisson_noise(gray):
    # A ramp with all 256 levels (so 256 photon levels), then a dark and a bright area: variance = x / 256 * scale^2.
    images = torch.empty(1, 3, 68, 64)
    images[..., :4, :] = torch.arange(256.0).reshape(4, 64) / 255
    images[..., 4:36, :] = 26 / 255
    images[..., 36:, :] = 204 / 255
    noisy = _add_random_noise(images, 0.0, (1.0, 1.0), (2.0, 2.0), float(gray), _generator())
    noise = noisy - images

    dark, bright = noise[..., 4:36, :], noise[..., 36:, :]
    assert float(dark.var()) == pytest.approx(26 / 255 / 256 * 4, rel=0.2)
    assert float(bright.var()) == pytest.approx(204 / 255 / 256 * 4, rel=0.2)
    channels_equal = torch.equal(noise[:, 0], noise[:, 1]) and torch.equal(noise[:, 1], noise[:, 2])
    assert channels_equal == gray


def test_jpeg_lower_quality_larger_error():
    images = _smooth(4, 40, 56)  # not a multiple of 16; random texture would be dominated by chroma subsampling
    quality = torch.tensor([20.0, 40.0, 70.0, 95.0], dtype=torch.float64)
    compressed = _jpeg(images, quality)

    assert compressed.shape == images.shape and compressed.dtype == images.dtype
    assert float(compressed.min()) >= 0 and float(compressed.max()) <= 1
    errors = (compressed - images).pow(2).mean(dim=(1, 2, 3))
    assert errors.tolist() == sorted(errors.tolist(), reverse=True)
    assert float(errors[0]) > 4 * float(errors[-1])


# ---------------------------------------------------------------------------------------------------------------------
# Pipeline
# ---------------------------------------------------------------------------------------------------------------------

SHAPE_CASES = {
    "square": ({}, (2, 3, 64, 64), (2, 3, 16, 16)),
    "wide": ({}, (1, 3, 64, 96), (1, 3, 16, 24)),
    "tall_batch_3": ({}, (3, 3, 96, 32), (3, 3, 24, 8)),
    "tiny": ({}, (2, 3, 8, 12), (2, 3, 2, 3)),
    "scale_2": ({"scale": 2}, (2, 3, 48, 64), (2, 3, 24, 32)),
    "scale_1": ({"scale": 1}, (1, 3, 20, 20), (1, 3, 20, 20)),
}


@pytest.mark.parametrize(("kwargs", "shape", "expected"), SHAPE_CASES.values(), ids=SHAPE_CASES.keys())
def test_output_shape_range_and_grid(kwargs, shape, expected):
    degrade = RealESRGANDegradation(RealESRGANDegradationConfig.from_dict(kwargs))
    for seed in range(3):
        lq = degrade(torch.rand(shape, generator=_generator(seed)), generator=_generator(seed))
        assert lq.shape == expected and lq.dtype == torch.float32
        assert float(lq.min()) >= 0 and float(lq.max()) <= 1
        assert torch.allclose(lq * 255, (lq * 255).round(), atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_dtype_kept(dtype):
    gt = _texture(2, 32, 32).to(dtype)
    lq = RealESRGANDegradation()(gt, generator=_generator())
    assert lq.dtype == dtype and lq.device == gt.device and lq.shape == (2, 3, 8, 8)
    assert float(lq.min()) >= 0 and float(lq.max()) <= 1


def test_same_seed_same_result_different_seed_different_result():
    degrade = RealESRGANDegradation()
    gt = _texture(2, 64, 64)
    first = degrade(gt, generator=_generator(7))
    assert torch.equal(first, degrade(gt, generator=_generator(7)))
    assert not torch.equal(first, degrade(gt, generator=_generator(8)))
    assert not torch.equal(degrade(gt), degrade(gt))  # no generator: fresh random seed each call


def test_samples_of_a_batch_are_degraded_differently():
    gt = _smooth(4, 64, 64) * 0.5 + 0.5 * _texture(1, 64, 64).expand(4, -1, -1, -1)
    lq = RealESRGANDegradation()(gt, generator=_generator(3))
    assert len({tuple(image.flatten().tolist()) for image in lq}) == 4


def test_resize_only_config_is_a_plain_downscale():
    # Grey images: JPEG at quality 100 then only rounds the luma (4:2:0 chroma subsampling is lossy on colours).
    gt = _smooth(2, 64, 96)[:, :1].expand(-1, 3, -1, -1)
    lq = RealESRGANDegradation(RealESRGANDegradationConfig.from_dict(RESIZE_ONLY))(gt, generator=_generator())
    expected = F.interpolate(gt, size=(16, 24), mode="area")
    assert (lq - expected).abs().max() < 2 / 255
    assert (lq - expected).abs().mean() < 0.6 / 255


def test_input_on_cpu_does_not_touch_the_global_rng():
    state = torch.get_rng_state()
    RealESRGANDegradation()(_texture(1, 32, 32), generator=_generator())
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_device_kept_and_deterministic():
    degrade = RealESRGANDegradation()
    gt = _texture(2, 64, 64).cuda()
    lq = degrade(gt, generator=_generator(5))
    assert lq.device == gt.device and lq.shape == (2, 3, 16, 16)
    assert torch.equal(lq, degrade(gt, generator=_generator(5)))
    # Same random draws as on the CPU: the results agree up to floating-point differences of the kernels.
    assert (lq.cpu() - degrade(gt.cpu(), generator=_generator(5))).abs().mean() < 2 / 255


BAD_INPUTS = {
    "not_a_tensor": (np.zeros((1, 3, 8, 8), np.float32), None, TypeError, "torch.Tensor"),
    "three_dims": (torch.rand(3, 8, 8), None, ValueError, "(3, 8, 8)"),
    "one_channel": (torch.rand(1, 1, 8, 8), None, ValueError, "(1, 1, 8, 8)"),
    "integer": (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), None, ValueError, "torch.uint8"),
    "empty_batch": (torch.rand(0, 3, 8, 8), None, ValueError, "non-empty"),
    "height_not_multiple": (torch.rand(1, 3, 10, 8), None, ValueError, "10x8"),
    "width_not_multiple": (torch.rand(1, 3, 8, 6), None, ValueError, "multiples of `scale`=4"),
    "generator_seed": (torch.rand(1, 3, 8, 8), 0, ValueError, "CPU `torch.Generator`"),
}


@pytest.mark.parametrize(("gt", "generator", "error", "fragment"), BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_inputs(gt, generator, error, fragment):
    with pytest.raises(error, match=re.escape(fragment)):
        RealESRGANDegradation()(gt, generator=generator)


def test_bad_config_type():
    with pytest.raises(TypeError, match="RealESRGANDegradationConfig"):
        RealESRGANDegradation({"scale": 4})


def test_docstring_example_runs():
    code = re.search(r"```py\n(.*?)```", RealESRGANDegradation.__doc__, re.S).group(1)
    code = "\n".join(line.strip()[4:] for line in code.splitlines() if line.strip().startswith(">>>"))
    namespace = {}
    exec(compile(code, "RealESRGANDegradation.__doc__", "exec"), namespace)
    assert namespace["lq"].shape == (2, 3, 16, 16)


# ---------------------------------------------------------------------------------------------------------------------
# Unsharp masking of the ground truth (Real-ESRGAN's gt_usm)
# ---------------------------------------------------------------------------------------------------------------------


def _usm_reference(image: np.ndarray, weight=0.5, size=51, threshold=10) -> np.ndarray:
    """basicsr's USMSharp in numpy/scipy: OpenCV's Gaussian for (51, sigma 0), mirrored borders."""
    from scipy.ndimage import correlate

    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    x = np.arange(size) - (size - 1) / 2
    line = np.exp(-(x**2) / (2 * sigma**2))
    kernel = np.outer(line, line) / line.sum() ** 2
    blur = np.stack([correlate(c, kernel, mode="mirror") for c in image])
    residual = image - blur
    mask = (np.abs(residual) * 255 > threshold).astype(np.float64)
    soft = np.stack([correlate(c, kernel, mode="mirror") for c in mask])
    sharp = np.clip(image + weight * residual, 0, 1)
    return soft * sharp + (1 - soft) * image


def test_usm_sharpen_is_realesrgans():
    pytest.importorskip("scipy")
    image = _smooth(1, 64, 80)[0].double() * 0.6 + 0.4 * (_texture(1, 64, 80)[0].double() > 0.5)
    expected = _usm_reference(image.numpy())
    np.testing.assert_allclose(usm_sharpen(image[None])[0].numpy(), expected, atol=1e-9)
    flat = torch.full((1, 3, 40, 40), 0.3)
    torch.testing.assert_close(usm_sharpen(flat), flat)  # no detail, nothing to sharpen
    assert _high_frequency_energy(usm_sharpen(image[None].float())) > 1.2 * _high_frequency_energy(image[None].float())


def test_gt_usm_pairs_learn_and_degrade_the_sharpened_image():
    gt = _smooth(2, 64, 64) * 0.5 + 0.5 * _texture(1, 64, 64)
    plain = RealESRGANDegradation()
    target, lq = plain.degrade_pair(gt, generator=_generator(4))
    assert target is gt and torch.equal(lq, plain(gt, generator=_generator(4)))
    sharpening = RealESRGANDegradation(RealESRGANDegradationConfig(gt_usm=True))
    target, lq = sharpening.degrade_pair(gt, generator=_generator(4))
    torch.testing.assert_close(target, usm_sharpen(gt))
    assert torch.equal(lq, plain(target, generator=_generator(4)))
    assert RealESRGANDegradationConfig.from_dict({"gt_usm": True}).gt_usm
    with pytest.raises(ValueError, match="`gt_usm` must be true or false"):
        RealESRGANDegradationConfig(gt_usm="yes")
