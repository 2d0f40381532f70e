"""The captioner as an optional pipeline component: listed, moved, offloaded, saved by reference, loaded lazily."""

import json
import logging
import shutil

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline

from diffusers_sspir import FixedCaptioner, SSPIRPipeline, VLMCaptioner, testing
from diffusers_sspir.pipelines.pipeline_sspir import DEFAULT_ADDED_PROMPT
from tests.pipelines.test_pipeline_sspir import call_kwargs, make_pipe


@pytest.fixture(scope="module")
def tiny_llava_path(tmp_path_factory) -> str:
    return testing.make_tiny_llava(tmp_path_factory.mktemp("tiny_llava"))


def vlm_captioner(path, **kwargs) -> VLMCaptioner:
    return VLMCaptioner(path, **{"max_new_tokens": 4, "do_sample": False, **kwargs})


def settings(captioner) -> dict:
    return {key: value for key, value in captioner.config.items() if not key.startswith("_")}


def record(folder) -> dict:
    return json.loads((folder / "captioner" / "config.json").read_text())


def test_captioner_is_an_optional_component(tiny_llava_path):
    captioner = vlm_captioner(tiny_llava_path)
    pipe = make_pipe(captioner=captioner)
    assert "captioner" in pipe._optional_components
    assert pipe.components["captioner"] is captioner
    assert pipe.config.captioner == ("diffusers_sspir.captioners.vlm", "VLMCaptioner")
    assert pipe.model_cpu_offload_seq.split("->")[:2] == ["upscaler", "captioner"]  # in call order
    # `pipe.components` passes it on to another pipeline
    other = SSPIRPipeline(**pipe.components)
    assert other.captioner is captioner
    # None is allowed, and assigning one later registers it
    bare = make_pipe()
    assert bare.captioner is None and bare.components["captioner"] is None
    bare.captioner = FixedCaptioner("a wall")
    assert bare.config.captioner == ("diffusers_sspir.captioners.base", "FixedCaptioner")


def test_fixed_captioner_is_saved_and_loaded(tmp_path):
    pipe = make_pipe(captioner=FixedCaptioner("a stone wall"))
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["captioner"] == ["diffusers_sspir.captioners.base", "FixedCaptioner"]
    assert record(tmp_path)["text"] == "a stone wall"
    assert not [p for p in (tmp_path / "captioner").iterdir() if p.name != "config.json"]  # a record, no weights

    loaded = SSPIRPipeline.from_pretrained(tmp_path)
    assert isinstance(loaded.captioner, FixedCaptioner) and loaded.captioner.text == "a stone wall"
    assert loaded(**call_kwargs(num_inference_steps=1)).prompts == [f"a stone wall, {DEFAULT_ADDED_PROMPT}"]
    # an explicit captioner, or None, overrides the record
    assert SSPIRPipeline.from_pretrained(tmp_path, captioner=None).captioner is None
    other = SSPIRPipeline.from_pretrained(tmp_path, captioner=lambda images: ["a lake"] * len(images))
    assert other(**call_kwargs(num_inference_steps=1)).prompts == [f"a lake, {DEFAULT_ADDED_PROMPT}"]
    # diffusers' own loader, through the stub, reads the same record
    generic = DiffusionPipeline.from_pretrained(tmp_path, custom_pipeline="pipeline_sspir", trust_remote_code=True)
    assert isinstance(generic.captioner, FixedCaptioner) and generic.captioner.text == "a stone wall"


def test_a_changed_setting_is_what_gets_saved(tmp_path):
    captioner = FixedCaptioner("first")
    pipe = make_pipe(captioner=captioner)
    captioner.text = "second"
    pipe.save_pretrained(tmp_path)
    assert SSPIRPipeline.from_pretrained(tmp_path).captioner.text == "second"


