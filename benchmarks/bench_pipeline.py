"""Speed and memory of `SSPIRPipeline` against diffusers' `StableDiffusionControlNetPipeline`, at real size.

Both pipelines are built from configs with random weights, nothing is downloaded: Stable Diffusion 1.5's UNet,
ControlNet and VAE, CLIP ViT-L/14 text and vision encoders (`--size sd15`), or the same topology at tiny widths for
a quick CPU run (`--size tiny`). SSP-IR is built from the stock pipeline with `SSPIRPipeline.from_stable_diffusion`,
so both share the VAE and the text encoder, and its new weights (attention branches, zero convolutions, structure
output) get random non-zero values so that all of its attention runs. Within one run the script measures, per dtype
and output size, with DDIM and classifier-free guidance 7.5:

- `e2e_s`: the time of a whole call (median of `--repeats`), inputs to numpy images;
- `per_step_ms`: the time per denoising step, between the first and the last step-end of a call, from CUDA events
  recorded by a step-end callback (no sync inside the loop; on the CPU, wall-clock stamps);
- `peak_memory_gib`: the peak memory of a call as if the pipeline were alone on the GPU (peak allocated during the
  call, minus what was allocated before it, plus the pipeline's own weights), `peak_allocated_gib` the raw peak;
- `loop_sync_free`: whether the denoising loop runs without host-device syncs (CUDA's sync debug mode set to "error"
  from the end of the first step to the end of the last);
- for SSP-IR, each optimisation of the library named in `--optimizations` (fused projections, channels-last,
  `torch.compile` with or without CUDA graphs), applied through the pipeline's own methods;
- for the tiled output (`--tiled`), SSP-IR denoises in tiles of `--tile-size` pixels and reports `seam_ratio`: how
  much more the image changes across its sharpest tile edge than across the other latent-pixel boundaries (about 1:
  no seam);
  the whole image at 1/4 size and a crop around a tile corner are saved next to `--output` for looking at. The
  stock pipeline has no tiling and makes that size whole;
- one UNet and one ControlNet call of each pipeline (`pipeline: "models"`), to see where time goes.

Every case prints one JSON line (also written to `--output`); at the end a Markdown table of the ratios is printed
and written next to the JSON lines (`--table`). Cases that would overrun `--time-budget` are reported as skipped.

Example (the command used for docs/performance.md):

    python benchmarks/bench_pipeline.py --size sd15 --output results/results.jsonl
"""

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    DDIMScheduler,
    StableDiffusionControlNetPipeline,
    UNet2DConditionModel,
)
from transformers import (
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPVisionConfig,
    CLIPVisionModel,
)

from diffusers_sspir import SSPIRPipeline
from diffusers_sspir.defaults import BRANCH_TYPES
from diffusers_sspir.image_ops import tile_starts
from diffusers_sspir.models.branches import BRANCH_KEY_MARKERS
from diffusers_sspir.testing import SCHEDULER_CONFIG, make_tokenizer, randomize_branches  # SD-1.5's schedule

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
PROMPT = "a photo of an old stone house by a lake"
ADDED_PROMPT = "clean, high-resolution, 8k"  # SSP-IR's default, appended to the stock prompt as well
NEGATIVE_PROMPT = "dotted, noise, blur, lowres, smooth"  # SSP-IR's default, given to both
GUIDANCE_SCALE = 7.5
UPSCALE = 4
GIB = 2**30

SIZES = {
    # Stable Diffusion 1.5 and CLIP ViT-L/14, as published.
    "sd15": dict(
        unet=dict(
            sample_size=64,
            in_channels=4,
            out_channels=4,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
            cross_attention_dim=768,
            attention_head_dim=8,
            norm_num_groups=32,
        ),
        vae=dict(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(128, 256, 512, 512),
            layers_per_block=2,
            latent_channels=4,
            norm_num_groups=32,
            sample_size=512,
            scaling_factor=0.18215,
        ),
        text=dict(
            vocab_size=49408,
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            max_position_embeddings=77,
            projection_dim=768,
            hidden_act="quick_gelu",
        ),
        vision=dict(
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=24,
            num_attention_heads=16,
            image_size=224,
            patch_size=14,
            projection_dim=768,
            hidden_act="quick_gelu",
        ),
        image_embed_dim=512,
    ),
    # The same topology (blocks, layers, heads, attention layers) at tiny widths: for the CPU and the tests. It
    # calls as many kernels per step as SD-1.5, so its CPU times mostly show per-operation overhead.
    "tiny": dict(
        unet=dict(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            block_out_channels=(32, 32, 64, 64),
            layers_per_block=2,
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=8,
        ),
        vae=dict(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(8, 8, 16, 16),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=4,
            sample_size=64,
        ),
        text=dict(
            vocab_size=49408,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            projection_dim=32,
            hidden_act="quick_gelu",
        ),
        vision=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
            projection_dim=32,
            hidden_act="quick_gelu",
        ),
        image_embed_dim=32,
    ),
}

