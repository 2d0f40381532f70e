"""Training losses of SSP-IR: the diffusion loss and the structure processor's multi-scale RGB/FFT loss."""

import torch
import torch.nn.functional as F
from diffusers import SchedulerMixin


def diffusion_target(
    scheduler: SchedulerMixin, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    """What the UNet learns to predict for the scheduler's `prediction_type`: the noise (`epsilon`) or the velocity
    (`v_prediction`)."""
    prediction_type = scheduler.config.prediction_type
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    raise ValueError(
        f"Training supports the prediction types 'epsilon' and 'v_prediction', got {prediction_type!r} from the "
        "scheduler config."
    )


def fft_l1(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 distance between the 2-D Fourier spectra (real and imaginary parts) of two image batches."""
    spectrum = torch.fft.rfft2(prediction.float(), norm="ortho") - torch.fft.rfft2(target.float(), norm="ortho")
    return torch.view_as_real(spectrum).abs().mean()


def structure_prior_loss(
    rgb: tuple[torch.Tensor, ...] | list[torch.Tensor],
    high_quality: torch.Tensor,
    l1_weight: float = 0.1,
    fft_weight: float = 0.01,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    r"""
    The structure processor's loss: at every scale `s` of its RGB outputs,
    `l1_weight · L1(rgb_s, HQ_s) + fft_weight · L1(FFT(rgb_s), FFT(HQ_s))`, with `HQ_s` the ground truth
    area-downscaled to that output's size.

    Args:
        rgb (`tuple[torch.Tensor, ...]`): the processor's RGB predictions (any sizes), in `[0, 1]`.
        high_quality (`torch.Tensor`): the ground truth `(batch, 3, height, width)` in `[0, 1]`.
        l1_weight (`float`, defaults to 0.1): weight of the pixel L1 terms.
        fft_weight (`float`, defaults to 0.01): weight of the spectral L1 terms.

    Returns:
        `tuple`: the weighted total, and the unweighted terms summed over scales (`"rgb_l1"`, `"rgb_fft"`) for logs.
    """
    pixel = high_quality.new_zeros((), dtype=torch.float32)
    spectral = high_quality.new_zeros((), dtype=torch.float32)
    for prediction in rgb:
        target = F.interpolate(high_quality.float(), size=prediction.shape[-2:], mode="area")
        pixel = pixel + F.l1_loss(prediction.float(), target)
        spectral = spectral + fft_l1(prediction, target)
    total = l1_weight * pixel + fft_weight * spectral
    return total, {"rgb_l1": pixel.detach(), "rgb_fft": spectral.detach()}
