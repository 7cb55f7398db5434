"""EmoGen's networks (Yang, Feng, Huang 2024, arXiv 2401.04608; repository JingyuanYY/EmoGen).

Checkpoint-compatible with the released files and `training/model.py`:
- `EmotionClassifier`: `emo_classifier`, one Linear(768, 8) (`fc.*`) on CLIP ViT-L/14 image
  features (transformers' `get_image_features`: projected, not normalised), released as
  `weights/Clip_emotion_classifier/time_2023-11-12_03-29-best.pth`;
- `ImageEncoder`: the emotion-space encoder, `BackBone` = torchvision ResNet-50 (`cnn.*`, and the
  same tensors again under `backbone.{0,1,4-7}.*`) -> avg pool -> `fc_1` Linear(2048, 768) -> the
  emotion vector; `fc_2.2` Linear(768, 8) is its training head. Released as
  `weights/image_encoder/2023-08-22-best.pth`;
- `EmotionSpace`: per-category mean and std of the emotion vectors
  (`emo_space/<emotion>_mean_v2.pt`, `_std_v2.pt`, (768,) each); inference samples N(mean, std);
- `MappingNetwork`: the emotion space -> a token embedding of Stable Diffusion's CLIP text
  encoder, in the layouts `MLP` / `SimpleMLP` (`mlp.<i>.*`: Linear, optional LayerNorm, ReLU,
  Dropout) and `FC` (`fc.*`). The trained mapper is not published (EmoGen issue #10).

Categories are in EmoGen's label order (`label2idx` of `training/main.py`): the four positive
ones first, so polarity = sum of the first four probabilities.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from emostyle.models.checkpoint import (check_download, load_network, load_strict, random_state, read_checkpoint,
                                        read_state_dict)
from emostyle.models.resnet import ResNet50

__all__ = ["EMOTIONS", "POSITIVE", "EmotionClassifier", "ImageEncoder", "EmotionSpace", "MappingNetwork",
           "load_emotion_classifier", "load_image_encoder", "load_emotion_space", "load_mapping_network",
           "tiny_emotion_space", "tiny_mapping_network"]

EMOTIONS = ("amusement", "awe", "contentment", "excitement", "anger", "disgust", "fear", "sadness")
POSITIVE = EMOTIONS[:4]


def _category(name: str) -> str:
    if name not in EMOTIONS:
        raise ValueError(f"unknown emotion category {name!r}; EmoGen's categories: {', '.join(EMOTIONS)}")
    return name


# --- the emotion classifier (Emo-A's judge) ----------------------------------------------------

class EmotionClassifier(nn.Module):
    """CLIP image features (B, dim) -> logits (B, 8) over EMOTIONS."""

    def __init__(self, dim: int = 768):
        super().__init__()
        self.fc = nn.Linear(dim, len(EMOTIONS))

    @property
    def dim(self) -> int:
        return self.fc.in_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features)


def _build_classifier(state: Mapping[str, torch.Tensor], name: str) -> EmotionClassifier:
    if "fc.weight" not in state or state["fc.weight"].ndim != 2 or state["fc.weight"].shape[0] != len(EMOTIONS):
        raise ValueError(f"{name}: not EmoGen's emotion classifier (expected fc.weight (8, 768), fc.bias (8,)); "
                         f"keys {sorted(state)[:4]}")
    model = EmotionClassifier(state["fc.weight"].shape[1])
    return load_strict(model, state, f"{name} (EmoGen emotion classifier)").eval().requires_grad_(False)


def load_emotion_classifier(path_or_state: str | Path | Mapping | None = None,
                            device: str | torch.device = "cpu") -> EmotionClassifier:
    """The released classifier (None: registry `emogen-emotion-classifier`), loaded strictly."""
    read = lambda p: read_state_dict(p, "EmoGen's emotion classifier", "emogen-emotion-classifier")  # noqa: E731
    return load_network(path_or_state, device, "emogen-emotion-classifier", read, _build_classifier)


# --- the emotion-space image encoder -------------------------------------------------------------

# BackBone.backbone = Sequential(*resnet50.children()[:-2]): its indices name these modules.
_BACKBONE_INDEX = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}


class ImageEncoder(nn.Module):
    """Images (B, 3, 224, 224), normalised to [-1, 1] per channel (EmoGen's Normalize(0.5, 0.5)),
    to emotion vectors (B, dim); `emotion_logits` adds the 8-way training head."""

    def __init__(self, dim: int = 768, width: int = 64):
        super().__init__()
        self.resnet = ResNet50(1000, width)  # `cnn` of the release, ImageNet head included
        self.fc_1 = nn.Linear(self.resnet.feature_dim, dim)
        self.head = nn.Linear(dim, len(EMOTIONS))  # fc_2 = ReLU, Dropout, Linear (index 2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc_1(self.resnet.features(images))

    def emotion_logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self(images)))


def _from_backbone_layout(state: Mapping[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """Our keys from the release's BackBone keys; the `backbone.*` copies must equal `cnn.*`."""
    ours = {}
    for key, value in state.items():
        if key.startswith("cnn."):
            ours["resnet." + key[4:]] = value
        elif key.startswith("fc_1."):
            ours[key] = value
        elif key.startswith("fc_2.2."):
            ours["head." + key[len("fc_2.2."):]] = value
        elif key.startswith("backbone."):
            index, rest = key[len("backbone."):].split(".", 1)
            twin = f"cnn.{_BACKBONE_INDEX.get(index, '?')}.{rest}"
            if twin not in state or not torch.equal(state[twin], value):
                raise ValueError(f"{name}: {key} has no equal twin {twin}; not EmoGen's BackBone layout")
        else:
            ours[key] = value  # left for load_strict to report as unexpected
    return ours


def _build_encoder(state: Mapping[str, torch.Tensor], name: str) -> ImageEncoder:
    if "fc_1.weight" not in state or "cnn.conv1.weight" not in state:
        raise ValueError(f"{name}: not EmoGen's image encoder (expected cnn.*, backbone.*, fc_1.*, fc_2.2.*); "
                         f"keys {sorted(state)[:4]}")
    model = ImageEncoder(state["fc_1.weight"].shape[0], state["cnn.conv1.weight"].shape[0])
    return load_strict(model, _from_backbone_layout(state, name),
                       f"{name} (EmoGen image encoder)").eval().requires_grad_(False)


def load_image_encoder(path_or_state: str | Path | Mapping | None = None,
                       device: str | torch.device = "cpu") -> ImageEncoder:
    """The released emotion-space encoder (None: registry `emogen-image-encoder`), loaded strictly."""
    read = lambda p: read_state_dict(p, "EmoGen's image encoder", "emogen-image-encoder")  # noqa: E731
    return load_network(path_or_state, device, "emogen-image-encoder", read, _build_encoder)


# --- the emotion space ---------------------------------------------------------------------------

class EmotionSpace:
    """Per-category Gaussian statistics of the emotion vectors: mean and std, (dim,) each."""

    def __init__(self, mean: Mapping[str, torch.Tensor], std: Mapping[str, torch.Tensor]):
        missing = [e for e in EMOTIONS if e not in mean or e not in std]
        if missing:
            raise ValueError(f"emotion space lacks statistics for {missing}; it needs all of {', '.join(EMOTIONS)}")
        shapes = {tuple(t.shape) for t in [*mean.values(), *std.values()]}
        if len(shapes) != 1 or len(next(iter(shapes))) != 1:
            raise ValueError(f"emotion-space statistics must all be vectors of one length; got shapes {sorted(shapes)}")
        if any(bool((std[e] < 0).any()) for e in EMOTIONS):
            raise ValueError("emotion-space standard deviations must be >= 0")
        self.mean = {e: mean[e].float() for e in EMOTIONS}
        self.std = {e: std[e].float() for e in EMOTIONS}

    @property
    def dim(self) -> int:
        return self.mean[EMOTIONS[0]].shape[0]

    def sample(self, category: str, n: int, generator: torch.Generator) -> torch.Tensor:
        """n emotion vectors (n, dim) ~ N(mean, std) of `category`, drawn only from `generator`."""
        e = _category(category)
        noise = torch.randn(n, self.dim, generator=generator)
        return self.mean[e] + self.std[e] * noise


def _read_vector(path: Path, name: str) -> torch.Tensor:
    value = read_checkpoint(path, f"EmoGen emotion-space statistic {name}", name)
    if not isinstance(value, torch.Tensor) or value.ndim != 1:
        raise ValueError(f"{path} holds {type(value).__name__} {getattr(value, 'shape', '')}, not a (768,) "
                         f"tensor of EmoGen's emo_space/*_v2.pt")
    return value


def load_emotion_space(folder: str | Path | None = None) -> EmotionSpace:
    """The released statistics: `<folder>/<emotion>_{mean,std}_v2.pt`, or (None) the registry's
    `emogen-space-<emotion>-{mean,std}` files."""
    stats: dict[str, dict[str, torch.Tensor]] = {"mean": {}, "std": {}}
    for e in EMOTIONS:
        for kind in stats:
            name = f"emogen-space-{e}-{kind}"
            if folder is None:
                from emostyle import registry

                path = registry.path(name)
            else:
                path = check_download(Path(folder) / f"{e}_{kind}_v2.pt", f"EmoGen's {e} {kind}", name)
            stats[kind][e] = _read_vector(path, name)
    return EmotionSpace(stats["mean"], stats["std"])


def tiny_emotion_space(dim: int = 16, seed: int = 0) -> EmotionSpace:
    """Random, well separated category statistics at a small `dim` (tiny profile and tests)."""
    g = torch.Generator().manual_seed(seed)
    mean = {e: torch.randn(dim, generator=g) * 2 for e in EMOTIONS}
    std = {e: 0.2 + 0.3 * torch.rand(dim, generator=g) for e in EMOTIONS}
    return EmotionSpace(mean, std)


# --- the mapping network ------------------------------------------------------------------------

class MappingNetwork(nn.Module):
    """Emotion vectors (B, dim_in) -> token embeddings (B, dim_out) of the text encoder.

    `layers`: ("linear", in, out) | ("layernorm", dim) | ("relu",) | ("dropout",), in the order
    of EmoGen's `nn.Sequential` (so `mlp.<i>` keys line up).
    """

    def __init__(self, layers: list[tuple]):
        super().__init__()
        make = {"linear": lambda i, o: nn.Linear(i, o), "layernorm": lambda d: nn.LayerNorm(d),
                "relu": lambda: nn.ReLU(), "dropout": lambda: nn.Dropout(0.5)}
        self.layers = list(layers)
        self.mlp = nn.Sequential(*(make[kind](*args) for kind, *args in layers))

    @property
    def dim_in(self) -> int:
        return self.mlp[0].in_features

    @property
    def dim_out(self) -> int:
        return [m for m in self.mlp if isinstance(m, nn.Linear)][-1].out_features

    def forward(self, emotion: torch.Tensor) -> torch.Tensor:
        return self.mlp(emotion)


def _mapper_layers(state: Mapping[str, torch.Tensor], relu: bool, name: str) -> list[tuple]:
    """The layer list that `state` (mlp.<i>.* keys) describes. Parameter-free modules show only
    as gaps in the indices: after a Linear (and its LayerNorm) a gap of 2 is ReLU + Dropout, a
    gap of 1 is ReLU when `relu` (EmoGen's config.yaml: need_ReLU true) else Dropout."""
    indices = sorted({int(k.split(".")[1]) for k in state if k.startswith("mlp.")})
    if not indices or indices[0] != 0 or any(not k.startswith("mlp.") for k in state):
        raise ValueError(f"{name}: not an EmoGen mapping network (keys mlp.<i>.weight/bias or fc.*); "
                         f"keys {sorted(state)[:4]}")
    layers: list[tuple] = []
    for i, index in enumerate(indices):
        w = state[f"mlp.{index}.weight"]
        if w.ndim == 2:
            if layers:
                gap = index - len(layers)
                if gap not in (0, 1, 2):
                    raise ValueError(f"{name}: {gap} parameter-free modules before mlp.{index}; EmoGen has at most 2")
                layers += [("relu",), ("dropout",)][:gap] if gap == 2 else [("relu",) if relu else ("dropout",)] * gap
            layers.append(("linear", w.shape[1], w.shape[0]))
        else:
            if not layers or layers[-1][0] != "linear" or index != len(layers):
                raise ValueError(f"{name}: mlp.{index} is a LayerNorm that does not follow a Linear")
            layers.append(("layernorm", w.shape[0]))
    return layers


def _build_mapper(state: Mapping[str, torch.Tensor], name: str, relu: bool = True) -> MappingNetwork:
    if set(state) == {"fc.weight", "fc.bias"}:  # EmoGen's `FC`: one Linear(768, 768)
        state = {"mlp.0.weight": state["fc.weight"], "mlp.0.bias": state["fc.bias"]}
    model = MappingNetwork(_mapper_layers(state, relu, name))
    return load_strict(model, state, f"{name} (EmoGen mapping network)").eval().requires_grad_(False)


def load_mapping_network(path_or_state: str | Path | Mapping | None = None, device: str | torch.device = "cpu",
                         relu: bool = True) -> MappingNetwork:
    """A trained mapper (`mapper.pth`, `torch.save(mapper.state_dict())`; None: registry
    `emogen-mapper`, which must be supplied by hand: EmoGen #10), loaded strictly.
    `relu`: whether a single parameter-free module between Linears is a ReLU (need_ReLU)."""
    read = lambda p: read_state_dict(p, "EmoGen's mapping network", "emogen-mapper")  # noqa: E731
    return load_network(path_or_state, device, "emogen-mapper", read,
                        lambda s, n: _build_mapper(s, n, relu))


def tiny_mapping_network(dim_in: int = 16, dim_out: int = 32, hidden: int = 64, seed: int = 0) -> MappingNetwork:
    """A random mapper in EmoGen's default layout (Linear, ReLU, Linear) at small sizes."""
    model = MappingNetwork([("linear", dim_in, hidden), ("relu",), ("linear", hidden, dim_out)])
    return _build_mapper(random_state(model, seed), f"tiny_mapping_network(seed={seed})")
