"""FER judge: the expression a FER2013 classifier reads on saved face images.

Valence is the expected pleasure of the expression: the classifier's seven probabilities
weighted by the pleasure of each emotion term (Russell & Mehrabian 1977, the table the
affect space uses), in [-0.64, 0.81]. It judges faces guided in CLIP space (paper-ffhq):
a different network, trained on other data, than the CLIP encoders that guided them.

The reading is the mean over six views (`MARGINS`, each also mirrored; `face_views`): on the
DCGAN's 64 px faces a one-pixel shift changed a single view's valence by up to 0.27-0.33 on
three of four sets of 16 faces, the mean over the views by up to 0.15-0.20 (the judge's
resolution, `emostyle.scoring.metrics.judge_resolution`), with the spread of the faces'
readings unchanged.
"""

from __future__ import annotations

import abc

import numpy as np
import torch

from emostyle.models.fer import EMOTIONS, MiniXception, face_input
from emostyle.parts import Judge, check_images, check_margins, face_views

__all__ = ["FerJudge", "ViewAveragedJudge", "MARGINS"]

# Fractions of the side cut off each edge: the views (each also mirrored) the judge averages.
MARGINS = (0.0, 1 / 32, 1 / 16)


class ViewAveragedJudge(Judge):
    """A FER2013 classifier read as a judge: its seven probabilities (`probabilities`, of one
    view) averaged over `face_views`; readings "valence" (expected pleasure) and the probability
    of each FER2013 emotion."""

    def __init__(self, margins: tuple[float, ...], mirror: bool = True):
        from emostyle.spaces.affect import EMOTION_PAD

        self.margins, self.mirror = check_margins(margins), mirror
        self._pleasure = torch.tensor([EMOTION_PAD[e][0] for e in EMOTIONS])

    @abc.abstractmethod
    def probabilities(self, view: np.ndarray) -> torch.Tensor:
        """Probabilities (B, 7) in `EMOTIONS` order of one view, 8-bit RGB (B, H, W, 3), on the CPU."""

    @torch.no_grad()
    def read(self, images: np.ndarray) -> dict[str, np.ndarray]:
        check_images(images)
        probs = torch.stack([self.probabilities(v) for v in face_views(images, self.margins, self.mirror)]).mean(0)
        readings = {"valence": (probs @ self._pleasure).numpy()}
        readings.update({e: probs[:, i].numpy() for i, e in enumerate(EMOTIONS)})
        return readings


class FerJudge(ViewAveragedJudge):
    """The `fer` package's mini-Xception, its softmax averaged over six views."""

    name = "FER2013 mini-Xception (expected pleasure over 6 views)"

    def __init__(self, fer: MiniXception, margins: tuple[float, ...] = MARGINS, mirror: bool = True):
        super().__init__(margins, mirror)
        self.fer = fer.eval()

    def probabilities(self, view: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(view).to(next(self.fer.parameters()).device).permute(0, 3, 1, 2).float() / 127.5 - 1
        return self.fer(face_input(x)).softmax(dim=1).cpu()
