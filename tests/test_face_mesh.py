"""MediaPipe's face networks in torch (`TFLiteGraph`, `FaceMesh`) and the face reader built on them.

Parity is against the LiteRT interpreter on the bundle's own files (the TFLite runtime that
MediaPipe uses) and against the blendshape judge, whose parity with MediaPipe's FaceLandmarker
is in `test_blendshape_judge.py`. The face reader's emotion terms follow FACS's prototypes,
checked on blendshapes set by hand (a smile, the sad prototype, a still face).
"""

import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emostyle.models import tflite
from emostyle.models.face_mesh import BLENDSHAPES, load_face_mesh
from emostyle.models.fer import EMOTIONS
from emostyle.parts import to_uint8
from emostyle.spaces.affect import ACTION_UNITS, EMOTION_PAD, EMOTION_PROTOTYPES, prototype_probabilities

MODELS = {"face_detector": (128, 128, 3), "face_landmarks_detector": (256, 256, 3), "face_blendshapes": (146, 2)}


@pytest.fixture(scope="module")
def bundle(cached_weight):
    return cached_weight("mediapipe-face-landmarker")


@pytest.fixture(scope="module")
def mesh(bundle):
    return load_face_mesh(bundle)


def _blendshapes(**scores):
    x = torch.zeros(1, len(BLENDSHAPES))
    for name, value in scores.items():
        x[0, BLENDSHAPES.index(name)] = value
    return x


def _units(*units, value=1.0):
    return _blendshapes(**{name: value for au in units for name in ACTION_UNITS[au]})


# --- the face reader's FACS prototypes ---------------------------------------------------------


def test_prototypes_name_only_units_that_a_blendshape_moves():
    assert set(EMOTION_PROTOTYPES) | {"neutral"} == set(EMOTIONS)
    for emotion, units in EMOTION_PROTOTYPES.items():
        assert set(units) <= set(ACTION_UNITS), emotion
    assert all(name in BLENDSHAPES for names in ACTION_UNITS.values() for name in names)


@pytest.mark.parametrize("emotion", sorted(EMOTION_PROTOTYPES))
def test_a_whole_prototype_reads_as_its_emotion_first(emotion):
    """First or tied first: fear's prototype holds the whole of surprise's, so the two tie."""
    p = prototype_probabilities(_units(*EMOTION_PROTOTYPES[emotion]))[0]
    assert torch.isclose(p.sum(), torch.tensor(1.0)) and (p >= 0).all()
    assert p[EMOTIONS.index(emotion)] >= p.max() - 1e-6, dict(zip(EMOTIONS, p.tolist()))
    assert p[EMOTIONS.index(emotion)] > p[EMOTIONS.index("neutral")]


def test_a_still_face_is_neutral_and_the_sad_prototype_is_unpleasant():
    pad = torch.tensor([EMOTION_PAD[e] for e in EMOTIONS])
    still = prototype_probabilities(torch.zeros(1, len(BLENDSHAPES)))[0]
    assert still[EMOTIONS.index("neutral")] == 1
    sad = prototype_probabilities(_units(*EMOTION_PROTOTYPES["sad"]))[0] @ pad
    smile = prototype_probabilities(_units(6, 12))[0] @ pad
    frown = prototype_probabilities(_units(15, value=0.3))[0] @ pad
    assert sad[0] < frown[0] < 0 < smile[0]


def test_a_raised_chin_makes_a_frown_sadder_and_a_sad_song_asks_for_it():
    """Sadness's prototype is FACS's variant 1+4+15+17: under drawn brows and a downturned mouth,
    a raised chin (the pout) reads sadder, and through the guidance loss of a sad target the
    gradient asks for more of it, as it does for the frown; a happy target does not."""
    from emostyle.spaces.affect import AffectSpace

    space = AffectSpace(face_reader="blendshapes", mesh=object())  # reads blendshapes; no image here
    frown = _units(1, 4, 15, value=0.3)  # the terms' shares sum under 1: none crowds another out
    pout = frown.clone()
    pout[0, BLENDSHAPES.index("mouthShrugLower")] = 0.3
    sad = EMOTIONS.index("sad")
    assert prototype_probabilities(pout)[0, sad] > prototype_probabilities(frown)[0, sad]
    for target, sign in ((EMOTION_PAD["sad"], -1), (EMOTION_PAD["happy"], 0)):
        shapes = pout.clone().requires_grad_(True)
        loss = space.distance(prototype_probabilities(shapes), torch.tensor([target]))
        grad = torch.autograd.grad(loss.sum(), shapes)[0][0]
        for name in ("mouthShrugLower", "mouthFrownLeft"):
            g = float(grad[BLENDSHAPES.index(name)])
            assert (g < 0) if sign < 0 else (g >= 0), (target, name, g)


