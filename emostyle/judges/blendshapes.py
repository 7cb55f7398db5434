"""A face-emotion judge from MediaPipe Face Landmarker's 52 face blendshapes, without mediapipe.

The `mediapipe` package pins numpy<2 and pulls jax, so the judge runs the three TFLite models
of Google's Face Landmarker bundle (`face_landmarker.task`, registry entry
`mediapipe-face-landmarker`) with the `ai-edge-litert` interpreter and does the graph's glue
itself, as MediaPipe's FaceLandmarker does on CPU for one image (IMAGE mode, no tracking):

1. Detector (`face_detector.tflite`, BlazeFace short range, 128 x 128 RGB in [-1, 1]): the
   image is letterboxed into a square (zero border), warped bilinearly to 128 px; 896 SSD
   anchors (strides 8, 16, 16, 16: a 16 x 16 grid with 2 anchors, an 8 x 8 grid with 6; fixed
   size, offset 0.5) decode boxes and 6 keypoints (offsets / 128 + anchor centre); score =
   sigmoid(logit clipped to +-100) >= `MIN_DETECTION`; weighted non-maximum suppression (IoU >
   0.5, the FaceDetectorGraphOptions default the FaceLandmarker leaves in place; box corners and
   keypoints averaged over a cluster, weighted by score); the best cluster is the face.
2. Region of interest: the box's centre and size, rotated so that the line from keypoint 0 to
   keypoint 1 (the eyes) is horizontal, then scaled 1.5 x in width and height (not squared).
3. Landmarks (`face_landmarks_detector.tflite`, 256 x 256 RGB in [0, 1]): the rotated region is
   warped bilinearly to 256 px (its corners onto the output's corners, border replicated, 8-bit
   result as OpenCV's warpPerspective gives it); 478 points (x, y, z in input pixels) are rotated
   and scaled back into the image; sigmoid of the second output is the face's presence, which
   must be >= `MIN_PRESENCE`.
4. Blendshapes (`face_blendshapes.tflite`): the 146 landmarks of `SUBSET` (MediaPipe's
   `kLandmarksSubsetIdxs`), (x, y) in pixels of the image the landmarker saw, in -> 52 scores
   in [0, 1] (`BLENDSHAPES`, ARKit-style names).

Framing (`frame`). Faces given to the judge fill the frame (the DCGAN's 64 px faces, aligned
photos); the detector expects a face with context around it, and the 1.5 x region reaches past
the frame. So an image whose short side is under `FRAME_SIZE` (256) is enlarged (bicubic, PIL)
until it is 256, and every image is edge-padded by `FRAME_PAD` (a quarter) of its short side on
each side, as in the survey that chose this judge (64 px faces: 256 px + 64 px each side).
Landmarks are returned in the pixels of the image given (before framing).

Reading. `valence` = mean(mouthSmileLeft, mouthSmileRight) - mean(mouthFrownLeft,
mouthFrownRight), in [-1, 1]: lip corners pulled up (AU12) against pulled down (AU15). The
readings hold all 52 scores by name, "presence", "detection" and "found"; NaN where no face is
found (detection score or presence under 0.2: MediaPipe's defaults are 0.5; 0.2 is what the
survey used, and keeps faces that the DCGAN drew less clearly).

Parity with mediapipe 0.10.21's own FaceLandmarker (CPU, same bundle, thresholds 0.2) on the
same framed images, 32 DCGAN faces, their mirror images and the astronaut crop: the same faces
found (61 of 66), blendshape scores within 0.034 (median of per-face maxima 0.004), landmarks
within 0.5 px of 384 (median 0.08 px). The residue is floating point: MediaPipe builds the warp
in float32 and OpenCV interpolates in fixed point (1/32 px), and the landmarker moves points by
about 1 px per 0.25 px shift of its crop on the least clear faces.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from emostyle.models.face_mesh import (BLENDSHAPES, FRAME_PAD, FRAME_SIZE, SUBSET, bundle_path, decode_detection,
                                       read_bundle, region, sigmoid)
from emostyle.parts import Judge, check_images

__all__ = ["BlendshapeJudge", "BLENDSHAPES", "frame", "FRAME_SIZE", "FRAME_PAD", "MIN_DETECTION", "MIN_PRESENCE"]

MIN_DETECTION = 0.2  # detector score a face needs (MediaPipe's default: 0.5)
MIN_PRESENCE = 0.2  # landmarker presence a face needs (MediaPipe's default: 0.5)
_SMILE = ("mouthSmileLeft", "mouthSmileRight")
_FROWN = ("mouthFrownLeft", "mouthFrownRight")


def frame(image: np.ndarray) -> tuple[np.ndarray, float, int]:
    """The framed image that the landmarker reads, for an 8-bit RGB face crop (H, W, 3): enlarged
    (bicubic) to a short side of `FRAME_SIZE` if smaller, then edge-padded by `FRAME_PAD` of the
    short side on each side. Returns (framed image, scale, padding in px)."""
    from PIL import Image

    h, w = image.shape[:2]
    scale = max(1.0, FRAME_SIZE / min(h, w))
    if scale > 1:
        image = np.asarray(Image.fromarray(image).resize((round(w * scale), round(h * scale)),
                                                         Image.Resampling.BICUBIC))
    pad = round(FRAME_PAD * min(image.shape[:2]))
    return np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge"), scale, pad


def _warp(image: np.ndarray, centre, size, angle: float, out: int, zero_border: bool) -> np.ndarray:
    """The rotated rectangle (centre, size in px, angle in radians) of `image` sampled bilinearly
    onto out x out pixels, its corners onto the output's corners (OpenCV's warpPerspective of
    cv2.boxPoints onto (0, out) .. (out, out)), rounded to 8 bits like OpenCV's uint8 result."""
    h, w = image.shape[:2]
    t = np.arange(out) / out - 0.5
    lx, ly = np.meshgrid(t * size[0], t * size[1])
    c, s = np.cos(angle), np.sin(angle)
    x, y = centre[0] + c * lx - s * ly, centre[1] + s * lx + c * ly
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0).astype(np.float32)[..., None], (y - y0).astype(np.float32)[..., None]
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    flat = image.reshape(-1, 3).astype(np.float32)

    def at(yy, xx):
        value = np.take(flat, np.clip(yy, 0, h - 1) * w + np.clip(xx, 0, w - 1), axis=0)
        if zero_border:
            value *= ((yy >= 0) & (yy < h) & (xx >= 0) & (xx < w))[..., None]
        return value

    top = at(y0, x0) * (1 - fx) + at(y0, x0 + 1) * fx
    bottom = at(y0 + 1, x0) * (1 - fx) + at(y0 + 1, x0 + 1) * fx
    return np.round(top * (1 - fy) + bottom * fy)


