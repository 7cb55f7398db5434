"""A second FER2013 facial-expression classifier: a plain four-layer CNN, in PyTorch.

The weights are `facial_emotion_recognition/model/model.pkl` of the PyPI source archive
`facial_emotion_recognition==0.3.4` (Rayyan Akhtar, 2020, MIT in its setup.py), taken out of
the archive by the registry (entry `fer2013-cnn`); the package itself (it needs torchvision,
facenet-pytorch and OpenCV) is never installed. The file is a legacy torch pickle of
`{"network": state dict, "optimizer": Adam state, "epochs": 50, "accuracy": 0.957}` (the
accuracy is the author's, on data we do not know). Layout, from the package's `NetworkV2`:

    4 x [reflection pad 1, 3x3 conv (bias), BatchNorm, ReLU], strides 1, 2, 2, 2; widths 32..256
    head: flatten 256 x 6 x 6 -> linear 256, ReLU -> linear 7 (the package then applies a sigmoid)

A different network from the guiding mini-Xception (no separable convolutions, no residual
modules, a fully connected head), trained separately, on 48 px instead of 64 px faces.
Input (B, 1, 48, 48) greyscale in [-1, 1] (the package: PIL resize to 48 x 48, x / 255,
(x - 0.5) / 0.5); output pre-sigmoid logits in FER2013 order `EMOTIONS`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from emostyle.models.checkpoint import load_network, load_strict, read_checkpoint
from emostyle.models.fer import EMOTIONS

__all__ = ["EMOTIONS", "INPUT_SIZE", "ExpressionCNN", "load_expression_cnn"]

INPUT_SIZE = 48
REGISTRY_NAME = "fer2013-cnn"


def _stage(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    # Indices as in the package's nn.Sequential, so the state dict's keys load unchanged.
    return nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(in_ch, out_ch, 3, stride), nn.BatchNorm2d(out_ch),
                         nn.ReLU())


class ExpressionCNN(nn.Module):
    """(B, 1, 48, 48) greyscale in [-1, 1] -> pre-sigmoid logits (B, 7) in `EMOTIONS` order."""

    input_size = INPUT_SIZE
    title = "FER2013 four-layer CNN"

    def __init__(self, width: int = 32, n_classes: int = 7):
        super().__init__()
        self.conv_1 = _stage(1, width, 1)
        self.conv_2 = _stage(width, 2 * width, 2)
        self.conv_3 = _stage(2 * width, 4 * width, 2)
        self.conv_4 = _stage(4 * width, 8 * width, 2)
        side = INPUT_SIZE // 8
        self.linear = nn.Sequential(nn.Linear(8 * width * side * side, 256), nn.ReLU(), nn.Linear(256, n_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last convolution's maps, flattened (B, 256 * 6 * 6): the identity loss's features."""
        if x.ndim != 4 or x.shape[1:] != (1, INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"expression CNN input must be (B, 1, {INPUT_SIZE}, {INPUT_SIZE}) greyscale in "
                             f"[-1, 1]; got {tuple(x.shape)} (ExpressionJudge prepares RGB images)")
        return self.conv_4(self.conv_3(self.conv_2(self.conv_1(x)))).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(x))


def _read(path: Path) -> Mapping[str, torch.Tensor]:
    what = "the facial_emotion_recognition FER2013 CNN (model.pkl)"
    file = read_checkpoint(path, what, REGISTRY_NAME)
    state = file.get("network") if isinstance(file, Mapping) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} is not the facial_emotion_recognition checkpoint (a dict whose 'network' is a "
                         f"state dict); run `emostyle weights fetch {REGISTRY_NAME}`")
    return state


def _build(state: Mapping[str, torch.Tensor], name: str) -> ExpressionCNN:
    return load_strict(ExpressionCNN(), state, name).eval()


def load_expression_cnn(path_or_state: str | Path | Mapping | None = None, device: str | torch.device = "cpu"
                        ) -> ExpressionCNN:
    """The classifier from its model.pkl (None: the registry's `fer2013-cnn`) or a state dict."""
    return load_network(path_or_state, device, REGISTRY_NAME, _read, _build)
