"""The VILA-R backend against a tiny SavedModel with VILA's published signature.

`serving_default(image_bytes: scalar tf.string) -> {"predictions": (1, 1) float32}`; the tiny
model decodes the bytes as VILA does (any format) and returns the mean grey level in [0, 1], so a
score is checkable by hand. Needs the optional extra `emostyle[vila]` (TensorFlow); skipped without it.
"""

import numpy as np
import pytest
import torch

tf = pytest.importorskip("tensorflow")

from emostyle.scoring import vila  # noqa: E402
from emostyle.scoring.vila import encode_image, load_vila  # noqa: E402


def _save(module, path, fn):
    tf.saved_model.save(module, str(path), signatures={"serving_default": fn})
    return path


@pytest.fixture(scope="module")
def tiny_vila(tmp_path_factory):
    class TinyVila(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([], tf.string, name="image_bytes")])
        def serve(self, image_bytes):
            image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
            score = tf.reduce_mean(tf.cast(image, tf.float32)) / 255.0
            return {"predictions": tf.reshape(score, [1, 1])}

    module = TinyVila()
    return _save(module, tmp_path_factory.mktemp("vila"), module.serve)


def test_scores_follow_the_signature(tiny_vila, tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (2, 24, 32, 3), dtype=np.uint8)
    scorer = load_vila(tiny_vila)
    scores = scorer.score(list(images))
    np.testing.assert_allclose(scores, images.reshape(2, -1).mean(1) / 255, rtol=1e-6)  # PNG: lossless

    tensor = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    np.testing.assert_allclose(scorer.score(tensor), scores, rtol=1e-6)

    path = tmp_path / "after.png"
    path.write_bytes(encode_image(images[1]))
    assert scorer.score(path)[0] == pytest.approx(scores[1], rel=1e-6)  # files go in byte for byte

    jpeg = load_vila(tiny_vila, encoding="jpeg", jpeg_quality=95).score(images[0])[0]
    assert jpeg != scores[0] and jpeg == pytest.approx(scores[0], abs=0.02)  # lossy, but close
    assert encode_image(images[0], "jpeg")[:2] == b"\xff\xd8" and encode_image(images[0])[:4] == b"\x89PNG"


def test_wrong_models_and_inputs(tiny_vila, tmp_path):
    class Other(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 224, 224, 3], tf.float32, name="image")])
        def serve(self, image):
            return {"predictions": tf.reduce_mean(image, [1, 2, 3])[:, None]}

    other = Other()
    with pytest.raises(ValueError, match="expected VILA's input 'image_bytes'"):
        load_vila(_save(other, tmp_path / "other", other.serve))
    with pytest.raises(FileNotFoundError, match="emostyle weights fetch vila-r"):
        load_vila(tmp_path / "empty")
    with pytest.raises(ValueError, match="valid: png, jpeg"):
        load_vila(tiny_vila, encoding="webp")
    with pytest.raises(ValueError, match="uint8"):
        encode_image(np.zeros((8, 8, 3), np.float32))


def test_missing_tensorflow_names_the_extra(monkeypatch, tiny_vila):
    import builtins

    real_import = builtins.__import__

    def no_tf(name, *args, **kwargs):
        if name == "tensorflow":
            raise ImportError("No module named 'tensorflow'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tf)
    with pytest.raises(ImportError, match=r"emostyle\[vila\].*tensorflow-cpu==2.21.0"):
        vila.load_vila(tiny_vila)
