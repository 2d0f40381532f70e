"""Last step of the demo-model recipe: copy the trained pipeline into the package, where `demo_model_path()` finds it.

    python examples/demo_model/export.py demo_work/sspir --output_dir src/diffusers_sspir/demo_model

Loads the run's final pipeline with `SSPIRPipeline.from_pretrained` (so what ships is exactly what loads) and saves
it again without the run's checkpoints, logs and validation images. `--vae DIR` ships that VAE instead of the run's:
one whose decoder was fine-tuned for texture by `train_vae.py --init_from ... --decoder_only`; it is refused unless
its encoder, and so every latent the model was trained on, is the run's own, weight for weight. Refuses a model
over the size limit, and an existing output folder unless `--overwrite` is given.
"""

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from diffusers import AutoencoderKL

from diffusers_sspir import SSPIRPipeline

SIZE_LIMIT_MB = 40
PACKAGE_FOLDER = Path(__file__).resolve().parents[2] / "src" / "diffusers_sspir" / "demo_model"
# Loader bookkeeping that save_pretrained copies into the configs: where the run was read from on this machine.
LOCAL_KEYS = ("_name_or_path", "is_local", "local_files_only")
MODEL_CARD = """---
library_name: diffusers
license: gpl-2.0
pipeline_tag: image-to-image
tags: [super-resolution, image-restoration, ssp-ir]
---

# SSP-IR demo model (diffusers-sspir)

A small SSP-IR pipeline bundled with diffusers-sspir so that `sspir restore photo.png -o out/` works on a fresh
machine. **It is not the paper's model**: it was trained from scratch, on a CPU, on crops of 31 photos
(scikit-image's bundled photos and four Debian wallpaper packages: mate-backgrounds, lomiri-wallpapers-16.04 and
-20.04, plasma-workspace-wallpapers), for x4 real-world super-resolution with Real-ESRGAN degradations; its VAE
decoder was then fine-tuned for texture on those and 35 more (lxqt-themes, kphotoalbum). It has no
language understanding (its text cross-attention is zero: prompts change nothing) and no Stable Diffusion behind
it; its recommended call settings (`recommended_settings` in `model_index.json`) are what `pipe(image)` and
`sspir restore` use by default. Its recipe, held-out results, data and licences are in the repository's
`docs/demo_model.md`; `examples/demo_model/train.sh` reproduces it.

The licence above is the most restrictive of the photos it was trained on (GPL-2+ photos of mate-backgrounds,
plasma-workspace-wallpapers and kphotoalbum, and share-alike ones of lomiri and lxqt-themes); the code is Apache-2.0.

```python
from diffusers_sspir import SSPIRPipeline, demo_model_path

pipe = SSPIRPipeline.from_pretrained(demo_model_path())
```
"""
COMPONENTS = (
    "vae",
    "text_encoder",
    "tokenizer",
    "unet",
    "controlnet",
    "structure_processor",
    "image_encoder",
    "feature_extractor",
    "image_refiner",
    "scheduler",
)


def swap_decoder(pipe: SSPIRPipeline, folder: Path) -> None:
    """Puts the VAE of `folder` in `pipe`, after checking that it encodes exactly as the pipeline's VAE does."""
    try:
        vae = AutoencoderKL.from_pretrained(folder, torch_dtype=torch.float32)
    except (OSError, ValueError) as error:
        sys.exit(f"error: --vae {folder}: not a VAE folder ({error})")
    ours, theirs = pipe.vae.state_dict(), vae.state_dict()
    encoder = [name for name in ours if name.startswith(("encoder.", "quant_conv."))]
    differ = [name for name in encoder if name not in theirs or not torch.equal(ours[name], theirs[name])]
    if differ or vae.config.scaling_factor != pipe.vae.config.scaling_factor:
        sys.exit(
            f"error: --vae {folder} encodes differently from the run's VAE ({len(differ)} encoder tensors differ, "
            f"scaling factor {vae.config.scaling_factor} vs {pipe.vae.config.scaling_factor}): only its decoder "
            "may change (train_vae.py --init_from ... --decoder_only)"
        )
    pipe.register_modules(vae=vae)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="The --output_dir of examples/train_sspir.py.")
    parser.add_argument("--output_dir", type=Path, default=PACKAGE_FOLDER, help="(default: the package's folder)")
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing model in --output_dir.")
    parser.add_argument(
        "--recommended_settings", type=json.loads, metavar="JSON",
        help="the call settings chosen on the validation crops, saved in model_index.json (SSPIRPipeline's "
        "recommended_settings), e.g. '{\"guidance_scale\": 1.0, \"num_inference_steps\": 20}'",
    )  # fmt: skip
    parser.add_argument("--vae", type=Path, help="ship this VAE (same encoder, a fine-tuned decoder) instead")
    args = parser.parse_args(argv)

    if args.output_dir.exists():
        if not args.output_dir.is_dir():
            sys.exit(f"error: --output_dir {args.output_dir} is a file; pass a folder")
        if any(args.output_dir.iterdir()):
            if not (args.output_dir / "model_index.json").is_file():
                sys.exit(f"error: --output_dir {args.output_dir} holds files but no pipeline; pass an empty folder")
            if not args.overwrite:
                sys.exit(f"error: {args.output_dir} already holds a model; pass --overwrite to replace it")
    args.output_dir.parent.mkdir(parents=True, exist_ok=True)
    pipe = SSPIRPipeline.from_pretrained(args.run_dir, dtype=torch.float32)
    if args.vae is not None:
        swap_decoder(pipe, args.vae)
    if args.recommended_settings is not None:
        try:
            pipe.register_to_config(recommended_settings=pipe.check_recommended_settings(args.recommended_settings))
        except ValueError as error:
            sys.exit(f"error: --recommended_settings: {error}")
    with tempfile.TemporaryDirectory(dir=args.output_dir.parent) as staging:
        staged = Path(staging) / "model"
        pipe.save_pretrained(staged)
        (staged / "README.md").write_text(MODEL_CARD)
        # save_pretrained's `pipeline_sspir.py` stub (one import of the installed package's pipeline) stays, so that
        # `DiffusionPipeline.from_pretrained(folder, custom_pipeline="pipeline_sspir", ...)` loads the folder offline.
        for config in staged.rglob("*.json"):
            content = json.loads(config.read_text())
            if any(key in content for key in LOCAL_KEYS):
                kept = {key: value for key, value in content.items() if key not in LOCAL_KEYS}
                config.write_text(json.dumps(kept, indent=2, sort_keys=True) + "\n")
        missing = [name for name in COMPONENTS if not any((staged / name).glob("*"))]
        if missing:
            sys.exit(f"error: the pipeline in {args.run_dir} lacks {missing}")
        size_mb = sum(path.stat().st_size for path in staged.rglob("*.safetensors")) / 2**20
        if size_mb > SIZE_LIMIT_MB:
            sys.exit(f"error: the weights take {size_mb:.1f} MB, over the {SIZE_LIMIT_MB} MB limit")
        if args.output_dir.exists():
            shutil.rmtree(args.output_dir)
        staged.rename(args.output_dir)
    print(f"exported {args.run_dir} to {args.output_dir}: {size_mb:.1f} MB of safetensors weights")


if __name__ == "__main__":
    main()
