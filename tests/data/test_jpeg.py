"""The degradations' JPEG against libjpeg (Pillow) at the same quality, and its batching."""

import io
import math

import numpy as np
import PIL.Image
import pytest
import torch

from diffusers_sspir.data.jpeg import jpeg_compress, quantization_tables

skimage_data = pytest.importorskip("skimage.data", reason="scikit-image's bundled photos are the reference images")

QUALITIES = (10, 30, 50, 70, 90, 95)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def _pillow_jpeg(array: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    PIL.Image.fromarray(array).save(buffer, "JPEG", quality=quality)  # 4:2:0, standard tables
    return np.asarray(PIL.Image.open(buffer).convert("RGB"))


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    # Odd crops (not multiples of 16) so the padding of partial blocks is exercised too.
    try:  # scikit-image loads its photos lazily, with what they need (scipy)
        return {name: getattr(skimage_data, name)()[:200, :250] for name in ("astronaut", "coffee", "chelsea")}
    except ImportError as error:
        pytest.skip(f"scikit-image's bundled photos are the reference images: {error}")


def test_psnr_matches_libjpeg_at_every_quality(photos):
    for name, array in photos.items():
        images = torch.from_numpy(array).permute(2, 0, 1)[None].float() / 255
        batch = jpeg_compress(images.expand(len(QUALITIES), -1, -1, -1), torch.tensor(QUALITIES, dtype=torch.float))
        for quality, ours in zip(QUALITIES, batch):
            ours = (ours.permute(1, 2, 0).numpy() * 255).round()
            reference = _pillow_jpeg(array, quality)
            gap = _psnr(ours, array) - _psnr(reference, array)
            assert abs(gap) < 0.3, f"{name} at quality {quality}: {gap:+.2f} dB from libjpeg"
            assert _psnr(ours, reference) > 35, f"{name} at quality {quality}: not libjpeg's image"


def test_hard_rounding_is_harsher_than_kornias_soft_rounding(photos):
    """The reason for this codec: kornia's differentiable JPEG keeps detail a real encoder throws away."""
    from kornia.enhance import jpeg_codec_differentiable

    array = photos["coffee"]
    images = torch.from_numpy(array).permute(2, 0, 1)[None].float() / 255
    for quality in (30, 50, 80):
        hard = (jpeg_compress(images, quality)[0].permute(1, 2, 0).numpy() * 255).round()
        soft = jpeg_codec_differentiable(images, torch.tensor([float(quality)]))[0].permute(1, 2, 0).numpy() * 255
        assert _psnr(soft.round(), array) > _psnr(hard, array) + 0.4


def test_tables_are_libjpegs():
    luma, chroma = quantization_tables(torch.tensor([50.0, 75.0, 100.0, 1.0]))
    assert luma[0, 0, 0] == 16 and chroma[0, 0, 0] == 17  # quality 50: the standard tables themselves
    assert luma[1, 0, 0] == 8 and luma[1, 7, 7] == 50  # quality 75: floor((t * 50 + 50) / 100)
    assert (luma[2] == 1).all() and (chroma[2] == 1).all()  # quality 100
    assert luma[3].max() == 255  # quality 1: clipped to baseline's 8 bits


def test_per_image_quality_batch_equals_single_and_dtypes():
    images = torch.rand(3, 3, 24, 40, generator=torch.Generator().manual_seed(0))
    quality = torch.tensor([20.0, 55.5, 90.0])
    batch = jpeg_compress(images, quality)
    for i in range(3):
        torch.testing.assert_close(batch[i : i + 1], jpeg_compress(images[i : i + 1], quality[i]), rtol=0, atol=1e-6)
    assert batch.shape == images.shape and 0 <= batch.min() and batch.max() <= 1
    assert jpeg_compress(images.double(), 50).dtype == torch.float64
    assert jpeg_compress(images.half(), 50).dtype == torch.float16


@pytest.mark.parametrize("quality", [0, 101, float("nan"), [50, 60]])
def test_bad_quality_is_refused(quality):
    with pytest.raises(ValueError, match="`quality` must be one value or 3 values in \\[1, 100\\]"):
        jpeg_compress(torch.rand(3, 3, 16, 16), quality)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu():
    images = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    quality = torch.tensor([30.0, 80.0])
    torch.testing.assert_close(jpeg_compress(images.cuda(), quality.cuda()).cpu(), jpeg_compress(images, quality),
                               rtol=0, atol=2 / 255)  # fmt: skip
