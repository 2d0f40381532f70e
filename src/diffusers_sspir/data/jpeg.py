"""JPEG compression as libjpeg does it (hard rounding of the quantised DCT coefficients), batched in torch.

Real-ESRGAN degrades its training images with basicsr's `DiffJPEG(differentiable=False)`: the DCT coefficients are
rounded to integers, as a real encoder does. A differentiable codec that rounds softly (kornia's
`jpeg_codec_differentiable`, `round(x) + (x - round(x)) ** 3` even in the forward pass) keeps more detail: at the same
quality it is 0.8-1.8 dB milder. This codec rounds hard and follows libjpeg's baseline steps, so that quality `q` here
is quality `q` in Pillow, OpenCV or a camera:

1. RGB → YCbCr (JFIF, full range), in `[0, 255]`;
2. 4:2:0 chroma subsampling by 2×2 averaging (libjpeg's default `h2v2` downsampling);
3. 8×8 blocks, level shift by 128, orthonormal DCT-II (JPEG's forward DCT);
4. quantisation by the standard tables (ITU-T T.81 Annex K) scaled as libjpeg scales them for quality `q`
   (`floor((table * s + 50) / 100)` clipped to `[1, 255]`, `s = floor(5000 / q)` below 50, `200 - 2q` above), then
   **rounded to the nearest integer**;
5. the inverse: dequantise, inverse DCT, chroma upsampling by libjpeg's "fancy" triangle filter (bilinear), YCbCr →
   RGB, clamped to `[0, 1]`.

Images of any size are padded (edge replication, bottom and right) to a multiple of 16 and cropped back, as an encoder
pads partial blocks. Measured against Pillow (libjpeg-turbo) on photographs: PSNR within 0.3 dB at every quality
(tests/data/test_jpeg.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["jpeg_compress", "quantization_tables"]

# ITU-T T.81 Annex K, tables K.1 (luminance) and K.2 (chrominance), in natural (row-major) order.
_LUMINANCE = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
_CHROMINANCE = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
    *((99,) * 8,) * 4,
)
# JFIF's YCbCr (full range), rows: Y, Cb, Cr from R, G, B.
_RGB_TO_YCBCR = (
    (0.299, 0.587, 0.114),
    (-0.168735892, -0.331264108, 0.5),
    (0.5, -0.418687589, -0.081312411),
)


def _dct_matrix(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The orthonormal 8-point DCT-II matrix `C` (`C @ x` transforms a column); JPEG's 2D forward DCT is `C X C^T`."""
    k = torch.arange(8, dtype=torch.float64)
    matrix = torch.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    matrix[0] /= math.sqrt(2)
    return matrix.to(device=device, dtype=dtype)


def quantization_tables(quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""
    libjpeg's luminance and chrominance tables for each quality (`jpeg_set_quality` with `force_baseline`).

    Args:
        quality (`torch.Tensor`): `(B,)` qualities in `[1, 100]`; fractional values scale continuously between the
            integer ones.

    Returns:
        `tuple[torch.Tensor, torch.Tensor]`: `(B, 8, 8)` luminance and chrominance tables, float.
    """
    quality = quality.to(torch.float64).clamp(1, 100)
    scale = torch.where(quality < 50, torch.floor(5000 / quality), 200 - 2 * quality)[:, None, None]
    tables = []
    for base in (_LUMINANCE, _CHROMINANCE):
        base = torch.tensor(base, dtype=torch.float64, device=quality.device)
        tables.append(torch.floor((base * scale + 50) / 100).clamp(1, 255))
    return tables[0], tables[1]


def _blocks(channel: torch.Tensor) -> torch.Tensor:
    """`(B, H, W)` → `(B, H/8, W/8, 8, 8)`."""
    batch, height, width = channel.shape
    return channel.reshape(batch, height // 8, 8, width // 8, 8).transpose(2, 3)


def _unblocks(blocks: torch.Tensor) -> torch.Tensor:
    batch, rows, cols = blocks.shape[:3]
    return blocks.transpose(2, 3).reshape(batch, rows * 8, cols * 8)


def _code(channel: torch.Tensor, table: torch.Tensor, dct: torch.Tensor) -> torch.Tensor:
    """Quantise and dequantise one channel `(B, H, W)` in `[0, 255]` with `(B, 8, 8)` tables."""
    table = table[:, None, None]
    coefficients = dct @ (_blocks(channel) - 128) @ dct.T
    quantized = torch.round(coefficients / table) * table
    return _unblocks(dct.T @ quantized @ dct) + 128


def jpeg_compress(images: torch.Tensor, quality: torch.Tensor | float) -> torch.Tensor:
    r"""
    Compresses and decompresses images as a baseline JPEG encoder and decoder at `quality` would (see the module
    docstring for the steps), batched, on any device.

    Args:
        images (`torch.Tensor`): `(B, 3, H, W)` RGB in `[0, 1]`, float.
        quality (`torch.Tensor` or `float`): `(B,)` per-image qualities, or one for all, in `[1, 100]`.

    Returns:
        `torch.Tensor`: `(B, 3, H, W)` in `[0, 1]`, the dtype and device of `images` (computed in float32 at least,
        float64 for float64 inputs).
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"`images` must be a (B, 3, H, W) tensor, got {getattr(images, 'shape', type(images))}.")
    batch = images.shape[0]
    quality = torch.as_tensor(quality, dtype=torch.float64).flatten()
    quality = quality.expand(batch) if quality.numel() == 1 else quality
    if quality.numel() != batch or not torch.isfinite(quality).all() or (quality < 1).any() or (quality > 100).any():
        raise ValueError(f"`quality` must be one value or {batch} values in [1, 100], got {quality.tolist()}.")
    dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
    height, width = images.shape[-2:]
    x = images.to(dtype)
    x = F.pad(x, (0, -width % 16, 0, -height % 16), mode="replicate")
    to_ycbcr = torch.tensor(_RGB_TO_YCBCR, dtype=dtype, device=x.device)
    ycbcr = torch.einsum("ij,bjhw->bihw", to_ycbcr, x * 255)
    ycbcr[:, 1:] += 128
    luma, chroma = ycbcr[:, 0], F.avg_pool2d(ycbcr[:, 1:], 2)
    table_y, table_c = (table.to(device=x.device, dtype=dtype) for table in quantization_tables(quality))
    dct = _dct_matrix(dtype, x.device)
    luma = _code(luma, table_y, dct)
    chroma = torch.stack([_code(chroma[:, i], table_c, dct) for i in range(2)], dim=1)
    chroma = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False) - 128
    ycbcr = torch.cat([luma[:, None], chroma], dim=1)
    rgb = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(to_ycbcr), ycbcr) / 255
    return rgb[..., :height, :width].clamp(0, 1).to(images.dtype)
