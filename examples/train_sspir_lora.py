"""Fine-tune a trained SSP-IR pipeline with LoRA: `accelerate launch examples/train_sspir_lora.py --help`.

The training logic lives in `diffusers_sspir.training` (tested there); see docs/training.md.
"""

from diffusers_sspir.training.train_sspir_lora import main

if __name__ == "__main__":
    main()