@lru_cache(maxsize=2)
def _interpreters(bundle: str, threads: int):
    """(detector, landmarker, blendshapes) TFLite interpreters of a face_landmarker.task bundle."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise ImportError("the blendshape judge needs the LiteRT interpreter: `pip install ai-edge-litert` "
                          "(or `pip install -e '.[offline]'`)") from None
    out = []
    for model in read_bundle(bundle):
        interpreter = Interpreter(model_content=model, num_threads=threads)
        interpreter.allocate_tensors()
        out.append(interpreter)
    return tuple(out)


def _run(interpreter, x: np.ndarray) -> list[np.ndarray]:
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x.astype(np.float32)[None])
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]


class BlendshapeJudge(Judge):
    """Valence of faces from MediaPipe's face blendshapes: mouth smile - mouth frown.

    bundle: path of `face_landmarker.task` (None: registry entry `mediapipe-face-landmarker`,
    which `emostyle weights fetch mediapipe-face-landmarker` downloads); threads: of the TFLite
    interpreters (None: up to 4, as the machine allows).
    """

    name = "MediaPipe face blendshapes (mouth smile - frown)"
    components = BLENDSHAPES  # not "presence" and "detection": they rate the face's finding

    def __init__(self, bundle: str | Path | None = None, min_detection: float = MIN_DETECTION,
                 min_presence: float = MIN_PRESENCE, threads: int | None = None):
        path = bundle_path(bundle)
        if not (0 <= min_detection <= 1 and 0 <= min_presence <= 1):
            raise ValueError(f"thresholds are in [0, 1]; got {min_detection}, {min_presence}")
        self.min_detection, self.min_presence = min_detection, min_presence
        threads = threads or min(4, os.cpu_count() or 1)
        self._models = _interpreters(str(path), threads)  # a missing interpreter fails here, not mid-run

    # -- the graph, one image ----------------------------------------------------------------------
    def _detect(self, image: np.ndarray):
        """(box xmin, ymin, xmax, ymax; keypoints (6, 2); score), all in [0, 1] of the image; None
        when no score reaches the threshold."""
        h, w = image.shape[:2]
        side = max(h, w)
        x = _warp(image, (w / 2, h / 2), (side, side), 0.0, 128, zero_border=True) / 127.5 - 1
        regressors, logits = (o[0] for o in sorted(_run(self._models[0], x), key=lambda o: -o.shape[-1]))
        return decode_detection(regressors, logits[:, 0], self.min_detection, w, h)

    def _landmarks(self, image: np.ndarray):
        """(points (478, 3) in pixels of `image`, presence, detection score); points None when no face."""
        found = self._detect(image)
        if found is None:
            return None, 0.0, 0.0
        box, keypoints, score = found
        centre, extent, angle = region(box, keypoints, image.shape[1], image.shape[0])
        crop = _warp(image, centre, extent, angle, 256, zero_border=False) / 255.0
        points, presence = (o.reshape(-1) for o in _run(self._models[1], crop)[:2])
        presence = float(sigmoid(presence[0]))
        if presence < self.min_presence:
            return None, presence, score
        points = points.reshape(478, 3) / 256.0
        local = (points[:, :2] - 0.5) * extent
        c, s = np.cos(angle), np.sin(angle)
        xy = centre + local @ np.array([[c, s], [-s, c]])
        return np.column_stack([xy, points[:, 2] * extent[0]]), presence, score

    # -- the judge ---------------------------------------------------------------------------------
    def measure(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Per image of 8-bit RGB face crops (B, H, W, 3): "landmarks" (B, 478, 3) in pixels of the
        images given (z in the same units, relative), "blendshapes" (B, 52) in `BLENDSHAPES` order,
        "presence" and "detection" scores (B,); NaN where no face is found."""
        check_images(images)
        n = len(images)
        out = {"landmarks": np.full((n, 478, 3), np.nan), "blendshapes": np.full((n, 52), np.nan),
               "presence": np.zeros(n), "detection": np.zeros(n)}
        for k, image in enumerate(images):
            framed, scale, pad = frame(np.ascontiguousarray(image))
            points, out["presence"][k], out["detection"][k] = self._landmarks(framed)
            if points is None:
                continue
            subset = points[SUBSET, :2]
            out["blendshapes"][k] = _run(self._models[2], subset)[0].reshape(-1)
            # back through the framing, pixel centres onto pixel centres (as the resize maps them)
            points[:, :2] = (points[:, :2] - pad + 0.5) / scale - 0.5
            points[:, 2] /= scale
            out["landmarks"][k] = points
        return out

    def read(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """{"valence"} (B,) in [-1, 1], each of the 52 `BLENDSHAPES` (B,) in [0, 1], "presence" and
        "detection" (B,), "found" (B,) bool; NaN where no face is found."""
        m = self.measure(images)
        scores = {name: m["blendshapes"][:, i] for i, name in enumerate(BLENDSHAPES)}
        valence = np.mean([scores[s] for s in _SMILE], axis=0) - np.mean([scores[f] for f in _FROWN], axis=0)
        found = ~np.isnan(valence)
        return {"valence": valence, **scores, "presence": m["presence"], "detection": m["detection"], "found": found}
