"""Peak accelerator memory of one restoration with a vision-language captioner, resident and with model CPU offload.

SSP-IR at SD-1.5 size (`bench_pipeline.build_pipelines`, random weights) with a random-weight LLaVA-1.5 captioner at
the paper's size (Vicuna-7B and CLIP ViT-L/14-336, about 7 B parameters: 14 GB in fp16), in `--dtype`. Three cases,
each from a fresh `torch.cuda.reset_peak_memory_stats()`:

- `resident`: `pipe.to(device)`, every model on the accelerator (what a 24 GB card cannot hold);
- `model_offload`: `pipe.enable_model_cpu_offload()`, the captioner on the accelerator only while it describes;
- `no_captioner`: the pipeline alone, resident, for reference.

Captions are capped at `--max-new-tokens` (random weights never stop early), so times are a floor for real captions.
Writes one JSON line per case to `--output` and prints a table. `--size tiny` (a tiny LLaVA and the tiny pipeline)
runs the same calls on the CPU, without memory figures, to check the script.

    python benchmarks/bench_captioner_offload.py --output results/captioner_offload.jsonl
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import DTYPES, build_pipelines  # noqa: E402

from diffusers_sspir import VLMCaptioner  # noqa: E402

GIB = 2**30
# LLaVA-1.5-7B (llava-hf/llava-1.5-7b-hf): Vicuna-7B on CLIP ViT-L/14 at 336 px.
LLAVA_7B = dict(
    text=dict(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
              num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096),
    vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu"),
)  # fmt: skip


def build_llava_7b(dtype: torch.dtype) -> tuple[torch.nn.Module, object]:
    """A random LLaVA-1.5 at 7 B parameters on the CPU and the tiny test processor scaled to 336 px. Built on the meta
    device and filled with small random weights in `dtype`, so that it costs seconds, not minutes."""
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    from diffusers_sspir.testing import VLM_CHAT_TEMPLATE, make_vlm_tokenizer

    tokenizer = make_vlm_tokenizer()
    vision = CLIPVisionConfig(**LLAVA_7B["vision"])
    text = LlamaConfig(**LLAVA_7B["text"], bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    patches = (vision.image_size // vision.patch_size) ** 2
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=tokenizer.convert_tokens_to_ids(
        "<image>"), image_seq_length=patches, vision_feature_select_strategy="default", vision_feature_layer=-2)
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(config)
    model = model.to_empty(device="cpu").to(dtype).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.02, generator=generator)
    size = vision.image_size
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}),
        tokenizer=tokenizer, patch_size=vision.patch_size, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=VLM_CHAT_TEMPLATE,
    )  # fmt: skip
    return model, processor


def measure(pipe, device: torch.device, image: np.ndarray, resolution: int) -> dict:
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = pipe(image, upscale=resolution // image.shape[0], num_inference_steps=2, guidance_scale=1.0,
                  generator=torch.Generator().manual_seed(0), output_type="np")  # fmt: skip
    if cuda:
        torch.cuda.synchronize()
    return dict(
        seconds=round(time.perf_counter() - start, 3),
        peak_allocated_gib=round(torch.cuda.max_memory_allocated() / GIB, 2) if cuda else None,
        peak_reserved_gib=round(torch.cuda.max_memory_reserved() / GIB, 2) if cuda else None,
        caption_words=len(result.prompts[0].split()),
    )


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=("paper", "tiny"), default="paper")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp16")
    parser.add_argument("--resolution", type=int, default=512, help="output side in pixels (default: 512)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    if device.type == "cpu":
        dtype = torch.float32

    rows = []
    with tempfile.TemporaryDirectory(prefix="sspir-bench-vlm-") as folder:
        if args.size == "paper":
            model, processor = build_llava_7b(dtype)
        else:
            from diffusers_sspir.testing import make_tiny_llava

            model = processor = make_tiny_llava(Path(folder))
        _, pipe = build_pipelines("sd15" if args.size == "paper" else "tiny", torch.device("cpu"), dtype)
        image = np.random.default_rng(0).random((args.resolution // 4, args.resolution // 4, 3), dtype=np.float32)
        captioner = VLMCaptioner(model, processor=processor, max_new_tokens=args.max_new_tokens, do_sample=False)
        parameters = sum(p.numel() for p in captioner.model.parameters())
        cases = [("no_captioner", None, "to"), ("resident", captioner, "to"), ("model_offload", captioner, "offload")]
        for name, case_captioner, placement in cases:
            pipe.remove_all_hooks()
            pipe.to("cpu")
            pipe.captioner = case_captioner
            if case_captioner is not None:
                case_captioner.to("cpu")
            if placement == "offload":
                pipe.enable_model_cpu_offload(device=device)
            else:
                pipe.to(device)
            row = dict(case=name, size=args.size, device=str(device), dtype=str(dtype).removeprefix("torch."),
                       resolution=args.resolution, captioner_parameters=parameters if case_captioner else 0,
                       **measure(pipe, device, image, args.resolution))  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text("".join(json.dumps(row) + "\n" for row in rows))
    print("| case | peak allocated (GiB) | peak reserved (GiB) | s |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['case']} | {row['peak_allocated_gib']} | {row['peak_reserved_gib']} | {row['seconds']} |")
    return rows


if __name__ == "__main__":
    main()
