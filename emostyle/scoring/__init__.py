"""Evaluation (paper 4.4): aesthetic and quality scores, alignment metrics, tables.

- `vila`: VILA-R, the paper's Table 1 scorer (TensorFlow SavedModel; optional extra `vila`);
- `laion`: the LAION aesthetic head on CLIP ViT-B/32 embeddings;
- `brisque`: BRISQUE, a no-reference *quality* score needing no CLIP (lower is better);
- `metrics`: alignment, identity similarity, latent distance, emotion agreement;
- `emogen`: EmoGen's Emo-A (through its CLIP ViT-L/14 classifier, an independent judge), Sem-C, Sem-D;
- `tables`: mean, std and bootstrap intervals per scorer, method and dataset; CSV, Markdown, LaTeX, chart.

Every scorer has `name`, `higher_is_better` and `score(images) -> (B,)` numpy scores of images
(B, 3, H, W) in [-1, 1]; `available_scorers` gives the ones this machine and profile have.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from .brisque import BrisqueModel, load_brisque
from .laion import AestheticHead, load_aesthetic_head
from .metrics import alignment, emotion_agreement, identity_similarity, latent_distance
from .tables import interval_chart, long_format, summary_table, write_table
from .vila import VilaScorer, load_vila

__all__ = ["available_scorers", "score_images", "score_runs", "load_vila", "VilaScorer", "load_aesthetic_head",
           "AestheticHead",
           "ClipAesthetic", "load_brisque", "BrisqueModel", "alignment", "identity_similarity", "latent_distance",
           "emotion_agreement", "summary_table", "long_format", "write_table", "interval_chart"]


class ClipAesthetic:
    """The LAION head on a CLIP model's image embeddings, with CLIP's own preprocessing."""

    name = "laion-aesthetic"
    higher_is_better = True

    def __init__(self, head: AestheticHead, clip):
        self.head, self.clip = head, clip

    @torch.no_grad()
    def score(self, images: torch.Tensor) -> np.ndarray:
        from emostyle.models.clip import clip_input

        device = self.clip.text_projection.device
        encode = lambda x: self.clip.encode_image(clip_input(x.to(device), "paper", self.clip.resolution))  # noqa: E731
        return self.head.to(device).score_images(images, encode).cpu().numpy()


SCORERS = ("vila-r", "laion-aesthetic", "brisque")


def available_scorers(pipe=None, names: tuple[str, ...] | list[str] = SCORERS) -> dict:
    """The scorers among `names` this machine has, by name, in Table 1's order: `vila-r`
    (TensorFlow and the SavedModel), `laion-aesthetic` (a 512-d CLIP guidance space in `pipe`
    and the head), `brisque` (its SVM files). Each one missing is skipped with a warning saying why."""
    unknown = set(names) - set(SCORERS)
    if unknown:
        raise ValueError(f"unknown scorers {sorted(unknown)}; valid: {', '.join(SCORERS)}")
    scorers, missing = {}, []
    if "vila-r" in names:
        try:
            scorers["vila-r"] = load_vila()
        except (ImportError, FileNotFoundError) as err:
            missing.append(f"vila-r: {err}")
    clip = getattr(getattr(pipe, "guidance_space", None), "clip", None)
    if "laion-aesthetic" in names and clip is None:
        missing.append("laion-aesthetic: the profile's guidance space has no CLIP image encoder")
    elif "laion-aesthetic" in names:
        try:
            head = load_aesthetic_head()
            if head.dim != pipe.guidance_space.dim:
                raise ValueError(f"its CLIP space is {pipe.guidance_space.dim}-d, the head takes {head.dim}")
            scorers["laion-aesthetic"] = ClipAesthetic(head, clip)
        except (FileNotFoundError, ValueError) as err:
            missing.append(f"laion-aesthetic: {err}")
    if "brisque" in names:
        try:
            scorers["brisque"] = load_brisque()
        except FileNotFoundError as err:
            missing.append(f"brisque: {err}")
    for reason in missing:
        warnings.warn(f"scorer skipped: {reason}", stacklevel=2)
    return scorers


def score_images(images: torch.Tensor, scorers: dict) -> dict[str, np.ndarray]:
    """Scores (B,) of images (B, 3, H, W) in [-1, 1] by every scorer, by name."""
    return {name: np.asarray(s.score(images), dtype=np.float64) for name, s in scorers.items()}


def score_runs(rows: list[dict], scorers: dict, image: str = "after.png",
               keep: tuple = ("method", "dataset", "song", "seed")) -> list[dict]:
    """Long-format scores of a sweep's finished runs (rows of `emostyle.sweep.run_sweep` or its
    results table): every scorer on `out/image` of each row with status ok, one row per score
    ({keep..., "scorer", "score"}), ready for `summary_table`."""
    from PIL import Image

    records = []
    for row in rows:
        if row.get("status") != "ok":
            continue
        path = Path(row["out"]) / image
        if not path.is_file():
            raise FileNotFoundError(f"run {row.get('task', row['out'])} has no {image} in {row['out']}")
        pixels = np.asarray(Image.open(path).convert("RGB"))
        x = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
        for name, values in score_images(x, scorers).items():
            records.append({**{k: row.get(k) for k in keep}, "scorer": name, "score": float(values[0])})
    return records
