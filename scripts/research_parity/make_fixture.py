"""Make the small research-parity fixture: numbers produced by running the SSP-IR authors' research code.

Builds the research models (GitHub zyhrainbow/SSP-IR, commit 64e6e5c, a diffusers 0.21 fork without a licence; it is
imported from $SSPIR_RESEARCH at run time, none of it is copied here) at a tiny size in SD-1.5's block layout, gives
every parameter a random value (the zero-initialised zero convs and the structure processor's conv_out included),
rounds all weights to float16-representable values, runs ControlNet -> UNet in float32 the way the research
pipelines/pipeline_bim.py does, runs the refine layer (TPBNet) the way the research code calls it, and writes

    OUT/checkpoint/unet/, OUT/checkpoint/controlnet/   research save_pretrained, float16, safetensors
    OUT/checkpoint/refine/refine.pt                    torch.save of the TPBNet state dict, float16
    OUT/io.safetensors                                 inputs and outputs, float32

i.e. a research training checkpoint folder plus the outputs a correct port must reproduce. Because every weight is
float16-representable, the float16 files reproduce the float32 forward exactly. Only runs in the research venv
(diffusers 0.21.4); basicsr is stubbed (the released config, use_srresnet=False, never builds its MSRResNet).

Regenerate, from the repository root:

    SSPIR_RESEARCH=$HOME/sspir-research $HOME/research-venv/bin/python \
        scripts/research_parity/make_fixture.py tests/fixtures/research_parity
"""

import math
import os
import sys
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import research_env  # noqa: E402  (first: puts the research code on sys.path, stubs basicsr)
import torch  # noqa: E402
from models.controlnet import ControlNetModel  # noqa: E402
from models.model import TPBNet  # noqa: E402
from models.unet_2d_condition import UNet2DConditionModel  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

DEFAULT_OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "research_parity"
)

# SD-1.5's block layout at a tiny size (the last two widths are equal, as SD-1.5's 1280/1280: the research
# UpBlock2D crashes otherwise).
UNET_CONFIG = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    block_out_channels=(16, 32, 32),
    layers_per_block=1,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=16,
    attention_head_dim=2,
    norm_num_groups=8,
)
COND_CHANNELS = (8, 8, 16, 16)  # structure processor widths: 3 stride-2 stages, 64 px -> 8 (the latent side)
BATCH, SIDE, N_TEXT, N_IMAGE = 2, 8, 77, 16
IMAGE_DIM = 512  # image tokens are 512 wide: hard-coded in the research blocks (TPBNet(last_dim=512))
TIMESTEP = 500
CLIP_DIM, N_PATCHES = 32, 16  # refine layer input: (BATCH, 1 + N_PATCHES, CLIP_DIM), class token first


def randomize_(module, gen):
    """Random values of sensible scale for every parameter; then round everything to float16-representable."""
    for mod in module.modules():
        own = dict(mod.named_parameters(recurse=False))
        if isinstance(mod, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
            if "weight" in own:
                own["weight"].copy_(1 + 0.1 * torch.randn(own["weight"].shape, generator=gen))
            if "bias" in own:
                own["bias"].copy_(0.1 * torch.randn(own["bias"].shape, generator=gen))
            continue
        for p in own.values():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p[0].numel()))
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
    for t in list(module.parameters()) + list(module.buffers()):
        if t.is_floating_point():
            t.copy_(t.half().float())


