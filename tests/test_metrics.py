"""PSNR/SSIM against scikit-image (an independent implementation) and against values worked out by hand.

scikit-image filters SSIM's statistics over the whole image with reflected borders, then averages the SSIM map
without its outer `(11 - 1) / 2 = 5` pixels: exactly the positions where the 11x11 window lies inside the image, the
"valid" region that BasicSR (and `diffusers_sspir.metrics`) averages over. The two agree to rounding.
"""

import math

import numpy as np
import pytest

pytest.importorskip("skimage", reason="the metrics are checked against scikit-image, an independent reference")
from skimage.color import rgb2ycbcr  # noqa: E402
from skimage.metrics import peak_signal_noise_ratio, structural_similarity  # noqa: E402

from diffusers_sspir.metrics import crop_borders, gaussian_kernel, psnr, rgb_to_y, ssim


def random_pair(height=40, width=36, seed=0, noise=20):
    rng = np.random.RandomState(seed)
    gt = rng.randint(0, 256, (height, width, 3)).astype(np.uint8)
    pred = np.clip(gt.astype(int) + rng.randint(-noise, noise + 1, gt.shape), 0, 255).astype(np.uint8)
    return pred, gt


def skimage_ssim(pred, gt, channel_axis=-1):
    return structural_similarity(
        pred, gt, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255,
        channel_axis=channel_axis,
    )  # fmt: skip


def skimage_y(image):
    """scikit-image's BT.601 luma: 16 + 65.481 R + 128.553 G + 24.966 B for RGB in [0, 1]."""
    return rgb2ycbcr(image)[..., 0]


@pytest.mark.parametrize("border", [0, 4])
@pytest.mark.parametrize("seed", [0, 1])
def test_psnr_matches_scikit_image(seed, border):
    pred, gt = random_pair(seed=seed)
    crop = slice(border, -border or None)
    expected = peak_signal_noise_ratio(gt[crop, crop], pred[crop, crop], data_range=255)
    assert psnr(pred, gt, crop_border=border) == pytest.approx(expected, abs=1e-10)
    expected_y = peak_signal_noise_ratio(skimage_y(gt)[crop, crop], skimage_y(pred)[crop, crop], data_range=255)
    assert psnr(pred, gt, crop_border=border, y_channel=True) == pytest.approx(expected_y, abs=1e-10)


@pytest.mark.parametrize("border", [0, 4])
@pytest.mark.parametrize("seed", [0, 1])
def test_ssim_matches_scikit_image(seed, border):
    pred, gt = random_pair(seed=seed)
    crop = slice(border, -border or None)
    expected = skimage_ssim(pred[crop, crop], gt[crop, crop])
    assert ssim(pred, gt, crop_border=border) == pytest.approx(expected, abs=1e-10)
    expected_y = skimage_ssim(skimage_y(pred)[crop, crop], skimage_y(gt)[crop, crop], channel_axis=None)
    assert ssim(pred, gt, crop_border=border, y_channel=True) == pytest.approx(expected_y, abs=1e-10)


def test_y_channel_values_by_hand():
    colours = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], dtype=np.uint8)
    np.testing.assert_allclose(rgb_to_y(colours)[0], [16, 235, 16 + 65.481, 16 + 128.553, 16 + 24.966], atol=1e-12)
    np.testing.assert_allclose(rgb_to_y(colours), skimage_y(colours), atol=1e-12)


@pytest.mark.parametrize("offset", [1, 5, 20])
def test_constant_offset_gives_known_psnr(offset):
    gt = np.random.RandomState(0).randint(30, 200, (24, 24, 3)).astype(np.uint8)
    pred = gt + np.uint8(offset)
    assert psnr(pred, gt) == pytest.approx(20 * math.log10(255 / offset), abs=1e-12)
    # The luma weights sum to 219 / 255 of the offset.
    assert psnr(pred, gt, y_channel=True) == pytest.approx(20 * math.log10(255 / (offset * 219 / 255)), abs=1e-12)


