"""Building an untrained SSP-IR from a Stable Diffusion folder or pipeline: the start of every training run."""

import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UniPCMultistepScheduler

from diffusers_sspir import FixedCaptioner, SSPIRControlNetModel, SSPIRPipeline, SSPIRUNet2DConditionModel, testing
from diffusers_sspir.models import is_branch_parameter

from ..models.test_branches import check_dual_prior_processors
from .test_pipeline_sspir import call_kwargs


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return testing.save_stable_diffusion(tmp_path_factory.mktemp("checkpoints"))


def build(folders, **kwargs):
    sd, sd_folder, clip_folder = folders
    pipe = SSPIRPipeline.from_stable_diffusion(sd_folder, image_encoder=clip_folder, image_embed_dim=12, **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("branch_type", testing.BRANCH_TYPES)
def test_builds_from_folders_with_sd_weights_and_zero_branches(folders, branch_type):
    sd = folders[0]
    pipe = build(folders, branch_type=branch_type)
    assert pipe.unet.config.branch_type == pipe.controlnet.config.branch_type == branch_type
    assert isinstance(pipe.unet, SSPIRUNet2DConditionModel) and isinstance(pipe.controlnet, SSPIRControlNetModel)
    assert isinstance(pipe.scheduler, DDIMScheduler)
    sspir_state = pipe.unet.state_dict()
    for key, value in sd.unet.state_dict().items():
        torch.testing.assert_close(sspir_state[key], value, rtol=0, atol=0)
    output = "proj_out" if branch_type == "transformer" else "to_out"  # the branches' output projections
    branches = {k: v for k, v in sspir_state.items() if is_branch_parameter(k) and output in k}
    assert branches and all(v.abs().max() == 0 for v in branches.values())
    assert pipe.structure_processor.conv_out.weight.abs().max() == 0
    assert pipe.image_refiner.config.in_dim == 16 and pipe.image_refiner.config.out_dim == 12
    torch.testing.assert_close(
        pipe.controlnet.down_blocks.state_dict()["0.resnets.0.conv1.weight"],
        sd.unet.down_blocks.state_dict()["0.resnets.0.conv1.weight"],
    )


@pytest.mark.parametrize("branch_type", testing.BRANCH_TYPES)
def test_dual_prior_processors_in_a_built_and_a_loaded_pipeline(folders, branch_type, tmp_path):
    """`from diffusers_sspir import DualPriorAttnProcessor` is what the models' prior layers run, built or loaded."""
    pipe = build(folders, branch_type=branch_type)
    pipe.save_pretrained(tmp_path)
    loaded = SSPIRPipeline.from_pretrained(tmp_path)
    for model in (pipe.unet, pipe.controlnet, loaded.unet, loaded.controlnet):
        check_dual_prior_processors(model, branch_type)


@pytest.mark.parametrize("branch_type", testing.BRANCH_TYPES)
def test_untrained_model_denoises_exactly_like_stable_diffusion(folders, branch_type):
    sd = folders[0]
    pipe = build(folders, branch_type=branch_type)
    latents, t, text = torch.randn(1, 4, 8, 8), torch.tensor(400), torch.randn(1, 7, 16)
    with torch.no_grad():
        features = pipe.structure_processor(torch.rand(1, 3, 64, 64)).features
        down, mid = pipe.controlnet(latents, t, text, features, image_embeds=torch.randn(1, 4, 12), return_dict=False)
        assert all(r.abs().max() == 0 for r in (*down, mid))
        ours = pipe.unet(latents, t, text, image_embeds=torch.randn(1, 4, 12), down_block_additional_residuals=down,
                         mid_block_additional_residual=mid).sample  # fmt: skip
        stock = sd.unet(latents, t, text).sample
    torch.testing.assert_close(ours, stock, rtol=0, atol=0)


def test_builds_from_a_loaded_pipeline_with_overrides(folders):
    sd, _, clip_folder = folders
    scheduler = UniPCMultistepScheduler.from_config(sd.scheduler.config)
    pipe = SSPIRPipeline.from_stable_diffusion(
        sd, image_encoder=testing.make_image_encoder(), feature_extractor=testing.make_feature_extractor(),
        captioner=FixedCaptioner("a bridge"), image_embed_dim=12, scheduler=scheduler,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    assert pipe.scheduler is scheduler
    assert pipe(**call_kwargs()).prompts[0].startswith("a bridge")


def test_untrained_pipeline_saves_and_loads(folders, tmp_path):
    pipe = build(folders)
    expected = pipe(**call_kwargs()).images
    pipe.save_pretrained(tmp_path)
    loaded = SSPIRPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    torch.testing.assert_close(torch.from_numpy(loaded(**call_kwargs()).images), torch.from_numpy(expected))


def test_errors(folders):
    sd = folders[0]
    with pytest.raises(TypeError, match="unknown components"):
        SSPIRPipeline.from_stable_diffusion(sd, image_encoder=testing.make_image_encoder(), refiner=None)
    with pytest.raises(ValueError, match="`feature_extractor` is required"):
        SSPIRPipeline.from_stable_diffusion(sd, image_encoder=testing.make_image_encoder(), image_embed_dim=12)


@pytest.mark.parametrize("keyword", ["dtype", "torch_dtype"])
def test_builds_in_the_requested_dtype(folders, keyword):
    pipe = build(folders, **{keyword: torch.bfloat16})
    for name, component in pipe.components.items():
        if isinstance(component, torch.nn.Module):
            assert component.dtype == torch.bfloat16, name
    assert torch.isfinite(pipe(**call_kwargs(output_type="pt")).images).all()


def test_structure_processor_matches_a_vae_that_downsamples_4x(folders):
    sd = folders[0]
    vae = AutoencoderKL(**{**testing.VAE_CONFIG, "down_block_types": ("DownEncoderBlock2D",) * 3,
                           "up_block_types": ("UpDecoderBlock2D",) * 3, "block_out_channels": (8, 8, 8)})  # fmt: skip
    pipe = SSPIRPipeline.from_stable_diffusion(
        sd, image_encoder=testing.make_image_encoder(), feature_extractor=testing.make_feature_extractor(),
        image_embed_dim=12, vae=vae,
    )  # fmt: skip
    assert pipe.vae_scale_factor == 4
    assert pipe.structure_processor.config.block_out_channels == (16, 32, 96)
    pipe.set_progress_bar_config(disable=True)
    result = pipe(**call_kwargs())
    assert result.images[0].size == result.structure_images[0].size


def test_a_vae_the_structure_processor_cannot_match_is_an_error(folders):
    sd = folders[0]
    vae = AutoencoderKL(**{**testing.VAE_CONFIG, "down_block_types": ("DownEncoderBlock2D",) * 5,
                           "up_block_types": ("UpDecoderBlock2D",) * 5, "block_out_channels": (8,) * 5})  # fmt: skip
    with pytest.raises(ValueError, match="downsamples 16x"):
        SSPIRPipeline.from_stable_diffusion(
            sd, image_encoder=testing.make_image_encoder(), feature_extractor=testing.make_feature_extractor(), vae=vae
        )
