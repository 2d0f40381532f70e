"""PSNR/SSIM against scikit-image (an independent implementation) and against values worked out by hand; NIQE
against BasicSR 1.4.2.

scikit-image filters SSIM's statistics over the whole image with reflected borders, then averages the SSIM map
without its outer `(11 - 1) / 2 = 5` pixels: exactly the positions where the 11x11 window lies inside the image, the
"valid" region that BasicSR (and `diffusers_sspir.metrics`) averages over. The two agree to rounding.
"""

import hashlib
import math

import numpy as np
import pytest

try:  # scikit-image imports its submodules lazily: their own needs (scipy) show only here
    from skimage.color import rgb2ycbcr
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity
except ImportError as error:
    pytest.skip(f"the metrics are checked against scikit-image, an independent reference: {error}",
                allow_module_level=True)  # fmt: skip

from diffusers_sspir.metrics import NIQE_MODEL_PATH, crop_borders, gaussian_kernel, niqe, psnr, rgb_to_y, ssim

from .scripts import load_script


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


# NIQE: BasicSR 1.4.2's `calculate_niqe(image[..., ::-1], crop_border)` (BGR) of each case of
# scripts/make_niqe_references.py (scikit-image's photos, and images made from a seed), printed by that script, run
# in a separate environment with basicsr 1.4.2 (the PyPI sdist), numpy 2.4.6, scipy 1.17.1, torch 2.13.0+cpu,
# opencv-python-headless 5.1.0.95, scikit-image 0.26.0 (its docstring has the commands):
#     /tmp/basicsr-venv/bin/python scripts/make_niqe_references.py
BASICSR_NIQE = {
    "camera": 3.096206619345783,
    "camera_border4": 3.0465181612260595,
    "astronaut": 3.0649476661847754,
    "astronaut_border4": 2.9912960484545486,
    "chelsea": 2.6255243812915023,
    "coffee_border3": 3.9869353147963333,
    "rocket_odd_border2": 11.796132467741721,
    "moon_two_blocks": 10.772592833651888,
    "noise": 28.774630093769257,
    "flat_blocks": 46.17500453188803,
}
NIQE_TOLERANCE = 1e-3
"""BasicSR computes in float32 (and resizes with torch), which moves the last digits; the largest difference of
these cases is 6e-4 (astronaut_border4), most are below 6e-5."""
NIQE_PARAMS_SHA256 = "2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296"
"""sha256 of `basicsr/metrics/niqe_pris_params.npz` in the basicsr 1.4.2 sdist."""


niqe_references = load_script("scripts/make_niqe_references.py")


def test_niqe_cases_are_the_recorded_ones():
    assert list(niqe_references.CASES) == list(BASICSR_NIQE)


@pytest.mark.parametrize("name", list(BASICSR_NIQE))
def test_niqe_matches_basicsr(name):
    image = niqe_references.case_image(name)
    crop_border = niqe_references.CASES[name][2]
    assert niqe(image, crop_border=crop_border) == pytest.approx(BASICSR_NIQE[name], abs=NIQE_TOLERANCE)


def test_niqe_grey_shapes_and_float_input_agree():
    image = niqe_references.case_image("moon_two_blocks")
    expected = niqe(image)
    assert niqe(image[..., None]) == expected
    assert niqe(image.astype(np.float32)) == expected
    assert niqe(image + np.float64(0.3)) == expected  # rounded to integers first, as BasicSR does


def test_niqe_scores_rgb_on_its_luma():
    image = niqe_references.case_image("chelsea")
    assert niqe(image, crop_border=2) == niqe(np.round(rgb_to_y(image)), crop_border=2)


def test_niqe_pristine_model_is_basicsrs_file():
    assert hashlib.sha256(NIQE_MODEL_PATH.read_bytes()).hexdigest() == NIQE_PARAMS_SHA256
    with np.load(NIQE_MODEL_PATH, allow_pickle=False) as model:
        assert model["mu_pris_param"].shape == (1, 36) and model["cov_pris_param"].shape == (36, 36)
        # the window niqe builds itself is the release's fspecial('gaussian', 7, 7/6)
        window = np.outer(gaussian_kernel(7, 7 / 6), gaussian_kernel(7, 7 / 6))
        np.testing.assert_allclose(model["gaussian_window"], window, atol=1e-15)


@pytest.mark.parametrize(
    "shape,crop_border",
    [((96, 96), 0), ((191, 191), 0), ((95, 400), 0), ((96, 192), 1), ((200, 200, 3), 5)],
)
def test_niqe_refuses_images_with_fewer_than_two_blocks(shape, crop_border):
    image = np.random.RandomState(0).randint(0, 256, shape).astype(np.uint8)
    height, width = shape[0] - 2 * crop_border, shape[1] - 2 * crop_border
    message = rf"needs at least two: an image of at least 96x192 or 192x96 pixels .*got {height}x{width}\."
    with pytest.raises(ValueError, match=message):
        niqe(image, crop_border=crop_border)


def test_niqe_of_a_flat_image_is_undefined():
    with pytest.raises(ValueError, match="NIQE is undefined for this image: 4 of its 4 blocks have no texture"):
        niqe(np.full((192, 192, 3), 128, np.uint8))


@pytest.mark.parametrize(
    "image,crop_border,error,message",
    [
        (np.zeros((192, 192), np.uint16), 0, TypeError, "`image` has dtype uint16; pass 8-bit images"),
        (np.full((192, 192), 0.5), 0, ValueError, r"`image` is a float image with values in \[0, 1\]"),
        (np.full((192, 192), 300.0), 0, ValueError, "`image` has values from 300.0 to 300.0"),
        (np.zeros((192, 192, 4), np.uint8), 0, ValueError, r"`image` must have shape \(H, W\), \(H, W, 1\) or"),
        (np.zeros((192, 192), np.uint8), -1, ValueError, "`crop_border` must be an integer >= 0, got -1"),
        (np.zeros((192, 192), np.uint8), 1.5, ValueError, "`crop_border` must be an integer, got 1.5"),
        (np.zeros((192, 192), np.uint8), True, ValueError, "`crop_border` must be an integer, got True"),
    ],
)
def test_niqe_bad_input(image, crop_border, error, message):
    with pytest.raises(error, match=message):
        niqe(image, crop_border=crop_border)


def test_module_example_runs():
    import doctest

    import diffusers_sspir.metrics

    result = doctest.testmod(diffusers_sspir.metrics)
    assert result.attempted >= 7 and result.failed == 0
