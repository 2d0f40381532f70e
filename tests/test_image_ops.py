"""Tests for `diffusers_sspir.image_ops` (inputs, resize, color_fix, tiling; CPU only, fast)."""

from __future__ import annotations

import re

import numpy as np
import PIL.Image
import pytest
import torch

from diffusers_sspir.image_ops import (
    adain_color_fix,
    apply_color_fix,
    gaussian_weights,
    map_tiles,
    pad_to_multiple,
    tile_starts,
    to_tensor_batch,
    wavelet_color_fix,
)
from diffusers_sspir.image_ops.color_fix import _wavelet_decomposition

H, W = 5, 7


def _rgb_u8(seed: int = 0, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _gray_u8(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(H, W), dtype=np.uint8)


def _u16(seed: int = 0) -> np.ndarray:
    array = np.random.default_rng(seed).integers(0, 65536, size=(H, W), dtype=np.uint16)
    array[0, 0], array[0, 1] = 65535, 0
    return array


def _expected_rgb(array: np.ndarray, scale: float) -> torch.Tensor:
    """(H, W[, C]) array -> expected (3, H, W) float tensor."""
    x = torch.from_numpy(array.astype(np.float64) / scale)
    if x.ndim == 2:
        x = x[..., None]
    x = x.permute(2, 0, 1)
    return (x.expand(3, -1, -1) if x.shape[0] == 1 else x[:3]).float()


def _case_pil_rgb():
    a = _rgb_u8()
    return PIL.Image.fromarray(a, "RGB"), _expected_rgb(a, 255)


def _case_pil_rgba():
    a = np.concatenate([_rgb_u8(), np.full((H, W, 1), 7, np.uint8)], axis=-1)
    return PIL.Image.fromarray(a, "RGBA"), _expected_rgb(a, 255)


def _case_pil_l():
    a = _gray_u8()
    return PIL.Image.fromarray(a, "L"), _expected_rgb(a, 255)


def _case_pil_la():
    a = _gray_u8()
    image = PIL.Image.merge("LA", [PIL.Image.fromarray(a, "L"), PIL.Image.new("L", (W, H), 3)])
    return image, _expected_rgb(a, 255)


def _case_pil_1():
    a = _gray_u8() > 127
    return PIL.Image.fromarray(a).convert("1"), _expected_rgb(a.astype(np.uint8), 1)


def _case_pil_i16():
    a = _u16()
    image = PIL.Image.fromarray(a)
    assert image.mode == "I;16"
    return image, _expected_rgb(a, 65535)


def _case_pil_i():
    a = _u16()
    return PIL.Image.fromarray(a).convert("I"), _expected_rgb(a, 65535)


def _case_pil_p():
    a = _rgb_u8()
    image = PIL.Image.fromarray(a, "RGB").convert("P", palette=PIL.Image.Palette.ADAPTIVE, colors=8)
    return image, _expected_rgb(np.asarray(image.convert("RGB")), 255)


def _case_pil_f():
    a = np.random.default_rng(1).random((H, W)).astype(np.float32)
    return PIL.Image.fromarray(a, "F"), _expected_rgb(a, 1)


def _case_np_u8_hwc():
    a = _rgb_u8()
    return a, _expected_rgb(a, 255)


def _case_np_u8_rgba():
    a = np.concatenate([_rgb_u8(), np.zeros((H, W, 1), np.uint8)], axis=-1)
    return a, _expected_rgb(a, 255)


def _case_np_u8_hw():
    a = _gray_u8()
    return a, _expected_rgb(a, 255)


def _case_np_u8_hw1():
    a = _gray_u8()[..., None]
    return a, _expected_rgb(a, 255)


def _case_np_u16():
    a = _u16()
    return a, _expected_rgb(a, 65535)


def _case_np_f32():
    a = np.random.default_rng(2).random((H, W, 3)).astype(np.float32)
    return a, _expected_rgb(a, 1)


def _case_np_f64_tolerance():
    a = np.random.default_rng(3).random((H, W, 3))
    a[0, 0, 0], a[0, 1, 0] = -5e-4, 1 + 5e-4
    return a, _expected_rgb(np.clip(a, 0, 1), 1)


def _case_torch_chw():
    t = torch.rand(3, H, W, generator=torch.Generator().manual_seed(0))
    return t, t.clone()


def _case_torch_1hw():
    t = torch.rand(1, H, W, generator=torch.Generator().manual_seed(0))
    return t, t.expand(3, -1, -1).clone()


def _case_torch_4hw():
    t = torch.rand(4, H, W, generator=torch.Generator().manual_seed(0))
    return t, t[:3].clone()


def _case_torch_f16():
    t = torch.rand(3, H, W, generator=torch.Generator().manual_seed(0)).half()
    return t, t.float()


def _case_torch_u8():
    a = _rgb_u8()
    return torch.from_numpy(a).permute(2, 0, 1).contiguous(), _expected_rgb(a, 255)


SINGLE_CASES = {
    "pil_rgb": _case_pil_rgb,
    "pil_rgba_drops_alpha": _case_pil_rgba,
    "pil_l_replicates": _case_pil_l,
    "pil_la_drops_alpha": _case_pil_la,
    "pil_1": _case_pil_1,
    "pil_i16_scaled_65535": _case_pil_i16,
    "pil_i_scaled_65535": _case_pil_i,
    "pil_palette": _case_pil_p,
    "pil_f": _case_pil_f,
    "np_uint8_hwc": _case_np_u8_hwc,
    "np_uint8_rgba_drops_alpha": _case_np_u8_rgba,
    "np_uint8_hw_replicates": _case_np_u8_hw,
    "np_uint8_hw1_replicates": _case_np_u8_hw1,
    "np_uint16_scaled_65535": _case_np_u16,
    "np_float32": _case_np_f32,
    "np_float64_tolerance_clamped": _case_np_f64_tolerance,
    "torch_chw": _case_torch_chw,
    "torch_1hw_replicates": _case_torch_1hw,
    "torch_4hw_drops_alpha": _case_torch_4hw,
    "torch_float16": _case_torch_f16,
    "torch_uint8": _case_torch_u8,
}


@pytest.mark.parametrize("case", SINGLE_CASES.values(), ids=SINGLE_CASES.keys())
def test_to_tensor_batch_single_inputs(case):
    image, expected = case()
    result = to_tensor_batch(image)
    assert isinstance(result, list) and len(result) == 1
    (tensor,) = result
    assert tensor.shape == (3, H, W)
    assert tensor.dtype == torch.float32
    assert float(tensor.min()) >= 0.0 and float(tensor.max()) <= 1.0
    torch.testing.assert_close(tensor, expected, atol=1e-6, rtol=0)


def test_to_tensor_batch_16_bit_extremes():
    a = np.array([[0, 65535]], dtype=np.uint16)
    for image in (a, PIL.Image.fromarray(a)):
        (tensor,) = to_tensor_batch(image)
        assert tensor[:, 0, 0].tolist() == [0.0, 0.0, 0.0]
        assert tensor[:, 0, 1].tolist() == [1.0, 1.0, 1.0]


def test_to_tensor_batch_batched_tensor_and_mixed_list():
    batch = torch.rand(2, 3, H, W)
    result = to_tensor_batch([batch, _rgb_u8(h=9, w=4), PIL.Image.new("L", (6, 3), 255)])
    assert [tuple(t.shape) for t in result] == [(3, H, W), (3, H, W), (3, 9, 4), (3, 3, 6)]
    torch.testing.assert_close(torch.stack(result[:2]), batch)
    assert torch.all(result[3] == 1.0)
    assert to_tensor_batch((PIL.Image.new("RGB", (2, 2)),))[0].shape == (3, 2, 2)


BAD_INPUTS = {
    "none": (None, ValueError, "None"),
    "empty_list": ([], ValueError, "empty"),
    "str_path": ("photo.png", TypeError, "paths are not accepted"),
    "int": (3, TypeError, "int"),
    "dict": ({"a": 1}, TypeError, "dict"),
    "nested_list": ([[torch.rand(3, 2, 2)]], TypeError, "nested"),
    "none_in_list": ([torch.rand(3, 2, 2), None], ValueError, "[1]"),
    "str_in_list": ([PIL.Image.new("RGB", (2, 2)), "x.png"], TypeError, "[1]"),
    "pil_zero_width": (PIL.Image.new("RGB", (0, 4)), ValueError, "width=0"),
    "np_zero_height": (np.zeros((0, 4, 3), np.uint8), ValueError, "height=0"),
    "torch_zero_width": (torch.zeros(3, 4, 0), ValueError, "width=0"),
    "torch_empty_batch": (torch.zeros(0, 3, 4, 4), ValueError, "empty batch"),
    "np_2_channels": (np.zeros((4, 4, 2), np.uint8), ValueError, "2 channels"),
    "np_5_channels": (np.zeros((4, 4, 5), np.uint8), ValueError, "5 channels"),
    "np_chw_layout": (np.zeros((3, 8, 8), np.float32), ValueError, "8 channels"),
    "torch_2_channels": (torch.zeros(2, 4, 4), ValueError, "2 channels"),
    "torch_hwc_layout": (torch.zeros(8, 8, 3), ValueError, "8 channels"),
    "np_1d": (np.zeros(4, np.uint8), ValueError, "(H, W)"),
    "torch_5d": (torch.zeros(1, 1, 3, 4, 4), ValueError, "(B, C, H, W)"),
    "np_int32": (np.zeros((4, 4, 3), np.int32), TypeError, "int32"),
    "torch_int64": (torch.zeros(3, 4, 4, dtype=torch.int64), TypeError, "int64"),
    "np_float_above_range": (np.full((4, 4, 3), 255.0, np.float32), ValueError, "[0, 1]"),
    "torch_float_minus_one": (torch.full((3, 4, 4), -1.0), ValueError, "[-1, 1]"),
    "torch_float_just_outside_tolerance": (torch.full((3, 4, 4), 1.002), ValueError, "[0, 1]"),
    "torch_nan": (torch.full((3, 4, 4), float("nan")), ValueError, "NaN"),
}


@pytest.mark.parametrize(("value", "error", "fragment"), BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_to_tensor_batch_rejects_bad_inputs(value, error, fragment):
    with pytest.raises(error) as info:
        to_tensor_batch(value, argument_name="lq_image")
    message = str(info.value)
    assert "`lq_image" in message
    assert fragment in message


def test_to_tensor_batch_error_lists_accepted_types():
    with pytest.raises(TypeError, match="PIL.Image.Image.*np.ndarray.*torch.Tensor"):
        to_tensor_batch(object())


# ---------------------------------------------------------------------------------------------------------------------
# pad_to_multiple
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("height", "width", "multiple", "mode", "expected_pad"),
    [
        (64, 64, 8, "reflect", (0, 0)),
        (65, 63, 8, "reflect", (7, 1)),
        (3, 5, 8, "reflect", (5, 3)),  # pad >= side: falls back to replicate
        (1, 1, 64, "reflect", (63, 63)),
        (10, 17, 8, "replicate", (6, 7)),
        (10, 17, 8, "constant", (6, 7)),
        (7, 9, 1, "reflect", (0, 0)),
    ],
)
def test_pad_to_multiple(height, width, multiple, mode, expected_pad):
    x = torch.rand(2, 3, height, width)
    padded, pad = pad_to_multiple(x, multiple, mode=mode)
    assert pad == expected_pad
    assert padded.shape == (2, 3, height + pad[0], width + pad[1])
    assert padded.shape[-2] % multiple == 0 and padded.shape[-1] % multiple == 0
    torch.testing.assert_close(padded[..., :height, :width], x, atol=0, rtol=0)
    if mode == "constant" and pad[0]:
        assert torch.all(padded[..., height:, :] == 0)


def test_pad_to_multiple_reflect_values():
    x = torch.arange(5.0).view(1, 1, 1, 5).expand(1, 1, 4, 5)
    padded, _ = pad_to_multiple(x, 8)
    assert padded[0, 0, 0].tolist() == [0, 1, 2, 3, 4, 3, 2, 1]
    tiny = torch.arange(3.0).view(1, 1, 1, 3)
    padded, _ = pad_to_multiple(tiny, 8)  # pad (7 rows, 5 cols) larger than the image: replicate
    assert padded[0, 0, 0].tolist() == [0, 1, 2, 2, 2, 2, 2, 2]
    assert torch.all(padded[0, 0] == padded[0, 0, :1])


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"x": torch.rand(3, 4, 4), "multiple": 8}, "`x`"),
        ({"x": torch.rand(1, 3, 4, 4), "multiple": 0}, "`multiple`"),
        ({"x": torch.rand(1, 3, 4, 4), "multiple": 8, "mode": "circular"}, "`mode`"),
    ],
)
def test_pad_to_multiple_errors(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        pad_to_multiple(**kwargs)


# ---------------------------------------------------------------------------------------------------------------------
# Colour fixes
# ---------------------------------------------------------------------------------------------------------------------


def _images(seed: int = 0, shape=(2, 3, 48, 40)) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator), torch.rand(shape, generator=generator)


