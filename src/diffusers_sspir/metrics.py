"""Image quality metrics as the image restoration literature computes them: PSNR and SSIM against a ground truth,
and NIQE, which needs none.

All three follow the conventions of BasicSR (`basicsr/metrics/psnr_ssim.py` and `niqe.py`), which most
super-resolution and restoration papers report, and which pyiqa reproduces:

- images are 8-bit: `uint8`, or floats holding 8-bit values on the 0–255 scale (as BasicSR passes them), compared in
  `float64`. Other integer types (`uint16`, `int64`, …) are refused rather than guessed at: convert 16-bit images to
  8 bits first (`np.round(x / 257).astype(np.uint8)`, which is what `diffusers_sspir.files.read_rgb8` does). A float
  image whose values all lie in `[0, 1]` (and are not all 0) is refused too: it is almost certainly on the 0–1 scale,
  where a peak of 255 would give meaningless values;
- `crop_border` pixels are removed from every side first (by convention, the upscaling factor);
- `y_channel=True` compares the luma of ITU-R BT.601 YCbCr, `Y = 16 + (65.481 R + 128.553 G + 24.966 B)` with RGB in
  `[0, 1]` (so `Y` lies in `[16, 235]`), without rounding it to integers;
- PSNR is `10 log10(255² / MSE)` (infinite for identical images);
- SSIM (Wang et al., 2004) uses an 11×11 Gaussian window with σ = 1.5, `K1 = 0.01`, `K2 = 0.03` and a data range of
  255, evaluated only where the window lies entirely inside the image ("valid" filtering), averaged over that region
  and, for RGB, over the three channels;
- NIQE (Mittal, Soundararajan and Bovik, 2013) scores the luma of RGB images (rounded to integers, as BasicSR and
  the authors' MATLAB code do) or a grey image as it is: the distance of the statistics of its 96×96 blocks, at full
  and half size, from a model of pristine photos (`metrics_data/niqe_pris_params.npz`, from the authors' release).
  Lower is more natural.

Everything is plain numpy; the only resizing is NIQE's own half-size pass.

Example:

```py
>>> import numpy as np
>>> from diffusers_sspir.metrics import niqe, psnr, ssim

>>> gt = np.full((32, 32, 3), 100, dtype=np.uint8)
>>> round(psnr(gt + 5, gt), 2)  # a constant offset of 5 grey levels: 20 log10(255 / 5)
34.15
>>> ssim(gt, gt)
1.0
>>> noise = np.random.RandomState(0).randint(0, 256, (192, 192, 3)).astype(np.uint8)
>>> niqe(noise) > 20  # far from a natural photo (which scores about 2 to 5)
True

```
"""

import functools
import math
from pathlib import Path

import numpy as np

from .validation import check_integer

__all__ = ["crop_borders", "gaussian_kernel", "niqe", "psnr", "rgb_to_y", "ssim"]

SSIM_WINDOW_SIZE = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
DATA_RANGE = 255.0
BT601_Y_WEIGHTS = np.array([65.481, 128.553, 24.966])
"""Weights of R, G and B (in `[0, 1]`) in BT.601 luma, offset by 16 (BasicSR's `rgb2ycbcr(..., y_only=True)`)."""


ACCEPTED = "uint8, or floats on the 0-255 scale"


def _as_image(image: np.ndarray, name: str) -> np.ndarray:
    """`image` as a `float64` `(H, W, C)` array on the 0–255 scale, or an error saying what is accepted.

    Raises:
        TypeError: for a dtype other than uint8 or float.
        ValueError: for a float image with values outside 0–255 (or not finite), or all in `[0, 1]` (the 0–1 scale).
    """
    image = np.asarray(image)
    if np.issubdtype(image.dtype, np.integer) and image.dtype != np.uint8:
        raise TypeError(
            f"`{name}` has dtype {image.dtype}; pass 8-bit images ({ACCEPTED}). For 16-bit images, convert first: "
            "np.round(image / 257).astype(np.uint8)."
        )
    if image.dtype != np.uint8 and not np.issubdtype(image.dtype, np.floating):
        raise TypeError(f"`{name}` has dtype {image.dtype}; pass 8-bit images ({ACCEPTED}).")
    if np.issubdtype(image.dtype, np.floating) and image.size:
        low, high = float(np.min(image)), float(np.max(image))
        if not (math.isfinite(low) and math.isfinite(high)) or low < 0 or high > DATA_RANGE:
            raise ValueError(f"`{name}` has values from {low} to {high}; float images must lie in 0..255.")
        if 0 < high <= 1:
            raise ValueError(
                f"`{name}` is a float image with values in [0, 1] (max {high}), which looks like the 0-1 scale; "
                "these metrics take 8-bit values: multiply by 255 (and round, as saving to 8 bits would), or pass "
                "uint8."
            )
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(f"`{name}` must have shape (H, W), (H, W, 1) or (H, W, 3), got {image.shape}.")
    return image.astype(np.float64)


