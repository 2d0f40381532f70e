# Copyright 2025 The diffusers-sspir authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""The Real-ESRGAN second-order degradation pipeline (Wang et al. 2021), batched, in plain torch.

`RealESRGANDegradation` turns a ground-truth batch `(B, 3, H, W)` in `[0, 1]` into its low-quality partner
`(B, 3, H // scale, W // scale)` on the 1/255 grid, with the probabilities and ranges of Real-ESRGAN's
`train_realesrgan_x4plus.yml` (the defaults of `RealESRGANDegradationConfig`):

1. blur (random Gaussian / generalized Gaussian / plateau / sinc kernel) -> random resize -> Gaussian or Poisson
   noise -> JPEG;
2. blur (with `second.blur_prob`) -> random resize around `H / scale` -> Gaussian or Poisson noise;
3. in random order: [resize to `H / scale` + sinc filter (with `final_sinc_prob`)] and JPEG; round to 8 bits.

What is drawn per sample and what per batch:

- Per sample: every blur kernel (type, size, sigmas, angle, shape, sinc cutoff), whether the second blur and the
  final sinc filter apply, the noise type (Gaussian or Poisson), its strength, grey or colour, the noise itself and
  the JPEG quality. Real-ESRGAN draws the second-blur and the Gaussian-or-Poisson decisions once per batch; here they
  are per sample (same distribution for each sample, more variety inside a batch).
- Per batch: the resize factors and resize modes of all three resizes and the order of the final JPEG and resize,
  because a batch keeps one shape (as in Real-ESRGAN).

Every random number (parameters and noise) is drawn from a CPU `torch.Generator` and then moved to the device of
the input, so one seed gives the same random draws on every device and the same result, bit for bit, on a given
device. Poisson noise depends on the image, so for the samples that get it the image is copied to the CPU.

JPEG is `diffusers_sspir.data.jpeg.jpeg_compress` (batched, per-sample float quality, any device): libjpeg's
baseline codec with 4:2:0 chroma subsampling, the standard tables scaled as libjpeg scales them, and the quantised
DCT coefficients rounded to integers, as Real-ESRGAN's `DiffJPEG(differentiable=False)` does. Its PSNR is within
0.3 dB of Pillow's at the same quality. (Until 0.3, kornia's differentiable codec was used, whose soft rounding made
JPEG 0.8-1.8 dB milder than the method was trained on.)
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from kornia.color import rgb_to_grayscale
from kornia.filters import filter2d

from .jpeg import jpeg_compress

__all__ = [
    "KERNEL_TYPES",
    "RESIZE_MODES",
    "SECOND_STAGE",
    "DegradationStage",
    "RealESRGANDegradation",
    "RealESRGANDegradationConfig",
    "circular_lowpass_kernel",
    "generalized_gaussian_kernel",
    "plateau_kernel",
    "random_mixed_kernels",
    "usm_sharpen",
]

# kernel type -> (shape, isotropic); a Gaussian is the generalized Gaussian with beta = 1.
_KERNEL_SHAPES = {
    "iso": ("gaussian", True),
    "aniso": ("gaussian", False),
    "generalized_iso": ("generalized", True),
    "generalized_aniso": ("generalized", False),
    "plateau_iso": ("plateau", True),
    "plateau_aniso": ("plateau", False),
}
KERNEL_TYPES = tuple(_KERNEL_SHAPES)
RESIZE_MODES = ("area", "bilinear", "bicubic")

# Sinc cutoff frequencies of Real-ESRGAN: small blur kernels get a milder low-pass; the final sinc is always mild.
SINC_CUTOFF_SMALL_KERNEL = (math.pi / 3, math.pi)
SINC_CUTOFF_LARGE_KERNEL = (math.pi / 5, math.pi)
SINC_LARGE_KERNEL_SIZE = 13
FINAL_SINC_CUTOFF = (math.pi / 3, math.pi)


# ---------------------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------------------


def _check_probability(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"`{name}` must be a probability in [0, 1], got {value!r}.")


def _check_distribution(name: str, values: Sequence[float], length: int) -> None:
    if (
        not isinstance(values, tuple)
        or len(values) != length
        or any(isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 for v in values)
        or not math.isclose(sum(values), 1.0, abs_tol=1e-6)
    ):
        raise ValueError(f"`{name}` must be {length} non-negative probabilities summing to 1, got {values!r}.")


def _check_range(
    name: str,
    value: tuple[float, float],
    minimum: float | None = None,
    maximum: float | None = None,
    strict: bool = False,
) -> tuple[float, float]:
    """Check a `(low, high)` range with `low <= high` within `[minimum, maximum]` (`minimum` excluded if `strict`)."""
    bounds = (
        f"{'(' if strict else '['}{'-inf' if minimum is None else minimum}, {'inf' if maximum is None else maximum}]"
    )
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in value)
    ):
        raise ValueError(f"`{name}` must be a (low, high) pair of finite numbers, got {value!r}.")
    low, high = value
    too_low = minimum is not None and (low <= minimum if strict else low < minimum)
    too_high = maximum is not None and high > maximum
    if low > high or too_low or too_high:
        raise ValueError(f"`{name}` must be a (low, high) pair with low <= high within {bounds}, got {value!r}.")
    return low, high


