"""Restore an image with SSP-IR.

With the small demo model bundled with the package (docs/demo_model.md):

    python examples/quickstart.py assets/ladybird_lq.png -o restored.png

or load a trained SSP-IR pipeline folder:

    python examples/quickstart.py photo.png --model path/to/sspir -o restored.png

or build an *untrained* SSP-IR from Stable Diffusion 1.5 and CLIP ViT-L/14 folders (the starting point of training;
its restorations are Stable Diffusion's img2img guided by the caption until the new parts are trained) and save it:

    python examples/quickstart.py photo.png --sd path/to/stable-diffusion-v1-5 \
        --clip path/to/clip-vit-large-patch14 --save path/to/sspir-untrained -o restored.png

Add `--captioner path/to/llava-1.5-7b-hf` to caption the image with a vision-language model.
"""

import argparse
import os


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", help="low-quality input image")
    parser.add_argument("-o", "--output", required=True, help="where to write the restored PNG")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", help="a saved SSP-IR pipeline folder or Hub id (default: the bundled demo model)")
    source.add_argument("--sd", help="a Stable Diffusion 1.5 folder or Hub id (builds an untrained SSP-IR)")
    parser.add_argument("--clip", help="CLIP ViT-L/14 vision folder or Hub id (with --sd)")
    parser.add_argument("--save", help="save the pipeline built with --sd here")
    parser.add_argument("--captioner", help="a vision-language model folder or Hub id (LLaVA, Qwen2-VL, ...)")
    parser.add_argument("--prompt", help="describe the image yourself instead of captioning it")
    parser.add_argument("--upscale", type=float, default=4)
    parser.add_argument("--steps", type=int, help="denoising steps (default: the model's recommended setting)")
    parser.add_argument("--tile-size", type=int, default=None, help="tile size in output pixels for large outputs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    args = parser.parse_args()
    # Check what can be checked before the (slow) imports and model loading.
    if not os.path.isfile(args.image):
        parser.error(f"{args.image} is not a file")
    if os.path.exists(args.output) and not args.overwrite:
        parser.error(f"{args.output} exists; pass --overwrite to replace it")
    if not os.path.isdir(os.path.dirname(os.path.abspath(args.output))):
        parser.error(f"the folder of --output {args.output} does not exist")
    if args.sd and not args.clip:
        parser.error("--sd needs --clip")
    if not args.sd and (args.clip or args.save):
        parser.error("--clip and --save go with --sd")
    return args


def main() -> None:
    args = parse_args()

    import torch
    from diffusers import UniPCMultistepScheduler
    from PIL import Image

    from diffusers_sspir import SSPIRPipeline, VLMCaptioner, demo_model_path

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    if not args.sd:
        try:
            model = args.model or demo_model_path()
        except FileNotFoundError as error:
            raise SystemExit(f"error: {error} Or pass --model.") from error
        pipe = SSPIRPipeline.from_pretrained(model, dtype=dtype)
    else:
        pipe = SSPIRPipeline.from_stable_diffusion(args.sd, image_encoder=args.clip, dtype=dtype)
        if args.save:
            pipe.save_pretrained(args.save)
    pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config)
    pipe.to(device)
    if args.captioner:
        pipe.captioner = VLMCaptioner(args.captioner, device=device, dtype=dtype)

    result = pipe(
        Image.open(args.image),
        prompt=args.prompt,
        upscale=args.upscale,
        num_inference_steps=args.steps,
        tile_size=args.tile_size,
        generator=torch.Generator(device).manual_seed(args.seed),
    )
    result.images[0].save(args.output)
    print(f"prompt: {result.prompts[0]!r}\nwrote {args.output}")


if __name__ == "__main__":
    main()
