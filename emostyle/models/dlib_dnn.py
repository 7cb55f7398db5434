"""Reading a network that dlib's DNN toolkit serialized (`dlib::serialize(net, out)`), without dlib.

dlib writes a network from its loss layer down: each layer writes a version integer and then its
sub-network, so the file holds every version first, then the input layer, then each layer's
details from the input up (a name such as "con_4", its fields, its parameter tensor), each
followed by the layer's scratch state (three booleans and two or three tensors, mostly empty).
Tag and skip layers write only their version; a reader that knows the network's pattern does
not need them. The encodings (dlib/serialize.h, dlib/cuda/tensor.h):

    integer   a control byte (low nibble: byte count; 0x80: negative), then little-endian bytes
    float     two integers, mantissa m and exponent e: m * 2**e (e = 32000..32002: inf, -inf, nan)
    bool      the character '0' or '1'
    string    an integer length, then the bytes
    tensor    version 2, then num_samples, k, nr, nc, then float32 little-endian values
    alias     version 1, then num_samples, k, nr, nc (a view into the layer's parameter tensor)

`read_dlib_net` returns the layers as `DlibLayer` records from the input up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["DlibLayer", "read_dlib_net"]

_SPECIAL_EXPONENTS = {32000: math.inf, 32001: -math.inf, 32002: math.nan}


@dataclass
class DlibLayer:
    """One layer: its serialized name (e.g. "con_4"), its fields and its parameters (float32)."""

    kind: str
    fields: dict = field(default_factory=dict)
    params: np.ndarray | None = None


class _Reader:
    def __init__(self, data: bytes, name: str):
        self.data, self.pos, self.name = data, 0, name

    def fail(self, what: str) -> ValueError:
        return ValueError(f"{self.name}: {what} at byte {self.pos}; not a dlib network file, or a truncated one")

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise self.fail("the file ends early")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def integer(self) -> int:
        control = self.take(1)[0]
        size = control & 0x0F
        if size > 8 or control & 0x70:
            raise self.fail(f"bad integer control byte {control:#04x}")
        value = int.from_bytes(self.take(size), "little")
        return -value if control & 0x80 else value

    def real(self) -> float:
        mantissa, exponent = self.integer(), self.integer()
        if exponent in _SPECIAL_EXPONENTS:
            return _SPECIAL_EXPONENTS[exponent]
        return math.ldexp(mantissa, exponent)

    def boolean(self) -> bool:
        ch = self.take(1)
        if ch not in (b"0", b"1"):
            raise self.fail(f"bad boolean {ch!r}")
        return ch == b"1"

    def string(self) -> str:
        n = self.integer()
        if not 0 < n < 256:
            raise self.fail(f"bad string length {n}")
        return self.take(n).decode("ascii", errors="replace")

    def shape(self, version: int) -> tuple[int, int, int, int]:
        if self.integer() != version:
            raise self.fail(f"expected a tensor of version {version}")
        return tuple(self.integer() for _ in range(4))

    def tensor(self) -> np.ndarray:
        shape = self.shape(2)
        if min(shape) < 0:
            raise self.fail(f"bad tensor shape {shape}")
        count = math.prod(shape)
        return np.frombuffer(self.take(4 * count), "<f4").reshape(shape).astype(np.float32)


# Each layer's details after its name: (field, reader) pairs in the order dlib writes them.
# Fields whose name starts with "_" are read past and not kept.
_REALS4 = [("_lr_mult", "real"), ("_wd_mult", "real"), ("_bias_lr_mult", "real"), ("_bias_wd_mult", "real")]
_POOL = [("nr", "integer"), ("nc", "integer"), ("stride_y", "integer"), ("stride_x", "integer"),
         ("padding_y", "integer"), ("padding_x", "integer")]
_FIELDS = {
    "input_rgb_image_sized": [("avg_red", "real"), ("avg_green", "real"), ("avg_blue", "real"),
                              ("nr", "integer"), ("nc", "integer")],
    "con_4": [("params", "tensor"), ("num_filters", "integer"), ("nr", "integer"), ("nc", "integer"),
              ("stride_y", "integer"), ("stride_x", "integer"), ("padding_y", "integer"),
              ("padding_x", "integer"), ("filters", "alias"), ("biases", "alias"), *_REALS4],
    "affine_": [("params", "tensor"), ("gamma", "alias"), ("beta", "alias"), ("mode", "integer")],
    "relu_": [],
    "relu_2": [("disabled", "boolean")],
    "add_prev_": [],
    "max_pool_2": _POOL,
    "avg_pool_2": _POOL,
    "fc_2": [("num_outputs", "integer"), ("num_inputs", "integer"), ("params", "tensor"),
             ("weights", "alias"), ("biases", "alias"), ("bias_mode", "integer"), *_REALS4],
}
_FIELDS["con_5"] = _FIELDS["con_4"] + [("use_bias", "boolean")]
_FIELDS["con_6"] = _FIELDS["con_5"] + [("_use_relu", "boolean")]
_FIELDS["affine_2"] = _FIELDS["affine_"] + [("disabled", "boolean")]
_FIELDS["fc_3"] = _FIELDS["fc_2"] + [("use_bias", "boolean")]


def _details(reader: _Reader) -> DlibLayer:
    kind = reader.string()
    spec = _FIELDS.get(kind)
    if spec is None:
        raise reader.fail(f"a layer kind this reader does not know ({kind!r})")
    layer = DlibLayer(kind)
    for name, how in spec:
        value = reader.shape(1) if how == "alias" else getattr(reader, how)()
        if name == "params":
            layer.params = value.reshape(-1)
        elif not name.startswith("_"):
            layer.fields[name] = value
    return layer


def read_dlib_net(path: str | Path) -> tuple[DlibLayer, list[DlibLayer]]:
    """The loss layer and the layers from the input up (input layer first) of a dlib network file.

    Supports the layer kinds of dlib's ResNet face-recognition and metric networks (con, affine,
    relu, add_prev, max_pool, avg_pool, fc, input_rgb_image_sized); anything else raises a
    ValueError naming the kind."""
    path = Path(path)
    reader = _Reader(path.read_bytes(), str(path))
    if reader.integer() != 1:
        raise reader.fail("expected a loss layer of version 1")
    loss = DlibLayer(reader.string())
    if loss.kind == "loss_metric_2":
        loss.fields = dict(margin=reader.real(), dist_thresh=reader.real())
    elif loss.kind != "loss_metric_":
        raise reader.fail(f"a loss this reader does not know ({loss.kind!r}; expected dlib's metric loss)")
    # Versions, outermost first, until the input layer's name: add_layer writes 2, tag and skip
    # layers 1, the add_layer over the input 2 or 3. The first integer above 3 is the length of
    # the input layer's name.
    versions = []
    while True:
        start = reader.pos
        if (value := reader.integer()) > 3:
            break
        versions.append(value)
    if not versions:
        raise reader.fail("no layers")
    reader.pos = start  # back to the name's length
    input_version = versions.pop()
    layers = [_details(reader)]
    if layers[0].kind != "input_rgb_image_sized":
        raise reader.fail(f"an input layer this reader does not know ({layers[0].kind!r})")
    if set(versions) - {1, 2}:
        raise reader.fail(f"layer versions {sorted(set(versions))}; expected 1 (tag, skip) and 2 (add_layer)")
    for i in range(versions.count(2) + 1):
        layers.append(_details(reader))
        for _ in range(3):  # this_layer_setup_called, gradient_input_is_stale, output disabled
            reader.boolean()
        reader.tensor(), reader.tensor(), reader.tensor()  # x_grad, cached output, params_grad / grad_final
        if i == 0 and input_version == 3:
            reader.integer()  # sample expansion factor
    if reader.pos != len(reader.data):
        raise reader.fail(f"{len(reader.data) - reader.pos} bytes left after the last layer")
    return loss, layers
