"""The web demo of `sspir demo`: [`DemoRestorer`] (upload → caption → restoration, plain Python, tested without a
browser) and `page.build_page`, the gradio page over it (gradio is an optional extra: `diffusers-sspir[demo]`)."""

from .restorer import DemoRestorer, Limits, Restoration, RestoreSettings, Upload

__all__ = ["DemoRestorer", "Limits", "Restoration", "RestoreSettings", "Upload"]
