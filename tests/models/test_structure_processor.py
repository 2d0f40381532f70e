import pytest
import torch

from diffusers_sspir import ImageTokenRefiner, StructureProcessor


def test_default_architecture_matches_the_paper():
    model = StructureProcessor()
    out = model(torch.rand(1, 3, 64, 48))
    assert out.features.shape == (1, 320, 8, 6)
    assert [tuple(r.shape) for r in out.rgb] == [(1, 3, 32, 24), (1, 3, 16, 12), (1, 3, 8, 6)]
    assert [stage[2].out_channels for stage in model.stages] == [32, 96, 256]
    assert all(stage[2].stride == (2, 2) for stage in model.stages)
    assert model.conv_out.weight.abs().max() == 0 and model.conv_out.bias.abs().max() == 0
    assert out.features.abs().max() == 0


def test_rgb_heads_and_features_are_trainable():
    model = StructureProcessor(block_out_channels=(4, 8, 8), conditioning_embedding_channels=6)
    torch.nn.init.normal_(model.conv_out.weight)
    features, rgb = model(torch.rand(2, 3, 16, 16), return_dict=False)
    (features.mean() + sum(r.mean() for r in rgb)).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_input_size_must_be_a_multiple_of_the_downscale_factor():
    with pytest.raises(ValueError, match="multiple of 8"):
        StructureProcessor()(torch.rand(1, 3, 30, 32))


def test_refiner_shapes_and_error():
    refiner = ImageTokenRefiner()
    assert refiner(torch.randn(1, 256, 1024)).shape == (1, 256, 512)
    linears = [m for m in refiner.layers if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(1024, 1024), (1024, 1024), (1024, 512)]
    with pytest.raises(ValueError, match="1024 features"):
        refiner(torch.randn(1, 256, 768))