def test_a_face_the_mesh_does_not_see_reads_as_no_emotion_and_is_not_pushed():
    """Presence scales the prototypes' shares (held constant): presence 1 reads the face as it
    is, presence 0 as neutral with no gradient, and in between the gradient is as much weaker."""
    sad = _units(1, 4, 15, value=0.6).requires_grad_(True)
    sure, absent, half = (prototype_probabilities(sad, torch.tensor([p])) for p in (1.0, 0.0, 0.5))
    torch.testing.assert_close(sure, prototype_probabilities(sad))
    assert absent[0, EMOTIONS.index("neutral")] == 1
    grads = [torch.autograd.grad(p[0, EMOTIONS.index("sad")], sad)[0] for p in (sure, absent, half)]
    assert grads[1].abs().max() == 0 and grads[0].abs().max() > 0
    torch.testing.assert_close(grads[2], grads[0] / 2)


def test_the_affect_space_reads_a_picture_with_no_face_as_neutral(mesh):
    """Through the pipeline's own reader: grey noise has no face (presence near 0), so its PAD is
    near the origin whatever blendshapes the mesh guesses for it."""
    from emostyle.spaces.affect import AffectSpace

    space = AffectSpace(face_reader="blendshapes", mesh=mesh)
    noise = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 0.2 - 0.1
    _, _, presence = mesh(noise)
    assert (presence < 0.05).all(), presence
    assert space.encode_image(noise).norm(dim=1).max() < 0.05


# --- the TFLite graphs in torch ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODELS))
def test_each_network_matches_the_litert_interpreter(bundle, name):
    """Two random inputs at once (a batch, where the file is written for one). float32 on both
    sides, summed in other orders: differences of a few float32 ulps of the network's largest
    values (its largest output; a score squashed at the end keeps the error of what fed it)."""
    litert = pytest.importorskip("ai_edge_litert.interpreter", reason="optional: pip install ai-edge-litert")
    flatbuffer = zipfile.ZipFile(bundle).read(f"{name}.tflite")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (2, *MODELS[name])).astype(np.float32)
    if name == "face_blendshapes":
        x *= 256  # points in pixels
    interpreter = litert.Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    expected = []
    for item in x:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], item[None])
        interpreter.invoke()
        expected.append([interpreter.get_tensor(d["index"]).reshape(-1) for d in interpreter.get_output_details()])
    with torch.no_grad():
        outputs = tflite.TFLiteGraph(flatbuffer)(torch.from_numpy(x))
    assert len(outputs) == len(expected[0])
    scale = max(1.0, max(float(np.abs(e).max()) for item in expected for e in item))
    for k, output in enumerate(outputs):
        reference = np.stack([e[k] for e in expected])
        np.testing.assert_allclose(output.reshape(2, -1).numpy(), reference, rtol=0, atol=1e-5 * scale)


def test_an_unsupported_operator_is_named(bundle, monkeypatch):
    monkeypatch.delitem(tflite.OPS, "PRELU")
    with pytest.raises(ValueError, match="TFLite operator PRELU is not supported"):
        tflite.TFLiteGraph(zipfile.ZipFile(bundle).read("face_landmarks_detector.tflite"))


def test_prelu_gives_the_plain_forms_values_and_gradients_bitwise():
    """The landmarker's PRELU runs as x times a slope built from sign(x); relu(x) - alpha relu(-x)
    is the plain form, whose every value and gradient is x, alpha x, g, g alpha or 0. Bit for bit
    but for the sign of a zero (x or alpha zero), which no later sum tells apart; at x = 0 both
    gradients are 0. Slopes of both signs and above 1, as the file has, and 0."""
    prelu = tflite.OPS["PRELU"][0]
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(3, 5, 7, 6)).astype(np.float32))
    x[0, 0, :3] = 0.0
    x[1, 2, 4] = -0.0
    alpha = torch.tensor([[[-5.4, -0.3, 0.0, 0.25, 1.0, 19.8]]])
    grad = torch.from_numpy(rng.normal(size=x.shape).astype(np.float32))
    values = []
    for run in (lambda v: prelu([v, alpha], None), lambda v: F.relu(v) - alpha * F.relu(-v)):
        v = x.clone().requires_grad_(True)
        y = run(v)
        y.backward(grad)
        with torch.no_grad():
            still = run(x)
        values.append((y.detach(), v.grad, still))
    for ours, plain in zip(*values):
        assert torch.equal(ours, plain)
        nonzero = plain != 0
        assert torch.equal(ours[nonzero].view(torch.int32), plain[nonzero].view(torch.int32))
    assert torch.equal(values[0][1][x == 0], torch.zeros(int((x == 0).sum())))


