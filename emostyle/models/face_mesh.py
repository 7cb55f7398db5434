"""MediaPipe Face Landmarker in PyTorch: face blendshapes with a gradient back to the pixels.

The blendshape judge (`emostyle.judges.blendshapes`) runs Google's three TFLite models with
the LiteRT interpreter, as MediaPipe does, and its module docstring describes the graph. This
module runs the same three files through `TFLiteGraph`, so that a guidance loss can follow
the gradient of a blendshape (a lip corner pulled down, a brow raised) back to the image:

- framing: faces that fill the frame are enlarged (bicubic) to a short side of 256 px and
  edge-padded by a quarter of it, as the judge frames them (`FRAME_SIZE`, `FRAME_PAD`);
- detection (no gradient: it only places the crop): BlazeFace on the letterboxed 128 px
  square, decoded by `decode_detection`; the region of interest (`region`) is the box turned
  level with the eyes and scaled 1.5 x. Where nothing is found the region is the face's own
  frame, turned 0, so the reading and its gradient exist for every image (`found` says which
  images the detector saw);
- landmarks: the region warped bilinearly (`grid_sample`, border replicated) to 256 px,
  478 points mapped back into the framed image;
- blendshapes: the 146 points of `SUBSET` -> 52 scores in [0, 1] (`BLENDSHAPES`).

The judge keeps its own interpreter path (8-bit warps as OpenCV makes them, PIL's bicubic)
because its parity is with MediaPipe's own FaceLandmarker; this module is what a guidance
loss differentiates. Parity of the two on DCGAN faces is a test (`tests/test_face_mesh.py`).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from emostyle.models.tflite import TFLiteGraph

__all__ = ["FaceMesh", "BLENDSHAPES", "SUBSET", "FRAME_SIZE", "FRAME_PAD", "ROI_SCALE", "NMS_IOU",
           "decode_detection", "region", "bundle_path", "read_bundle", "load_face_mesh"]

FRAME_SIZE = 256  # short side (px) that smaller images are enlarged to
FRAME_PAD = 0.25  # edge padding on each side, as a fraction of the short side
NMS_IOU = 0.5  # FaceDetectorGraphOptions.min_suppression_threshold's default
ROI_SCALE = 1.5  # the landmarker's region: the detector's box scaled this much
DETECTOR_SIZE, LANDMARKER_SIZE = 128, 256
LANDMARKER_BATCH = 4

BLENDSHAPES = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight",
    "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft",
    "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight",
    "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel",
    "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight",
    "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
    "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
)

# The 146 of the 478 mesh points that the blendshape model reads, in its order (MediaPipe's
# `kLandmarksSubsetIdxs`).
SUBSET = np.array([
    0, 1, 4, 5, 6, 7, 8, 10, 13, 14, 17, 21, 33, 37, 39, 40, 46, 52, 53, 54, 55, 58, 61, 63, 65, 66,
    67, 70, 78, 80, 81, 82, 84, 87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133, 136, 144, 145,
    146, 148, 149, 150, 152, 153, 154, 155, 157, 158, 159, 160, 161, 162, 163, 168, 172, 173, 176,
    178, 181, 185, 191, 195, 197, 234, 246, 249, 251, 263, 267, 269, 270, 276, 282, 283, 284, 285,
    288, 291, 293, 295, 296, 297, 300, 308, 310, 311, 312, 314, 317, 318, 321, 323, 324, 332, 334,
    336, 338, 356, 361, 362, 365, 373, 374, 375, 377, 378, 379, 380, 381, 382, 384, 385, 386, 387,
    388, 389, 390, 397, 398, 400, 402, 405, 409, 415, 454, 466, 468, 469, 470, 471, 472, 473, 474,
    475, 476, 477])


def _anchors() -> np.ndarray:
    """Centres (896, 2) of the short-range detector's SSD anchors, in [0, 1] of its input:
    strides 8, 16, 16, 16 (a 16 x 16 grid with 2 anchors per cell, an 8 x 8 grid with 6),
    fixed size, offset 0.5."""
    centres = []
    for grid, per_cell in ((16, 2), (8, 6)):
        c = (np.arange(grid) + 0.5) / grid
        y, x = np.meshgrid(c, c, indexing="ij")
        centres.append(np.repeat(np.stack([x.ravel(), y.ravel()], 1), per_cell, axis=0))
    return np.concatenate(centres)


ANCHORS = _anchors()


def sigmoid(x):
    """The detector's and landmarker's score: sigmoid of the logit clipped to +-100."""
    return 1 / (1 + np.exp(-np.clip(np.asarray(x, dtype=np.float64), -100, 100)))


def decode_detection(regressors: np.ndarray, logits: np.ndarray, min_score: float, width: int, height: int):
    """The best face of one detector run (regressors (896, 16), logits (896,)) on a (height x width)
    image letterboxed into the detector's square: (box (2, 2) as (xmin, ymin), (xmax, ymax);
    keypoints (6, 2); score), in [0, 1] of the image, after weighted non-maximum suppression
    (boxes and keypoints of the best cluster averaged by score); None when no score reaches
    `min_score`."""
    scores = sigmoid(logits)
    keep = np.flatnonzero(scores >= min_score)
    if not len(keep):
        return None
    raw, centres, scores = regressors[keep] / DETECTOR_SIZE, ANCHORS[keep], scores[keep]
    middle, size = raw[:, :2] + centres, raw[:, 2:4]
    boxes = np.concatenate([middle - size / 2, middle + size / 2], axis=1)
    keypoints = raw[:, 4:16].reshape(-1, 6, 2) + centres[:, None]
    best = int(np.argmax(scores))
    lo, hi = np.maximum(boxes[best, :2], boxes[:, :2]), np.minimum(boxes[best, 2:], boxes[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    cluster = inter / (areas[best] + areas - inter) > NMS_IOU
    weights = scores[cluster] / scores[cluster].sum()
    box, points = (weights @ boxes[cluster]).reshape(2, 2), np.einsum("k,kpc->pc", weights, keypoints[cluster])
    # from the letterboxed square back to [0, 1] of the image
    side = max(width, height)
    offset, stretch = (side - np.array([width, height])) / 2 / side, side / np.array([width, height])
    return (box - offset) * stretch, (points - offset) * stretch, float(scores[best])


def bundle_path(bundle: str | Path | None = None) -> Path:
    """The path of a `face_landmarker.task` bundle (None: registry entry
    `mediapipe-face-landmarker`); a missing file is an error naming the fetch command."""
    from emostyle import registry

    path = Path(bundle) if bundle is not None else registry.path("mediapipe-face-landmarker")
    if not path.is_file():
        raise FileNotFoundError(f"no face landmarker bundle at {path}; "
                                "`emostyle weights fetch mediapipe-face-landmarker` downloads it")
    return path


def read_bundle(bundle: str | Path | None = None) -> tuple[bytes, bytes, bytes]:
    """The (detector, landmarker, blendshapes) TFLite files of a bundle (see `bundle_path`)."""
    with zipfile.ZipFile(bundle_path(bundle)) as task:
        return tuple(task.read(f"{name}.tflite") for name in ("face_detector", "face_landmarks_detector",
                                                               "face_blendshapes"))


def region(box: np.ndarray, keypoints: np.ndarray, width: int, height: int):
    """The landmarker's region (centre (2,), extent (2,) in px, angle in radians) of a face
    found in a (height x width) image: the box's centre, its size scaled by `ROI_SCALE`, turned
    so that the line from keypoint 0 to keypoint 1 (the eyes) is level."""
    size = np.array([width, height], dtype=np.float64)
    eyes = (keypoints[1] - keypoints[0]) * size
    return (box[0] + box[1]) / 2 * size, (box[1] - box[0]) * size * ROI_SCALE, float(np.arctan2(eyes[1], eyes[0]))


def _sample_grid(centre, extent, angle: float, out: int, width: int, height: int, device) -> torch.Tensor:
    """grid_sample's grid (1, out, out, 2) for the rotated rectangle whose corners go onto the
    output's corners, pixel k of the input at coordinate k (align_corners=True)."""
    t = torch.arange(out, device=device, dtype=torch.float64) / out - 0.5
    ly, lx = torch.meshgrid(t * float(extent[1]), t * float(extent[0]), indexing="ij")
    c, s = np.cos(angle), np.sin(angle)
    x, y = float(centre[0]) + c * lx - s * ly, float(centre[1]) + s * lx + c * ly
    return torch.stack([2 * x / (width - 1) - 1, 2 * y / (height - 1) - 1], dim=-1).float()[None]


