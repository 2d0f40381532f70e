"""Full-reference image quality metrics as the image restoration literature computes them.

PSNR and SSIM here follow the conventions of BasicSR (`basicsr/metrics/psnr_ssim.py`), which most super-resolution
and restoration papers report, and which pyiqa reproduces:

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
  and, for RGB, over the three channels.

Everything is plain numpy; no image is resized or converted to another bit depth.

Example:

```py
>>> import numpy as np
>>> from diffusers_sspir.metrics import psnr, ssim

>>> gt = np.full((32, 32, 3), 100, dtype=np.uint8)
>>> round(psnr(gt + 5, gt), 2)  # a constant offset of 5 grey levels: 20 log10(255 / 5)
34.15
>>> ssim(gt, gt)
1.0
```
"""

import math

import numpy as np

__all__ = ["crop_borders", "gaussian_kernel", "psnr", "rgb_to_y", "ssim"]

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
    if isinstance(border, bool) or not isinstance(border, (int, np.integer)) or border < 0:
        raise ValueError(f"`crop_border` must be an integer >= 0, got {border!r}.")
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