def main(out):
    torch.set_grad_enabled(False)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    unet = UNet2DConditionModel.from_config(
        {**UNET_CONFIG, "use_image_cross_attention": True, "use_textual_restore": False}
    ).eval()
    controlnet = ControlNetModel.from_unet(
        unet, use_image_cross_attention=True, use_srresnet=False, conditioning_embedding_out_channels=COND_CHANNELS
    ).eval()
    randomize_(unet, gen)
    randomize_(controlnet, gen)  # independent of the UNet's values (from_unet copied them)
    refine = TPBNet(num_cross_proj_layers=2, clip_v_dim=CLIP_DIM, last_dim=IMAGE_DIM).eval()
    randomize_(refine, gen)

    g = torch.Generator().manual_seed(1)
    latents = torch.randn(BATCH, 4, SIDE, SIDE, generator=g)
    text = torch.randn(BATCH, N_TEXT, UNET_CONFIG["cross_attention_dim"], generator=g)
    image_tokens = torch.randn(BATCH, N_IMAGE, IMAGE_DIM, generator=g)
    lq = torch.rand(BATCH, 3, SIDE * 8, SIDE * 8, generator=g)  # LQ upscaled to the output size, in [0, 1]
    t = torch.tensor([TIMESTEP] * BATCH)
    refine_in = torch.randn(BATCH, 1 + N_PATCHES, CLIP_DIM, generator=g)

    rgbs, down, mid, pred = research_env.research_step(unet, controlnet, latents, t, text, image_tokens, lq)
    # The research code reads clip_vision_outputs.hidden_states[24][:, 1:]; the other layers are NaN so that reading
    # any other one would show.
    hidden = [torch.full_like(refine_in, float("nan")) for _ in range(24)] + [refine_in]
    refine_out = refine(types.SimpleNamespace(hidden_states=hidden))

    ckpt = os.path.join(out, "checkpoint")
    unet.half().save_pretrained(os.path.join(ckpt, "unet"), safe_serialization=True)
    controlnet.half().save_pretrained(os.path.join(ckpt, "controlnet"), safe_serialization=True)
    os.makedirs(os.path.join(ckpt, "refine"), exist_ok=True)
    torch.save(refine.half().state_dict(), os.path.join(ckpt, "refine", "refine.pt"))
    io = {
        "latents": latents,
        "t": t.float(),
        "text": text,
        "image_tokens": image_tokens,
        "lq": lq,
        "pred": pred,
        "mid": mid,
        **{f"down.{i}": x for i, x in enumerate(down)},
        **{f"rgb.{i}": x for i, x in enumerate(rgbs)},
        "refine_in": refine_in,
        "refine_out": refine_out,
    }
    save_file({k: v.float().contiguous() for k, v in io.items()}, os.path.join(out, "io.safetensors"))

    # Self-check: the float16 files, loaded back by the research code in float32, reproduce the outputs exactly.
    unet2 = UNet2DConditionModel.from_pretrained(os.path.join(ckpt, "unet"), torch_dtype=torch.float32).eval()
    cn2 = ControlNetModel.from_pretrained(os.path.join(ckpt, "controlnet"), torch_dtype=torch.float32).eval()
    rgbs2, down2, mid2, pred2 = research_env.research_step(unet2, cn2, latents, t, text, image_tokens, lq)
    refine2 = TPBNet(num_cross_proj_layers=2, clip_v_dim=CLIP_DIM, last_dim=IMAGE_DIM).eval()
    refine2.load_state_dict(
        {k: v.float() for k, v in torch.load(os.path.join(ckpt, "refine", "refine.pt"), weights_only=True).items()}
    )
    pairs = [
        (pred, pred2),
        (mid, mid2),
        *zip(down, down2),
        *zip(rgbs, rgbs2),
        (refine_out, refine2(types.SimpleNamespace(hidden_states=hidden))),
    ]
    reload_diff = max(float((a - b).abs().max()) for a, b in pairs)

    for k, v in io.items():
        print(f"{k:13s} {str(tuple(v.shape)):18s} std {float(v.float().std()):.4g}")
    print(
        "params: unet",
        sum(p.numel() for p in unet.parameters()),
        "controlnet",
        sum(p.numel() for p in controlnet.parameters()),
        "refine",
        sum(p.numel() for p in refine.parameters()),
    )
    print(
        "pred finite:",
        bool(torch.isfinite(pred).all()),
        " min residual std:",
        min(float(x.std()) for x in [*down, mid]),
        " reload max abs diff (fp16 files):",
        reload_diff,
    )
    total = 0
    for root, _, files in sorted(os.walk(out)):
        for f in sorted(files):
            size = os.path.getsize(os.path.join(root, f))
            total += size
            print(f"{size:>10,d}  {os.path.relpath(os.path.join(root, f), out)}")
    print(f"{total:>10,d}  total bytes under {out}")
    if reload_diff != 0 or not torch.isfinite(pred).all():
        sys.exit("fixture check failed")


if __name__ == "__main__":
    main(os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT))