def test_wavelet_decomposition_is_exact_split():
    image, _ = _images()
    high, low = _wavelet_decomposition(image, 5)
    torch.testing.assert_close(high + low, image)


def _smooth_plus_detail(seed: int, shape=(2, 3, 64, 64)) -> torch.Tensor:
    """Distinct smooth colour field (bilinear 2x2 grid) plus fine detail, kept inside [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(shape[0], shape[1], 2, 2, generator=generator) * 0.6 + 0.2
    smooth = torch.nn.functional.interpolate(coarse, size=shape[-2:], mode="bilinear", align_corners=True)
    return smooth + (torch.rand(shape, generator=generator) - 0.5) * 0.3


def test_wavelet_color_fix_keeps_image_detail_and_source_low_frequencies():
    image, source = _smooth_plus_detail(0), _smooth_plus_detail(1)
    result = wavelet_color_fix(image, source)
    assert result.shape == image.shape and result.dtype == image.dtype
    high_image, low_image = _wavelet_decomposition(image)
    high_result, low_result = _wavelet_decomposition(result)
    _, low_source = _wavelet_decomposition(source)
    # By construction: result = high(image) + low(source).
    torch.testing.assert_close(result, high_image + low_source)
    # The low frequencies of the result are (nearly: the blur is not idempotent) those of the source, not the image.
    error_to_source = (low_result - low_source).abs().mean()
    error_to_image = (low_result - low_image).abs().mean()
    assert error_to_source < 0.02
    assert error_to_source < 0.15 * error_to_image
    # And its detail is (nearly) that of the image.
    assert (high_result - high_image).abs().mean() < 0.3 * high_image.abs().mean()


def test_wavelet_color_fix_removes_constant_color_cast_exactly():
    source, _ = _images()
    cast = torch.tensor([0.1, -0.05, 0.2]).view(1, 3, 1, 1)
    result = wavelet_color_fix(source + cast, source)
    torch.testing.assert_close(result, source, atol=1e-5, rtol=0)


def test_wavelet_color_fix_identity_when_source_is_image():
    image, _ = _images()
    torch.testing.assert_close(wavelet_color_fix(image, image), image, atol=1e-6, rtol=0)


def test_adain_color_fix_matches_source_statistics():
    image, source = _images()
    source = source * 0.3 + 0.5  # different statistics from `image`
    result = adain_color_fix(image, source[..., :20, :30])
    assert result.shape == image.shape
    var_r, mean_r = torch.var_mean(result, dim=(-2, -1), correction=0)
    var_s, mean_s = torch.var_mean(source[..., :20, :30], dim=(-2, -1), correction=0)
    torch.testing.assert_close(mean_r, mean_s, atol=1e-5, rtol=0)
    torch.testing.assert_close(var_r.sqrt(), var_s.sqrt(), atol=1e-3, rtol=0)


def test_adain_color_fix_flat_image_gives_no_nan():
    result = adain_color_fix(torch.full((1, 3, 4, 4), 0.5), torch.rand(1, 3, 4, 4))
    assert torch.isfinite(result).all()


@pytest.mark.parametrize("method", ["wavelet", "adain", None])
def test_apply_color_fix_resizes_source(method):
    image, source = _images(shape=(1, 3, 32, 24))
    small_source = source[..., ::2, ::2]
    result = apply_color_fix(image, small_source, method)
    assert result.shape == image.shape
    if method is None:
        assert result is image
    else:
        resized = torch.nn.functional.interpolate(small_source, size=(32, 24), mode="bicubic", align_corners=False)
        expected = wavelet_color_fix(image, resized) if method == "wavelet" else adain_color_fix(image, resized)
        torch.testing.assert_close(result, expected)


def test_apply_color_fix_half_precision():
    image, source = _images(shape=(1, 3, 16, 16))
    result = apply_color_fix(image.half(), source.half(), "wavelet")
    assert result.dtype == torch.float16
    torch.testing.assert_close(result.float(), wavelet_color_fix(image, source), atol=2e-3, rtol=0)


@pytest.mark.parametrize("method", ["Wavelet", "histogram", ""])
def test_apply_color_fix_unknown_method(method):
    image, source = _images(shape=(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"`method`.*'wavelet', 'adain', None"):
        apply_color_fix(image, source, method)


@pytest.mark.parametrize(
    ("image_shape", "source_shape"),
    [((1, 3, 8, 8), (1, 4, 8, 8)), ((2, 3, 8, 8), (3, 3, 8, 8)), ((3, 8, 8), (3, 8, 8))],
)
def test_color_fix_shape_errors(image_shape, source_shape):
    with pytest.raises(ValueError, match="`(image|source)`"):
        apply_color_fix(torch.rand(image_shape), torch.rand(source_shape), "adain")


def test_wavelet_color_fix_requires_same_size():
    with pytest.raises(ValueError, match="`source` spatial size"):
        wavelet_color_fix(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 4, 4))


# ---------------------------------------------------------------------------------------------------------------------
# Tiling
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("height", "width"), [(1, 1), (2, 3), (64, 64), (96, 128), (33, 17)])
@pytest.mark.parametrize("sigma_ratio", [0.3, 0.1, 1e-3])
def test_gaussian_weights(height, width, sigma_ratio):
    weights = gaussian_weights(height, width, sigma_ratio)
    assert weights.shape == (height, width) and weights.dtype == torch.float32
    assert torch.all(weights > 0)
    assert float(weights.max()) == pytest.approx(1.0)
    torch.testing.assert_close(weights, weights.flip(0))
    torch.testing.assert_close(weights, weights.flip(1))
    if height > 2 and width > 2:
        assert weights[height // 2, width // 2] > weights[0, 0]


def test_gaussian_weights_dtype_device_and_errors():
    weights = gaussian_weights(8, 8, device="cpu", dtype=torch.float16)
    assert weights.dtype == torch.float16 and weights.device.type == "cpu"
    for kwargs, fragment in [
        ({"height": 0, "width": 8}, "`height`"),
        ({"height": 8, "width": -1}, "`width`"),
        ({"height": 8, "width": 8, "sigma_ratio": 0}, "`sigma_ratio`"),
    ]:
        with pytest.raises(ValueError, match=fragment):
            gaussian_weights(**kwargs)


TILE_CASES = [
    # (length, tile, overlap)
    (1, 64, 0),
    (50, 64, 16),
    (64, 64, 16),  # exact single tile
    (65, 64, 16),
    (112, 64, 16),  # exact fit with the nominal stride
    (113, 64, 16),
    (128, 64, 0),  # exact fit, no overlap
    (129, 64, 0),
    (1000, 96, 32),
    (97, 96, 95),  # stride 1
    (300, 96, 95),
    (10, 1, 0),
    (4096, 128, 64),
]


@pytest.mark.parametrize(("length", "tile", "overlap"), TILE_CASES)
def test_tile_starts_cover_exactly(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0
    if length <= tile:
        assert starts == [0]
        return
    assert all(isinstance(s, int) for s in starts)
    assert starts == sorted(set(starts))
    assert starts[-1] + tile == length
    covered = np.zeros(length, dtype=bool)
    for start, following in zip(starts, starts[1:] + [None]):
        assert 0 <= start and start + tile <= length
        covered[start : start + tile] = True
        if following is not None:
            assert start + tile - following >= overlap  # at least `overlap` shared pixels
    assert covered.all()
    # Minimal number of tiles for this overlap.
    stride = tile - overlap
    assert len(starts) == -(-(length - tile) // stride) + 1


@pytest.mark.parametrize(
    ("length", "tile", "overlap", "error", "message"),
    [
        (100, 0, 0, ValueError, "tile_size (0) must be a positive integer"),
        (100, -8, 0, ValueError, "tile_size (-8)"),
        (100, 64, -1, ValueError, "tile_overlap (-1) must be >= 0"),
        (100, 64, 64, ValueError, "tile_overlap (64) must be smaller than tile_size (64)"),
        (100, 64, 80, ValueError, "tile_overlap (80) must be smaller than tile_size (64)"),
        (0, 64, 16, ValueError, "length (0)"),
        (100, 64.0, 16, TypeError, "tile_size must be an integer"),
    ],
)
def test_tile_starts_errors(length, tile, overlap, error, message):
    with pytest.raises(error) as info:
        tile_starts(length, tile, overlap)
    assert message in str(info.value)


def test_pil_inputs_are_turned_upright_by_their_exif_orientation_as_files_are(tmp_path):
    """A phone photo stored sideways with EXIF orientation 6 (rotate 90° clockwise to view): the pipeline's input
    conversion and the CLI's file reader give the same upright pixels."""
    from diffusers_sspir.files import read_rgb8

    stored = PIL.Image.fromarray(np.random.RandomState(0).randint(0, 255, (4, 6, 3), dtype=np.uint8))
    exif = stored.getexif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif, quality=100)
    opened = PIL.Image.open(path)
    tensor = to_tensor_batch(opened)[0]
    assert tuple(tensor.shape) == (3, 6, 4)  # upright: 6 rows, 4 columns
    expected = torch.from_numpy(read_rgb8(path)).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(tensor, expected, rtol=0, atol=0)