def test_a_prelu_other_than_per_channel_on_images_is_refused():
    tflite._check_operator("PRELU", [(1, 8, 8, 4), (1, 1, 4)])
    with pytest.raises(ValueError, match=r"not on shape \(1, 8, 8, 4\) with slopes of shape \(8, 8, 4\)"):
        tflite._check_operator("PRELU", [(1, 8, 8, 4), (8, 8, 4)])
    with pytest.raises(ValueError, match=r"on images \(NHWC\)"):
        tflite._check_operator("PRELU", [(1, 16), (16,)])


# --- the face mesh: the judge's reading, with a gradient ------------------------------------------


@pytest.fixture(scope="module")
def faces(dcgan):
    with torch.no_grad():
        return dcgan.render(dcgan.sample(32, torch.Generator().manual_seed(0)))


def test_the_mesh_reads_saved_faces_as_the_blendshape_judge_does(mesh, faces, bundle):
    """The judge warps in 8 bits and enlarges with PIL's bicubic (a = -0.5), the mesh in float
    with torch's (a = -0.75): on a face the landmarker finds unclear that moves its points, and
    the smile - frown with them (on 4 other sets of 32 faces: median difference 0.003-0.011, up
    to a tenth of the faces beyond 0.05, the largest 0.24). A fault in the glue (a crop off by
    pixels, an axis mirrored, points mapped back wrong) moves every face, so the test asks the
    typical face to agree: median within 0.02, three in four within 0.05, the same faces found."""
    pytest.importorskip("ai_edge_litert", reason="optional: pip install ai-edge-litert")
    from emostyle.judges import BlendshapeJudge

    saved = to_uint8(faces)
    judged = BlendshapeJudge(bundle).read(saved)
    with torch.no_grad():
        scores, found, _ = mesh(torch.from_numpy(saved).permute(0, 3, 1, 2).float() / 127.5 - 1)
    by_name = {n: scores[:, k].numpy() for k, n in enumerate(BLENDSHAPES)}
    valence = (by_name["mouthSmileLeft"] + by_name["mouthSmileRight"]) / 2 \
        - (by_name["mouthFrownLeft"] + by_name["mouthFrownRight"]) / 2
    both = judged["found"] & found.numpy()
    assert both.sum() >= judged["found"].sum() - 1, (judged["found"], found)
    difference = np.abs(valence[both] - judged["valence"][both])
    assert np.median(difference) <= 0.02 and (difference <= 0.05).mean() >= 0.75, difference.round(3)


def test_the_gradient_of_a_frown_reaches_the_pixels_and_deepens_it(mesh, faces):
    """A small step of the pixels along the gradient of the frown raises the frown the mesh
    reads: to first order by eps * |g|, checked at a quarter of that."""
    x = faces[:4].clone().requires_grad_(True)
    frown = [BLENDSHAPES.index("mouthFrownLeft"), BLENDSHAPES.index("mouthFrownRight")]
    reading = mesh(x)[0][:, frown].sum()
    (grad,) = torch.autograd.grad(reading, x)
    assert torch.isfinite(grad).all() and grad.norm() > 0
    eps = 1e-2
    with torch.no_grad():
        after = mesh(faces[:4] + eps * grad / grad.norm())[0][:, frown].sum()
    assert after - reading.detach() > 0.25 * eps * grad.norm()


def test_a_judge_that_is_the_guides_own_network_is_refused(mesh):
    """The mesh guides: its blendshapes may not judge; the FER, which it does not contain, may."""
    from emostyle.builders import build_judge
    from emostyle.config import load_config
    from emostyle.spaces.affect import AffectSpace

    space = AffectSpace("face", face_reader="blendshapes", mesh=mesh)
    with pytest.raises(ValueError, match="scoring.judge=blendshapes would judge faces with the network that guided"):
        build_judge(load_config("tiny", {"scoring.judge": "blendshapes"}), "cpu", space, [])
    with pytest.raises(ValueError, match="unknown face reader 'clip'"):
        AffectSpace("face", face_reader="clip", mesh=mesh)
