"""Train SSP-IR from Stable Diffusion 1.5: `accelerate launch examples/train_sspir.py --help`.

The training logic lives in `diffusers_sspir.training` (tested there); see docs/training.md.
"""

from diffusers_sspir.training.train_sspir import main

if __name__ == "__main__":
    main()
