"""A TFLite model as a PyTorch module: the flatbuffer's operators, run in order by torch.

MediaPipe's face networks ship only as TFLite flatbuffers. To follow a gradient through them
(the offline profile's face guide) they must run in torch; this reader takes the file as it
is, reads its tensors and operators with the `tflite` package (the flatbuffer schema's
generated bindings, no TensorFlow), and `TFLiteGraph` executes the operator list with torch
ops, in TFLite's NHWC layout. Constant tensors become buffers (float16 weights are stored
float32, as TFLite's DEQUANTIZE gives them to the next operator).

Only the operators that the MediaPipe face models use are implemented (`OPS`); a model with
any other operator is refused when it is read, naming the operator. Semantics follow the
TFLite reference kernels: SAME padding puts the odd pixel after (bottom, right), fused
activations apply after the operator, MEAN/SUM reduce over the axes of their second input.

Parity with the ai-edge-litert interpreter on the three models of MediaPipe's Face Landmarker
bundle is a test (`tests/test_face_mesh.py`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["TFLiteGraph", "OPS"]

_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32}  # TensorType: FLOAT32, FLOAT16, INT32
_ACTIVATIONS = {0: lambda x: x, 1: F.relu, 2: lambda x: x.clamp(-1, 1), 3: lambda x: x.clamp(0, 6), 4: torch.tanh}


def _same_pad(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TFLite's SAME padding (before, after) of one spatial axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _nchw(x):
    return x.permute(0, 3, 1, 2)


def _nhwc(x):
    return x.permute(0, 2, 3, 1)


def _conv(x, w, b, options, depthwise: bool):
    kh, kw = w.shape[1:3]
    sh, sw = options.StrideH(), options.StrideW()
    dh, dw = options.DilationHFactor(), options.DilationWFactor()
    if not depthwise and kh == kw == sh == sw == 1:  # pointwise: a matrix product over the channels
        y = x @ w[:, 0, 0, :].T
        return _ACTIVATIONS[options.FusedActivationFunction()](y if b is None else y + b)
    padding = (0, 0)
    if options.Padding() == 0:  # SAME
        (t, btm), (l, r) = _same_pad(x.shape[1], kh, sh, dh), _same_pad(x.shape[2], kw, sw, dw)
        if t == btm and l == r:  # the convolution pads evenly itself, without a padded copy
            padding = (t, l)
        else:
            x = F.pad(x, (0, 0, l, r, t, btm))
    if depthwise:  # weights (1, kh, kw, C * multiplier)
        groups = x.shape[3]
        weight = w.permute(3, 0, 1, 2)
    else:  # weights (out, kh, kw, in)
        groups = 1
        weight = w.permute(0, 3, 1, 2)
    y = F.conv2d(_nchw(x), weight, b, stride=(sh, sw), padding=padding, dilation=(dh, dw), groups=groups)
    return _ACTIVATIONS[options.FusedActivationFunction()](_nhwc(y))


def _max_pool(x, options):
    kh, kw, sh, sw = options.FilterHeight(), options.FilterWidth(), options.StrideH(), options.StrideW()
    if options.Padding() == 0:
        (t, btm), (l, r) = _same_pad(x.shape[1], kh, sh), _same_pad(x.shape[2], kw, sw)
        x = F.pad(x, (0, 0, l, r, t, btm), value=float("-inf"))
    y = F.max_pool2d(_nchw(x), (kh, kw), (sh, sw))
    return _ACTIVATIONS[options.FusedActivationFunction()](_nhwc(y))


class _PReLU(torch.autograd.Function):
    """x times its slope (1 where x > 0, alpha where x < 0, 0 at 0), kept for the backward pass.

    relu(x) - alpha relu(-x), the plain form, took 40 % of the landmarker's forward and backward
    pass: nine elementwise passes there and back. Here the slope is torch's PReLU of sign(x) with
    slopes -alpha (exactly 1, alpha or 0), so the step runs four, and values and gradients are
    bitwise those of the plain form but for the sign of a zero (x or alpha zero), which no later
    sum tells apart; at x = 0 both gradients are zero. The mesh's whole guidance step runs 1.2x
    faster (benchmarks/bench_face_mesh.py, batch 12). Torch's PReLU alone is slower going back:
    it also computes the slopes' gradient, and the slopes are constants of the file."""

    @staticmethod
    def forward(ctx, x, alpha):
        slope = _nhwc(F.prelu(_nchw(x.sign()), -alpha.flatten()))
        ctx.save_for_backward(slope)
        return x * slope

    @staticmethod
    def backward(ctx, grad):
        (slope,) = ctx.saved_tensors
        return grad * slope, None


