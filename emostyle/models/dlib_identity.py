"""Identity as a metric for the offline profile: dlib's face descriptor (not differentiable).

dlib's ResNet face-recognition model (128-d descriptors; two photos of one person lie
within Euclidean distance 0.6, dlib's own threshold) with its HOG face detector and
5-point landmarks, from the PyPI packages `dlib-bin` and `face-recognition-models`
(model files located with importlib, not `pkg_resources`). On the DCGAN's 64 px faces the
HOG detector needs two upsamplings to find every face (measured: 1 of 8 faces found at
upsample 0, 7 of 8 at 1, 8 of 8 at 2); an undetected face is described on the whole frame.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

__all__ = ["DlibIdentity", "SAME_PERSON"]

SAME_PERSON = 0.6  # dlib's distance threshold for "same person"


def _model_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise ImportError(
            "dlib identity needs `pip install dlib-bin face-recognition-models` (the offline profile's "
            "optional identity metric; the guidance uses the FER features instead)"
        )
    return Path(spec.origin).parent / "models"


class DlibIdentity:
    """Descriptor distance between image batches (B, 3, H, W) in [-1, 1]; upsample: HOG upsamplings."""

    def __init__(self, upsample: int = 2):
        try:
            import dlib
        except ImportError:
            _model_dir()  # raises the install hint
            raise
        models = _model_dir()
        self.upsample = upsample
        self.detector = dlib.get_frontal_face_detector()
        self.landmarks = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self.encoder = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
        self._rectangle = dlib.rectangle

    def descriptors(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(B, 128) descriptors and a (B,) bool array: was a face detected (else whole frame)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected RGB images (B, 3, H, W) in [-1, 1]; got {tuple(images.shape)}")
        pixels = ((images.detach().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        out, found = [], []
        for img in pixels:
            img = np.ascontiguousarray(img)
            faces = self.detector(img, self.upsample)
            box = max(faces, key=lambda r: r.area()) if len(faces) else \
                self._rectangle(0, 0, img.shape[1] - 1, img.shape[0] - 1)
            out.append(np.asarray(self.encoder.compute_face_descriptor(img, self.landmarks(img, box))))
            found.append(len(faces) > 0)
        return np.stack(out), np.array(found)

    def __call__(self, images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """Euclidean descriptor distances (B,); below `SAME_PERSON` reads as the same person."""
        a, _ = self.descriptors(images)
        b, _ = self.descriptors(reference)
        return torch.from_numpy(np.linalg.norm(a - b, axis=1)).float()
