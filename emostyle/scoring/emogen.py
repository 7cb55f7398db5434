"""EmoGen's metrics (arXiv 2401.04608, Sec. 5; `training/inference.py` emo_cls,
`metrics/other_metrics.py`, `training/Semantic_diversity.py`), on saved 8-bit images.

- Emo-A, emotion accuracy: EmoGen's classifier (one Linear on CLIP ViT-L/14 image features)
  names the category of each image; accuracy against the intended category, over 8 classes and
  over 2 (the softmax summed over the four positive and the four negative categories).
  `EmoGenJudge` is that classifier as a `Judge`: it never guided any image of the kit.
- Sem-C, semantic clarity: per image, the larger of the top softmax probability of a Places365
  ResNet-50 (scenes) and of an ImageNet ResNet-50 (objects); the mean over images.
- Sem-D, semantic diversity: per category, the mean over random pairs of images of
  1 - cos(CLIP ViT-L/14 features); the mean over categories.

Preprocessing follows the reference: CLIPProcessor (shortest side to 224, bicubic, centre crop,
CLIP mean/std) for the CLIP features; Resize(256) (bilinear) + CenterCrop(224) + ImageNet mean/std
for the two ResNets. Two departures of the reference code are not followed, and `compat="official"`
mimics the first: its Sem-D pool of images is never emptied between categories (category k draws
pairs from categories 1..k), and its Sem-D feeds CLIPProcessor tensors already scaled to [0, 1], which
the processor (transformers 4.34, the release's pin) rescales by 1/255 again, with a warning; the kit
gives CLIP the 8-bit images it expects.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from emostyle.models.clip import MEAN as _CLIP_MEAN, STD as _CLIP_STD
from emostyle.models.emogen import EMOTIONS, POSITIVE, EmotionClassifier
from emostyle.parts import Judge

__all__ = ["EmoGenJudge", "SemanticClarity", "EmoGenMetrics", "emotion_accuracy", "semantic_clarity",
           "semantic_diversity", "clip_features", "load_emogen_judge", "tiny_emogen_judge", "load_semantic_clarity",
           "load_emogen_metrics"]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _check_uint8(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected 8-bit RGB images (B, H, W, 3) uint8, got {images.dtype} {images.shape}; "
                         f"convert tensors with emostyle.parts.to_uint8")
    return images


def _resize_crop(image: np.ndarray, short: int, crop: int, resample: int, offset) -> np.ndarray:
    """Shortest side to `short` (long side truncated, as torchvision and transformers do), then the
    centre crop x crop at offsets offset(excess): transformers floors them, torchvision rounds."""
    h, w = image.shape[:2]
    size = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)  # PIL: (width, height)
    x = np.asarray(Image.fromarray(image).resize(size, resample=resample))
    top, left = offset(x.shape[0] - crop), offset(x.shape[1] - crop)
    return x[top:top + crop, left:left + crop]


def _clip_input(images: np.ndarray, resolution: int) -> torch.Tensor:
    """CLIPProcessor's pixel values (B, 3, R, R): bicubic, crop offsets floored, CLIP mean/std."""
    return _normalised(images, lambda im: _resize_crop(im, resolution, resolution, Image.BICUBIC, lambda d: d // 2),
                       _CLIP_MEAN, _CLIP_STD)


def _imagenet_input(images: np.ndarray) -> torch.Tensor:
    """torchvision's Resize(256) + CenterCrop(224) (bilinear, offsets rounded), ImageNet mean/std."""
    return _normalised(images, lambda im: _resize_crop(im, 256, 224, Image.BILINEAR, lambda d: int(round(d / 2.0))),
                       _IMAGENET_MEAN, _IMAGENET_STD)


def _normalised(images: np.ndarray, prepare, mean, std) -> torch.Tensor:
    x = np.stack([prepare(im) for im in _check_uint8(images)])
    x = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@torch.no_grad()
def clip_features(clip, images: np.ndarray, batch: int = 16) -> torch.Tensor:
    """CLIP image features (B, dim), unnormalised (transformers' get_image_features), of 8-bit
    images (B, H, W, 3) prepared as CLIPProcessor does."""
    device = clip.text_projection.device
    out = []
    for i in range(0, len(images), batch):
        x = _clip_input(images[i:i + batch], clip.resolution)
        out.append(clip.encode_image(x.to(device)).float().cpu())
    return torch.cat(out)


class EmoGenJudge(Judge):
    """EmoGen's emotion classifier on CLIP image features of the saved images.

    `read` gives "probs" (B, 8) over EMOTIONS, "category" (B,) indices, "positive" = P(positive
    categories) and "valence" = P(positive) - P(negative) in [-1, 1]."""

    name = "EmoGen classifier (CLIP ViT-L/14 + linear, 8 EmoSet categories)"

    def __init__(self, clip, classifier: EmotionClassifier, name: str | None = None):
        if classifier.dim != clip.embed_dim:
            raise ValueError(f"the classifier takes {classifier.dim}-d features, the CLIP gives {clip.embed_dim}-d "
                             f"(EmoGen's classifier needs CLIP ViT-L/14)")
        self.clip, self.classifier = clip, classifier.to(clip.text_projection.device)
        if name:
            self.name = name

    def features(self, images: np.ndarray) -> torch.Tensor:
        """CLIP image features (B, dim) of 8-bit images (B, H, W, 3), as the classifier reads them."""
        return clip_features(self.clip, images)

    @torch.no_grad()
    def classify(self, features: torch.Tensor) -> np.ndarray:
        """Softmax (B, 8) over EMOTIONS of CLIP image features (B, dim)."""
        logits = self.classifier(features.to(self.clip.text_projection.device))
        return F.softmax(logits.float(), dim=1).cpu().numpy().astype(np.float64)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Softmax (B, 8) over EMOTIONS of 8-bit images (B, H, W, 3)."""
        return self.classify(self.features(images))

    def read(self, images: np.ndarray) -> dict[str, np.ndarray]:
        probs = self.probabilities(images)
        p2 = _polarity(probs)
        return {"probs": probs, "category": probs.argmax(axis=1), "positive": p2[:, 0], "valence": p2[:, 0] - p2[:, 1]}


def load_emogen_judge(device: str | torch.device = "cpu") -> EmoGenJudge:
    """The judge from the registry's `clip-vit-l-14` and `emogen-emotion-classifier`."""
    from emostyle.models.clip import load_clip
    from emostyle.models.emogen import load_emotion_classifier

    return EmoGenJudge(load_clip(_registry_path("clip-vit-l-14"), device), load_emotion_classifier(device=device))


def _registry_path(name: str):
    from emostyle import registry

    return registry.path(name)


def tiny_emogen_judge(seed: int = 0) -> EmoGenJudge:
    """A random judge (tiny CLIP, random classifier) for the tiny profile and tests."""
    from emostyle.models.checkpoint import random_state
    from emostyle.models.clip import tiny_clip
    from emostyle.models.emogen import load_emotion_classifier

    clip = tiny_clip(seed=seed)
    classifier = load_emotion_classifier(random_state(EmotionClassifier(clip.embed_dim), seed))
    return EmoGenJudge(clip, classifier, name=f"tiny random EmoGen judge (seed {seed})")


# --- Emo-A ---------------------------------------------------------------------------------------

def _labels(labels: Sequence) -> np.ndarray:
    out = []
    for label in labels:
        if isinstance(label, str):
            if label not in EMOTIONS:
                raise ValueError(f"unknown emotion category {label!r}; EmoGen's categories: {', '.join(EMOTIONS)}")
            out.append(EMOTIONS.index(label))
        else:
            if not 0 <= int(label) < len(EMOTIONS):
                raise ValueError(f"category index {label} outside 0..{len(EMOTIONS) - 1}")
            out.append(int(label))
    return np.asarray(out, dtype=np.int64)


def _polarity(probs: np.ndarray) -> np.ndarray:
    """(N, 2): P(positive), P(negative), the softmax summed over the first and the last four."""
    return np.stack([probs[:, :len(POSITIVE)].sum(1), probs[:, len(POSITIVE):].sum(1)], axis=1)


def _hits(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image correctness (N,) over 8 classes and over positive/negative."""
    return probs.argmax(1) == labels, _polarity(probs).argmax(1) == (labels >= len(POSITIVE))


def emotion_accuracy(probs: np.ndarray, labels: Sequence) -> dict:
    """Emo-A of class probabilities (N, 8) over EMOTIONS against intended categories (N,) (names
    or indices), as EmoGen's emo_cls: "acc8" and "acc2" in percent (argmax over the 8 classes,
    and over the positive/negative sums), "score8" and "score2" the mean probability of the
    intended class, and "per_class" {category: (accuracy %, mean score)} for those present."""
    probs = np.asarray(probs, dtype=np.float64)
    y8 = _labels(labels)
    if probs.ndim != 2 or probs.shape[1] != len(EMOTIONS) or probs.shape[0] != len(y8) or not len(y8):
        raise ValueError(f"expected probabilities (N, 8) and N labels, got {probs.shape} and {len(y8)}")
    p2, y2 = _polarity(probs), (y8 >= len(POSITIVE)).astype(np.int64)
    rows = np.arange(len(y8))
    hit8, hit2 = _hits(probs, y8)
    result = {"acc8": 100.0 * hit8.mean(), "acc2": 100.0 * hit2.mean(),
              "score8": float(probs[rows, y8].mean()), "score2": float(p2[rows, y2].mean()), "per_class": {}}
    for k, name in enumerate(EMOTIONS):
        mine = y8 == k
        if mine.any():
            result["per_class"][name] = (100.0 * float(hit8[mine].mean()), float(probs[mine, k].mean()))
    return result


# --- Sem-C ---------------------------------------------------------------------------------------

def semantic_clarity(scene_probs: np.ndarray, object_probs: np.ndarray) -> np.ndarray:
    """Per-image clarity (N,): max(top scene probability, top object probability); Sem-C is its mean."""
    scene_probs, object_probs = np.asarray(scene_probs), np.asarray(object_probs)
    if scene_probs.ndim != 2 or object_probs.ndim != 2 or len(scene_probs) != len(object_probs):
        raise ValueError(f"expected probabilities (N, scenes) and (N, objects), got {scene_probs.shape} "
                         f"and {object_probs.shape}")
    return np.maximum(scene_probs.max(1), object_probs.max(1)).astype(np.float64)


class SemanticClarity:
    """Sem-C's two classifiers (Places365 and ImageNet ResNet-50) on 8-bit images."""

    name = "sem-c"
    higher_is_better = True

    def __init__(self, scene, objects):
        self.scene, self.objects = scene, objects

    @torch.no_grad()
    def score(self, images: np.ndarray, batch: int = 16) -> np.ndarray:
        """Per-image clarity (B,) of 8-bit images (B, H, W, 3)."""
        device = self.scene.fc.weight.device
        out = []
        for i in range(0, len(images), batch):
            x = _imagenet_input(images[i:i + batch]).to(device)
            out.append(semantic_clarity(F.softmax(self.scene(x), 1).cpu().numpy(),
                                        F.softmax(self.objects(x), 1).cpu().numpy()))
        return np.concatenate(out)


def load_semantic_clarity(device: str | torch.device = "cpu") -> SemanticClarity:
    """Sem-C from the registry's `resnet50-places365` and `resnet50-imagenet`."""
    from emostyle.models.checkpoint import read_state_dict
    from emostyle.models.resnet import resnet50_from_state

    nets = [resnet50_from_state(read_state_dict(_registry_path(n), what, n), what).to(device)
            for n, what in (("resnet50-places365", "the Places365 ResNet-50"),
                            ("resnet50-imagenet", "torchvision's ImageNet ResNet-50"))]
    return SemanticClarity(*nets)


# --- Sem-D ---------------------------------------------------------------------------------------

def semantic_diversity(features: torch.Tensor | np.ndarray, categories: Sequence, pairs: int = 10,
                       seed: int = 0, compat: str = "paper") -> dict:
    """Sem-D of image features (N, dim) grouped by category (N,): for each category, the mean of
    1 - cos over `pairs` random pairs of two different images (drawn with a seeded generator), then
    the mean over categories ("sem-d"; "per_class" the means and "distances" the (pairs,) values of
    each). compat="official": category k draws from the images of categories 1..k in EMOTIONS
    order, as the reference's never-emptied list. Categories with fewer than two images are
    skipped (with none left, an error)."""
    if compat not in ("paper", "official"):
        raise ValueError(f"compat must be 'paper' or 'official', got {compat!r}")
    x = torch.as_tensor(np.asarray(features), dtype=torch.float64)
    labels = _labels(categories)
    if x.ndim != 2 or len(x) != len(labels):
        raise ValueError(f"expected features (N, dim) and N categories, got {tuple(x.shape)} and {len(labels)}")
    rng = np.random.default_rng(seed)
    distances, pool = {}, np.zeros(0, dtype=np.int64)
    for k, name in enumerate(EMOTIONS):
        mine = np.flatnonzero(labels == k)
        pool = np.concatenate([pool, mine]) if compat == "official" else mine
        if len(mine) == 0 or len(pool) < 2:
            continue
        draws = pool[np.array([rng.choice(len(pool), size=2, replace=False) for _ in range(pairs)])]
        distances[name] = (1 - F.cosine_similarity(x[draws[:, 0]], x[draws[:, 1]], dim=1)).numpy()
    if not distances:
        raise ValueError("Sem-D needs at least two images of one category")
    per_class = {name: float(d.mean()) for name, d in distances.items()}
    return {"sem-d": float(np.mean(list(per_class.values()))), "per_class": per_class, "distances": distances}


# --- the metrics table ---------------------------------------------------------------------------

class EmoGenMetrics:
    """Emo-A, Emo-A-2, Sem-C and Sem-D of images collected per group (method, dataset, ...).

    `add` reads each batch once (judge, clarity) and keeps the CLIP features; `records` gives
    long-format rows {**group, "scorer", "score"} for `tables.summary_table`, whose means are the
    metrics: Emo-A rows are 100 or 0 per image, Sem-C one value per image, Sem-D one 1 - cos per
    sampled pair, with the same number of pairs in every category of a group, so their mean is
    the mean over categories. Sem-D is left out of a group where no category has two images."""

    def __init__(self, judge: EmoGenJudge, clarity: SemanticClarity | None = None, pairs: int = 10, seed: int = 0):
        self.judge, self.clarity, self.pairs, self.seed = judge, clarity, pairs, seed
        self._groups: dict[tuple, dict] = {}

    @property
    def name(self) -> str:
        return self.judge.name

    def add(self, images: torch.Tensor | np.ndarray, categories: Sequence[str], **group) -> None:
        """Images (B, 3, H, W) in [-1, 1] or 8-bit (B, H, W, 3), intended categories (B,)."""
        from emostyle.parts import to_uint8

        pixels = to_uint8(images) if isinstance(images, torch.Tensor) else _check_uint8(images)
        labels = _labels(categories)
        if len(labels) != len(pixels):
            raise ValueError(f"{len(pixels)} images but {len(labels)} categories")
        features = self.judge.features(pixels)
        probs = self.judge.classify(features)
        key = tuple(sorted(group.items()))
        g = self._groups.setdefault(key, {"features": [], "labels": [], "rows": []})
        g["features"].append(features)
        g["labels"].append(labels)
        hit8, hit2 = _hits(probs, labels)
        values = {"emo-a": 100.0 * hit8, "emo-a-2": 100.0 * hit2}
        if self.clarity is not None:
            values["sem-c"] = self.clarity.score(pixels)
        g["rows"] += [{**group, "scorer": k, "score": float(v)} for k, vs in values.items() for v in vs]

    def records(self) -> list[dict]:
        """Long-format rows of every group (see the class docstring)."""
        rows = []
        for key, g in self._groups.items():
            rows += g["rows"]
            features, labels = torch.cat(g["features"]), np.concatenate(g["labels"])
            if np.bincount(labels, minlength=len(EMOTIONS)).max() < 2:
                continue
            sem_d = semantic_diversity(features, labels, self.pairs, self.seed)
            rows += [{**dict(key), "scorer": "sem-d", "score": float(d)}
                     for d in np.concatenate(list(sem_d["distances"].values()))]
        return rows

    def add_runs(self, rows: list[dict], image: str = "after.png", keep: tuple = ("method", "dataset")) -> None:
        """Add a sweep's finished runs (rows with status ok and an `out` folder, as
        `emostyle.sweep.run_sweep` gives): `out/image`, intended category = the song's most
        probable category in `out/manifest.json`; grouped by the `keep` fields of each row."""
        from PIL import Image

        for row in rows:
            if row.get("status") != "ok":
                continue
            out = Path(row["out"])
            manifest = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").is_file() else {}
            if not (out / image).is_file() or not manifest.get("categories"):
                raise FileNotFoundError(f"run {out} lacks {image} or a manifest with the song's categories "
                                        f"(made before the kit recorded them? re-run it)")
            pixels = np.asarray(Image.open(out / image).convert("RGB"))[None]
            self.add(pixels, [manifest["categories"]["top"]], **{k: row.get(k) for k in keep})


def load_emogen_metrics(config, device: str | torch.device = "cpu") -> EmoGenMetrics | None:
    """EmoGen's metrics for a profile: the tiny random judge where it has random weights, else the
    registry's files. None, with a warning naming the missing file, where its CLIP ViT-L/14 or
    classifier is missing (the offline profile: no CLIP installs from PyPI); Sem-C is left out
    (warned) where its two ResNet-50s are missing."""
    import warnings

    from emostyle.registry import MissingWeightError

    if config.random_weights:
        return EmoGenMetrics(tiny_emogen_judge(config.seed), seed=config.seed)
    try:
        judge = load_emogen_judge(device)
    except MissingWeightError as missing:
        warnings.warn(f"EmoGen's metrics skipped: {missing}", stacklevel=2)
        return None
    try:
        clarity = load_semantic_clarity(device)
    except MissingWeightError as missing:
        warnings.warn(f"Sem-C skipped: {missing}", stacklevel=2)
        clarity = None
    return EmoGenMetrics(judge, clarity, seed=config.seed)
