"""Time one denoising step of the SSP-IR authors' research code on the CPU: ControlNet forward + UNet forward.

The research code (GitHub zyhrainbow/SSP-IR, commit 64e6e5c, a diffusers 0.21 fork without a licence) is imported
from $SSPIR_RESEARCH at run time; none of it is copied here. Models at the SD-1.5 config with random weights (their
default initialisation; nothing is downloaded), float32, torch.no_grad, torch.set_num_threads(2), denormals flushed.
The step is run as the research pipelines/pipeline_bim.py runs it: batch 2 (classifier-free guidance), text
77 x 768, image tokens 256 x 512, LQ upscaled to the output size (8 x the latent side). Warm-up 1, then the median of
N runs, per latent size.
Only runs in the research venv (diffusers 0.21.4); basicsr is stubbed (use_srresnet=False never builds MSRResNet).

    SSPIR_RESEARCH=$HOME/sspir-research $HOME/research-venv/bin/python benchmarks/research_parity/time_research.py \
        --latent 32 64 --runs 5 3 --out benchmarks/research_parity/results_cpu.json

Prints one JSON line per latent size and writes them, with the machine, to --out.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "research_parity"))
import diffusers  # noqa: E402
import research_env  # noqa: E402  (first: puts the research code on sys.path, stubs basicsr)
import torch  # noqa: E402
from models.controlnet import ControlNetModel  # noqa: E402
from models.unet_2d_condition import UNet2DConditionModel  # noqa: E402

# Stable Diffusion 1.5 UNet config (runwayml/stable-diffusion-v1-5 unet/config.json values).
SD15 = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768,
    attention_head_dim=8,
    norm_num_groups=32,
    act_fn="silu",
    center_input_sample=False,
    downsample_padding=1,
    flip_sin_to_cos=True,
    freq_shift=0,
    mid_block_scale_factor=1,
    norm_eps=1e-5,
)
BATCH, N_TEXT, TEXT_DIM, N_IMAGE, IMAGE_DIM, TIMESTEP = 2, 77, 768, 256, 512, 500


def peak_rss_gib():
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)  # ru_maxrss is in KiB on Linux


def machine():
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        model = platform.processor()
    return {
        "cpu": model,
        "nproc": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--latent", type=int, nargs="+", default=[32, 64], help="latent sides (LQ side = 8x)")
    ap.add_argument("--runs", type=int, nargs="+", default=[5], help="timed runs N, one per latent or one for all")
    ap.add_argument("--out", help="JSON file for the results")
    args = ap.parse_args()
    runs = args.runs * len(args.latent) if len(args.runs) == 1 else args.runs
    if len(runs) != len(args.latent):
        ap.error("--runs takes one value or one per --latent")

    torch.set_num_threads(2)
    torch.set_flush_denormal(True)  # as benchmarks/bench_branch_kinds.py: denormals are many times slower on x86
    torch.set_grad_enabled(False)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    unet = UNet2DConditionModel.from_config(
        {**SD15, "use_image_cross_attention": True, "use_textual_restore": False}
    ).eval()
    controlnet = ControlNetModel.from_unet(unet, use_image_cross_attention=True, use_srresnet=False).eval()
    build_s = round(time.perf_counter() - t0, 1)
    params = {
        "unet": sum(p.numel() for p in unet.parameters()),
        "controlnet": sum(p.numel() for p in controlnet.parameters()),
    }
    print(json.dumps({"build_s": build_s, "params": params, "peak_rss_gib_after_build": peak_rss_gib()}), flush=True)

    results = []
    for side, n in zip(args.latent, runs):
        g = torch.Generator().manual_seed(1)
        latents = torch.randn(BATCH, 4, side, side, generator=g)
        text = torch.randn(BATCH, N_TEXT, TEXT_DIM, generator=g)
        image_tokens = torch.randn(BATCH, N_IMAGE, IMAGE_DIM, generator=g)
        lq = torch.rand(BATCH, 3, side * 8, side * 8, generator=g)
        t = torch.tensor([TIMESTEP] * BATCH)
        inputs = (latents, t, text, image_tokens, lq)

        t0 = time.perf_counter()
        pred = research_env.research_step(unet, controlnet, *inputs)[3]
        warmup_s = time.perf_counter() - t0
        assert tuple(pred.shape) == (BATCH, 4, side, side) and bool(torch.isfinite(pred).all())
        times, cpu, load = [], [], []
        for _ in range(n):
            t0, c0 = time.perf_counter(), time.process_time()
            research_env.research_step(unet, controlnet, *inputs)
            times.append(round(time.perf_counter() - t0, 3))
            cpu.append(round(time.process_time() - c0, 3))
            load.append(round(os.getloadavg()[0], 2))
        # cpu_s (this process's CPU time) and the 1-minute load average after each run show contention: on an idle
        # machine cpu_s is about 2 x the wall time (2 threads) and the load stays near 2.
        res = {
            "latent": side,
            "lq": side * 8,
            "batch": BATCH,
            "median_s": round(statistics.median(times), 3),
            "min_s": min(times),
            "runs": times,
            "cpu_s": cpu,
            "loadavg_1m": load,
            "warmup_s": round(warmup_s, 3),
            "peak_rss_gib": peak_rss_gib(),
        }
        results.append(res)
        print(json.dumps(res), flush=True)

    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(
                {
                    "what": "research SSP-IR (zyhrainbow/SSP-IR@64e6e5c), one step = ControlNet + UNet forward, "
                    "SD-1.5 config, random weights, fp32, CPU, no_grad",
                    "inputs": {
                        "batch": BATCH,
                        "text": [N_TEXT, TEXT_DIM],
                        "image_tokens": [N_IMAGE, IMAGE_DIM],
                        "timestep": TIMESTEP,
                    },
                    "machine": machine(),
                    "build_s": build_s,
                    "params": params,
                    "results": results,
                },
                f,
                indent=1,
            )
            f.write("\n")


if __name__ == "__main__":
    main()