def _prelu(x, alpha):
    """PRELU with one slope per channel (checked when the file is read)."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _PReLU.apply(x, alpha)
    return _nhwc(F.prelu(_nchw(x), alpha.flatten()))


def _axes(x, axes):
    return tuple(int(a) % x.dim() for a in np.atleast_1d(axes))


def _strided_slice(x, begin, end, strides, options):
    index = [slice(None)]  # the batch: the file was written for one item, and slices take all of it
    if int(begin[0]) != 0 or (int(end[0]) not in (0, 1) and not options.EndMask() & 1):
        raise ValueError("STRIDED_SLICE across the batch axis is not supported")
    for axis in range(1, len(begin)):
        b = None if options.BeginMask() >> axis & 1 else int(begin[axis])
        e = None if options.EndMask() >> axis & 1 else int(end[axis])
        if options.ShrinkAxisMask() >> axis & 1:
            index.append(int(begin[axis]))
        else:
            index.append(slice(b, e, int(strides[axis])))
    if options.EllipsisMask() or options.NewAxisMask():
        raise ValueError("STRIDED_SLICE with ellipsis or new-axis masks is not supported")
    return x[tuple(index)]


def _concatenate(tensors, axis: int):
    """Concatenation where a constant of batch 1 (a learnt token) joins every item of a batch."""
    batch = max(t.shape[0] for t in tensors)
    if axis % tensors[0].dim() != 0:
        tensors = [t.expand(batch, *t.shape[1:]) if t.shape[0] == 1 else t for t in tensors]
    return torch.cat(tensors, dim=axis)


def _elementwise(f):
    def run(inputs, options):
        y = f(*inputs)
        return _ACTIVATIONS[options.FusedActivationFunction()](y) if options is not None else y
    return run


# name: (run(inputs, options), the options table's class name or None)
OPS = {
    "CONV_2D": (lambda i, o: _conv(i[0], i[1], i[2] if len(i) > 2 else None, o, False), "Conv2DOptions"),
    "DEPTHWISE_CONV_2D": (lambda i, o: _conv(i[0], i[1], i[2] if len(i) > 2 else None, o, True),
                          "DepthwiseConv2DOptions"),
    "MAX_POOL_2D": (lambda i, o: _max_pool(i[0], o), "Pool2DOptions"),
    "ADD": (_elementwise(torch.add), "AddOptions"),
    "SUB": (_elementwise(torch.sub), "SubOptions"),
    "MUL": (_elementwise(torch.mul), "MulOptions"),
    "DIV": (_elementwise(torch.div), "DivOptions"),
    "SQUARED_DIFFERENCE": (lambda i, o: (i[0] - i[1]).square(), None),
    "NEG": (lambda i, o: -i[0], None),
    "SQRT": (lambda i, o: i[0].sqrt(), None),
    "RSQRT": (lambda i, o: i[0].rsqrt(), None),
    "RELU": (lambda i, o: F.relu(i[0]), None),
    "LOGISTIC": (lambda i, o: torch.sigmoid(i[0]), None),
    "PRELU": (lambda i, o: _prelu(i[0], i[1]), None),
    "PAD": (lambda i, o: F.pad(i[0], tuple(int(v) for v in i[1][::-1].flatten())), None),
    "RESHAPE": (lambda i, o: i[0].reshape(*(int(v) for v in i[1])), None),
    "TRANSPOSE": (lambda i, o: i[0].permute(*(int(v) for v in i[1])), None),
    "CONCATENATION": (lambda i, o: _ACTIVATIONS[o.FusedActivationFunction()](_concatenate(i, o.Axis())),
                      "ConcatenationOptions"),
    "MEAN": (lambda i, o: i[0].mean(dim=_axes(i[0], i[1]), keepdim=bool(o.KeepDims())), "ReducerOptions"),
    "SUM": (lambda i, o: i[0].sum(dim=_axes(i[0], i[1]), keepdim=bool(o.KeepDims())), "ReducerOptions"),
    "STRIDED_SLICE": (lambda i, o: _strided_slice(i[0], i[1], i[2], i[3], o), "StridedSliceOptions"),
}


def _check_operator(name: str, shapes: list[tuple]):
    """Refuse, naming it, an operator (or a form of one) that `OPS` does not run."""
    if name not in OPS:
        raise ValueError(f"TFLite operator {name} is not supported (supported: {', '.join(sorted(OPS))})")
    if name == "PRELU" and (len(shapes[0]) != 4 or any(n != 1 for n in shapes[1][:-1])):
        raise ValueError(f"TFLite PRELU is supported on images (NHWC) with one slope per channel, not on shape "
                         f"{shapes[0]} with slopes of shape {shapes[1]}")


class TFLiteGraph(torch.nn.Module):
    """The first subgraph of a TFLite flatbuffer (bytes), run by torch.

    forward(*inputs) takes the graph's inputs in their TFLite layout (NHWC images) and returns
    the list of its outputs, in the file's order. Integer constants (shapes, axes, paddings)
    stay numpy arrays; float constants are module buffers, so `.to(device)` moves them.
    """

    def __init__(self, flatbuffer: bytes):
        super().__init__()
        try:
            import tflite
        except ImportError:
            raise ImportError("reading a TFLite model needs its schema: `pip install tflite` "
                              "(or `pip install -e '.[offline]'`)") from None

        model = tflite.Model.GetRootAs(flatbuffer, 0)
        graph = model.Subgraphs(0)
        self.inputs = [int(i) for i in graph.InputsAsNumpy()]
        self.outputs = [int(i) for i in graph.OutputsAsNumpy()]
        self.shapes = {}
        self._int_constants = {}
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            self.shapes[t] = tuple(int(s) for s in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
            data = model.Buffers(tensor.Buffer()).DataAsNumpy() if tensor.Buffer() else 0
            if isinstance(data, int) or not len(data):
                continue
            if tensor.Type() not in _DTYPES:
                raise ValueError(f"TFLite tensor type {tensor.Type()} is not supported")
            value = np.frombuffer(data.tobytes(), dtype=_DTYPES[tensor.Type()]).reshape(self.shapes[t])
            if value.dtype == np.int32:
                self._int_constants[t] = value
            else:
                self.register_buffer(f"t{t}", torch.from_numpy(value.astype(np.float32)))
        self.ops = []  # (name, options or None, input ids, output ids)
        for k in range(graph.OperatorsLength()):
            op = graph.Operators(k)
            code = model.OperatorCodes(op.OpcodeIndex())
            name = tflite.opcode2name(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))
            if name == "DEQUANTIZE":  # float16 constants are stored float32 already
                self._alias(int(op.InputsAsNumpy()[0]), int(op.OutputsAsNumpy()[0]))
                continue
            _check_operator(name, [self.shapes[int(t)] for t in op.InputsAsNumpy() if t >= 0])
            options = None
            if OPS[name][1] is not None:
                table = op.BuiltinOptions()
                options = getattr(tflite, OPS[name][1])()
                options.Init(table.Bytes, table.Pos)
            self.ops.append((name, options, [int(i) for i in op.InputsAsNumpy()],
                             [int(i) for i in op.OutputsAsNumpy()]))

    def _alias(self, source: int, target: int):
        if source in self._int_constants:
            self._int_constants[target] = self._int_constants[source]
        else:
            self.register_buffer(f"t{target}", getattr(self, f"t{source}"))

    def forward(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        if len(inputs) != len(self.inputs):
            raise ValueError(f"the graph takes {len(self.inputs)} inputs, got {len(inputs)}")
        values = dict(zip(self.inputs, inputs))

        def value(t):
            if t in values:
                return values[t]
            if t in self._int_constants:
                return self._int_constants[t]
            return getattr(self, f"t{t}")

        for name, options, ins, outs in self.ops:
            args = [value(t) for t in ins if t >= 0]
            if name in ("RESHAPE", "TRANSPOSE", "PAD", "MEAN", "SUM", "STRIDED_SLICE"):
                args = [args[0]] + [np.asarray(a) for a in args[1:]]
            if name == "RESHAPE" and len(args) == 1:
                args.append(np.array(self.shapes[outs[0]]))
            if name == "RESHAPE":  # a batch of several runs where the file says 1
                shape = np.array(args[1])
                shape[0] = -1 if shape[0] == 1 else shape[0]
                args[1] = shape
            values[outs[0]] = OPS[name][0](args, options)
        return [values[t] for t in self.outputs]
