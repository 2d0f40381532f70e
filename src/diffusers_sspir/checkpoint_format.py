"""How a training checkpoint's weights file is marked, for the training code that writes it and for the loaders of
finished models (the pipeline's `load_lora_weights`) that must recognise and refuse it. A leaf module: the pipeline
reads it without importing the training package."""

# Metadata of a checkpoint's `trainable.safetensors`.
TRAINABLE_METADATA = {"format": "pt", "diffusers_sspir": "training-checkpoint"}


def is_training_checkpoint_file(path: str) -> bool:
    """Whether `path` is the `trainable.safetensors` of a training checkpoint (by its metadata)."""
    from safetensors import safe_open

    try:
        with safe_open(path, "pt") as file:
            return (file.metadata() or {}).get("diffusers_sspir") == TRAINABLE_METADATA["diffusers_sspir"]
    except Exception:  # not a safetensors file: not ours to judge
        return False