@pytest.mark.parametrize("tile", [16, 40, 64])
def test_map_tiles_equals_the_untiled_operator(tile):
    """A local operator (two 5x5 convolutions, one with stride 2) gives exactly its untiled result when the margin
    covers its reach, whatever the tile size, including tiles cut short at the image's edges."""
    torch.manual_seed(0)
    first = torch.nn.Conv2d(3, 4, 5, padding=2).double()
    second = torch.nn.Conv2d(4, 2, 5, padding=2, stride=2).double()

    def operator(x):
        hidden = first(x)
        return hidden, second(hidden)

    image = torch.rand(2, 3, 70, 102, dtype=torch.float64)
    with torch.no_grad():
        whole = operator(image)
        tiled = map_tiles(operator, image, tile, halo=8, scales=(1, 2), multiple=2)
    for expected, got in zip(whole, tiled):
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_map_tiles_with_too_small_a_margin_differs():
    """The test above means something: a margin shorter than the reach changes the result near tile borders."""
    blur = torch.nn.Conv2d(1, 1, 9, padding=4, bias=False).double()
    image = torch.rand(1, 1, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        assert not torch.allclose(map_tiles(lambda x: (blur(x),), image, 16, 2, (1,))[0], blur(image))


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(tile=30, halo=8, scales=(1,), multiple=4), "`tile` (30) must be a multiple of 4"),
        (dict(tile=32, halo=6, scales=(1,), multiple=4), "`halo` (6) must be a multiple of 4"),
        (dict(tile=32, halo=8, scales=(8,), multiple=4), "must be a multiple of every scale"),
        (dict(tile=0, halo=8, scales=(1,)), "`tile` must be > 0"),
    ],
)
def test_map_tiles_errors(kwargs, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        map_tiles(lambda x: (x,), torch.zeros(1, 1, 64, 64), **kwargs)


def test_tiled_wavelet_color_fix_equals_the_untiled_one():
    image, source = torch.rand(2, 3, 150, 211, dtype=torch.float64), torch.rand(1, 3, 150, 211, dtype=torch.float64)
    expected = wavelet_color_fix(image, source)
    torch.testing.assert_close(wavelet_color_fix(image, source, tile_size=48), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(apply_color_fix(image, source, "wavelet", tile_size=64), expected, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="`tile_size` must be a positive integer or None, got 0"):
        wavelet_color_fix(image, source, tile_size=0)
