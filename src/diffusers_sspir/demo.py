"""The small demonstration model that ships with the package.

It is a complete SSP-IR pipeline at a tiny scale, trained from scratch on CPU by the recipe in
`examples/demo_model/` on 31 photos (scikit-image's and four Debian wallpaper packages'), for x4 real-world
super-resolution. It is **not** the paper's model: it has no language understanding (prompts have no effect) and
restores far less than an SSP-IR built on Stable Diffusion would. It exists so that `sspir restore photo.png` works on
a fresh machine and so that every component of the real pipeline runs end to end. See `docs/demo_model.md`.
"""

from pathlib import Path

DEMO_MODEL_DIR = Path(__file__).parent / "demo_model"


def demo_model_path() -> str:
    """The folder of the bundled demo model, for `SSPIRPipeline.from_pretrained(demo_model_path())`.

    Raises:
        FileNotFoundError: when this installation lacks the model (a source tree or build that left it out).
    """
    if not (DEMO_MODEL_DIR / "model_index.json").is_file():
        raise FileNotFoundError(
            f"The bundled demo model is missing from {DEMO_MODEL_DIR}: reinstall diffusers-sspir from a wheel or a "
            "full clone of the repository, or rebuild it with examples/demo_model/train.sh."
        )
    return str(DEMO_MODEL_DIR)
