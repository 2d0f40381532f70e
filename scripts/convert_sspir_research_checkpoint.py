"""Convert a checkpoint of the authors' SSP-IR research code into a diffusers-sspir pipeline folder.

    python scripts/convert_sspir_research_checkpoint.py --checkpoint runs/checkpoint-100000 \
        --stable_diffusion ./stable-diffusion-v1-5 --image_encoder ./clip-vit-large-patch14 --output ./sspir-paper

`--checkpoint` is a `checkpoint-N/` folder of the research `train.py` (`unet/`, `controlnet/`, `refine/refine.pt`);
the final `--output_dir` of a research run is not usable (its UNet files overwrite the ControlNet's). The result
loads with `SSPIRPipeline.from_pretrained(OUTPUT)`. Library function:
`diffusers_sspir.research_checkpoint.convert_research_checkpoint`.
"""

import argparse
import sys

from diffusers_sspir.research_checkpoint import ResearchCheckpointError, convert_research_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="research checkpoint folder (unet/, controlnet/, refine/)")
    parser.add_argument("--stable_diffusion", required=True, help="Stable Diffusion 1.5 folder or Hub id")
    parser.add_argument("--image_encoder", required=True, help="CLIP vision encoder folder or Hub id")
    parser.add_argument("--output", required=True, help="folder to write the SSPIRPipeline to")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing pipeline folder at --output")
    args = parser.parse_args(argv)
    try:
        convert_research_checkpoint(
            args.checkpoint, args.stable_diffusion, args.image_encoder, output=args.output, overwrite=args.overwrite
        )
    except (ResearchCheckpointError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}; load it with SSPIRPipeline.from_pretrained({args.output!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