def _tuples(instance) -> None:
    """Lists (e.g. read from YAML or JSON) are stored as tuples, so that configs are hashable and compare equal."""
    for entry in fields(instance):
        value = getattr(instance, entry.name)
        if isinstance(value, list):
            object.__setattr__(instance, entry.name, tuple(value))


@dataclass(frozen=True)
class DegradationStage:
    """One round of Real-ESRGAN's degradation: blur, resize, noise and JPEG. [`RealESRGANDegradationConfig`] holds
    two; the defaults are the first round of `train_realesrgan_x4plus.yml` ([`SECOND_STAGE`] is the second). Ranges
    are `(low, high)`, sampled uniformly; lists are accepted and stored as tuples.

    Args:
        blur_prob (`float`, defaults to 1.0): Probability of the blur (Real-ESRGAN: always in the first round,
            `second_blur_prob` = 0.8 in the second).
        kernel_list (`tuple[str, ...]`): Blur kernel types, a subset of `KERNEL_TYPES`.
        kernel_prob (`tuple[float, ...]`, defaults to `(0.45, 0.25, 0.12, 0.03, 0.12, 0.03)`): Probability of each
            entry of `kernel_list`; must sum to 1.
        sinc_prob (`float`, defaults to 0.1): Probability that the blur kernel is a sinc (circular low-pass) kernel
            instead of one from `kernel_list`. Its cutoff is drawn from `(pi / 3, pi)` for kernels smaller than 13,
            else from `(pi / 5, pi)`.
        blur_sigma (`tuple[float, float]`, defaults to `(0.2, 3.0)`): Standard deviations (pixels) of the kernels.
        betag_range (`tuple[float, float]`, defaults to `(0.5, 4.0)`): Shape of generalized Gaussian kernels. When
            the range contains 1, beta is drawn from `(low, 1)` or `(1, high)` with probability 1/2 each, as in
            Real-ESRGAN (so `(1, 2)` gives beta = 1 half of the time).
        betap_range (`tuple[float, float]`, defaults to `(1.0, 2.0)`): Shape of plateau kernels, drawn like
            `betag_range`.
        resize_prob (`tuple[float, float, float]`, defaults to `(0.2, 0.7, 0.1)`): Probabilities of resizing up,
            down, or keeping the size; must sum to 1.
        resize_range (`tuple[float, float]`, defaults to `(0.15, 1.5)`): Resize factors: up draws from `(1, high)`,
            down from `(low, 1)`; `low <= 1 <= high`. In the second round the factor is relative to the LQ size
            (the image is resized to `int(H / scale * factor)`).
        gaussian_noise_prob (`float`, defaults to 0.5): Probability of Gaussian noise; Poisson noise otherwise.
        noise_range (`tuple[float, float]`, defaults to `(1.0, 30.0)`): Gaussian noise sigma, in 1/255 units.
        poisson_scale_range (`tuple[float, float]`, defaults to `(0.05, 3.0)`): Scale of the Poisson noise.
        gray_noise_prob (`float`, defaults to 0.4): Probability that the noise is the same in the three channels.
        jpeg_range (`tuple[float, float]`, defaults to `(30.0, 95.0)`): JPEG quality, within `[1, 100]`; in the
            second round, the quality of the final JPEG.
    """

    blur_prob: float = 1.0
    kernel_list: tuple[str, ...] = KERNEL_TYPES
    kernel_prob: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob: float = 0.1
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    betag_range: tuple[float, float] = (0.5, 4.0)
    betap_range: tuple[float, float] = (1.0, 2.0)
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5
    noise_range: tuple[float, float] = (1.0, 30.0)
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple[float, float] = (30.0, 95.0)

    def __post_init__(self) -> None:
        _tuples(self)
        self.check()

    def check(self) -> None:
        """Raises a `ValueError` naming the field for a value out of range."""
        if (
            isinstance(self.kernel_list, str)
            or not self.kernel_list
            or any(k not in _KERNEL_SHAPES for k in self.kernel_list)
        ):
            raise ValueError(
                f"`kernel_list` must be a non-empty tuple of kernel types from {KERNEL_TYPES}, got "
                f"{self.kernel_list!r}."
            )
        _check_distribution("kernel_prob", self.kernel_prob, length=len(self.kernel_list))
        _check_range("blur_sigma", self.blur_sigma, minimum=0.0, strict=True)
        _check_range("betag_range", self.betag_range, minimum=0.0, strict=True)
        _check_range("betap_range", self.betap_range, minimum=0.0, strict=True)
        _check_distribution("resize_prob", self.resize_prob, length=3)
        low, high = _check_range("resize_range", self.resize_range, minimum=0.0, strict=True)
        if not low <= 1.0 <= high:
            raise ValueError(
                f"`resize_range` must contain 1 (down-scaling draws from (low, 1), up-scaling from "
                f"(1, high)), got {self.resize_range!r}."
            )
        _check_range("noise_range", self.noise_range, minimum=0.0)
        _check_range("poisson_scale_range", self.poisson_scale_range, minimum=0.0)
        _check_range("jpeg_range", self.jpeg_range, minimum=1.0, maximum=100.0)
        for name in ("blur_prob", "sinc_prob", "gaussian_noise_prob", "gray_noise_prob"):
            _check_probability(name, getattr(self, name))


