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


def _random_processor(residual_blocks: int = 0) -> StructureProcessor:
    torch.manual_seed(0)
    processor = StructureProcessor(
        block_out_channels=(8, 16, 24, 32),
        conditioning_embedding_channels=16,
        residual_blocks=residual_blocks,
        residual_channels=6,
    ).double()
    with torch.no_grad():
        for parameter in processor.parameters():
            parameter.normal_(std=0.2)  # non-zero output convolution: the features depend on the input
    return processor


@pytest.mark.parametrize("tile_size, residual_blocks", [(32, 0), (48, 0), (64, 0), (32, 2), (48, 1)])
def test_tiled_forward_equals_the_untiled_one(tile_size, residual_blocks):
    processor = _random_processor(residual_blocks)
    image = torch.rand(1, 3, 136, 200, dtype=torch.float64)
    with torch.no_grad():
        whole, tiled = processor(image), processor(image, tile_size=tile_size)
    torch.testing.assert_close(tiled.features, whole.features, rtol=1e-10, atol=1e-10)
    for expected, got in zip(whole.rgb, tiled.rgb):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_receptive_field_is_the_reach_of_one_pixel():
    """Changing one input pixel changes outputs up to `receptive_field` pixels away and no further."""
    processor = _random_processor()
    assert processor.receptive_field == 23
    image = torch.rand(1, 3, 128, 128, dtype=torch.float64)
    changed = image.clone()
    changed[..., 64, 64] += 1.0
    with torch.no_grad():
        difference = (processor(changed).features - processor(image).features).abs().sum(dim=(0, 1))
    rows = difference.nonzero()[:, 0]
    # Feature cell i covers input pixels 8i .. 8i + 7; its receptive field reaches 23 pixels beyond them.
    reach = max(64 - 8 * rows.min().item(), 8 * rows.max().item() + 7 - 64)
    assert 23 - 8 < reach <= 23 + 7


def test_tile_size_must_be_a_multiple_of_the_downscale_factor():
    with pytest.raises(ValueError, match="`tile_size` must be a positive multiple of 8, got 20"):
        StructureProcessor()(torch.zeros(1, 3, 64, 64), tile_size=20)


def test_full_resolution_restorer_is_msrresnet_at_scale_1_and_starts_as_the_identity():
    plain = StructureProcessor(block_out_channels=(4, 8, 8), conditioning_embedding_channels=6)
    torch.nn.init.normal_(plain.conv_out.weight)
    with_restorer = StructureProcessor(
        block_out_channels=(4, 8, 8), conditioning_embedding_channels=6, residual_blocks=3, residual_channels=5
    )
    missing = with_restorer.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(key.startswith("preprocessor.") for key in missing)
    restorer = with_restorer.preprocessor
    assert len(restorer.body) == 3 and restorer.conv_first.out_channels == 5 and restorer.conv_last.out_channels == 3
    image = torch.rand(2, 3, 32, 24)
    out, reference = with_restorer(image), plain(image)
    assert [tuple(r.shape) for r in out.rgb] == [(2, 3, 32, 24), *(tuple(r.shape) for r in reference.rgb)]
    torch.testing.assert_close(out.rgb[0], image, rtol=0, atol=0)  # untrained: the image, unchanged
    torch.testing.assert_close(out.features, reference.features, rtol=0, atol=0)
    # Trained, it is image + conv_last(lrelu(conv_hr(body(lrelu(conv_first(image)))))), blocks x + conv2(relu(conv1 x))
    torch.nn.init.normal_(restorer.conv_last.weight, std=0.1)
    hidden = torch.nn.functional.leaky_relu(restorer.conv_first(image), 0.1)
    for block in restorer.body:
        hidden = hidden + block.conv2(torch.relu(block.conv1(hidden)))
    expected = image + restorer.conv_last(torch.nn.functional.leaky_relu(restorer.conv_hr(hidden), 0.1))
    torch.testing.assert_close(with_restorer(image).rgb[0], expected)
    (with_restorer(image).rgb[0].mean()).backward()
    assert all(p.grad is not None for p in restorer.parameters())


def test_receptive_field_counts_the_restorer():
    """Two residual blocks add 2 * 2 + 3 convolutions of reach 1; one moved pixel changes the full-resolution
    prediction exactly that far."""
    processor = _random_processor(residual_blocks=2)
    assert processor.receptive_field == 23 + 7
    image = torch.rand(1, 3, 64, 64, dtype=torch.float64)
    changed = image.clone()
    changed[..., 32, 32] += 1.0
    with torch.no_grad():
        difference = (processor(changed).rgb[0] - processor(image).rgb[0]).abs().sum(dim=(0, 1))
    rows = difference.nonzero()[:, 0]
    assert (rows.min().item(), rows.max().item()) == (32 - 7, 32 + 7)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"residual_blocks": -1}, "`residual_blocks` must be an integer >= 0, got -1"),
        ({"residual_blocks": 2, "residual_channels": 0}, "`residual_channels` must be an integer >= 1, got 0"),
        ({"residual_blocks": 1.5}, "`residual_blocks` must be an integer, got 1.5"),
        ({"residual_blocks": 1, "rgb_channels": 1}, "must equal `in_channels`"),
    ],
)
def test_bad_restorer_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        StructureProcessor(block_out_channels=(4, 8), conditioning_embedding_channels=6, **kwargs)