def test_vlm_captioner_is_saved_by_reference_and_loads_lazily(tiny_llava_path, tmp_path):
    captioner = vlm_captioner(tiny_llava_path, prompt="Describe the photo.", dtype=torch.float32)
    pipe = make_pipe(captioner=captioner)
    expected = pipe(**call_kwargs(num_inference_steps=1)).prompts
    pipe.save_pretrained(tmp_path / "saved")

    saved = record(tmp_path / "saved")
    assert saved["_class_name"] == "VLMCaptioner"
    assert saved["model"] == tiny_llava_path and saved["processor"] is None
    assert (saved["prompt"], saved["max_new_tokens"], saved["do_sample"], saved["dtype"]) == (
        "Describe the photo.", 4, False, "float32",
    )  # fmt: skip
    assert not list((tmp_path / "saved" / "captioner").rglob("*.safetensors"))  # the VLM's weights are not copied

    loaded = SSPIRPipeline.from_pretrained(tmp_path / "saved")
    assert isinstance(loaded.captioner, VLMCaptioner) and not loaded.captioner.is_loaded  # loads on first use
    assert settings(loaded.captioner) == settings(captioner)  # an equal record
    assert loaded(**call_kwargs(num_inference_steps=1)).prompts == expected
    assert loaded.captioner.is_loaded


def test_a_missing_vlm_is_only_an_error_when_a_caption_is_needed(tiny_llava_path, tmp_path):
    model = tmp_path / "llava"
    shutil.copytree(tiny_llava_path, model)
    make_pipe(captioner=vlm_captioner(str(model))).save_pretrained(tmp_path / "saved")
    shutil.rmtree(model)

    pipe = SSPIRPipeline.from_pretrained(tmp_path / "saved")  # loads: the VLM is not needed yet
    assert pipe(**call_kwargs(num_inference_steps=1, prompt="a cat")).prompts[0].startswith("a cat")
    with pytest.raises(OSError, match="cannot load its vision-language model .*captioner="):
        pipe(**call_kwargs(num_inference_steps=1))


def test_save_captioner_model_copies_the_vlm(tiny_llava_path, tmp_path):
    model = tmp_path / "llava"
    shutil.copytree(tiny_llava_path, model)
    captioner = vlm_captioner(str(model))
    pipe = make_pipe(captioner=captioner)
    expected = pipe(**call_kwargs(num_inference_steps=1)).prompts
    pipe.save_pretrained(tmp_path / "saved", save_captioner_model=True)
    shutil.rmtree(model)

    assert record(tmp_path / "saved")["model"] == "model"
    assert list((tmp_path / "saved" / "captioner" / "model").glob("*.safetensors"))
    assert captioner.config.model == str(model)  # the captioner itself still names its source
    loaded = SSPIRPipeline.from_pretrained(tmp_path / "saved")
    assert loaded(**call_kwargs(num_inference_steps=1)).prompts == expected
    with pytest.raises(ValueError, match="save_captioner_model"):
        make_pipe(captioner=FixedCaptioner("x")).save_pretrained(tmp_path / "other", save_captioner_model=True)


def test_a_captioner_of_your_own_is_not_saved(tmp_path, caplog):
    def captioner(images):
        return ["a lake"] * len(images)

    pipe = make_pipe(captioner=captioner)
    with caplog.at_level(logging.WARNING):
        pipe.save_pretrained(tmp_path)
    assert "is not saved" in caplog.text
    assert json.loads((tmp_path / "model_index.json").read_text())["captioner"] == [None, None]
    assert pipe.captioner is captioner and pipe.config.captioner[0] is not None  # the pipeline keeps it
    assert SSPIRPipeline.from_pretrained(tmp_path).captioner is None


def test_a_record_is_checked(tmp_path, caplog):
    make_pipe(captioner=FixedCaptioner("x")).save_pretrained(tmp_path)
    config = tmp_path / "captioner" / "config.json"
    config.write_text(json.dumps({"_class_name": "FixedCaptioner", "text": 3}))
    with pytest.raises(ValueError, match=r"captioner/config.json: `text` of FixedCaptioner must be a string"):
        SSPIRPipeline.from_pretrained(tmp_path)
    config.write_text(json.dumps({"_class_name": "FixedCaptioner", "text": "x", "colour": "red"}))
    with pytest.raises(ValueError, match=r"takes no settings \['colour'\]"):
        SSPIRPipeline.from_pretrained(tmp_path)


def test_a_record_may_not_turn_on_remote_code(tiny_llava_path, tmp_path, caplog):
    captioner = vlm_captioner(tiny_llava_path, model_kwargs={"trust_remote_code": True})
    assert captioner.config.model_kwargs == {"trust_remote_code": True}
    make_pipe(captioner=captioner).save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING):
        loaded = SSPIRPipeline.from_pretrained(tmp_path)
    assert "trust_remote_code" in caplog.text and loaded.captioner.config.model_kwargs is None