def frame(images: torch.Tensor) -> tuple[torch.Tensor, float, int]:
    """Framed images (B, 3, H', W') in [0, 255] from images (B, 3, H, W) in [-1, 1]: enlarged
    (bicubic) to a short side of `FRAME_SIZE` if smaller, then edge-padded by `FRAME_PAD` of the
    short side on each side; differentiable. Returns (framed, scale, padding in px)."""
    pixels = (images + 1) * 127.5
    h, w = images.shape[2:]
    scale = max(1.0, FRAME_SIZE / min(h, w))
    if scale > 1:
        pixels = F.interpolate(pixels, size=(round(h * scale), round(w * scale)), mode="bicubic", align_corners=False)
    pad = round(FRAME_PAD * min(pixels.shape[2:]))
    return F.pad(pixels, (pad, pad, pad, pad), mode="replicate"), scale, pad


class FaceMesh(torch.nn.Module):
    """The Face Landmarker's three networks (TFLite flatbuffers: detector, landmarker,
    blendshapes), run in torch; `forward` gives blendshapes with gradients to the image."""

    def __init__(self, detector: bytes, landmarker: bytes, blendshapes: bytes, min_detection: float = 0.2):
        super().__init__()
        self.detector = TFLiteGraph(detector)
        self.landmarker = TFLiteGraph(landmarker)
        self.blendshapes = TFLiteGraph(blendshapes)
        self.min_detection = min_detection

    @torch.no_grad()
    def regions(self, framed: torch.Tensor) -> list:
        """(centre, extent, angle, found) of the face in each framed image (B, 3, H, W) in [0, 255]."""
        b, _, h, w = framed.shape
        side = max(h, w)
        grid = _sample_grid((w / 2, h / 2), (side, side), 0.0, DETECTOR_SIZE, w, h, framed.device)
        square = F.grid_sample(framed, grid.expand(b, -1, -1, -1), mode="bilinear", padding_mode="zeros",
                               align_corners=True)
        regressors, logits = sorted(self.detector(square.permute(0, 2, 3, 1) / 127.5 - 1), key=lambda o: -o.shape[-1])
        out = []
        for k in range(b):
            found = decode_detection(regressors[k].cpu().numpy(), logits[k, :, 0].cpu().numpy(), self.min_detection,
                                     w, h)
            if found is None:  # the face's own frame: the framing pads a quarter of the side around it
                inner = np.array([w, h]) / (1 + 2 * FRAME_PAD)
                out.append((np.array([w / 2, h / 2]), inner, 0.0, False))
                continue
            box, keypoints, _ = found
            out.append((*region(box, keypoints, w, h), True))
        return out

    def landmarks(self, framed: torch.Tensor):
        """(points (B, 478, 3) in px of the framed images, presence (B,), found (B,) bool)."""
        b, _, h, w = framed.shape
        grids, rotations, centres, extents, found = [], [], [], [], []
        for centre, extent, angle, seen in self.regions(framed):
            grids.append(_sample_grid(centre, extent, angle, LANDMARKER_SIZE, w, h, framed.device))
            c, s = np.cos(angle), np.sin(angle)
            rotations.append([[c, s], [-s, c]])
            centres.append(centre)
            extents.append(extent)
            found.append(seen)
        # One call for the batch: a slice per image would cost, going back, a zero gradient of
        # the whole framed batch per image.
        crops = F.grid_sample(framed, torch.cat(grids), mode="bilinear", padding_mode="border", align_corners=True)
        crops = (crops / 255.0).permute(0, 2, 3, 1)
        # a few crops at a time: on a CPU, batches past 4 run slower per crop (measured)
        outputs = [self.landmarker(chunk)[:2] for chunk in crops.split(LANDMARKER_BATCH)]
        points = torch.cat([o[0] for o in outputs]).reshape(b, 478, 3) / LANDMARKER_SIZE
        presence = torch.cat([o[1] for o in outputs])
        tensor = lambda v: torch.tensor(np.array(v), dtype=points.dtype, device=points.device)  # noqa: E731
        local = (points[..., :2] - 0.5) * tensor(extents)[:, None]
        xy = tensor(centres)[:, None] + local @ tensor(rotations)
        z = points[..., 2:] * tensor(extents)[:, None, :1]
        return torch.cat([xy, z], dim=-1), torch.sigmoid(presence.reshape(b)), torch.tensor(found, device=points.device)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Blendshapes (B, 52) in `BLENDSHAPES` order of face images (B, 3, H, W) in [-1, 1],
        whether the detector found each face (B,) bool, and the landmarker's face presence (B,)
        in [0, 1] (its confidence that a face is in the crop)."""
        framed, _, _ = frame(images)
        points, presence, found = self.landmarks(framed)
        return self.blendshapes(points[:, SUBSET, :2])[0], found, presence


def load_face_mesh(bundle: str | Path | None = None, device: str | torch.device = "cpu") -> FaceMesh:
    """The FaceMesh of a `face_landmarker.task` bundle (None: registry entry
    `mediapipe-face-landmarker`), in eval mode on `device`."""
    return FaceMesh(*read_bundle(bundle)).to(device).eval()
