"""Tiny random SSP-IR components built from configs (no network), shared by the tests."""

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import (
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModel,
)

from diffusers_sspir import ImageTokenRefiner, SSPIRControlNetModel, SSPIRUNet2DConditionModel, StructureProcessor
from diffusers_sspir.models import is_branch_parameter

UNET_CONFIG = dict(
    block_out_channels=(8, 16),
    layers_per_block=1,
    sample_size=16,
    in_channels=4,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=16,
    attention_head_dim=4,
    norm_num_groups=4,
)
VAE_CONFIG = dict(
    block_out_channels=(8, 8, 8, 8),
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    latent_channels=4,
    norm_num_groups=4,
    sample_size=32,
)
SCHEDULER_CONFIG = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
)
IMAGE_EMBED_DIM = 12


def make_tokenizer() -> CLIPTokenizer:
    """A CLIP BPE tokenizer over single letters and a few merges; every lowercase word encodes."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in letters + ",.!?-0123456789":
        vocab.setdefault(char, len(vocab))
        vocab.setdefault(char + "</w>", len(vocab))
    merges = [("e", "r</w>"), ("t", "h"), ("th", "e</w>")]
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def make_text_encoder(vocab_size: int) -> CLIPTextModel:
    config = CLIPTextConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        vocab_size=vocab_size,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        projection_dim=16,
    )
    return CLIPTextModel(config).eval()


def make_image_encoder() -> CLIPVisionModel:
    config = CLIPVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        projection_dim=16,
    )
    return CLIPVisionModel(config).eval()


def make_feature_extractor() -> CLIPImageProcessor:
    return CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})


def make_stable_diffusion_components(seed: int = 0) -> dict:
    """The components of a tiny random Stable Diffusion 1.5-shaped pipeline."""
    torch.manual_seed(seed)
    tokenizer = make_tokenizer()
    return {
        "unet": UNet2DConditionModel(**UNET_CONFIG).eval(),
        "vae": AutoencoderKL(**VAE_CONFIG).eval(),
        "text_encoder": make_text_encoder(len(tokenizer)),
        "tokenizer": tokenizer,
        "scheduler": DDIMScheduler(**SCHEDULER_CONFIG),
    }


def randomize_branches(model: torch.nn.Module, seed: int = 0, std: float = 0.3) -> None:
    """Gives the zero-initialised SSP-IR weights random values, as training would."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if is_branch_parameter(name) or "controlnet_" in name or "conv_out" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * std)


BRANCH_TYPES = ("transformer", "attention")


def make_sspir_components(seed: int = 0, trained: bool = True, branch_type: str = "transformer") -> dict:
    """The components of a tiny SSP-IR pipeline with branches of `branch_type`; `trained` gives the zero-initialised
    parts random values."""
    sd = make_stable_diffusion_components(seed)
    torch.manual_seed(seed)
    unet = SSPIRUNet2DConditionModel(**UNET_CONFIG, branch_type=branch_type, image_embed_dim=IMAGE_EMBED_DIM).eval()
    unet.load_state_dict(sd["unet"].state_dict(), strict=False)
    controlnet = SSPIRControlNetModel.from_unet(unet).eval()
    structure_processor = StructureProcessor(
        block_out_channels=(4, 4, 8, 8), conditioning_embedding_channels=UNET_CONFIG["block_out_channels"][0]
    ).eval()
    components = {
        **sd,
        "unet": unet,
        "controlnet": controlnet,
        "structure_processor": structure_processor,
        "image_encoder": make_image_encoder(),
        "feature_extractor": make_feature_extractor(),
        "image_refiner": ImageTokenRefiner(in_dim=16, hidden_dim=16, out_dim=IMAGE_EMBED_DIM).eval(),
    }
    if trained:
        for i, name in enumerate(("unet", "controlnet", "structure_processor")):
            randomize_branches(components[name], seed=seed + i)
    return components


def save_stable_diffusion(root) -> tuple:
    """Saves a tiny Stable Diffusion pipeline and a tiny CLIP vision encoder (with its processor) under `root`, as
    `from_stable_diffusion` finds real checkpoints; returns `(sd_pipeline, sd_folder, clip_folder)`."""
    from diffusers import StableDiffusionPipeline

    sd = StableDiffusionPipeline(
        **make_stable_diffusion_components(),
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    sd.save_pretrained(root / "sd")
    make_image_encoder().save_pretrained(root / "clip")
    make_feature_extractor().save_pretrained(root / "clip")
    return sd, root / "sd", root / "clip"