SECOND_STAGE = DegradationStage(
    blur_prob=0.8,
    blur_sigma=(0.2, 1.5),
    resize_prob=(0.3, 0.4, 0.3),
    resize_range=(0.3, 1.2),
    noise_range=(1.0, 25.0),
    poisson_scale_range=(0.05, 2.5),
)
"""The second round of `train_realesrgan_x4plus.yml`."""


@dataclass(frozen=True)
class RealESRGANDegradationConfig:
    """Probabilities and ranges of the Real-ESRGAN degradations; the defaults are `train_realesrgan_x4plus.yml`.

    Two rounds of [`DegradationStage`] (`first`, `second`), then the final resize and sinc filter. Real-ESRGAN's own
    flat option names (`blur_sigma2`, `second_blur_prob`, ...) are read by [`~RealESRGANDegradationConfig.from_dict`].
    Lists (e.g. read from YAML) are accepted and stored as tuples.

    Args:
        scale (`int`, defaults to 4): Downscaling factor from GT to LQ.
        kernel_size_range (`tuple[int, int]`, defaults to `(7, 21)`): Blur and sinc kernel sizes are drawn uniformly
            among the odd sizes in this range (both rounds and the final sinc).
        rotation_range (`tuple[float, float]`, defaults to `(-pi, pi)`): Angle of anisotropic kernels, in radians.
        resize_modes (`tuple[str, ...]`, defaults to `("area", "bilinear", "bicubic")`): Interpolation modes, one
            drawn uniformly for each resize.
        first (`DegradationStage`, defaults to `DegradationStage()`): The first round.
        second (`DegradationStage`, defaults to `SECOND_STAGE`): The second round; its `jpeg_range` is the final
            JPEG's.
        final_sinc_prob (`float`, defaults to 0.8): Probability of the sinc filter after the final resize (cutoff
            drawn from `(pi / 3, pi)`); the identity otherwise.
        jpeg_first_prob (`float`, defaults to 0.5): Probability that the final JPEG comes before the final resize
            and sinc filter rather than after.
        gt_usm (`bool`, defaults to `False`): Unsharp-mask the ground truth ([`usm_sharpen`] with Real-ESRGAN's
            settings) before degrading it, and train towards the sharpened image, as Real-ESRNet's `gt_usm: true`
            does ([`RealESRGANDegradation.degrade_pair`]). Off by default, as in the SSP-IR authors' data loader,
            which builds the sharpener but leaves its call commented out.
    """

    scale: int = 4
    kernel_size_range: tuple[int, int] = (7, 21)
    rotation_range: tuple[float, float] = (-math.pi, math.pi)
    resize_modes: tuple[str, ...] = RESIZE_MODES
    first: DegradationStage = field(default_factory=DegradationStage)
    second: DegradationStage = SECOND_STAGE
    final_sinc_prob: float = 0.8
    jpeg_first_prob: float = 0.5
    gt_usm: bool = False

    def __post_init__(self) -> None:
        _tuples(self)
        if not isinstance(self.gt_usm, bool):
            raise ValueError(f"`gt_usm` must be true or false, got {self.gt_usm!r}.")
        if isinstance(self.scale, bool) or not isinstance(self.scale, int) or self.scale < 1:
            raise ValueError(f"`scale` must be an integer >= 1, got {self.scale!r}.")
        low, high = _check_range("kernel_size_range", self.kernel_size_range, minimum=1)
        if low != int(low) or high != int(high) or low % 2 == 0 or high % 2 == 0:
            raise ValueError(f"`kernel_size_range` must hold two odd integers, got {self.kernel_size_range!r}.")
        _check_range("rotation_range", self.rotation_range)
        for stage in ("first", "second"):
            value = getattr(self, stage)
            if not isinstance(value, DegradationStage):
                raise TypeError(f"`{stage}` must be a `DegradationStage`, got {type(value).__name__}.")
        for name in ("final_sinc_prob", "jpeg_first_prob"):
            _check_probability(name, getattr(self, name))
        if not self.resize_modes or any(mode not in RESIZE_MODES for mode in self.resize_modes):
            raise ValueError(
                f"`resize_modes` must be a non-empty tuple of modes from {RESIZE_MODES}, got {self.resize_modes!r}."
            )

    @classmethod
    def flat_names(cls) -> dict[str, tuple[str, str]]:
        """Real-ESRGAN's option names → `(stage, field)`: `blur_sigma` → first, `blur_sigma2` and
        `second_blur_prob` → second (`blur_prob` has no flat name in the first round, where Real-ESRGAN always
        blurs)."""
        names = {}
        for stage_field in fields(DegradationStage):
            if stage_field.name != "blur_prob":
                names[stage_field.name] = ("first", stage_field.name)
                names[f"{stage_field.name}2"] = ("second", stage_field.name)
        names["second_blur_prob"] = ("second", "blur_prob")
        return names

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RealESRGANDegradationConfig:
        r"""
        A config from a mapping (a YAML or JSON file's content): this class's fields, with `first` / `second` as
        mappings of [`DegradationStage`] fields, and/or Real-ESRGAN's flat names (`noise_range2`, ...). Unknown
        names, and a field given both ways, are refused naming them.
        """
        if not isinstance(values, dict):
            raise TypeError(f"A degradation config must be a mapping of field names, got {type(values).__name__}.")
        flat = cls.flat_names()
        top = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - top - set(flat))
        if unknown:
            raise ValueError(
                f"unknown degradation fields {unknown}; accepted: {sorted(top)} and Real-ESRGAN's flat names "
                f"{sorted(flat)}."
            )
        kwargs = {name: value for name, value in values.items() if name in top and name not in ("first", "second")}
        stages: dict[str, dict[str, Any]] = {}
        for stage in ("first", "second"):
            given = values.get(stage, {})
            if isinstance(given, DegradationStage):
                given = {f.name: getattr(given, f.name) for f in fields(DegradationStage)}
            if not isinstance(given, dict):
                raise TypeError(f"`{stage}` must be a mapping of DegradationStage fields, got {type(given).__name__}.")
            known = {f.name for f in fields(DegradationStage)}
            if set(given) - known:
                raise ValueError(f"unknown `{stage}` fields {sorted(set(given) - known)}; accepted: {sorted(known)}.")
            stages[stage] = dict(given)
        for name, value in values.items():
            if name in flat:
                stage, stage_field = flat[name]
                if stage_field in stages[stage]:
                    raise ValueError(f"`{name}` and `{stage}.{stage_field}` name one field; give it once.")
                stages[stage][stage_field] = value
        defaults = {"first": DegradationStage(), "second": SECOND_STAGE}
        for stage, overrides in stages.items():
            if overrides:
                try:
                    kwargs[stage] = replace(defaults[stage], **overrides)
                except ValueError as error:  # say which round, with the flat name
                    raise ValueError(_stage_message(error, stage)) from None
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """This config as a mapping [`from_dict`] reads back (nested stages, lists)."""
        return json.loads(json.dumps(asdict(self)))


