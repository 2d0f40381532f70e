"""Per-step time of ControlNet + UNet at SD-1.5 size for each layout, and the authors' research code, in one run.

One denoising step (ControlNet forward, then UNet forward) with classifier-free guidance's batch of 2, text 77 x 768,
image tokens 256 x 512, random weights (nothing downloaded), float32, `torch.no_grad`, for:

- `stock`: diffusers' `UNet2DConditionModel` + `ControlNetModel` (Stable Diffusion + ControlNet, no SSP-IR branches);
- `attention`: diffusers-sspir, light branches (`branch_type="attention"`);
- `transformer`: diffusers-sspir, the paper's layout (`branch_type="transformer"`), SDPA;
- `transformer+fused`: the same with `fuse_qkv_projections()`;
- `research`: the authors' code (GitHub zyhrainbow/SSP-IR, a diffusers 0.21 fork) in its own environment, run by
  `benchmarks/research_parity/time_research.py` right after the others (`--research-python`, `SSPIR_RESEARCH`).

Warm-up 1, then the median of `--runs` steps per latent size; denormal floats flushed to zero on both sides (random
weights make some, which x86 CPUs process many times slower). Prints a Markdown table with ratios to `research` and
writes the raw numbers to `--out`. Heavy (SD-1.5 size, ~8 GB RAM, tens of minutes on 2 CPU cores): not in the suite.

    SSPIR_RESEARCH=$HOME/sspir-research python benchmarks/bench_branch_kinds.py \\
        --research-python $HOME/research-venv/bin/python --out benchmarks/results/branch_kinds_cpu.json
"""

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from diffusers import ControlNetModel, UNet2DConditionModel

from diffusers_sspir import SSPIRControlNetModel, SSPIRUNet2DConditionModel

HERE = Path(__file__).parent
SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32,
)  # fmt: skip
KINDS = ("stock", "attention", "transformer", "transformer+fused")


def build(kind: str):
    if kind == "stock":
        unet = UNet2DConditionModel(**SD15_UNET)
        controlnet = ControlNetModel.from_unet(unet)
    else:
        branch_type = kind.split("+")[0]
        unet = SSPIRUNet2DConditionModel(**SD15_UNET, branch_type=branch_type, up_block_0_pixel_heads=1)
        controlnet = SSPIRControlNetModel.from_unet(unet)
        with torch.no_grad():  # trained-like: non-zero branch outputs, as the research models have at random init
            for name, parameter in [*unet.named_parameters(), *controlnet.named_parameters()]:
                if "proj_out" in name or "to_out" in name or name.startswith("controlnet_"):
                    parameter.normal_(std=0.02)
        if kind.endswith("+fused"):
            unet.fuse_qkv_projections()
            controlnet.fuse_qkv_projections()
    return unet.eval(), controlnet.eval()


def step_fn(kind: str, unet, controlnet, latent: int):
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 4, latent, latent, generator=generator)
    t = torch.tensor([500, 500])
    text = torch.randn(2, 77, 768, generator=generator)
    image = torch.randn(2, 256, 512, generator=generator)
    if kind == "stock":
        hint = torch.rand(2, 3, latent * 8, latent * 8, generator=generator)

        def step():
            down, mid = controlnet(sample, t, text, hint, return_dict=False)
            return unet(sample, t, text, down_block_additional_residuals=down, mid_block_additional_residual=mid)

        return step
    features = torch.randn(2, 320, latent, latent, generator=generator)  # the structure processor is outside the step

    def step():
        down, mid = controlnet(sample, t, text, features, image_embeds=image, return_dict=False)
        return unet(sample, t, text, image_embeds=image, down_block_additional_residuals=down,
                    mid_block_additional_residual=mid)  # fmt: skip

    return step


def time_step(step, runs: int) -> list[float]:
    with torch.no_grad():
        step()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
    return times


def research_times(python: str, latents: list[int], runs: list[int]) -> dict[int, list[float]]:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "research.json"
        command = [python, str(HERE / "research_parity" / "time_research.py"), "--latent", *map(str, latents),
                   "--runs", *map(str, runs), "--out", str(out)]  # fmt: skip
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        return {r["latent"]: r["runs"] for r in json.loads(out.read_text())["results"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latent", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--runs", type=int, nargs="+", default=[5, 3], help="timed steps per latent size")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--research-python", help="python of the research venv (needs SSPIR_RESEARCH)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if len(args.runs) != len(args.latent):
        parser.error("give one --runs count per --latent size")
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # random weights make denormal activations, many times slower on x86 CPUs
    times: dict[str, dict[int, list[float]]] = {}
    for kind in args.kinds:
        unet, controlnet = build(kind)
        times[kind] = {latent: time_step(step_fn(kind, unet, controlnet, latent), runs)
                       for latent, runs in zip(args.latent, args.runs)}  # fmt: skip
        print(kind, {k: round(statistics.median(v), 3) for k, v in times[kind].items()}, file=sys.stderr, flush=True)
        del unet, controlnet
        gc.collect()
    if args.research_python:
        times["research"] = research_times(args.research_python, args.latent, args.runs)

    reference = "research" if "research" in times else "stock"
    lines = ["| layout | " + " | ".join(f"latent {n}² (s) | vs {reference}" for n in args.latent) + " |",
             "|---|" + "---:|---:|" * len(args.latent)]  # fmt: skip
    for kind, by_latent in times.items():
        cells = []
        for latent in args.latent:
            median = statistics.median(by_latent[latent])
            base = statistics.median(times[reference][latent])
            cells += [f"{median:.2f}", f"{median / base:.2f}×"]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    result = {"threads": args.threads, "cpu": os.cpu_count(), "torch": torch.__version__, "times": times}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
