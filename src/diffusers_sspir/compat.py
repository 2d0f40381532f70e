"""Combinations of installed packages that cannot work together, said in one line each (shown by `sspir info`)."""

from importlib.metadata import PackageNotFoundError, version


def text_encoder_lora_problem() -> str | None:
    """Why `text_encoder.add_adapter(...)` (training a text-encoder LoRA) fails with the installed transformers and
    peft, or `None` when it works. Loading a saved text-encoder LoRA with `pipe.load_lora_weights` goes through
    diffusers and works either way."""
    from packaging.version import Version

    try:
        installed = version("peft")
        from transformers.integrations import peft as transformers_peft
    except (PackageNotFoundError, ImportError):
        return "text-encoder LoRA training needs peft, which is not installed (pip install peft)"
    minimum = getattr(transformers_peft, "MIN_PEFT_VERSION", None)
    if minimum is None or Version(installed) >= Version(minimum):
        return None
    return (
        f"text-encoder LoRA training (text_encoder.add_adapter) needs peft >= {minimum} with transformers "
        f"{version('transformers')}, but peft {installed} is installed; install a newer peft, or transformers<5.24 "
        "(loading saved text-encoder LoRA with pipe.load_lora_weights works either way)"
    )
