"""The blendshape judge: MediaPipe's Face Landmarker run through ai-edge-litert, against MediaPipe's own.

The expected scores below were made once, outside the repo, as follows:
- images: 32 DCGAN faces (`load_dcgan()`, `sample(32, torch.Generator().manual_seed(0))`, `render`,
  `to_uint8`; FACES picks some) and the astronaut's face, `photo-astronaut`[20:240, 140:360]
  (220 px), with its mirror image; each framed with `emostyle.judges.blendshapes.frame`
  (bicubic to 256 px, then 64 px of edge padding each side: 384 x 384);
- scores: mediapipe 0.10.21 in a scratch venv (numpy 1.26, CPU), `vision.FaceLandmarker` with
  `model_asset_path` = the registry's face_landmarker.task, `output_face_blendshapes=True`,
  `num_faces=1`, `min_face_detection_confidence=0.2`, `min_face_presence_confidence=0.2`,
  `detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=framed))`; the scores of `MOUTH`.
Measured here, on all 61 faces MediaPipe finds of those 32, their 32 mirror images and the two
astronauts: the same faces found (none of face 7), every one of the 52 scores within 0.034
(median of per-face maxima 0.004; the largest on a face with two nearby detections), valence
within 0.008, landmarks within 0.12 px of the 64 px face. On the faces stored here, within 0.006.
"""

import numpy as np
import pytest
import torch

from emostyle.judges import BlendshapeJudge
from emostyle.judges.blendshapes import BLENDSHAPES, frame
from emostyle.parts import to_uint8

MOUTH = ("mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight", "jawOpen", "browInnerUp")
FACES = (0, 2, 5, 7, 13, 19, 25, 31)  # of the 32; 7 is too warped: no face
NAN = [np.nan] * 6
EXPECTED = {  # MediaPipe's scores of MOUTH
    0: [0.6626, 0.6233, 0.0013, 0.0013, 0.0011, 0.0034],
    2: [0.1779, 0.2945, 0.0082, 0.0059, 0.0037, 0.5958],
    5: [0.8635, 0.8088, 0.0015, 0.0011, 0.2171, 0.0002],
    7: NAN,
    13: [0.3036, 0.4083, 0.0119, 0.0087, 0.3600, 0.7163],
    19: [0.0001, 0.0000, 0.1123, 0.0702, 0.1846, 0.1363],
    25: [0.0025, 0.0062, 0.1790, 0.1920, 0.0003, 0.0299],
    31: [0.0062, 0.0007, 0.1396, 0.2023, 0.0037, 0.6392],
    "astronaut": [0.8979, 0.8953, 0.0000, 0.0000, 0.0150, 0.0270],
    "astronaut mirrored": [0.8897, 0.9125, 0.0000, 0.0000, 0.0139, 0.0176],
}
# Stored to 4 decimals; measured within 0.006 of them. MediaPipe builds its warps in float32 and
# OpenCV interpolates in fixed point (1/32 px); a crop shifted by 0.25 px moves the landmarks of
# an unclear face by up to 1 px, and the scores with them.
SCORE_TOL = 0.02


def _valence(scores):
    s = np.asarray(scores)
    return (s[..., 0] + s[..., 1]) / 2 - (s[..., 2] + s[..., 3]) / 2


@pytest.fixture(scope="module")
def judge(cached_weight):
    pytest.importorskip("ai_edge_litert", reason="optional: pip install ai-edge-litert (the offline extra)")
    return BlendshapeJudge(cached_weight("mediapipe-face-landmarker"))


@pytest.fixture(scope="module")
def faces(dcgan):
    with torch.no_grad():
        return to_uint8(dcgan.render(dcgan.sample(32, torch.Generator().manual_seed(0))))


@pytest.fixture(scope="module")
def astronaut(cached_weight):
    from PIL import Image

    photo = np.asarray(Image.open(cached_weight("photo-astronaut")).convert("RGB"))
    return photo[20:240, 140:360]  # the face, 220 px


# --- no file needed ------------------------------------------------------------------------------------


def test_framing_enlarges_small_faces_and_pads_a_quarter_each_side():
    face = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    framed, scale, pad = frame(face)
    assert framed.shape == (384, 384, 3) and scale == 4 and pad == 64
    np.testing.assert_array_equal(framed[:64, 100], np.repeat(framed[64:65, 100], 64, axis=0))  # edge copied
    big, scale, pad = frame(np.zeros((300, 400, 3), np.uint8))
    assert big.shape == (450, 550, 3) and scale == 1 and pad == 75  # not enlarged; a quarter of 300


def test_bad_input_and_a_missing_file_are_refused_with_the_fix():
    judge = object.__new__(BlendshapeJudge)  # no file needed to check input
    with pytest.raises(ValueError, match=r"uint8 \(B, H, W, 3\); got float32 \(1, 64, 64, 3\).*to_uint8"):
        judge.read(np.zeros((1, 64, 64, 3), np.float32))
    with pytest.raises(ValueError, match=r"uint8 \(B, H, W, 3\); got uint8 \(64, 64, 3\)"):
        judge.read(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match=r"uint8 \(B, H, W, 3\); got list"):
        judge.read([np.zeros((64, 64, 3), np.uint8)])
    with pytest.raises(FileNotFoundError, match="emostyle weights fetch mediapipe-face-landmarker"):
        BlendshapeJudge("/nonexistent/face_landmarker.task")


