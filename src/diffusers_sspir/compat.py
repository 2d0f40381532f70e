"""Combinations of installed packages that cannot work together, said in one line each (shown by `sspir info`), and
third-party log messages that say nothing a user of this package can act on, muted."""

import contextlib
import logging
from collections.abc import Iterator
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


class _DropMessages(logging.Filter):
    def __init__(self, *fragments: str):
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)


_TORCHVISION_FALLBACK = _DropMessages("requires torchvision (not installed); falling back to")


def quiet_image_processor_fallback() -> None:
    """Mutes transformers' warning that an image processor falls back to its PIL implementation without torchvision
    (whose PyPI wheel brings a CUDA build of torch): the fallback gives the same pixels, and the warning, printed by
    every command, is about nothing a user of this package needs to act on. Other warnings pass."""
    logger = logging.getLogger("transformers.utils.import_utils")
    if _TORCHVISION_FALLBACK not in logger.filters:
        logger.addFilter(_TORCHVISION_FALLBACK)


@contextlib.contextmanager
def muted_log_messages(logger_name: str, *fragments: str) -> Iterator[None]:
    """Drops, for the duration, the records of `logger_name` whose message contains one of `fragments`."""
    logger = logging.getLogger(logger_name)
    muted = _DropMessages(*fragments)
    logger.addFilter(muted)
    try:
        yield
    finally:
        logger.removeFilter(muted)
