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

import numpy as np
import torch

from emostyle.models.fer import EMOTIONS, MiniXception, face_input
from emostyle.parts import Judge, check_images, face_views

__all__ = ["FerJudge", "MARGINS"]

# Fractions of the side cut off each edge: the views (each also mirrored) the judge averages.
MARGINS = (0.0, 1 / 32, 1 / 16)


class FerJudge(Judge):
    """Readings: "valence" (expected pleasure) and the probability of each FER2013 emotion."""

    name = "FER2013 mini-Xception (expected pleasure over 6 views)"

    def __init__(self, fer: MiniXception, margins: tuple[float, ...] = MARGINS, mirror: bool = True):
        from emostyle.spaces.affect import EMOTION_PAD

        face_views(np.zeros((1, 8, 8, 3), np.uint8), margins)  # refuses bad margins now, not at the first read
        self.fer = fer.eval()
        self.margins, self.mirror = tuple(margins), mirror
        self._pleasure = torch.tensor([EMOTION_PAD[e][0] for e in EMOTIONS])

    @torch.no_grad()
    def read(self, images: np.ndarray) -> dict[str, np.ndarray]:
        check_images(images)
        device = next(self.fer.parameters()).device
        probs = []
        for view in face_views(images, self.margins, self.mirror):
            x = torch.from_numpy(view).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1
            probs.append(self.fer(face_input(x)).softmax(dim=1).cpu())
        probs = torch.stack(probs).mean(dim=0)
        readings = {"valence": (probs @ self._pleasure).numpy()}
        readings.update({e: probs[:, i].numpy() for i, e in enumerate(EMOTIONS)})
        return readings
