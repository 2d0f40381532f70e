"""Reference NIQE values from BasicSR 1.4.2's `calculate_niqe`, for `tests/test_metrics.py`.

The test images are scikit-image's bundled photos (`skimage.data`, no download) and images made here from a seed.
`CASES` and `case_image` are imported by the test, so both sides score the same pixels; only `main` needs BasicSR.

BasicSR 1.4.2 is an sdist whose `basicsr/__init__.py` imports its whole training stack (torchvision and more), so
`main` loads the four modules NIQE uses (`metrics/niqe.py`, `metrics/metric_util.py`, `utils/color_util.py`,
`utils/matlab_functions.py`, unmodified) under empty parent packages instead. In a separate environment:

    python3 -m venv /tmp/basicsr-venv
    /tmp/basicsr-venv/bin/pip install torch==2.13.0  # the CPU wheel
    /tmp/basicsr-venv/bin/pip install numpy==2.4.6 scipy==1.17.1 opencv-python-headless==5.1.0.95 \
        scikit-image==0.26.0 setuptools wheel
    /tmp/basicsr-venv/bin/pip install --no-deps --no-build-isolation basicsr==1.4.2
    /tmp/basicsr-venv/bin/python scripts/make_niqe_references.py

It prints `BASICSR_NIQE = {...}` for the test. BasicSR takes BGR images: RGB cases are passed as `image[..., ::-1]`.
"""

import sys
import types

import numpy as np

CASES = {
    # name: (source, (rows, columns) kept of it or None, crop_border)
    "camera": ("camera", None, 0),  # 512x512 grey
    "camera_border4": ("camera", None, 4),
    "astronaut": ("astronaut", None, 0),  # 512x512 RGB
    "astronaut_border4": ("astronaut", None, 4),
    "chelsea": ("chelsea", None, 0),  # 300x451 RGB: odd width
    "coffee_border3": ("coffee", None, 3),  # 400x600 RGB, 394x594 after cropping
    "rocket_odd_border2": ("rocket", ((0, 201), (7, 340)), 2),  # 201x333 RGB, 197x329 after cropping
    "moon_two_blocks": ("moon", ((100, 197), (50, 243)), 0),  # 97x193 grey: two 96x96 blocks
    "noise": ("noise", None, 0),  # 193x289 RGB uniform noise
    "flat_blocks": ("flat_blocks", None, 1),  # 194x390 RGB, its left 200 columns one grey: featureless blocks
}


def case_image(name: str) -> np.ndarray:
    """The uint8 image of case `name`: `(H, W)` grey or `(H, W, 3)` RGB."""
    source, region, _ = CASES[name]
    if source == "noise":
        image = np.random.RandomState(0).randint(0, 256, (193, 289, 3)).astype(np.uint8)
    elif source == "flat_blocks":
        image = np.random.RandomState(1).randint(0, 256, (194, 390, 3)).astype(np.uint8)
        image[:, :200] = 128
    else:
        import skimage.data

        image = getattr(skimage.data, source)()
    if region is not None:
        (top, bottom), (left, right) = region
        image = image[top:bottom, left:right]
    return np.ascontiguousarray(image)


def load_basicsr_niqe():
    """BasicSR's `calculate_niqe`, imported without running `basicsr/__init__.py` and its imports."""
    import importlib.util

    root = importlib.util.find_spec("basicsr").submodule_search_locations[0]
    for package in ("basicsr", "basicsr.utils", "basicsr.metrics"):
        module = types.ModuleType(package)
        module.__path__ = [root + package.removeprefix("basicsr").replace(".", "/")]
        sys.modules[package] = module
    from basicsr.utils.color_util import bgr2ycbcr

    sys.modules["basicsr.utils"].bgr2ycbcr = bgr2ycbcr  # what metric_util imports from the package
    from basicsr.metrics.niqe import calculate_niqe

    return calculate_niqe


def main() -> None:
    import warnings
    from importlib.metadata import version

    calculate_niqe = load_basicsr_niqe()
    packages = ("basicsr", "numpy", "scipy", "torch", "opencv-python-headless", "scikit-image")
    print("# " + ", ".join(f"{package} {version(package)}" for package in packages))
    print("BASICSR_NIQE = {")
    for name, (_, _, crop_border) in CASES.items():
        image = case_image(name)
        bgr = image[..., ::-1] if image.ndim == 3 else image
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the empty means of featureless blocks
            value = calculate_niqe(bgr, crop_border=crop_border)
        print(f'    "{name}": {value!r},')
    print("}")


if __name__ == "__main__":
    main()
