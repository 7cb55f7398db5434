"""A face-emotion judge from dlib's 68 facial landmarks: the geometry of the mouth.

The offline profile guides faces with the FER2013 mini-Xception, so that network cannot
judge its own result. This judge did not guide anything: dlib's HOG face detector finds the
face in the saved 8-bit image, dlib's 68-point shape predictor (trained on iBUG 300-W;
registry entry `dlib-landmarks-68`) places the points, and the reading is plain geometry,
described with the Facial Action Coding System (Ekman & Friesen 1978):

- `smile`: the height of the lip corners (points 48, 54) above the line where the lips meet
  (the middle of the inner lips, points 62, 66). Positive when the corners are pulled up
  (AU12, lip-corner puller: smiling), negative when pulled down (AU15, lip-corner
  depressor: sadness), 0 when level. This is the judge's `valence`.
- `mouth_width`: lip corner to lip corner (48-54); smiles widen the mouth (AU12, AU20).
- `mouth_open`: the gap between the inner lips (62-66; AU25/26, lips part, jaw drops).
- `brow_raise`: height of the inner brow ends (21, 22) above the inner eye corners (39, 42);
  the inner brow rises in sadness and surprise (AU1).

Every measure is in inter-ocular distances (outer eye corners 36-45, the normalisation of
the 300-W benchmark, Sagonas et al. 2016), measured in the face's own frame (x along the eye
line, heights perpendicular to it), so it does not change with the face's size, position or
in-plane tilt. Nothing is centred or scaled on our images: the raw measures are reported,
and `valence` is `smile` alone, because weighing the measures against each other would need
weights fitted to some data.

Small images (the DCGAN's 64 px faces) are enlarged before detection: the HOG detector
scans an 80 px window, and a face filling a 64 px frame is only about 40 px wide, so the
image is resized (bicubic) until its short side is `DETECT_SIZE` px, and detector and
predictor both run on the enlarged pixels; points are returned in the original pixels.
Where no face is found, the detector looks once more at twice the size (a small face in a
larger photo). Of several faces, the surest (dlib's detection score) is read.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from emostyle import registry
from emostyle.parts import Judge

__all__ = ["LandmarkJudge", "face_landmarks", "mouth_geometry"]

# Short side (px) that a small image is enlarged to: 4x for the DCGAN's 64 px faces. Of 64 of
# them, dlib's own pyramid (two 2x steps) found 50, this bicubic enlargement 53 (54 with the
# second pass at 2x); the ones missed are warped or turned away.
DETECT_SIZE = 256

# iBUG 300-W indices (0-based) of the points the measures use.
_EYE_OUTER = (36, 45)
_EYE_INNER = (39, 42)
_BROW_INNER = (21, 22)
_LIP_CORNERS = (48, 54)
_INNER_LIP_MIDDLE = (62, 66)  # upper, lower


@lru_cache(maxsize=2)
def _models(predictor_path: str):
    """(HOG detector, 68-point shape predictor), loaded once per file."""
    try:
        import dlib
    except ImportError:
        raise ImportError("the landmark judge needs dlib: `pip install dlib-bin` "
                          "(or `pip install -e '.[offline]'`)") from None
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(predictor_path)


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"expected an 8-bit RGB image, uint8 (H, W, 3); got {got} "
                         "(emostyle.parts.to_uint8 turns images in [-1, 1] into that)")
    return np.ascontiguousarray(image)


def _landmarks(image: np.ndarray, predictor_path: str) -> np.ndarray | None:
    from PIL import Image

    detector, predictor = _models(predictor_path)
    h, w = image.shape[:2]
    scale = max(1.0, DETECT_SIZE / min(h, w))
    if scale > 1:
        size = (round(w * scale), round(h * scale))
        image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))
    faces, scores, _ = detector.run(image, 0, 0.0)
    if not len(faces):  # a face under the 80 px window in a larger frame: once more at 2x (dlib's pyramid)
        faces, scores, _ = detector.run(image, 1, 0.0)
    if not len(faces):
        return None
    # the surest face, not the largest: a badge on an astronaut's suit was found too, larger
    # than her face, at a score of 0.07 against her face's 1.6
    shape = predictor(image, faces[int(np.argmax(scores))])
    points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
    # back to the original pixels, pixel centres onto pixel centres (as the resize maps them)
    return (points + 0.5) * np.array([w / image.shape[1], h / image.shape[0]]) - 0.5


def face_landmarks(image: np.ndarray) -> np.ndarray | None:
    """The 68 iBUG points (68, 2) as (x, y) pixels of an 8-bit RGB image (H, W, 3) of its
    surest face; None when no face is found. Needs registry entry `dlib-landmarks-68`."""
    return _landmarks(_check_image(image), str(registry.path("dlib-landmarks-68")))


def mouth_geometry(points: np.ndarray) -> dict[str, np.ndarray]:
    """Measures of landmarks (..., 68, 2) in inter-ocular distances, each of shape (...):
    "smile", "mouth_width", "mouth_open", "brow_raise" (see the module's description)."""
    points = np.asarray(points, dtype=np.float64)
    if points.shape[-2:] != (68, 2):
        raise ValueError(f"expected landmarks (..., 68, 2) in the iBUG 300-W order; got {points.shape}")
    eye_line = points[..., _EYE_OUTER[1], :] - points[..., _EYE_OUTER[0], :]
    iod = np.linalg.norm(eye_line, axis=-1)
    along = eye_line / iod[..., None]
    # "up" in the face: perpendicular to the eye line, away from the mouth (image y points down).
    up = np.stack([along[..., 1], -along[..., 0]], axis=-1)

    def height(i):
        return np.mean([(points[..., j, :] * up).sum(-1) for j in i], axis=0) / iod

    upper, lower = _INNER_LIP_MIDDLE
    corners = points[..., _LIP_CORNERS[1], :] - points[..., _LIP_CORNERS[0], :]
    return {
        "smile": height(_LIP_CORNERS) - height(_INNER_LIP_MIDDLE),
        "mouth_width": np.linalg.norm(corners, axis=-1) / iod,
        "mouth_open": height((upper,)) - height((lower,)),
        "brow_raise": height(_BROW_INNER) - height(_EYE_INNER),
    }


class LandmarkJudge(Judge):
    """Valence of faces from the lip-corner geometry of dlib's 68 landmarks.

    predictor: path of `shape_predictor_68_face_landmarks.dat` (None: registry entry
    `dlib-landmarks-68`, which `emostyle weights fetch dlib-landmarks-68` downloads).
    """

    name = "dlib 68 landmarks (mouth geometry)"

    def __init__(self, predictor: str | Path | None = None):
        path = Path(predictor) if predictor is not None else registry.path("dlib-landmarks-68")
        if not path.is_file():
            raise FileNotFoundError(f"no landmark predictor at {path}; "
                                    "`emostyle weights fetch dlib-landmarks-68` downloads it")
        self._path = str(path)
        _models(self._path)  # load now: a missing dlib fails here, not in the middle of a run

    def landmarks(self, images: np.ndarray) -> np.ndarray:
        """Points (B, 68, 2) in pixels of images uint8 (B, H, W, 3); NaN where no face is found."""
        if not isinstance(images, np.ndarray) or images.ndim != 4:
            raise ValueError("expected a batch of 8-bit RGB images, uint8 (B, H, W, 3); got "
                             f"{getattr(images, 'shape', type(images).__name__)}")
        out = np.full((len(images), 68, 2), np.nan)
        for k, image in enumerate(images):
            points = _landmarks(_check_image(image), self._path)
            if points is not None:
                out[k] = points
        return out

    def read(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """{"valence", "smile", "mouth_width", "mouth_open", "brow_raise"} (B,) in inter-ocular
        distances, NaN where no face is found, and "found" (B,) bool."""
        points = self.landmarks(images)
        found = ~np.isnan(points).any(axis=(1, 2))
        measures = mouth_geometry(points)
        return {"valence": measures["smile"], **measures, "found": found}