def test_constant_images_give_the_ssim_luminance_term():
    a, b = 100.0, 110.0
    c1 = (0.01 * 255) ** 2
    expected = (2 * a * b + c1) / (a**2 + b**2 + c1)  # no variance: only the luminance term is left
    assert ssim(np.full((16, 16, 3), b), np.full((16, 16, 3), a)) == pytest.approx(expected, abs=1e-12)


def test_identical_images():
    _, gt = random_pair()
    assert psnr(gt, gt) == math.inf
    assert ssim(gt, gt) == pytest.approx(1.0, abs=1e-12)
    assert ssim(gt, gt, y_channel=True) == pytest.approx(1.0, abs=1e-12)


def test_crop_border_ignores_the_border():
    _, gt = random_pair()
    pred = gt.copy()
    pred[:4] = 0
    pred[:, -4:] = 255
    assert psnr(pred, gt, crop_border=4) == math.inf
    assert psnr(pred, gt, crop_border=3) < 20
    assert crop_borders(gt, 4).shape == (32, 28, 3)


def test_uint8_and_float_inputs_agree_and_grayscale_works():
    pred, gt = random_pair()
    assert psnr(pred.astype(np.float32), gt.astype(np.float64)) == psnr(pred, gt)
    assert ssim(pred.astype(np.float32), gt) == ssim(pred, gt)
    gray_pred, gray_gt = pred[..., 0], gt[..., 0]
    assert ssim(gray_pred, gray_gt) == pytest.approx(skimage_ssim(gray_pred, gray_gt, channel_axis=None), abs=1e-10)


def test_gaussian_kernel_values():
    kernel = gaussian_kernel(11, 1.5)
    assert kernel.shape == (11,) and kernel.sum() == pytest.approx(1.0)
    assert kernel[5] == pytest.approx(1 / sum(math.exp(-(x**2) / 4.5) for x in range(-5, 6)), abs=1e-15)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: psnr(np.zeros((8, 8, 3)), np.zeros((8, 9, 3))), "same shape"),
        (lambda: psnr(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)), crop_border=4), "leaves nothing"),
        (lambda: ssim(np.zeros((12, 12, 3)), np.zeros((12, 12, 3)), crop_border=1), "at least 11x11"),
        (lambda: psnr(np.zeros((8, 8)), np.zeros((8, 8)), y_channel=True), "needs RGB"),
        (lambda: psnr(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)), crop_border=-1), ">= 0"),
        (lambda: psnr(np.zeros((8, 8, 4)), np.zeros((8, 8, 4))), "shape"),
    ],
)
def test_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("dtype", [np.uint16, np.int8, np.int16, np.int64, np.bool_])
def test_integer_types_other_than_uint8_are_refused(dtype):
    image = np.zeros((16, 16, 3), dtype=dtype)
    with pytest.raises(TypeError, match=f"`pred` has dtype {np.dtype(dtype)}; pass 8-bit images"):
        psnr(image, np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(TypeError, match="`gt` has dtype"):
        ssim(np.zeros((16, 16, 3), np.uint8), image)


def test_uint16_message_says_how_to_convert():
    with pytest.raises(TypeError, match="257"):
        psnr(np.full((8, 8, 3), 1000, np.uint16), np.full((8, 8, 3), 1000, np.uint16))


@pytest.mark.parametrize(
    "image,message",
    [
        (np.full((16, 16, 3), 0.5), r"values in \[0, 1\].*multiply by 255"),
        (np.full((16, 16, 3), 256.0), "must lie in 0..255"),
        (np.full((16, 16, 3), -1.0), "must lie in 0..255"),
        (np.full((16, 16, 3), np.nan), "must lie in 0..255"),
    ],
)
def test_floats_must_be_on_the_0_255_scale(image, message):
    with pytest.raises(ValueError, match=f"`gt` .*{message}"):
        psnr(np.zeros((16, 16, 3)), image)


def test_black_float_images_are_accepted():
    assert psnr(np.zeros((16, 16, 3), np.float32), np.zeros((16, 16, 3))) == math.inf
