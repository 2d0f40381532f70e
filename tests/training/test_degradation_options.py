"""The training scripts' degradation options: --degradation_config (nested or Real-ESRGAN's flat names) and
--gt_usm."""

import argparse
import json

import pytest

from diffusers_sspir.data.degradations import SECOND_STAGE
from diffusers_sspir.training.arguments import FULL, LORA, build_parser
from diffusers_sspir.training.trainer import load_degradation_config


def _args(tmp_path, config=None, **extra):
    path = None
    if config is not None:
        path = tmp_path / "degradation.json"
        path.write_text(json.dumps(config))
    return argparse.Namespace(degradation_config=path, scale=4, **extra)


def test_flat_and_nested_names_and_gt_usm(tmp_path):
    config = load_degradation_config(_args(tmp_path, {"second_blur_prob": 0.5, "first": {"jpeg_range": [60, 95]}}))
    assert config.second.blur_prob == 0.5 and config.first.jpeg_range == (60, 95)
    assert config.second.blur_sigma == SECOND_STAGE.blur_sigma and not config.gt_usm
    assert load_degradation_config(_args(tmp_path, gt_usm=True)).gt_usm


@pytest.mark.parametrize(
    "config, message",
    [({"scale": 2}, "sets scale 2 but --scale is 4"), ([1, 2], "JSON object"), ({"blur": 1}, "unknown degradation")],
)
def test_bad_configs_are_named(tmp_path, config, message):
    with pytest.raises(ValueError, match=message):
        load_degradation_config(_args(tmp_path, config))


@pytest.mark.parametrize("mode", [FULL, LORA])
def test_gt_usm_is_an_option_of_both_scripts(mode):
    parser = build_parser(mode)
    assert "--gt_usm" in parser.format_help()