def test_a_folder_from_before_loads_without_a_captioner(tmp_path):
    make_pipe().save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    del index["captioner"]
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    assert SSPIRPipeline.from_pretrained(tmp_path).captioner is None


# ------------------------------------------------------------------ devices, dtypes, offload


def test_to_moves_and_casts_the_captioner(tiny_llava_path):
    pipe = make_pipe(captioner=vlm_captioner(tiny_llava_path))
    pipe.to(torch.bfloat16)
    assert pipe.captioner.dtype == torch.bfloat16 and pipe.unet.dtype == torch.bfloat16
    assert pipe.captioner.config.dtype == "bfloat16"  # what a save then records
    assert pipe.dtype == torch.bfloat16


def test_to_reaches_a_captioner_not_loaded_yet(tiny_llava_path):
    captioner = vlm_captioner(tiny_llava_path, lazy=True)
    pipe = make_pipe(captioner=captioner)
    pipe.to(torch.float64)
    assert not captioner.is_loaded and captioner.dtype == torch.float64
    captioner.load()
    assert captioner.model.dtype == torch.float64


def test_a_captioner_placed_apart_stays_there(tiny_llava_path, caplog):
    """A captioner the user put on a device of its own is not moved by `pipe.to`, and a warning says so (the meta
    device stands in for a second accelerator)."""
    captioner = vlm_captioner(tiny_llava_path)
    pipe = make_pipe(captioner=captioner)
    captioner.to("meta")
    with caplog.at_level(logging.WARNING):
        pipe.to("cpu", torch.bfloat16)
    assert captioner.device.type == "meta" and captioner.dtype == torch.float32
    assert pipe.unet.dtype == torch.bfloat16 and pipe.device.type == "cpu"  # the captioner does not count
    assert "captioner stays on meta" in caplog.text


def test_model_offload_hooks_the_captioner(tiny_llava_path):
    """`enable_model_cpu_offload` chains the captioner after the upscaler: it is on the execution device only while
    it describes. Without a GPU the hooks use the CPU, which still runs the whole chain."""
    pipe = make_pipe(captioner=vlm_captioner(tiny_llava_path))
    expected = pipe(**call_kwargs(num_inference_steps=1))
    pipe.enable_model_cpu_offload(device="cpu")
    assert hasattr(pipe.captioner, "_hf_hook")
    assert len(pipe._all_hooks) == 8  # seven chained models and the ControlNet
    out = pipe(**call_kwargs(num_inference_steps=1))
    assert out.prompts == expected.prompts
    np.testing.assert_array_equal(out.images, expected.images)


def test_sequential_offload_loads_and_hooks_a_lazy_captioner(tiny_llava_path):
    """Only the hooks are checked: with the CPU as execution device, accelerate 1.16's sequential offload fails
    inside any transformers 5 model (the text encoder too), a restore included."""
    pipe = make_pipe(captioner=vlm_captioner(tiny_llava_path, lazy=True))
    pipe.enable_sequential_cpu_offload(device="cpu")
    assert pipe.captioner.is_loaded
    hooked = [m for m in pipe.captioner.model.modules() if getattr(m, "_hf_hook", None) is not None]
    assert hooked and pipe.captioner._execution_device.type == "cpu"


def test_a_qwen2_vl_captioner_is_a_component_too():
    model, processor = testing.make_tiny_qwen2_vl()
    captioner = VLMCaptioner(model, processor=processor, max_new_tokens=3, do_sample=False)
    pipe = make_pipe(captioner=captioner)
    expected = pipe(**call_kwargs(num_inference_steps=1)).prompts
    assert expected[0] != DEFAULT_ADDED_PROMPT  # a caption was made
    pipe.enable_model_cpu_offload(device="cpu")
    assert hasattr(pipe.captioner, "_hf_hook")
    assert pipe(**call_kwargs(num_inference_steps=1)).prompts == expected
    pipe.remove_all_hooks()
    pipe.to(torch.bfloat16)
    assert captioner.model.dtype == torch.bfloat16
