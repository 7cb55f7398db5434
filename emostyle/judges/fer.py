"""FER judge: the expression a FER2013 classifier reads on saved face images.

Valence is the expected pleasure of the expression: the classifier's seven probabilities
weighted by the pleasure of each emotion term (Russell & Mehrabian 1977, the table the
affect space uses), in [-0.64, 0.81]. It judges faces guided in CLIP space (paper-ffhq):
a different network, trained on other data, than the CLIP encoders that guided them.
"""

from __future__ import annotations

import numpy as np
import torch

from emostyle.models.fer import EMOTIONS, MiniXception, face_input
from emostyle.parts import Judge, check_images

__all__ = ["FerJudge"]


class FerJudge(Judge):
    """Readings: "valence" (expected pleasure) and the probability of each FER2013 emotion."""

    name = "FER2013 mini-Xception (expected pleasure)"

    def __init__(self, fer: MiniXception):
        from emostyle.spaces.affect import EMOTION_PAD

        self.fer = fer.eval()
        self._pleasure = torch.tensor([EMOTION_PAD[e][0] for e in EMOTIONS])

    @torch.no_grad()
    def read(self, images: np.ndarray) -> dict[str, np.ndarray]:
        check_images(images)
        device = next(self.fer.parameters()).device
        x = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1
        probs = self.fer(face_input(x)).softmax(dim=1).cpu()
        readings = {"valence": (probs @ self._pleasure).numpy()}
        readings.update({e: probs[:, i].numpy() for i, e in enumerate(EMOTIONS)})
        return readings
