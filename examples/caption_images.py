"""Caption a folder of images into `captions/<stem>.txt`, as SSP-IR's training data needs.

With a vision-language model (any folder or Hub id that transformers' AutoModelForImageTextToText loads: LLaVA-1.5 in
the llava-hf format, Qwen2-VL, SmolVLM, ...), asked SSP-IR's question about each image:

    python examples/caption_images.py train/gt --captioner llava-hf/llava-1.5-7b-hf --batch-size 8

(captions of a training set's `gt/` or `lq/` folder go next to it, into `train/captions/`, where training reads them;
of any other folder into `FOLDER/captions/`; `--output` chooses) or with one fixed caption for every image:

    python examples/caption_images.py train/gt --captioner "fixed:a photo"

Batched, resumable (images that already have a caption are skipped), with a progress bar. `sspir caption` is the same
on the command line, and runs on many GPUs under torchrun or accelerate launch (docs/cli.md); both call
`diffusers_sspir.captioners.caption_folder`.
"""

import argparse

from diffusers_sspir.captioners import CAPTIONER_SPEC_HELP, captioner_from_spec, parse_captioner_spec


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="the folder of images (its subfolders too with --recursive)")
    parser.add_argument("--captioner", required=True, metavar="SPEC", help=CAPTIONER_SPEC_HELP)
    parser.add_argument(
        "--output", help="where to write <stem>.txt (default: FOLDER/captions; PARENT/captions for gt/ or lq/)"
    )
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=512, help="the longest caption, in tokens")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--recursive", action="store_true", help="also the images of subfolders, into captions/<subfolder>/<stem>.txt"
    )
    parser.add_argument("--overwrite", action="store_true", help="caption again images that have a caption")
    return parser.parse_args()


def main() -> None:
    args = parse_args()

    import torch

    from diffusers_sspir.captioners import caption_folder

    try:
        kind, _ = parse_captioner_spec(args.captioner)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    if kind == "none":
        raise SystemExit("error: --captioner none: nothing to caption with; pass a model or fixed:TEXT.")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    model_kwargs = dict(batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, device=device, dtype=dtype)
    captioner = captioner_from_spec(args.captioner, **model_kwargs)  # the model settings serve a model only
    result = caption_folder(
        args.folder,
        captioner,
        output_dir=args.output,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
        generator_seed=args.seed,
        recursive=args.recursive,
    )
    for path, reason in result.failed.items():
        print(f"failed: {path}: {reason}")
    print(
        f"captioned {len(result.captioned)}, skipped {len(result.skipped)} already captioned, "
        f"failed {len(result.failed)}; captions in {result.output_dir}"
    )
    if result.failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