# SSP-IR optimisations, each a set of the library's switches, and the seconds left that a case needs to start
# (compiling SD-1.5's UNet and ControlNet with inductor takes a minute or two).
OPTIMIZATIONS = {
    "fused": dict(fuse=True, reserve_s=15),
    "channels_last": dict(channels_last=True, reserve_s=15),
    "fused_cl": dict(fuse=True, channels_last=True, reserve_s=15),
    "cudagraphs": dict(fuse=True, compile={"fullgraph": True, "backend": "cudagraphs"}, reserve_s=45),
    "compile": dict(fuse=True, compile={"fullgraph": True}, reserve_s=120),
    "compile_cudagraphs": dict(fuse=True, compile={"fullgraph": True, "mode": "reduce-overhead"}, reserve_s=120),
    "compile_max_autotune": dict(fuse=True, compile={"fullgraph": True, "mode": "max-autotune"}, reserve_s=400),
}


# ----------------------------------------------------------------------------------------------------------- build


def build_pipelines(
    size: str, device: torch.device, dtype: torch.dtype, seed: int = 0, branch_type: str = "transformer"
) -> tuple[StableDiffusionControlNetPipeline, SSPIRPipeline]:
    """The stock ControlNet pipeline and SSP-IR (branches of `branch_type`) built from it, both with DDIM, random
    weights, on `device` in `dtype`. Built in float32 on the device, then cast. The schedulers are made outside the
    device context: their tables stay on the CPU, as in a loaded pipeline."""
    config = SIZES[size]
    torch.manual_seed(seed)
    tokenizer = make_tokenizer()
    text_config = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=1)
    schedulers = [DDIMScheduler(**SCHEDULER_CONFIG) for _ in range(2)]
    with torch.device(device):
        unet = UNet2DConditionModel(**config["unet"])
        stock = StableDiffusionControlNetPipeline(
            vae=AutoencoderKL(**config["vae"]),
            text_encoder=CLIPTextModel(CLIPTextConfig(**config["text"], **text_config)),
            tokenizer=tokenizer,
            unet=unet,
            controlnet=ControlNetModel.from_unet(unet),
            scheduler=schedulers[0],
            safety_checker=None,
            feature_extractor=None,
            image_encoder=None,
            requires_safety_checker=False,
        )
        crop = config["vision"]["image_size"]
        sspir = SSPIRPipeline.from_stable_diffusion(
            stock,
            image_encoder=CLIPVisionModel(CLIPVisionConfig(**config["vision"])),
            feature_extractor=CLIPImageProcessor(size={"shortest_edge": crop}, crop_size=crop),
            branch_type=branch_type,
            image_embed_dim=config["image_embed_dim"],
            scheduler=schedulers[1],
        )
    generator = torch.Generator().manual_seed(seed)  # drawn on the CPU: the same weights on every device
    zero_convs = ("controlnet_down_blocks", "controlnet_mid_block")
    randomize_branches(stock.controlnet, generator, std=0.02, names=zero_convs)
    randomize_branches(sspir.controlnet, generator, std=0.02, names=zero_convs + BRANCH_KEY_MARKERS)
    randomize_branches(sspir.unet, generator, std=0.02, names=BRANCH_KEY_MARKERS)
    randomize_branches(sspir.structure_processor, generator, std=0.02, names=("conv_out",))
    for pipe in (stock, sspir):
        for component in pipe.components.values():
            if isinstance(component, torch.nn.Module):
                torch.nn.Module.to(component.eval(), dtype=dtype)
        pipe.set_progress_bar_config(disable=True)
    return stock, sspir


