"""The captioner interface and a captioner that returns a fixed text."""

from typing import Protocol, runtime_checkable

import PIL.Image


@runtime_checkable
class Captioner(Protocol):
    """Anything that describes images with text.

    A captioner is a callable that takes a `list` of `PIL.Image.Image` and returns a `list` of `str`, one caption per
    image and in the same order. `isinstance(obj, Captioner)` only checks that `obj` is callable.
    """

    def __call__(self, images: list[PIL.Image.Image]) -> list[str]:
        """Describes each image.

        Args:
            images (`list[PIL.Image.Image]`): the images to describe.

        Returns:
            `list[str]`: one caption per image.
        """
        ...


class FixedCaptioner:
    """A captioner that gives every image the same caption.

    Args:
        text (`str`): the caption returned for each image (may be empty).

    Raises:
        TypeError: if `text` is not a `str`.
    """

    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise TypeError(f"`text` must be a `str`, got {type(text).__name__}: {text!r}.")
        self.text = text

    def __call__(self, images: list[PIL.Image.Image]) -> list[str]:
        """Returns `text` once per image.

        Args:
            images (`list[PIL.Image.Image]` or `PIL.Image.Image`): the images; a single image counts as one.

        Returns:
            `list[str]`: `[text] * len(images)`.

        Raises:
            TypeError: if `images` is not a `PIL.Image.Image` or a `list`/`tuple` of them.
        """
        if isinstance(images, PIL.Image.Image):
            return [self.text]
        if not isinstance(images, (list, tuple)):
            raise TypeError(f"`images` must be a `PIL.Image.Image` or a `list` of them, got {type(images).__name__}.")
        for i, image in enumerate(images):
            if not isinstance(image, PIL.Image.Image):
                raise TypeError(f"`images[{i}]` must be a `PIL.Image.Image`, got {type(image).__name__}.")
        return [self.text] * len(images)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(text={self.text!r})"
