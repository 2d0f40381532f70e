"""Time and memory of one SSP-IR training step at real size, through the training code's own parts.

Builds SSP-IR at SD-1.5 size from configs with random weights (as `bench_pipeline.py` does, nothing downloaded), then
runs full-method training steps exactly as `examples/train_sspir.py` does them — `place_parts` (frozen models in the
mixed-precision dtype, trained weights in float32), `LossComputer` (Real-ESRGAN degradation on the device, VAE and
CLIP encodes, ControlNet + UNet, diffusion and structure losses), accelerate's backward and AdamW — on a synthetic
batch, and prints one JSON line:

- `step_s`: median time of a whole optimizer step (after `--warmup` steps), degradation included;
- `peak_memory_gib`: peak GPU memory allocated (on the CPU: the process's peak resident memory);
- `trainable_params`, and the settings.

Examples:

    python benchmarks/bench_training.py --size sd15 --resolution 512 --batch-size 4 --mixed-precision fp16 \\
        --gradient-checkpointing
    python benchmarks/bench_training.py --size tiny --device cpu          # a quick check of the script itself
"""

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator

sys.path.insert(0, str(Path(__file__).parent))
from bench_pipeline import SIZES, build_pipelines  # noqa: E402

from diffusers_sspir.data.degradations import RealESRGANDegradation  # noqa: E402
from diffusers_sspir.training.module import SSPIRTrainingModule, select_full_training_parameters  # noqa: E402
from diffusers_sspir.training.trainer import LossComputer, TrainingParts, make_optimizer, place_parts  # noqa: E402


def synthetic_batch(batch_size: int, resolution: int, generator: torch.Generator) -> dict:
    """Smooth random images (so the degradations and the VAE see image-like content) with captions."""
    coarse = torch.rand(batch_size, 3, max(resolution // 16, 1), max(resolution // 16, 1), generator=generator)
    gt = F.interpolate(coarse, size=(resolution, resolution), mode="bicubic", align_corners=False).clamp(0, 1)
    return {"gt": gt, "caption": ["a photo of a house by a lake, trees, a clear sky"] * batch_size}


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="sd15")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--resolution", type=int, default=512, help="HQ crop size (default: 512)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default="fp16")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--use-8bit-adam", action="store_true")
    parser.add_argument("--steps", type=int, default=6, help="timed steps (default: 6)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default: 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--output", default=None, help="append the JSON line to this file")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # random weights make denormal activations, very slow on CPUs
    if args.mixed_precision == "fp16" and device.type == "cpu":
        parser.error("--mixed-precision fp16 needs a GPU; use bf16 or no on the CPU")
    if args.resolution % 32:
        parser.error(f"--resolution must be a multiple of 32, got {args.resolution}")

    accelerator = Accelerator(mixed_precision=args.mixed_precision, cpu=device.type == "cpu")
    stock, pipe = build_pipelines(args.size, device, torch.float32)
    del stock
    module = SSPIRTrainingModule.from_pipeline(pipe)
    parts = TrainingParts(pipe, module, select_full_training_parameters(module), rgb_weights=(0.1, 0.01))
    weight_dtype = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.mixed_precision]
    place_parts(parts, device, weight_dtype)
    if args.gradient_checkpointing:
        module.unet.enable_gradient_checkpointing()
        module.controlnet.enable_gradient_checkpointing()
    parameters = list(parts.trainable.values())
    optimizer_args = argparse.Namespace(
        use_8bit_adam=args.use_8bit_adam, adam_beta1=0.9, adam_beta2=0.999, adam_weight_decay=1e-2, adam_epsilon=1e-8
    )
    optimizer = make_optimizer(optimizer_args, parameters, 5e-5)
    model, optimizer = accelerator.prepare(module, optimizer)
    compute_loss = LossComputer(parts, model, RealESRGANDegradation(), weight_dtype)
    model.train()

    generator = torch.Generator().manual_seed(0)
    batch = synthetic_batch(args.batch_size, args.resolution, generator)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, terms = [], {}
    for step in range(args.warmup + args.steps):
        synchronize(device)
        start = time.perf_counter()
        terms = compute_loss(batch, generator, device)
        accelerator.backward(terms["loss"])
        accelerator.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        if step >= args.warmup:
            times.append(time.perf_counter() - start)

    result = {
        "size": args.size,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "resolution": args.resolution,
        "batch_size": args.batch_size,
        "mixed_precision": args.mixed_precision,
        "gradient_checkpointing": args.gradient_checkpointing,
        "use_8bit_adam": args.use_8bit_adam,
        "trainable_params": sum(p.numel() for p in parameters),
        "step_s": statistics.median(times),
        "step_s_all": [round(t, 4) for t in times],
        "peak_memory_gib": round(peak_memory_gib(device), 3),
        "peak_memory_kind": "cuda max allocated" if device.type == "cuda" else "process peak RSS",
        "loss": {name: round(float(value.detach()), 5) for name, value in terms.items()},
        "torch": torch.__version__,
    }
    line = json.dumps(result)
    print(line)
    if args.output:
        with open(args.output, "a", encoding="utf-8") as file:
            file.write(line + "\n")
    return result


if __name__ == "__main__":
    main()
