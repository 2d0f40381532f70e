"""The diffusion target and the structure processor's multi-scale RGB/FFT loss."""

import pytest
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from diffusers_sspir.training import diffusion_target, fft_l1, structure_prior_loss


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_diffusion_target_follows_prediction_type(prediction_type):
    scheduler = DDPMScheduler(prediction_type=prediction_type)
    latents, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    timesteps = torch.tensor([10, 900])
    target = diffusion_target(scheduler, latents, noise, timesteps)
    if prediction_type == "epsilon":
        assert target is noise
    else:
        alpha = scheduler.alphas_cumprod[timesteps].sqrt().view(-1, 1, 1, 1)
        sigma = (1 - scheduler.alphas_cumprod[timesteps]).sqrt().view(-1, 1, 1, 1)
        torch.testing.assert_close(target, alpha * noise - sigma * latents)


def test_diffusion_target_rejects_sample_prediction():
    with pytest.raises(ValueError, match="'sample'"):
        diffusion_target(DDPMScheduler(prediction_type="sample"), *torch.randn(2, 1, 4, 4), torch.tensor([1]))


def test_structure_loss_is_zero_for_the_downscaled_ground_truth():
    high_quality = torch.rand(2, 3, 32, 32)
    rgb = tuple(F.interpolate(high_quality, size=(s, s), mode="area") for s in (16, 8, 4))
    total, terms = structure_prior_loss(rgb, high_quality)
    assert total.item() == pytest.approx(0.0, abs=1e-6)
    assert set(terms) == {"rgb_l1", "rgb_fft"}


def test_structure_loss_weights_and_terms():
    high_quality = torch.zeros(1, 3, 16, 16)
    rgb = (torch.full((1, 3, 8, 8), 0.5), torch.full((1, 3, 4, 4), 0.5))
    total, terms = structure_prior_loss(rgb, high_quality, l1_weight=0.1, fft_weight=0.01)
    # A constant offset c: pixel L1 = c at each scale; its orthonormal spectrum is c·sqrt(N) at DC only.
    assert terms["rgb_l1"].item() == pytest.approx(1.0)
    expected_fft = sum(0.5 * (s * s) ** 0.5 / (s * (s // 2 + 1) * 2) for s in (8, 4))
    assert terms["rgb_fft"].item() == pytest.approx(expected_fft, rel=1e-5)
    assert total.item() == pytest.approx(0.1 * 1.0 + 0.01 * expected_fft, rel=1e-5)


def test_structure_loss_gradients_reach_every_scale():
    rgb = tuple(torch.rand(1, 3, s, s, requires_grad=True) for s in (8, 4, 2))
    total, _ = structure_prior_loss(rgb, torch.rand(1, 3, 16, 16))
    total.backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in rgb)


def test_fft_l1_sees_high_frequencies_that_blur_removes():
    image = torch.rand(1, 3, 32, 32)
    blurred = F.avg_pool2d(image, 3, stride=1, padding=1, count_include_pad=False)
    assert fft_l1(blurred, image) > 0
    assert fft_l1(image, image) == 0
