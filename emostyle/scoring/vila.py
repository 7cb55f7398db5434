"""VILA-R aesthetic score (Ke et al., CVPR 2023), the scorer of the paper's Table 1.

The model is Google's TensorFlow SavedModel `google/vila/image/1` (TF Hub, now served on Kaggle as
`google/vila/tensorFlow2/image`; registry entry `vila-r`, a folder). Its published signature is
`serving_default(image_bytes: tf.string scalar) -> {"predictions": float32 (1, 1)}`: one *encoded*
image in, a mean opinion score in [0, 1] out; the model decodes and resizes inside the graph.

What bytes we feed, since the score depends on them:
- an image file (a path) is fed byte for byte, as the model card does (`tf.io.read_file`): score the
  `after.png` the pipeline wrote;
- an array or tensor is encoded as 8-bit sRGB **PNG** by default: lossless, so the score sees the
  generated pixels and not compression artefacts, and identical pixels give identical bytes
  (the model card's own example image is a PNG). `encoding="jpeg"` (quality 95, 4:4:4 chroma, no
  optimisation flags) is there for comparison with pipelines that save JPEGs.

TensorFlow is an optional extra (`pip install "emostyle[vila]"`, i.e. tensorflow-cpu==2.21.0),
imported only when a model is loaded.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

__all__ = ["VilaScorer", "load_vila", "encode_image"]

ENCODINGS = ("png", "jpeg")
_INPUT, _OUTPUT = "image_bytes", "predictions"
_EXTRA = 'VILA needs TensorFlow, an optional extra: pip install "emostyle[vila]" (tensorflow-cpu==2.21.0)'


def _tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's start-up chatter is not ours to show
    try:
        import tensorflow as tf
    except ImportError as err:
        raise ImportError(f"{_EXTRA} ({err})") from None
    return tf


def encode_image(image: np.ndarray, encoding: str = "png", jpeg_quality: int = 95) -> bytes:
    """Encoded bytes of one image (H, W, 3) uint8 RGB."""
    from PIL import Image

    if encoding not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r}; valid: {', '.join(ENCODINGS)}")
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}")
    buf = io.BytesIO()
    if encoding == "png":
        Image.fromarray(image).save(buf, format="PNG")
    else:
        Image.fromarray(image).save(buf, format="JPEG", quality=jpeg_quality, subsampling=0)
    return buf.getvalue()


def _to_uint8(images) -> list[np.ndarray]:
    """Tensor (B, 3, H, W) in [-1, 1] or arrays (H, W, 3) uint8 -> list of uint8 arrays."""
    if hasattr(images, "detach"):
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"image tensors must be (B, 3, H, W) in [-1, 1], got {tuple(images.shape)}")
        x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte()
        return list(x.permute(0, 2, 3, 1).numpy())
    if isinstance(images, np.ndarray) and images.ndim == 3:
        return [images]
    return [np.asarray(im) for im in images]


class VilaScorer:
    """A loaded VILA-R SavedModel; `score` returns aesthetic scores in [0, 1] (higher is better)."""

    name = "vila-r"
    higher_is_better = True

    def __init__(self, model, encoding: str = "png", jpeg_quality: int = 95):
        if encoding not in ENCODINGS:
            raise ValueError(f"unknown encoding {encoding!r}; valid: {', '.join(ENCODINGS)}")
        self._model = model  # the signature needs its model alive
        self._predict = model.signatures["serving_default"]
        self.encoding = encoding
        self.jpeg_quality = jpeg_quality

    def score_bytes(self, data: bytes) -> float:
        """Score of one encoded image (PNG, JPEG, ... bytes as the model's decoder reads them)."""
        tf = _tensorflow()
        out = self._predict(**{_INPUT: tf.constant(data, dtype=tf.string)})[_OUTPUT].numpy()
        if out.size != 1:
            raise ValueError(f"VILA returned {out.shape} predictions for one image; expected (1, 1)")
        return float(out.reshape(-1)[0])

    def score(self, images) -> np.ndarray:
        """Scores (B,) in [0, 1] of image files (paths: bytes fed as they are), a tensor (B, 3, H, W)
        in [-1, 1], or (H, W, 3) uint8 arrays (encoded as `self.encoding`)."""
        if isinstance(images, (str, Path)) or (isinstance(images, (list, tuple)) and images
                                                 and isinstance(images[0], (str, Path))):
            paths = [images] if isinstance(images, (str, Path)) else images
            return np.array([self.score_bytes(Path(p).read_bytes()) for p in paths])
        return np.array([self.score_bytes(encode_image(im, self.encoding, self.jpeg_quality))
                         for im in _to_uint8(images)])


def load_vila(path: str | Path | None = None, encoding: str = "png", jpeg_quality: int = 95) -> VilaScorer:
    """Load the VILA-R SavedModel folder (default: registry `vila-r`) and check its signature."""
    if path is None:
        from emostyle import registry

        path = registry.path("vila-r")
    path = Path(path)
    if not (path / "saved_model.pb").is_file():
        raise FileNotFoundError(
            f"no TensorFlow SavedModel (saved_model.pb) in {path}; get google/vila/image from "
            "https://www.kaggle.com/models/google/vila, unpack it, and run "
            "`emostyle weights fetch vila-r --from FOLDER`"
        )
    tf = _tensorflow()
    model = tf.saved_model.load(str(path))
    if "serving_default" not in model.signatures:
        raise ValueError(f"{path}: no serving_default signature; found {list(model.signatures)}")
    fn = model.signatures["serving_default"]
    inputs = fn.structured_input_signature[1]
    spec = inputs.get(_INPUT)
    if spec is None or spec.dtype != tf.string or spec.shape.rank not in (0, None):
        found = {k: (v.dtype.name, v.shape.as_list() if v.shape.rank is not None else None) for k, v in inputs.items()}
        raise ValueError(f"{path}: expected VILA's input {_INPUT!r} (a scalar tf.string), found {found}")
    if _OUTPUT not in fn.structured_outputs:
        raise ValueError(f"{path}: expected VILA's output {_OUTPUT!r}, found {list(fn.structured_outputs)}")
    return VilaScorer(model, encoding, jpeg_quality)