def test_scoring_judge_blendshapes_is_skipped_with_a_note_without_its_file(monkeypatch, tmp_path):
    from emostyle import builders
    from emostyle.builders import build_judge
    from emostyle.config import load_config

    monkeypatch.setattr(builders, "_CACHE", {})  # not a judge another test built
    monkeypatch.setenv("EMOSTYLE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("EMOSTYLE_MIRROR", raising=False)
    monkeypatch.delenv("EMOSTYLE_WEIGHT_MEDIAPIPE_FACE_LANDMARKER", raising=False)
    notes = []
    with pytest.warns(UserWarning, match="scoring.judge=blendshapes is unavailable"):
        assert build_judge(load_config("tiny", {"scoring.judge": "blendshapes"}), "cpu", None, notes) is None
    assert "emostyle weights fetch mediapipe-face-landmarker" in notes[0]


# --- the real bundle ---------------------------------------------------------------------------------


def test_scores_match_mediapipe_face_landmarker(judge, faces, astronaut):
    dcgan = judge.read(faces[list(FACES)])
    photo = judge.read(np.stack([astronaut, astronaut[:, ::-1]]))
    for k, name in enumerate(FACES + ("astronaut", "astronaut mirrored")):
        reading = dcgan if k < len(FACES) else photo
        i = k if k < len(FACES) else k - len(FACES)
        ours = [reading[m][i] for m in MOUTH]
        np.testing.assert_allclose(ours, EXPECTED[name], atol=SCORE_TOL, err_msg=str(name))
        np.testing.assert_allclose(reading["valence"][i], _valence(EXPECTED[name]), atol=SCORE_TOL, err_msg=str(name))
        assert reading["found"][i] == (not np.isnan(EXPECTED[name][0]))
    assert set(BLENDSHAPES) <= set(dcgan) and dcgan["found"].dtype == bool
    found = dcgan["found"]
    assert ((dcgan["presence"][found] >= 0.2) & (dcgan["detection"][found] >= 0.2)).all()
    scores = np.stack([dcgan[b] for b in BLENDSHAPES], 1)[found]
    assert ((scores >= 0) & (scores <= 1)).all()


def test_landmarks_fall_on_the_face_in_the_pixels_given(judge, faces):
    points = judge.measure(faces[:8])["landmarks"]
    found = ~np.isnan(points[:, 0, 0])
    assert found.sum() == 7  # all but face 7
    p = points[found, :, :2]
    assert ((p >= -8) & (p <= 72)).all()  # in the 64 px frame (the jaw may reach past it)
    mouth, eyes = p[:, [61, 291, 13, 14]].mean(1), p[:, [33, 133, 362, 263]].mean(1)  # mesh indices
    assert (mouth[:, 1] - eyes[:, 1] > 10).all() and (np.abs(mouth[:, 0] - eyes[:, 0]) < 6).all()


def test_an_image_without_a_face_reads_nan(judge):
    reading = judge.read(np.full((2, 64, 64, 3), 128, dtype=np.uint8))
    assert not reading["found"].any()
    assert all(np.isnan(reading[k]).all() for k in ("valence", *BLENDSHAPES))


def test_a_smiling_face_reads_positive_valence(judge, astronaut):
    from PIL import Image

    small = np.asarray(Image.fromarray(astronaut).resize((64, 64), Image.Resampling.LANCZOS))
    reading = judge.read(np.stack([small]))  # as small as a DCGAN face
    assert reading["valence"][0] > 0.5 and reading["mouthSmileLeft"][0] > 0.5  # a broad smile: 0.82 (0.90 at 220 px)
    assert judge.read(astronaut[None])["valence"][0] > 0.5


def test_a_mirrored_face_reads_about_the_same_valence(judge, faces, astronaut):
    photo = judge.read(np.stack([astronaut, astronaut[:, ::-1]]))["valence"]
    # A clear face: measured 0.004 apart (MediaPipe itself: 0.005).
    assert abs(photo[0] - photo[1]) < 0.02
    v, mirrored = judge.read(faces)["valence"], judge.read(np.ascontiguousarray(faces[:, :, ::-1]))["valence"]
    both = np.isfinite(v) & np.isfinite(mirrored)
    assert both.sum() >= 28  # 29 of 32 found both ways
    gap = np.abs(v - mirrored)[both]
    # The networks are not mirror-symmetric and the DCGAN's small, blurred mouths are ambiguous:
    # on these 29 pairs the gap has median 0.038 and reaches 0.38, as large in MediaPipe itself
    # (median 0.038, max 0.38). The typical face reads about the same (72% within 0.1), a few do
    # not; the two readings still rank the faces alike (correlation 0.89).
    assert np.median(gap) < 0.08 and (gap < 0.1).mean() > 0.6
    assert np.corrcoef(v[both], mirrored[both])[0, 1] > 0.8


def test_scoring_judge_blendshapes_builds_it(cached_weight):
    from emostyle.builders import build_judge
    from emostyle.config import load_config

    cached_weight("mediapipe-face-landmarker")
    pytest.importorskip("ai_edge_litert", reason="optional: pip install ai-edge-litert (the offline extra)")
    judge = build_judge(load_config("tiny", {"scoring.judge": "blendshapes"}), "cpu", None, [])
    assert isinstance(judge, BlendshapeJudge) and judge.name == "MediaPipe face blendshapes (mouth smile - frown)"