def _stage_message(error: ValueError, stage: str) -> str:
    """A stage's own message (`\\`noise_range\\``) with its round and flat name (`\\`second.noise_range\\`
    (\\`noise_range2\\`)`)."""
    message = str(error)
    for stage_field in fields(DegradationStage):
        field_name = stage_field.name
        if message.startswith(f"`{field_name}`"):
            flat = f"{field_name}2" if stage == "second" else field_name
            flat = "second_blur_prob" if field_name == "blur_prob" and stage == "second" else flat
            return f"`{stage}.{field_name}` (`{flat}`)" + message[len(field_name) + 2 :]
    return message


# ---------------------------------------------------------------------------------------------------------------------
# Blur kernels
# ---------------------------------------------------------------------------------------------------------------------


def _kernel_grid(kernel_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`(x, y)` pixel offsets from the centre of a `kernel_size` square (float64, `x` along the width)."""
    axis = torch.arange(kernel_size, dtype=torch.float64) - (kernel_size - 1) / 2
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return x, y


def _normalize(kernel: torch.Tensor, kernel_size: int, support: torch.Tensor | None) -> torch.Tensor:
    """Zero each kernel outside its own centred `support` square (if given), then make it sum to 1."""
    if support is not None:
        x, y = _kernel_grid(kernel_size)
        half = (support.to(torch.float64)[:, None, None] - 1) / 2
        kernel = kernel * ((x.abs() <= half) & (y.abs() <= half))
    return kernel / kernel.sum(dim=(-2, -1), keepdim=True)


def _mahalanobis(kernel_size: int, sigma_x: torch.Tensor, sigma_y: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """`p^T Sigma^-1 p` on the kernel grid, `Sigma = R(theta) diag(sigma_x^2, sigma_y^2) R(theta)^T`, `(B, K, K)`."""
    x, y = _kernel_grid(kernel_size)
    cos, sin = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    # Coordinates along the principal axes of the rotated covariance.
    u = cos * x + sin * y
    v = -sin * x + cos * y
    return (u / sigma_x[:, None, None]) ** 2 + (v / sigma_y[:, None, None]) ** 2


def generalized_gaussian_kernel(
    kernel_size: int,
    sigma_x: torch.Tensor,
    sigma_y: torch.Tensor,
    theta: torch.Tensor,
    beta: torch.Tensor,
    support: torch.Tensor | None = None,
) -> torch.Tensor:
    """Bivariate generalized Gaussian kernels `exp(-0.5 * (p^T Sigma^-1 p) ** beta)`; `beta = 1` is a Gaussian.

    Args:
        kernel_size (`int`): Side of the (odd) kernel array.
        sigma_x, sigma_y (`torch.Tensor`): `(B,)` standard deviations along the principal axes.
        theta (`torch.Tensor`): `(B,)` rotation of the first principal axis from the x axis (the width), radians.
        beta (`torch.Tensor`): `(B,)` shape parameter.
        support (`torch.Tensor`, *optional*): `(B,)` odd sizes `<= kernel_size`; each kernel is zero outside its
            centred `support` square (Real-ESRGAN's zero padding of small kernels to 21 x 21).

    Returns:
        `torch.Tensor`: `(B, kernel_size, kernel_size)` float64 kernels summing to 1.
    """
    quadratic = _mahalanobis(kernel_size, sigma_x, sigma_y, theta)
    return _normalize(torch.exp(-0.5 * quadratic ** beta[:, None, None]), kernel_size, support)


def plateau_kernel(
    kernel_size: int,
    sigma_x: torch.Tensor,
    sigma_y: torch.Tensor,
    theta: torch.Tensor,
    beta: torch.Tensor,
    support: torch.Tensor | None = None,
) -> torch.Tensor:
    """Bivariate plateau kernels `1 / (1 + (p^T Sigma^-1 p) ** beta)`; arguments as `generalized_gaussian_kernel`."""
    quadratic = _mahalanobis(kernel_size, sigma_x, sigma_y, theta)
    return _normalize(1.0 / (1.0 + quadratic ** beta[:, None, None]), kernel_size, support)


def circular_lowpass_kernel(
    kernel_size: int, omega_c: torch.Tensor, support: torch.Tensor | None = None
) -> torch.Tensor:
    """Circular low-pass (2-D sinc) kernels `omega_c * J1(omega_c * r) / (2 * pi * r)`, normalised to sum 1.

    Args:
        kernel_size (`int`): Side of the (odd) kernel array.
        omega_c (`torch.Tensor`): `(B,)` cutoff frequencies in radians per pixel, in `(0, pi]`.
        support (`torch.Tensor`, *optional*): `(B,)` odd sizes `<= kernel_size`, as in `generalized_gaussian_kernel`.

    Returns:
        `torch.Tensor`: `(B, kernel_size, kernel_size)` float64 kernels summing to 1 (with negative side lobes).
    """
    x, y = _kernel_grid(kernel_size)
    radius = torch.sqrt(x**2 + y**2)
    omega = omega_c.to(torch.float64)[:, None, None]
    # The limit at r = 0 is omega_c^2 / (4 pi); keep the division away from the centre.
    safe_radius = torch.where(radius > 0, radius, torch.ones_like(radius))
    kernel = omega * torch.special.bessel_j1(omega * safe_radius) / (2 * math.pi * safe_radius)
    kernel = torch.where(radius > 0, kernel, omega**2 / (4 * math.pi))
    return _normalize(kernel, kernel_size, support)


def _uniform(low: float, high: float, size: int, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(size, dtype=torch.float64, generator=generator)


def _bernoulli(probability: float, size: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(size, dtype=torch.float64, generator=generator) < probability


def _odd_sizes(size_range: tuple[int, int], size: int, generator: torch.Generator) -> torch.Tensor:
    low, high = int(size_range[0]), int(size_range[1])
    return low + 2 * torch.randint((high - low) // 2 + 1, (size,), generator=generator)


def _sample_beta(beta_range: tuple[float, float], size: int, generator: torch.Generator) -> torch.Tensor:
    """Real-ESRGAN's beta: half from `(low, 1)`, half from `(1, high)` when the range contains 1."""
    low, high = beta_range
    below_one = _bernoulli(0.5, size, generator)
    if low <= 1.0 <= high:
        return torch.where(below_one, _uniform(low, 1.0, size, generator), _uniform(1.0, high, size, generator))
    return _uniform(low, high, size, generator)


def random_mixed_kernels(
    batch_size: int,
    kernel_list: Sequence[str],
    kernel_prob: Sequence[float],
    sinc_prob: float,
    sigma_range: tuple[float, float],
    betag_range: tuple[float, float],
    betap_range: tuple[float, float],
    kernel_size_range: tuple[int, int] = (7, 21),
    rotation_range: tuple[float, float] = (-math.pi, math.pi),
    apply_prob: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one blur kernel per sample as Real-ESRGAN does (a sinc with `sinc_prob`, else a `kernel_list` type).

    Anisotropic kernels draw `sigma_x`, `sigma_y` from `sigma_range` and an angle from `rotation_range`; isotropic
    ones use `sigma_y = sigma_x`. Samples that miss `apply_prob` get the identity (a one-pixel pulse).

    Returns:
        `torch.Tensor`: `(batch_size, K, K)` float64 CPU kernels summing to 1, zero-padded to the largest size `K`
        drawn for the batch.
    """
    sizes = _odd_sizes(kernel_size_range, batch_size, generator)
    kernel_type = torch.multinomial(
        torch.tensor(kernel_prob, dtype=torch.float64), batch_size, replacement=True, generator=generator
    )
    sigma_x = _uniform(*sigma_range, batch_size, generator)
    sigma_y = _uniform(*sigma_range, batch_size, generator)
    theta = _uniform(*rotation_range, batch_size, generator)
    beta_g = _sample_beta(betag_range, batch_size, generator)
    beta_p = _sample_beta(betap_range, batch_size, generator)
    use_sinc = _bernoulli(sinc_prob, batch_size, generator)
    omega_c = torch.where(
        sizes < SINC_LARGE_KERNEL_SIZE,
        _uniform(*SINC_CUTOFF_SMALL_KERNEL, batch_size, generator),
        _uniform(*SINC_CUTOFF_LARGE_KERNEL, batch_size, generator),
    )
    applied = _bernoulli(apply_prob, batch_size, generator)

    shapes = [_KERNEL_SHAPES[kernel_list[i]] for i in kernel_type.tolist()]
    isotropic = torch.tensor([iso for _, iso in shapes])
    is_plateau = torch.tensor([shape == "plateau" for shape, _ in shapes])
    is_generalized = torch.tensor([shape == "generalized" for shape, _ in shapes])
    sigma_y = torch.where(isotropic, sigma_x, sigma_y)
    theta = torch.where(isotropic, torch.zeros_like(theta), theta)
    beta_g = torch.where(is_generalized, beta_g, torch.ones_like(beta_g))

    support = torch.where(applied, sizes, torch.ones_like(sizes))
    kernel_size = int(support.max())
    gaussian = generalized_gaussian_kernel(kernel_size, sigma_x, sigma_y, theta, beta_g, support)
    plateau = plateau_kernel(kernel_size, sigma_x, sigma_y, theta, beta_p, support)
    sinc = circular_lowpass_kernel(kernel_size, omega_c, support)
    kernel = torch.where(is_plateau[:, None, None], plateau, gaussian)
    return torch.where(use_sinc[:, None, None], sinc, kernel)


def _random_sinc_kernels(
    batch_size: int, kernel_size_range: tuple[int, int], apply_prob: float, generator: torch.Generator
) -> torch.Tensor:
    """Real-ESRGAN's final filter: a sinc with cutoff in `(pi / 3, pi)` with `apply_prob`, else the identity."""
    sizes = _odd_sizes(kernel_size_range, batch_size, generator)
    omega_c = _uniform(*FINAL_SINC_CUTOFF, batch_size, generator)
    applied = _bernoulli(apply_prob, batch_size, generator)
    support = torch.where(applied, sizes, torch.ones_like(sizes))
    return circular_lowpass_kernel(int(support.max()), omega_c, support)


# ---------------------------------------------------------------------------------------------------------------------
# Image operations
# ---------------------------------------------------------------------------------------------------------------------


def _filter(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Filter each image with its own `(K, K)` kernel, mirroring the border (edge replication on tiny images)."""
    kernel_size = kernels.shape[-1]
    if kernel_size == 1:  # every kernel is the identity
        return images
    border = "reflect" if min(images.shape[-2:]) > kernel_size // 2 else "replicate"
    return filter2d(images, kernels.to(device=images.device, dtype=images.dtype), border_type=border)


def _gaussian_kernel_1d(size: int) -> torch.Tensor:
    """OpenCV's `getGaussianKernel(size, 0)`: sigma `0.3 * ((size - 1) / 2 - 1) + 0.8`, normalised (float64)."""
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def usm_sharpen(images: torch.Tensor, weight: float = 0.5, radius: int = 50, threshold: float = 10) -> torch.Tensor:
    r"""
    Unsharp masking as Real-ESRGAN sharpens its ground truth (basicsr's `USMSharp`): add `weight` times the detail
    (image minus its Gaussian blur) where the detail exceeds `threshold` (in 1/255 units), blended in with a blurred
    mask, clamped to `[0, 1]`.

    Args:
        images (`torch.Tensor`): `(B, C, H, W)` in `[0, 1]`.
        weight (`float`, defaults to 0.5): strength.
        radius (`int`, defaults to 50): Gaussian kernel size (made odd: 51), with OpenCV's sigma for it (8.0).
        threshold (`float`, defaults to 10): detail below this (× 1/255) is left alone.

    Returns:
        `torch.Tensor`: the sharpened images, same shape, dtype and device.
    """
    size = radius + 1 if radius % 2 == 0 else radius
    line = _gaussian_kernel_1d(size)
    kernel = torch.outer(line, line)[None].to(device=images.device, dtype=images.dtype)
    blur = _filter(images, kernel)
    residual = images - blur
    mask = (residual.abs() * 255 > threshold).to(images.dtype)
    soft_mask = _filter(mask, kernel)
    sharp = (images + weight * residual).clamp(0, 1)
    return soft_mask * sharp + (1 - soft_mask) * images


def _resize(images: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    size = (max(1, size[0]), max(1, size[1]))
    if tuple(images.shape[-2:]) == size:
        return images
    align_corners = None if mode == "area" else False
    return F.interpolate(images, size=size, mode=mode, align_corners=align_corners)


def _random_resize_factor(
    resize_prob: tuple[float, float, float], resize_range: tuple[float, float], generator: torch.Generator
) -> float:
    """Up (from `(1, high)`), down (from `(low, 1)`) or keep (1), with the probabilities `resize_prob`."""
    direction = int(torch.multinomial(torch.tensor(resize_prob, dtype=torch.float64), 1, generator=generator))
    up = float(_uniform(1.0, resize_range[1], 1, generator))
    down = float(_uniform(resize_range[0], 1.0, 1, generator))
    return (up, down, 1.0)[direction]


def _random_choice(options: Sequence[str], generator: torch.Generator) -> str:
    return options[int(torch.randint(len(options), (1,), generator=generator))]


def _poisson_noise(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Poisson (shot) noise of a `(C, H, W)` CPU image, with as many photon levels as it has distinct 8-bit values."""
    image = (image * 255.0).round().clamp(0, 255) / 255.0
    levels = 2.0 ** math.ceil(math.log2(torch.unique(image).numel()))
    return torch.poisson(image * levels, generator=generator) / levels - image


def _add_random_noise(
    images: torch.Tensor,
    gaussian_prob: float,
    sigma_range: tuple[float, float],
    poisson_scale_range: tuple[float, float],
    gray_prob: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Add Gaussian noise (sigma in 1/255 units) or Poisson noise to each image, grey or colour, then clamp."""
    batch_size, channels, height, width = images.shape
    gaussian = _bernoulli(gaussian_prob, batch_size, generator).tolist()
    sigma = _uniform(*sigma_range, batch_size, generator) / 255.0
    poisson_scale = _uniform(*poisson_scale_range, batch_size, generator)
    gray = _bernoulli(gray_prob, batch_size, generator).tolist()

    cpu_images = None if all(gaussian) else images.cpu()
    noise = torch.empty(images.shape, dtype=images.dtype)
    for i in range(batch_size):
        if gaussian[i]:
            shape = (1 if gray[i] else channels, height, width)
            noise[i] = sigma[i] * torch.randn(shape, dtype=images.dtype, generator=generator)
        else:
            image = rgb_to_grayscale(cpu_images[i]) if gray[i] else cpu_images[i]
            noise[i] = poisson_scale[i] * _poisson_noise(image, generator)
    return (images + noise.to(images.device)).clamp(0, 1)


def _jpeg(images: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """JPEG-compress each clamped image with its own quality (`(B,)`, in [1, 100]), hard-rounded as libjpeg and
    Real-ESRGAN's `DiffJPEG(differentiable=False)` do."""
    return jpeg_compress(images.clamp(0, 1), quality)


def _random_jpeg(images: torch.Tensor, quality_range: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    return _jpeg(images, _uniform(*quality_range, images.shape[0], generator))


# ---------------------------------------------------------------------------------------------------------------------
# Pipeline
# ---------------------------------------------------------------------------------------------------------------------


class RealESRGANDegradation:
    """Real-ESRGAN's second-order degradation: a GT batch in, its low-quality partner out.

    It holds no state besides its configuration and runs where its input is (CPU or GPU), without gradients.

    Args:
        config (`RealESRGANDegradationConfig`, *optional*): Probabilities and ranges; defaults to Real-ESRGAN x4plus.

    Example:

    ```py
    >>> import torch
    >>> from diffusers_sspir.data import RealESRGANDegradation

    >>> degrade = RealESRGANDegradation()
    >>> gt = torch.rand(2, 3, 64, 64)
    >>> lq = degrade(gt, generator=torch.Generator().manual_seed(0))
    >>> lq.shape
    torch.Size([2, 3, 16, 16])
    ```
    """

    def __init__(self, config: RealESRGANDegradationConfig | None = None) -> None:
        if config is None:
            config = RealESRGANDegradationConfig()
        if not isinstance(config, RealESRGANDegradationConfig):
            raise TypeError(f"`config` must be a `RealESRGANDegradationConfig` or None, got {type(config).__name__}.")
        self.config = config

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"

    def check_inputs(self, gt: torch.Tensor, generator: torch.Generator | None) -> None:
        scale = self.config.scale
        if not isinstance(gt, torch.Tensor):
            raise TypeError(f"`gt` must be a `torch.Tensor` of shape (B, 3, H, W), got {type(gt).__name__}.")
        if gt.ndim != 4 or gt.shape[0] == 0 or gt.shape[1] != 3 or not gt.is_floating_point():
            raise ValueError(
                f"`gt` must be a non-empty float tensor of shape (B, 3, H, W) with values in [0, 1], got shape "
                f"{tuple(gt.shape)} and dtype {gt.dtype}."
            )
        height, width = gt.shape[-2:]
        if height == 0 or width == 0 or height % scale or width % scale:
            raise ValueError(
                f"`gt` height and width must be positive multiples of `scale`={scale}, got {height}x{width} "
                f"(shape {tuple(gt.shape)}); crop or pad the images first."
            )
        if generator is not None and (not isinstance(generator, torch.Generator) or generator.device.type != "cpu"):
            raise ValueError(
                f"`generator` must be a CPU `torch.Generator` or None (all draws happen on the CPU, whatever the "
                f"device of `gt`), got {generator!r}."
            )

    @torch.no_grad()
    def degrade_pair(
        self, gt: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A training pair from a ground-truth batch: `(target, lq)`. The target is `gt`, unsharp-masked when the
        config says `gt_usm` (Real-ESRNet's recipe: the sharpened image is both degraded and learnt); `lq` is the
        target degraded by [`__call__`]. Same arguments as [`__call__`]."""
        self.check_inputs(gt, generator)
        target = usm_sharpen(gt.float()).to(gt.dtype) if self.config.gt_usm else gt
        return target, self(target, generator=generator)

    @torch.no_grad()
    def __call__(self, gt: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Degrade a batch of ground-truth images.

        Args:
            gt (`torch.Tensor`): `(B, 3, H, W)` float images in `[0, 1]`, `H` and `W` multiples of `config.scale`,
                on any device. Half-precision inputs are processed in float32.
            generator (`torch.Generator`, *optional*): CPU generator for every random draw; the same seed gives the
                same output on a given device. A fresh, randomly seeded one when omitted.

        Returns:
            `torch.Tensor`: `(B, 3, H // scale, W // scale)` images on the 1/255 grid in `[0, 1]`, with the device and
            dtype of `gt`.
        """
        self.check_inputs(gt, generator)
        if generator is None:
            generator = torch.Generator()
            generator.seed()
        config = self.config
        batch_size, _, height, width = gt.shape
        lq_size = (height // config.scale, width // config.scale)
        images = gt.to(torch.float64 if gt.dtype == torch.float64 else torch.float32)

        # First degradation: blur, resize, noise, JPEG.
        kernels = random_mixed_kernels(
            batch_size,
            config.first.kernel_list,
            config.first.kernel_prob,
            config.first.sinc_prob,
            config.first.blur_sigma,
            config.first.betag_range,
            config.first.betap_range,
            config.kernel_size_range,
            config.rotation_range,
            apply_prob=config.first.blur_prob,
            generator=generator,
        )
        images = _filter(images, kernels)
        factor = _random_resize_factor(config.first.resize_prob, config.first.resize_range, generator)
        size = (int(height * factor), int(width * factor))
        images = _resize(images, size, _random_choice(config.resize_modes, generator))
        images = _add_random_noise(
            images,
            config.first.gaussian_noise_prob,
            config.first.noise_range,
            config.first.poisson_scale_range,
            config.first.gray_noise_prob,
            generator,
        )
        images = _random_jpeg(images, config.first.jpeg_range, generator)

        # Second degradation: blur (sometimes), resize around the LQ size, noise.
        kernels = random_mixed_kernels(
            batch_size,
            config.second.kernel_list,
            config.second.kernel_prob,
            config.second.sinc_prob,
            config.second.blur_sigma,
            config.second.betag_range,
            config.second.betap_range,
            config.kernel_size_range,
            config.rotation_range,
            apply_prob=config.second.blur_prob,
            generator=generator,
        )
        images = _filter(images, kernels)
        factor = _random_resize_factor(config.second.resize_prob, config.second.resize_range, generator)
        size = (int(height / config.scale * factor), int(width / config.scale * factor))
        images = _resize(images, size, _random_choice(config.resize_modes, generator))
        images = _add_random_noise(
            images,
            config.second.gaussian_noise_prob,
            config.second.noise_range,
            config.second.poisson_scale_range,
            config.second.gray_noise_prob,
            generator,
        )

        # Final: [resize to the LQ size + sinc filter] and JPEG, in random order.
        sinc_kernels = _random_sinc_kernels(batch_size, config.kernel_size_range, config.final_sinc_prob, generator)
        mode = _random_choice(config.resize_modes, generator)
        quality = _uniform(*config.second.jpeg_range, batch_size, generator)
        jpeg_first = bool(_bernoulli(config.jpeg_first_prob, 1, generator))
        if jpeg_first:
            images = _jpeg(images, quality)
        images = _filter(_resize(images, lq_size, mode), sinc_kernels)
        if not jpeg_first:
            images = _jpeg(images, quality)

        lq = (images * 255.0).round().clamp(0, 255) / 255.0
        return lq.to(gt.dtype)
