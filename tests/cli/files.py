"""Image files for the `sspir` command tests."""

from pathlib import Path

import numpy as np
import PIL.Image


def random_array(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).randint(0, 256, (height, width, 3)).astype(np.uint8)


def write_image(path: Path, height: int = 16, width: int = 16, seed: int = 0) -> Path:
    """Writes a random RGB image (PNG, or the format of the suffix) and returns its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.Image.fromarray(random_array(height, width, seed)).save(path)
    return path


def write_broken(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not an image")
    return path


def write_broken_png(path: Path) -> Path:
    """A PNG whose second data chunk has an invalid type: Pillow opens it, then raises `SyntaxError` on load."""
    import io
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    buffer = io.BytesIO()
    PIL.Image.fromarray(random_array(16, 16)).save(buffer, format="PNG")
    data = buffer.getvalue()
    (length,) = struct.unpack(">I", data[33:37])  # the first chunk after the signature (8) and IHDR (25) is IDAT
    pixels = data[41 : 41 + length]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[:33] + chunk(b"IDAT", pixels[:10]) + chunk(b"\0\1\2\3", pixels[10:]) + chunk(b"IEND", b""))
    return path


def write_16bit(path: Path, value: int, height: int = 16, width: int = 16) -> Path:
    """A 16-bit grayscale PNG of one value (0..65535)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.Image.fromarray(np.full((height, width), value, dtype=np.uint16)).save(path)
    return path


def write_rotated_jpeg(path: Path, height: int, width: int) -> Path:
    """A `width` x `height` JPEG whose EXIF orientation (6) says: turn 90 degrees clockwise to view."""
    exif = PIL.Image.Exif()
    exif[0x0112] = 6
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.Image.fromarray(random_array(height, width)).save(path, exif=exif)
    return path