def make_inputs(resolution: int, seed: int = 0) -> tuple[PIL.Image.Image, PIL.Image.Image]:
    """A smooth random low-quality image of `resolution / UPSCALE` pixels (SSP-IR's input) and its bicubic upscale
    to `resolution` (the stock ControlNet's conditioning image)."""
    rng = np.random.RandomState(seed)
    small = max(resolution // UPSCALE, 8)
    coarse = PIL.Image.fromarray((rng.rand(small // 8, small // 8, 3) * 255).astype(np.uint8))
    detail = (rng.rand(small, small, 3) * 64 - 32).astype(np.float32)
    low = np.asarray(coarse.resize((small, small), PIL.Image.BICUBIC), dtype=np.float32) + detail
    low = PIL.Image.fromarray(low.clip(0, 255).astype(np.uint8))
    return low, low.resize((resolution, resolution), PIL.Image.BICUBIC)


def weights_bytes(pipe) -> int:
    """Bytes of the parameters and buffers of the pipeline's models (shared tensors counted once)."""
    seen, total = set(), 0
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            for tensor in [*component.parameters(), *component.buffers()]:
                if tensor.data_ptr() not in seen:
                    seen.add(tensor.data_ptr())
                    total += tensor.numel() * tensor.element_size()
    return total


# ----------------------------------------------------------------------------------------------------------- time


class StepClock:
    """A `callback_on_step_end` that stamps the end of every step without waiting for the device: a CUDA event per
    step on the GPU, the wall clock on the CPU (where every operation has finished when it returns)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.stamps = []

    def __call__(self, pipe, step: int, timestep, callback_kwargs: dict) -> dict:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.stamps.append(event)
        else:
            self.stamps.append(time.perf_counter())
        return {}

    def per_step_ms(self) -> float | None:
        """Mean time of the steps after the first (call after synchronising)."""
        if len(self.stamps) < 2:
            return None
        first, last = self.stamps[0], self.stamps[-1]
        total = first.elapsed_time(last) if self.cuda else (last - first) * 1000
        return total / (len(self.stamps) - 1)


class SyncTrap:
    """A `callback_on_step_end` that sets CUDA's sync debug mode to "error" from the end of the first step to the end
    of the last one, so that any host-device sync in the loop in between raises."""

    def __init__(self, steps: int):
        self.steps = steps

    def __call__(self, pipe, step: int, timestep, callback_kwargs: dict) -> dict:
        torch.cuda.set_sync_debug_mode("error" if step < self.steps - 1 else "default")
        return {}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Budget:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


# ----------------------------------------------------------------------------------------------------------- cases


def sspir_call(pipe: SSPIRPipeline, resolution: int, tile_size: int | None, device: torch.device) -> Callable:
    low, _ = make_inputs(resolution)

    def call(steps: int, callback=None):
        return pipe(
            image=low,
            prompt=PROMPT,
            upscale=UPSCALE,
            num_inference_steps=steps,
            guidance_scale=GUIDANCE_SCALE,
            generator=torch.Generator(device).manual_seed(0),
            tile_size=tile_size,
            output_type="np",
            callback_on_step_end=callback,
        ).images

    return call


def stock_call(pipe: StableDiffusionControlNetPipeline, resolution: int, device: torch.device) -> Callable:
    _, control = make_inputs(resolution)

    def call(steps: int, callback=None):
        return pipe(
            prompt=f"{PROMPT}, {ADDED_PROMPT}",
            negative_prompt=NEGATIVE_PROMPT,
            image=control,
            height=resolution,
            width=resolution,
            num_inference_steps=steps,
            guidance_scale=GUIDANCE_SCALE,
            generator=torch.Generator(device).manual_seed(0),
            output_type="np",
            callback_on_step_end=callback,
        ).images

    return call


def seam_ratio(image: np.ndarray, tile_size: int, overlap: int, factor: int = 8) -> float | None:
    """How much more the image changes across tile edges than across the other latent-pixel boundaries: the largest
    mean absolute difference between the neighbouring pixel columns (rows) at a tile edge, over the mean of the same
    at every other multiple of `factor` pixels (taking the largest of the three differences around each position,
    for both). About 1 when the tiles leave no seam; content alone moves it by a few tenths."""
    at_edges, elsewhere = [], []
    for axis in (0, 1):
        steps = np.abs(np.diff(image.astype(np.float64), axis=axis)).mean(axis=(1 - axis, 2))
        length = image.shape[axis] // factor
        edges = set()
        for start in tile_starts(length, tile_size // factor, overlap // factor):
            edges.update(e for e in (start, start + tile_size // factor) if 0 < e < length)
        for position in range(1, length):
            # steps[i] is the change between pixels i and i + 1, so the boundary before pixel p is steps[p - 1].
            change = steps[position * factor - 2 : position * factor + 1].max()
            (at_edges if position in edges else elsewhere).append(change)
    if not at_edges or not elsewhere:
        return None
    return float(max(at_edges) / np.mean(elsewhere))


def save_seam_views(image: np.ndarray, tile_size: int, overlap: int, folder: Path, name: str) -> list[str]:
    """Saves the whole tiled output at 1/4 size and a 256-pixel crop around the first corner where four tiles
    meet, for looking at."""
    folder.mkdir(parents=True, exist_ok=True)
    pil = PIL.Image.fromarray((np.nan_to_num(image).clip(0, 1) * 255).round().astype(np.uint8))
    whole = folder / f"{name}_whole.jpg"
    pil.resize((pil.width // 4, pil.height // 4), PIL.Image.BICUBIC).save(whole, quality=90)
    starts = tile_starts(image.shape[0] // 8, tile_size // 8, overlap // 8)
    corner = 8 * (starts[1] if len(starts) > 1 else starts[0] + tile_size // 16)
    crop = folder / f"{name}_corner.png"
    box = [min(max(corner - 128, 0), max(image.shape[0] - 256, 0))] * 2
    pil.crop((box[1], box[0], box[1] + 256, box[0] + 256)).save(crop)
    return [whole.name, crop.name]


def trap_syncs(call: Callable, device: torch.device, steps: int) -> bool:
    """Whether a call's denoising loop runs from the end of its first step to the end of its last without a
    host-device sync (CUDA only)."""
    try:
        call(steps, SyncTrap(steps))
        return True
    except RuntimeError as error:
        if "synchroniz" not in str(error).lower():
            raise
        return False
    finally:
        torch.cuda.set_sync_debug_mode("default")
        synchronize(device)


def measure(
    call: Callable,
    steps: int,
    repeats: int,
    warmup_steps: int,
    device: torch.device,
    budget: Budget,
    weights: int,
    sync_check: str | None = None,
) -> dict:
    """A warm-up call, then `repeats` timed calls (fewer when the budget runs short). `sync_check="warmup"` traps
    syncs in the warm-up call (for eager models), `"after"` in an extra call after the timed ones (for compiled
    models, whose first steps compile and record CUDA graphs)."""
    result = {"loop_sync_free": None}
    check = device.type == "cuda" and sync_check is not None
    synchronize(device)
    start = time.perf_counter()
    if check and sync_check == "warmup":
        result["loop_sync_free"] = trap_syncs(call, device, max(warmup_steps, 3))
        if not result["loop_sync_free"]:
            call(warmup_steps)  # the trapped call stopped early
    else:
        call(warmup_steps)
    synchronize(device)
    result["warmup_s"] = round(time.perf_counter() - start, 3)

    runs, per_step, peaks, images = [], [], [], None
    for _ in range(repeats):
        if runs and budget.left() < 1.5 * max(runs):
            break
        clock = StepClock(device)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
        synchronize(device)
        start = time.perf_counter()
        images = call(steps, clock)
        synchronize(device)
        runs.append(time.perf_counter() - start)
        per_step.append(clock.per_step_ms())
        if device.type == "cuda":
            peaks.append((torch.cuda.max_memory_allocated(device), before))
    result.update(
        e2e_s=round(statistics.median(runs), 4),
        e2e_runs_s=[round(r, 4) for r in runs],
        per_step_ms=None if per_step[0] is None else round(statistics.median(per_step), 3),
        finite=bool(np.isfinite(images).all()),
    )
    result["fixed_s"] = None
    if result["per_step_ms"] is not None:
        result["fixed_s"] = round(result["e2e_s"] - steps * result["per_step_ms"] / 1000, 4)
    if peaks:
        peak, before = max(peaks)
        result.update(
            peak_memory_gib=round((peak - before + weights) / GIB, 3),
            peak_allocated_gib=round(peak / GIB, 3),
            weights_gib=round(weights / GIB, 3),
        )
    if check and sync_check == "after":
        result["loop_sync_free"] = trap_syncs(call, device, 4)
    result["_images"] = images
    return result


@torch.no_grad()
def time_model_calls(
    stock: StableDiffusionControlNetPipeline,
    sspir: SSPIRPipeline,
    resolution: int,
    device: torch.device,
    repeats: int = 10,
) -> dict:
    """Milliseconds of one ControlNet and one UNet call of each pipeline (batch 2, as with guidance), eager."""
    generator = torch.Generator(device).manual_seed(0)
    dtype, latent = sspir.unet.dtype, resolution // 8

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=generator, device=device).to(dtype)

    vision = sspir.image_encoder.config
    sample, timestep = randn(2, 4, latent, latent), torch.tensor(981, device=device)
    text = randn(2, 77, stock.text_encoder.config.hidden_size)
    image = randn(2, (vision.image_size // vision.patch_size) ** 2, sspir.unet.config.image_embed_dim)
    hint = randn(2, 3, resolution, resolution)
    features = randn(2, sspir.unet.config.block_out_channels[0], latent, latent)
    stock_cn = {"encoder_hidden_states": text, "controlnet_cond": hint, "return_dict": False}
    sspir_cn = {
        "encoder_hidden_states": text,
        "image_embeds": image,
        "controlnet_cond": features,
        "return_dict": False,
    }
    stock_down, stock_mid = stock.controlnet(sample, timestep, **stock_cn)
    sspir_down, sspir_mid = sspir.controlnet(sample, timestep, **sspir_cn)
    calls = {
        "stock_controlnet_ms": lambda: stock.controlnet(sample, timestep, **stock_cn),
        "stock_unet_ms": lambda: stock.unet(
            sample,
            timestep,
            encoder_hidden_states=text,
            down_block_additional_residuals=stock_down,
            mid_block_additional_residual=stock_mid,
            return_dict=False,
        ),
        "sspir_controlnet_ms": lambda: sspir.controlnet(sample, timestep, **sspir_cn),
        "sspir_unet_ms": lambda: sspir.unet(
            sample,
            timestep,
            encoder_hidden_states=text,
            image_embeds=image,
            down_block_additional_residuals=sspir_down,
            mid_block_additional_residual=sspir_mid,
            return_dict=False,
        ),
    }
    result = {}
    for name, call in calls.items():
        call()
        clock = StepClock(device)
        clock(None, 0, None, {})
        for _ in range(repeats):
            call()
            clock(None, 0, None, {})
        synchronize(device)
        result[name] = round(clock.per_step_ms(), 3)
    return result


class Pipelines:
    """An SSP-IR pipeline and the optimisations currently applied to it."""

    def __init__(self, sspir: SSPIRPipeline):
        self.sspir = sspir
        self.fused, self.channels_last, self.compiled = False, False, None

    def apply(self, settings: dict, compile_backend: str | None) -> str:
        """Switches SSP-IR's optimisations to `settings` with the pipeline's methods; returns the calls made from an
        eager pipeline, as a user would write them."""
        pipe, calls = self.sspir, []
        compile_kwargs = dict(settings.get("compile") or {})
        if compile_kwargs and compile_backend:
            compile_kwargs.pop("mode", None)
            compile_kwargs["backend"] = compile_backend
        if settings.get("fuse", False) != self.fused:
            pipe.fuse_qkv_projections() if not self.fused else pipe.unfuse_qkv_projections()
            self.fused = not self.fused
        if settings.get("channels_last", False) != self.channels_last:
            pipe.enable_channels_last() if not self.channels_last else pipe.disable_channels_last()
            self.channels_last = not self.channels_last
        if compile_kwargs != (self.compiled or {}):
            if not compile_kwargs:
                raise ValueError("A compiled pipeline cannot be uncompiled: list compiled variants last.")
            torch._dynamo.reset()
            pipe.compile(**compile_kwargs)
            self.compiled = compile_kwargs
        if self.fused:
            calls.append("pipe.fuse_qkv_projections()")
        if self.channels_last:
            calls.append("pipe.enable_channels_last()")
        if self.compiled:
            calls.append(f"pipe.compile({', '.join(f'{k}={v!r}' for k, v in self.compiled.items())})")
        return "; ".join(calls) or "(none)"


# ----------------------------------------------------------------------------------------------------------- table


def _fmt(value, digits: int = 2, suffix: str = "") -> str:
    return "–" if value is None else f"{value:.{digits}f}{suffix}"


def _ratio(numerator, denominator):
    return None if numerator is None or not denominator else numerator / denominator


def _verdict(value, target) -> str:
    return "" if value is None else (" ✓" if value <= target else " ✗")


def ratio_table(results: list[dict], args: argparse.Namespace) -> str:
    """Markdown tables: SSP-IR against the stock pipeline, one model call of each, then every case."""
    cases = [r for r in results if r.get("kind") == "case"]
    ok = {
        (r["pipeline"], r["variant"], r["dtype"], r["resolution"], r["tiled"]): r for r in cases if r["status"] == "ok"
    }

    def get(record: dict | None, field: str):
        return None if record is None else record.get(field)

    lines = [
        "| dtype | output | steps | stock ms/step | SSP-IR ms/step | step ratio (≤ 1.3) | stock e2e s | SSP-IR e2e s "
        "| best SSP-IR e2e s (variant) | best / stock e2e (≤ 0.6 at 512²) | stock peak GiB | SSP-IR peak GiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for dtype in args.dtypes:
        for resolution in args.resolutions:
            stock = ok.get(("stock", "eager", dtype, resolution, False))
            eager = ok.get(("sspir", "eager", dtype, resolution, False))
            variants = [r for key, r in ok.items() if key[0] == "sspir" and key[2:] == (dtype, resolution, False)]
            best = min(variants, key=lambda r: r["e2e_s"], default=None)
            step_ratio = _ratio(get(eager, "per_step_ms"), get(stock, "per_step_ms"))
            e2e_ratio = _ratio(get(best, "e2e_s"), get(stock, "e2e_s"))
            lines.append(
                f"| {dtype} | {resolution}² | {args.steps} | {_fmt(get(stock, 'per_step_ms'), 1)} "
                f"| {_fmt(get(eager, 'per_step_ms'), 1)} | {_fmt(step_ratio)}{_verdict(step_ratio, 1.3)} "
                f"| {_fmt(get(stock, 'e2e_s'))} | {_fmt(get(eager, 'e2e_s'))} "
                f"| {_fmt(get(best, 'e2e_s'))} ({get(best, 'variant') or '–'}) "
                f"| {_fmt(e2e_ratio)}{_verdict(e2e_ratio, 0.6) if resolution == 512 else ''} "
                f"| {_fmt(get(stock, 'peak_memory_gib'))} | {_fmt(get(eager, 'peak_memory_gib'))} |"
            )
        for resolution in args.tiled:
            stock = ok.get(("stock", "eager", dtype, resolution, False))
            tiled = ok.get(("sspir", "eager", dtype, resolution, True))
            peak = get(tiled, "peak_memory_gib")
            lines.append(
                f"| {dtype} | {resolution}² (SSP-IR in {args.tile_size}² tiles, stock whole) | {args.tiled_steps} "
                f"| {_fmt(get(stock, 'per_step_ms'), 1)} | {_fmt(get(tiled, 'per_step_ms'), 1)} "
                f"| {_fmt(_ratio(get(tiled, 'per_step_ms'), get(stock, 'per_step_ms')))} "
                f"| {_fmt(get(stock, 'e2e_s'))} | {_fmt(get(tiled, 'e2e_s'))} | – | – "
                f"| {_fmt(get(stock, 'peak_memory_gib'))} | {_fmt(peak)}{_verdict(peak, 8.0)} (≤ 8) |"
            )

    lines += [
        "",
        "| dtype | latent input | stock ControlNet ms | SSP-IR ControlNet ms | stock UNet ms | SSP-IR UNet ms "
        "| SSP-IR / stock (both) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in cases:
        if r["pipeline"] == "models" and r["status"] == "ok":
            stock_ms = r["stock_controlnet_ms"] + r["stock_unet_ms"]
            sspir_ms = r["sspir_controlnet_ms"] + r["sspir_unet_ms"]
            lines.append(
                f"| {r['dtype']} | 2×4×{r['resolution'] // 8}² | {r['stock_controlnet_ms']:.1f} "
                f"| {r['sspir_controlnet_ms']:.1f} | {r['stock_unet_ms']:.1f} | {r['sspir_unet_ms']:.1f} "
                f"| {sspir_ms / stock_ms:.2f} |"
            )

    lines += [
        "",
        "| dtype | output | pipeline | variant | warm-up s | e2e s | ms/step | peak GiB | sync-free loop | seam ratio "
        "| e2e / stock eager | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    sync_words = {True: "yes", False: "no", None: "–"}
    for r in cases:
        if r["pipeline"] == "models":
            continue
        size = "–" if r["resolution"] is None else f"{r['resolution']}²" + (" tiled" if r["tiled"] else "")
        stock = ok.get(("stock", "eager", r["dtype"], r["resolution"], False))
        status = "ok" if r["status"] == "ok" else f"{r['status']}: {r.get('reason', '')}".replace("|", "/")
        lines.append(
            f"| {r['dtype']} | {size} | {r['pipeline']} | {r['variant']} | {_fmt(get(r, 'warmup_s'), 1)} "
            f"| {_fmt(get(r, 'e2e_s'), 3)} | {_fmt(get(r, 'per_step_ms'), 1)} | {_fmt(get(r, 'peak_memory_gib'))} "
            f"| {sync_words[r.get('loop_sync_free')]} | {_fmt(get(r, 'seam_ratio'))} "
            f"| {_fmt(_ratio(get(r, 'e2e_s'), get(stock, 'e2e_s')))} | {status} |"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="sd15", help="model sizes (default: sd15)")
    parser.add_argument(
        "--branch-type", choices=BRANCH_TYPES, default="transformer", help="SSP-IR branch kind (default: transformer)"
    )
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--dtypes", default="fp16,bf16", help=f"comma-separated, of {sorted(DTYPES)}")
    parser.add_argument("--resolutions", default="512,1024", help="output sizes in pixels, whole image")
    parser.add_argument("--tiled", default="2048", help="output sizes SSP-IR denoises in tiles ('' for none)")
    parser.add_argument("--tile-size", type=int, default=1024, help="SSP-IR tile size in pixels (default: 1024)")
    parser.add_argument("--steps", type=int, default=50, help="denoising steps of a timed call (default: 50)")
    parser.add_argument("--tiled-steps", type=int, default=4, help="steps of a timed tiled call (default: 4)")
    parser.add_argument("--warmup-steps", type=int, default=3, help="steps of the warm-up call (default: 3)")
    parser.add_argument("--repeats", type=int, default=2, help="timed calls per case, median (default: 2)")
    parser.add_argument("--tiled-repeats", type=int, default=1, help="timed calls per tiled case (default: 1)")
    parser.add_argument("--model-repeats", type=int, default=10, help="timed single model calls (default: 10)")
    parser.add_argument("--cases", default="eager,optimized", help="eager (stock and SSP-IR) and/or optimized")
    parser.add_argument(
        "--optimizations",
        default="fused_cl,compile_cudagraphs",
        help=f"SSP-IR variants for the optimized cases, in order, of {list(OPTIMIZATIONS)}",
    )
    parser.add_argument("--optimized-resolutions", default=None, help="default: the first of --resolutions")
    parser.add_argument("--compile-backend", default=None, help="override torch.compile's backend (e.g. eager)")
    parser.add_argument("--time-budget", type=float, default=285.0, help="stop starting cases after this many s")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--output", default=None, help="JSON lines file (the table goes next to it, .md)")
    parser.add_argument("--table", default=None, help="Markdown table file (default: --output with .md)")
    args = parser.parse_args(argv)

    def ints(text: str | None) -> list[int]:
        return [int(x) for x in text.split(",") if x.strip()] if text else []

    args.dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    unknown = set(args.dtypes) - set(DTYPES)
    if unknown:
        parser.error(f"unknown dtypes {sorted(unknown)}; choose from {sorted(DTYPES)}")
    args.resolutions, args.tiled = ints(args.resolutions), ints(args.tiled)
    args.optimized_resolutions = ints(args.optimized_resolutions) or args.resolutions[:1]
    args.cases = {c.strip() for c in args.cases.split(",") if c.strip()}
    if args.cases - {"eager", "optimized"}:
        parser.error("--cases takes eager and/or optimized")
    args.optimizations = [o.strip() for o in args.optimizations.split(",") if o.strip()]
    unknown = set(args.optimizations) - set(OPTIMIZATIONS)
    if unknown:
        parser.error(f"unknown optimizations {sorted(unknown)}; choose from {list(OPTIMIZATIONS)}")
    # An in-place compile cannot be undone: the uncompiled variants go first.
    args.optimizations.sort(key=lambda name: "compile" in OPTIMIZATIONS[name])
    both = sorted(set(args.resolutions) & set(args.tiled))
    if both:
        parser.error(f"sizes {both} are in both --resolutions and --tiled; list each size once")
    for size in args.resolutions + args.tiled + args.optimized_resolutions:
        if size % (8 * UPSCALE):
            parser.error(f"output sizes must be multiples of {8 * UPSCALE}, got {size}")
    if args.table is None and args.output:
        args.table = str(Path(args.output).with_suffix(".md"))
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cpu":
        # Random weights drive some activations into denormal floats, which x86 CPUs handle many times slower
        # (GPUs do not): flush them to zero so that CPU times measure the models, not that slow path.
        torch.set_flush_denormal(True)
    budget = Budget(args.time_budget)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    output = open(args.output, "w", encoding="utf-8") if args.output else None
    results = []

    def emit(record: dict) -> None:
        record = {k: v for k, v in record.items() if not k.startswith("_")}
        results.append(record)
        line = json.dumps(record)
        print(line, flush=True)
        if output:
            output.write(line + "\n")
            output.flush()

    import diffusers
    import transformers

    emit(
        {
            "kind": "meta",
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "cpu_threads": torch.get_num_threads(),
            "flush_denormal": device.type == "cpu",
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "diffusers": diffusers.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
            "argv": sys.argv[1:] if argv is None else argv,
            "size": args.size,
            "branch_type": args.branch_type,
            "scheduler": "DDIM",
            "guidance_scale": GUIDANCE_SCALE,
        }
    )

    def case(pipeline: str, variant: str, dtype: str, resolution: int, tiled: bool = False, **extra) -> dict:
        steps = args.tiled_steps if resolution in args.tiled else args.steps
        return {
            "kind": "case",
            "pipeline": pipeline,
            "variant": variant,
            "dtype": dtype,
            "resolution": resolution,
            "tiled": tiled,
            "tile_size": args.tile_size if tiled else None,
            "steps": steps,
            **extra,
        }

    def skipped(record: dict) -> None:
        emit({**record, "status": "skipped", "reason": f"time budget ({args.time_budget:.0f} s)"})

    def run(record: dict, call: Callable, weights: int, sync_check: str | None, reserve: float = 10.0) -> None:
        """Measures one case and emits its record; a failing case is reported and the others still run."""
        if budget.left() < reserve:
            return skipped(record)
        repeats = args.tiled_repeats if record["resolution"] in args.tiled else args.repeats
        try:
            record.update(
                measure(call, record["steps"], repeats, args.warmup_steps, device, budget, weights, sync_check)
            )
            if record["tiled"]:
                image, overlap = record["_images"][0], args.tile_size // 4 // 8 * 8
                record["seam_ratio"] = seam_ratio(image, args.tile_size, overlap)
                if args.output:
                    name = f"tiled_{record['resolution']}_{record['dtype']}_{record['variant']}"
                    record["views"] = save_seam_views(image, args.tile_size, overlap, Path(args.output).parent, name)
            record["status"] = "ok"
        except Exception as error:
            record.update(status="error", reason=f"{type(error).__name__}: {str(error)[:400]}")
            traceback.print_exc(file=sys.stderr)
        finally:
            if device.type == "cuda":
                torch.cuda.set_sync_debug_mode("default")
                torch.cuda.empty_cache()
        emit(record)

    def run_cases() -> None:
        """Eager: both pipelines, every size, one dtype after the other (the stock models are freed
        afterwards); then the optimised SSP-IR variants."""
        built: dict[str, Pipelines] = {}
        for dtype in args.dtypes:
            if budget.left() < 30:
                emit({**case("both", "all", dtype, None), "status": "skipped", "reason": "time budget: not built"})
                continue
            start = time.perf_counter()
            stock, sspir = build_pipelines(args.size, device, DTYPES[dtype], branch_type=args.branch_type)
            synchronize(device)
            built[dtype] = Pipelines(sspir)
            print(f"# built {args.size} {dtype} on {device} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
            if "eager" in args.cases:
                stock_weights, sspir_weights = weights_bytes(stock), weights_bytes(sspir)
                for resolution in args.resolutions + args.tiled:
                    run(
                        case("stock", "eager", dtype, resolution),
                        stock_call(stock, resolution, device),
                        stock_weights,
                        sync_check="warmup",
                    )
                for resolution in args.resolutions:
                    run(
                        case("sspir", "eager", dtype, resolution, calls="(none)"),
                        sspir_call(sspir, resolution, None, device),
                        sspir_weights,
                        sync_check="warmup",
                    )
                for resolution in args.tiled:
                    run(
                        case("sspir", "eager", dtype, resolution, tiled=True, calls="(none)"),
                        sspir_call(sspir, resolution, args.tile_size, device),
                        sspir_weights,
                        sync_check="warmup",
                    )
                record = case("models", "eager", dtype, args.resolutions[0], steps=None)
                try:
                    emit(
                        {
                            **record,
                            **time_model_calls(stock, sspir, args.resolutions[0], device, args.model_repeats),
                            "status": "ok",
                        }
                    )
                except Exception as error:
                    emit({**record, "status": "error", "reason": f"{type(error).__name__}: {str(error)[:400]}"})
            del stock
            if device.type == "cuda":
                torch.cuda.empty_cache()

        # Optimised SSP-IR: one variant after the other (each for every dtype), with the pipeline's own switches.
        if "optimized" in args.cases:
            for name in args.optimizations:
                settings = OPTIMIZATIONS[name]
                for dtype, pipes in built.items():
                    for resolution in args.optimized_resolutions:
                        record = case("sspir", name, dtype, resolution)
                        if budget.left() < settings["reserve_s"]:
                            skipped(record)
                            continue
                        try:
                            record["calls"] = pipes.apply(settings, args.compile_backend)
                        except Exception as error:
                            emit(
                                {**record, "status": "error", "reason": f"{type(error).__name__}: {str(error)[:400]}"}
                            )
                            continue
                        run(
                            record,
                            sspir_call(pipes.sspir, resolution, None, device),
                            weights_bytes(pipes.sspir),
                            sync_check="after" if settings.get("compile") else "warmup",
                            reserve=0,
                        )

    try:
        run_cases()
    except KeyboardInterrupt:  # e.g. `timeout -s INT`: keep what was measured and still write the table
        emit({"kind": "meta", "status": "interrupted", "reason": "interrupted; the cases after this did not run"})

    table = ratio_table(results, args)
    meta = results[0]
    header = (
        f"Measured {meta['date']} on {meta['device']} (torch {meta['torch']}, diffusers {meta['diffusers']}), "
        f"size {args.size}, DDIM, CFG {GUIDANCE_SCALE}; per-step time from step-end CUDA events "
        "(CPU: wall clock); peak memory as if the pipeline were alone on the device."
    )
    print("\n" + header + "\n\n" + table, flush=True)
    if output:
        output.close()
    if args.table:
        Path(args.table).write_text(header + "\n\n" + table + "\n", encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
