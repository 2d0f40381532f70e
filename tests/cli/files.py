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
