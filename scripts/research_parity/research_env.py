"""Puts the SSP-IR authors' research code ($SSPIR_RESEARCH, GitHub zyhrainbow/SSP-IR, no licence: run, never copied)
on `sys.path` for the scripts that run it in its own environment (diffusers 0.21), with basicsr stubbed.

basicsr's package `__init__` pulls in torchvision, cv2, ...; the research `models/controlnet.py` only needs three of
its names at import, and the released configuration (`use_srresnet=False`) never builds them.
"""

import os
import sys
import types

RESEARCH = os.environ.get("SSPIR_RESEARCH")
if not RESEARCH or not os.path.isfile(os.path.join(RESEARCH, "models", "unet_2d_condition.py")):
    sys.exit("set SSPIR_RESEARCH to the unpacked research code (the folder holding models/unet_2d_condition.py)")
sys.path.insert(0, RESEARCH)

for _name in ["basicsr", "basicsr.archs", "basicsr.archs.srresnet_arch", "basicsr.archs.rrdbnet_arch"]:
    sys.modules[_name] = types.ModuleType(_name)


class _Unused:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("basicsr stub: use_srresnet=True is not supported")


sys.modules["basicsr.archs.srresnet_arch"].MSRResNet = _Unused
sys.modules["basicsr.archs.srresnet_arch"].ResidualBlockNoBN = _Unused
sys.modules["basicsr.archs.rrdbnet_arch"].RRDB = _Unused


def research_step(unet, controlnet, latents, t, text, image_tokens, lq):
    """ControlNet -> UNet as the research `pipelines/pipeline_bim.py` runs them; returns `(rgbs, down, mid, pred)`."""
    rgbs, down, mid = controlnet(
        latents,
        t,
        encoder_hidden_states=text,
        controlnet_cond=lq,
        conditioning_scale=1.0,
        guess_mode=False,
        return_dict=False,
        image_encoder_hidden_states=image_tokens,
    )
    pred = unet(
        latents,
        t,
        encoder_hidden_states=text,
        down_block_additional_residuals=down,
        mid_block_additional_residual=mid,
        return_dict=False,
        image_encoder_hidden_states=image_tokens,
    )[0]
    return rgbs, down, mid, pred