def _prepare(pred: np.ndarray, gt: np.ndarray, crop: int, y_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = _as_image(pred, "pred"), _as_image(gt, "gt")
    if pred.shape != gt.shape:
        raise ValueError(f"`pred` and `gt` must have the same shape, got {pred.shape} and {gt.shape}.")
    pred, gt = crop_borders(pred, crop), crop_borders(gt, crop)
    if y_channel:
        if pred.shape[-1] != 3:
            raise ValueError(f"`y_channel=True` needs RGB images (H, W, 3), got {pred.shape}.")
        pred, gt = rgb_to_y(pred)[..., None], rgb_to_y(gt)[..., None]
    return pred, gt


def crop_borders(image: np.ndarray, border: int) -> np.ndarray:
    """Removes `border` pixels from each side of an `(H, W, ...)` image.

    Args:
        image (`np.ndarray`): `(H, W)` or `(H, W, C)`.
        border (`int`): pixels removed from the top, bottom, left and right; `0` keeps the image.

    Returns:
        `np.ndarray`: `(H - 2 border, W - 2 border, ...)`, a view of `image`.

    Raises:
        ValueError: if `border` is negative or leaves no pixel.
    """
    check_integer("crop_border", border, minimum=0)
    height, width = image.shape[:2]
    if 2 * border >= min(height, width):
        raise ValueError(f"`crop_border`={border} leaves nothing of a {height}x{width} image.")
    return image[border : height - border, border : width - border] if border else image


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """BT.601 luma of RGB on the 0–255 scale: `16 + (65.481 R + 128.553 G + 24.966 B) / 255` for RGB in 0–255.

    The same as BasicSR's `rgb2ycbcr(img / 255, y_only=True) * 255` (and MATLAB's `rgb2ycbcr`), without rounding.

    Args:
        image (`np.ndarray`): `(H, W, 3)`, RGB on the 0–255 scale (uint8 or float).

    Returns:
        `np.ndarray`: `(H, W)` `float64` luma in `[16, 235]`.
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"`image` must have shape (H, W, 3), got {image.shape}.")
    return image @ BT601_Y_WEIGHTS / DATA_RANGE + 16.0


def gaussian_kernel(size: int = SSIM_WINDOW_SIZE, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """A normalised 1-D Gaussian of `size` taps (OpenCV's `getGaussianKernel(size, sigma)`); SSIM's 2-D window is
    its outer product with itself.

    Returns:
        `np.ndarray`: `(size,)` `float64` weights summing to 1.
    """
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    kernel = np.exp(-(x**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def _filter_valid(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable filtering of an `(H, W)` image by `outer(kernel, kernel)`, only where the window fits inside."""
    size = len(kernel)
    height, width = image.shape
    rows = sum(weight * image[i : height - size + 1 + i] for i, weight in enumerate(kernel))
    return sum(weight * rows[:, i : width - size + 1 + i] for i, weight in enumerate(kernel))


def _ssim_channel(pred: np.ndarray, gt: np.ndarray) -> float:
    """SSIM of one `(H, W)` channel on the 0–255 scale (BasicSR's `_ssim`)."""
    c1, c2 = (SSIM_K1 * DATA_RANGE) ** 2, (SSIM_K2 * DATA_RANGE) ** 2
    kernel = gaussian_kernel()
    mu1, mu2 = _filter_valid(pred, kernel), _filter_valid(gt, kernel)
    mu1_sq, mu2_sq, mu1_mu2 = mu1**2, mu2**2, mu1 * mu2
    sigma1_sq = _filter_valid(pred**2, kernel) - mu1_sq
    sigma2_sq = _filter_valid(gt**2, kernel) - mu2_sq
    sigma12 = _filter_valid(pred * gt, kernel) - mu1_mu2
    ssim_map = ((2 * mu1_mu2 + c1) * (2 * sigma12 + c2)) / ((mu1_sq + mu2_sq + c1) * (sigma1_sq + sigma2_sq + c2))
    return float(ssim_map.mean())


def psnr(pred: np.ndarray, gt: np.ndarray, crop_border: int = 0, y_channel: bool = False) -> float:
    """Peak signal-to-noise ratio, in dB, of `pred` against `gt` (8-bit scale, peak 255).

    Args:
        pred (`np.ndarray`): the restored image, `(H, W)` or `(H, W, 3)`, uint8 or float on the 0–255 scale.
        gt (`np.ndarray`): the ground truth, same shape.
        crop_border (`int`, defaults to 0): pixels removed from each side before comparing.
        y_channel (`bool`, defaults to `False`): compare BT.601 luma (see [`rgb_to_y`]) instead of RGB.

    Returns:
        `float`: `10 log10(255² / MSE)`; `inf` for identical images.

    Raises:
        TypeError: for a dtype other than uint8 or float.
        ValueError: if the shapes differ, `crop_border` leaves nothing, or a float image is not on the 0–255 scale.
    """
    pred, gt = _prepare(pred, gt, crop_border, y_channel)
    mse = float(np.mean((pred - gt) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(DATA_RANGE**2 / mse)


def ssim(pred: np.ndarray, gt: np.ndarray, crop_border: int = 0, y_channel: bool = False) -> float:
    """Structural similarity of `pred` against `gt` (BasicSR's `calculate_ssim`).

    Gaussian window 11×11 with σ = 1.5, `K1 = 0.01`, `K2 = 0.03`, data range 255, evaluated where the window fits
    inside the (cropped) image; for RGB, the mean of the three channels' SSIM.

    Args:
        pred (`np.ndarray`): the restored image, `(H, W)` or `(H, W, 3)`, uint8 or float on the 0–255 scale.
        gt (`np.ndarray`): the ground truth, same shape.
        crop_border (`int`, defaults to 0): pixels removed from each side before comparing.
        y_channel (`bool`, defaults to `False`): compare BT.601 luma (see [`rgb_to_y`]) instead of RGB.

    Returns:
        `float`: SSIM, 1 for identical images.

    Raises:
        TypeError: for a dtype other than uint8 or float.
        ValueError: if the shapes differ, the cropped image is smaller than the 11×11 window, or a float image is not
            on the 0–255 scale.
    """
    pred, gt = _prepare(pred, gt, crop_border, y_channel)
    if min(pred.shape[:2]) < SSIM_WINDOW_SIZE:
        raise ValueError(
            f"SSIM needs images of at least {SSIM_WINDOW_SIZE}x{SSIM_WINDOW_SIZE} pixels after cropping "
            f"`crop_border`={crop_border}, got {pred.shape[0]}x{pred.shape[1]}."
        )
    return float(np.mean([_ssim_channel(pred[..., c], gt[..., c]) for c in range(pred.shape[-1])]))


NIQE_BLOCK_SIZE = 96
"""NIQE's patches: 96×96 pixels, without overlap, as the pristine model was fitted on."""
NIQE_WINDOW_SIZE = 7
NIQE_SIGMA = 7 / 6
NIQE_MODEL_PATH = Path(__file__).parent / "metrics_data" / "niqe_pris_params.npz"
"""NIQE's pristine model, from the authors' MATLAB release via BasicSR 1.4.2 (see `metrics_data/README.md`)."""
AGGD_SHAPES = np.arange(0.2, 10.001, 0.001)
"""The shapes α an asymmetric generalised Gaussian fit chooses from: the grid of the NIQE release."""
PRODUCT_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))
"""Neighbours whose products with each pixel NIQE models: horizontal, vertical and the two diagonals."""


@functools.cache
def _niqe_pristine_model() -> tuple[np.ndarray, np.ndarray]:
    """`(mean (36,), covariance (36, 36))` of the features of pristine patches."""
    with np.load(NIQE_MODEL_PATH) as model:
        return model["mu_pris_param"][0], model["cov_pris_param"]


@functools.cache
def _aggd_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each shape α of `AGGD_SHAPES`: `Γ(2/α)² / (Γ(1/α) Γ(3/α))` (the moment ratio the fit matches),
    `√(Γ(1/α) / Γ(3/α))` (a side's scale per standard deviation) and `Γ(2/α) / Γ(1/α)` (the mean per scale)."""
    g1, g2, g3 = (np.array([math.gamma(k / shape) for shape in AGGD_SHAPES]) for k in (1, 2, 3))
    return g2**2 / (g1 * g3), np.sqrt(g1 / g3), g2 / g1


def _fit_aggd(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Moment-matching fit of an asymmetric generalised Gaussian to each row of `samples` `(N, M)` (the NIQE
    release's `estimateaggdparam`): `(shape α, mean, left scale, right scale)`, each `(N,)`.

    The moments are taken in the dtype of `samples` (float32 in [`niqe`]). A row without negative or without positive
    values has no fit: its scales and mean are NaN and, as numpy's `argmin` of a NaN row gives in BasicSR, its α is
    the first of `AGGD_SHAPES`, 0.2.
    """
    ratios, scale_per_std, mean_per_scale = _aggd_tables()
    squares = samples**2
    negative, positive = samples < 0, samples > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        left_std = np.sqrt((squares * negative).sum(1) / negative.sum(1).astype(samples.dtype))
        right_std = np.sqrt((squares * positive).sum(1) / positive.sum(1).astype(samples.dtype))
        skew = left_std / right_std
        ratio = np.abs(samples).mean(1) ** 2 / squares.mean(1)
        ratio = ratio * (skew**3 + 1) * (skew + 1) / (skew**2 + 1) ** 2
    best = np.argmin((ratios[None] - ratio[:, None]) ** 2, axis=1)
    left, right = left_std * scale_per_std[best], right_std * scale_per_std[best]
    return AGGD_SHAPES[best], (right - left) * mean_per_scale[best], left, right


def _block_features(blocks: np.ndarray) -> np.ndarray:
    """NIQE's 18 features of each block of normalised coefficients `blocks` `(N, S, S)` (the release's
    `computefeature`): shape and mean scale of the coefficients, then shape, mean, left and right scale of their
    products with each neighbour of `PRODUCT_SHIFTS` (wrapping around the block, as the release's `circshift` does).
    """
    shape, _, left, right = _fit_aggd(blocks.reshape(len(blocks), -1))
    features = [shape, (left + right) / 2]
    for shift in PRODUCT_SHIFTS:
        products = blocks * np.roll(blocks, shift, axis=(1, 2))
        features += _fit_aggd(products.reshape(len(blocks), -1))
    return np.stack(features, axis=1)


def _normalise(image: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients `(I - μ) / (σ + 1)` of an `(H, W)` image, with local mean μ
    and deviation σ under NIQE's 7×7 Gaussian window, the image's edge pixels repeated beyond it.

    In float32, as BasicSR computes them (filtered in float64, stored in float32, like scipy's `convolve` of a
    float32 image): the fit of [`_fit_aggd`] counts negative and positive coefficients and picks its shape from a
    grid, so float64's last digits (a flat area's `I - μ` of ±1e-14 instead of 0) change NIQE by up to 0.03.
    """
    kernel = gaussian_kernel(NIQE_WINDOW_SIZE, NIQE_SIGMA)
    pad = NIQE_WINDOW_SIZE // 2
    image = image.astype(np.float32)
    mean = _filter_valid(np.pad(image, pad, mode="edge"), kernel).astype(np.float32)
    mean_of_squares = _filter_valid(np.pad(image**2, pad, mode="edge"), kernel).astype(np.float32)
    return (image - mean) / (np.sqrt(np.abs(mean_of_squares - mean**2)) + 1)


def _cubic(x: np.ndarray) -> np.ndarray:
    """MATLAB's bicubic kernel (Keys, a = -0.5)."""
    x = np.abs(x)
    near = (1.5 * x**3 - 2.5 * x**2 + 1) * (x <= 1)
    return near + (-0.5 * x**3 + 2.5 * x**2 - 4 * x + 2) * ((x > 1) & (x <= 2))


def _imresize_taps(length: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """`(weights, index)`, each `(ceil(length * scale), taps)`, of MATLAB's `imresize(..., scale, "bicubic")` along
    one axis: output pixel `i` is `sum(weights[i] * input[index[i]])`, with the kernel widened by `1 / scale` when
    shrinking (antialiasing) and taps beyond the edges mirrored back inside."""
    out_length = math.ceil(length * scale)
    stretch = min(scale, 1.0)
    width = 4 / stretch
    centres = np.arange(1, out_length + 1) / scale + 0.5 * (1 - 1 / scale)  # in 1-based input coordinates
    taps = np.floor(centres - width / 2)[:, None] + np.arange(math.ceil(width) + 2)
    weights = stretch * _cubic((centres[:, None] - taps) * stretch)
    index = np.mod(taps.astype(int) - 1, 2 * length)  # symmetric padding: 0 1 .. n-1 n-1 .. 1 0 0 1 ..
    index = np.where(index < length, index, 2 * length - 1 - index)
    return weights / weights.sum(axis=1, keepdims=True), index


def _imresize(image: np.ndarray, scale: float) -> np.ndarray:
    """An `(H, W)` image resized by `scale` as MATLAB's `imresize(image, scale)` does (bicubic, antialiased): its
    rows, then its columns."""
    for _ in range(2):
        weights, index = _imresize_taps(image.shape[0], scale)
        image = sum(weights[:, k, None] * image[index[:, k]] for k in range(weights.shape[1])).T
    return image


def niqe(image: np.ndarray, crop_border: int = 0) -> float:
    """Natural Image Quality Evaluator (Mittal, Soundararajan and Bovik, "Making a Completely Blind Image Quality
    Analyzer", 2013): how far the statistics of `image` lie from those of pristine photos. No ground truth is needed.

    Follows BasicSR 1.4.2's `calculate_niqe` (`convert_to="y"`), which reproduces the authors' MATLAB release: RGB
    images are scored on their BT.601 luma (see [`rgb_to_y`]), rounded to integers; grey images as they are
    (rounded). The image, cropped to whole 96×96 blocks from its top-left corner, gives 18 features per block at full
    size and 18 at half size (MATLAB's antialiased bicubic `imresize`); NIQE is the distance between the Gaussian of
    those 36 features and the shipped pristine model, `sqrt((μ₁ - μ₂)ᵀ ((Σ₁ + Σ₂) / 2)⁺ (μ₁ - μ₂))`. Blocks without
    texture have undefined features and are left out of the covariance, as in BasicSR. Agrees with BasicSR within
    1e-3 (`tests/test_metrics.py`, `scripts/make_niqe_references.py`).

    Args:
        image (`np.ndarray`): `(H, W)`, `(H, W, 1)` or `(H, W, 3)` RGB, uint8 or float on the 0–255 scale.
        crop_border (`int`, defaults to 0): pixels removed from each side first.

    Returns:
        `float`: NIQE, lower is more natural (photos score about 2 to 5; uniform noise over 20).

    Raises:
        TypeError: for a dtype other than uint8 or float.
        ValueError: if the image is not on the 0–255 scale, `crop_border` is not an integer >= 0, fewer than two
            96×96 blocks fit in the cropped image, or fewer than two blocks have texture.
    """
    image = _as_image(image, "image")
    image = crop_borders(image, crop_border)
    image = np.round(rgb_to_y(image) if image.shape[-1] == 3 else image[..., 0])
    rows, columns = (length // NIQE_BLOCK_SIZE for length in image.shape)
    if rows * columns < 2:
        raise ValueError(
            f"NIQE fits a Gaussian to the features of {NIQE_BLOCK_SIZE}x{NIQE_BLOCK_SIZE} blocks and needs at least "
            f"two: an image of at least {NIQE_BLOCK_SIZE}x{2 * NIQE_BLOCK_SIZE} or {2 * NIQE_BLOCK_SIZE}x"
            f"{NIQE_BLOCK_SIZE} pixels after removing `crop_border`={crop_border} from each side, got "
            f"{image.shape[0]}x{image.shape[1]}."
        )
    image = image[: rows * NIQE_BLOCK_SIZE, : columns * NIQE_BLOCK_SIZE]

    features = []
    for scaled in (image, _imresize(image, 0.5)):
        size = scaled.shape[0] // rows
        blocks = _normalise(scaled).reshape(rows, size, columns, size).swapaxes(1, 2).reshape(-1, size, size)
        features.append(_block_features(blocks))
    features = np.concatenate(features, axis=1)

    complete = features[~np.isnan(features).any(axis=1)]
    if len(complete) < 2:
        raise ValueError(
            f"NIQE is undefined for this image: {len(features) - len(complete)} of its {len(features)} blocks have "
            "no texture (flat, or without both darker and brighter pixels than their surroundings), and at least "
            "two textured blocks are needed."
        )
    pristine_mean, pristine_covariance = _niqe_pristine_model()
    difference = pristine_mean - np.nanmean(features, axis=0)
    covariance = (pristine_covariance + np.cov(complete, rowvar=False)) / 2
    return float(np.sqrt(difference @ np.linalg.pinv(covariance) @ difference))
