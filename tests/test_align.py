"""FFHQ alignment against the FFHQ script's own output.

tests/data/ffhq_align_reference.npz was made once, in a scratch environment, by running the
arithmetic of `recreate_aligned_images` (NVlabs/ffhq-dataset download_ffhq.py, with
Pillow's LANCZOS for its ANTIALIAS) on the synthetic photos and landmarks below, at
output 64 px / transform 256 px: one face well inside a large photo (the shrink step) and
one tilted face at the photo's edge (the blur-padding step).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emostyle.align import NoFaceError, align_face, align_photo, ffhq_quad

REFERENCE = Path(__file__).parent / "data" / "ffhq_align_reference.npz"
CASES = dict(inside=(640, 520, 330, 250, 80.0, 8.0), edge=(300, 260, 60, 200, 40.0, -15.0))


def _scene(width: int, height: int, seed: int) -> np.ndarray:
    """A deterministic 8-bit RGB test photo: smooth colour waves plus integer noise."""
    yy, xx = np.mgrid[:height, :width].astype(np.float64)
    base = np.stack([np.sin(xx / 23.0) + np.cos(yy / 17.0), np.sin((xx + yy) / 31.0), np.cos(xx / 11.0 - yy / 29.0)], 2)
    noise = np.random.default_rng(seed).integers(-20, 21, size=(height, width, 3))
    return np.clip(128 + 50 * base + noise, 0, 255).astype(np.uint8)


def _landmarks(cx: float, cy: float, scale: float, angle_deg: float) -> np.ndarray:
    """68 points of a schematic face (eyes, mouth at their iBUG indices), scaled and rotated."""
    t = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    lm = np.zeros((68, 2))
    lm[:36] = np.stack([np.linspace(-1.2, 1.2, 36), np.linspace(-0.8, 1.4, 36)], 1)  # unused by FFHQ
    lm[36:42] = np.stack([-0.45 + 0.15 * np.cos(t), -0.2 + 0.07 * np.sin(t)], 1)
    lm[42:48] = np.stack([0.45 + 0.15 * np.cos(t), -0.2 + 0.07 * np.sin(t)], 1)
    m = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    lm[48:60] = np.stack([-0.38 * np.cos(m), 0.72 + 0.12 * np.sin(m)], 1)  # 48: left corner, 54: right
    lm[60:68] = np.stack([0.2 * np.cos(t[:1].repeat(8)), np.full(8, 0.72)], 1)
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return lm @ rot.T * scale + [cx, cy]


@pytest.fixture(scope="module")
def reference():
    return np.load(REFERENCE)


@pytest.mark.parametrize("case", list(CASES))
def test_quad_matches_the_ffhq_script(reference, case):
    w, h, *face = CASES[case]
    quad, qsize = ffhq_quad(_landmarks(*face))
    # The same float64 operations in the same order: equal to rounding.
    np.testing.assert_allclose(quad, reference[f"{case}_quad"], rtol=0, atol=1e-9)
    assert qsize == pytest.approx(float(reference[f"{case}_qsize"]), abs=1e-9)


@pytest.mark.parametrize("case", list(CASES))
def test_aligned_image_matches_the_ffhq_script(reference, case):
    w, h, *face = CASES[case]
    aligned = align_face(_scene(w, h, seed=len(case)), _landmarks(*face), output_size=64, transform_size=256)
    expected = reference[f"{case}_aligned"]
    assert aligned.shape == expected.shape == (64, 64, 3) and aligned.dtype == np.uint8
    # Same Pillow/scipy operations: identical bytes on one machine; the gaussian filter and
    # resampling in float32 may round a level differently elsewhere.
    diff = np.abs(aligned.astype(int) - expected.astype(int))
    assert diff.max() <= 1, diff.max()


def test_alignment_undoes_rotation_and_scale():
    """The same face rotated, moved and scaled in the photo gives (nearly) the same aligned square."""
    quad_a, size_a = ffhq_quad(_landmarks(100, 120, 30, 0))
    quad_b, size_b = ffhq_quad(_landmarks(300, 80, 60, 30))
    assert size_b == pytest.approx(2 * size_a)
    # Corners in the face's own frame: subtract the centre, undo 30 degrees and the scale.
    a = np.deg2rad(-30)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    back = ((quad_b - quad_b.mean(0)) @ rot.T) / 2
    np.testing.assert_allclose(back, quad_a - quad_a.mean(0), atol=1e-9)
    # Upright face: the square is axis-aligned, corners in the script's order (TL, BL, BR, TR).
    assert quad_a[0, 0] == pytest.approx(quad_a[1, 0]) and quad_a[0, 1] < quad_a[1, 1]
    assert quad_a[2, 0] > quad_a[1, 0]


def test_bad_landmarks_and_images():
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        ffhq_quad(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="8-bit RGB"):
        align_face(np.zeros((64, 64), np.uint8), _landmarks(32, 32, 10, 0))


def test_align_photo_without_a_face(monkeypatch):
    import sys
    import types

    package, module = types.ModuleType("emostyle.judges"), types.ModuleType("emostyle.judges.face")
    package.face = module
    module.face_landmarks = lambda image: None
    monkeypatch.setitem(sys.modules, "emostyle.judges", package)
    monkeypatch.setitem(sys.modules, "emostyle.judges.face", module)
    with pytest.raises(NoFaceError, match="no face found in my.jpg"):
        align_photo(_scene(128, 128, 0), 64, where="my.jpg")
    module.face_landmarks = lambda image: _landmarks(64, 60, 20, 5)
    assert align_photo(_scene(128, 128, 0), 32).shape == (32, 32, 3)

    def no_dlib(image):
        raise ImportError("the landmark judge needs dlib: `pip install dlib-bin`")

    module.face_landmarks = no_dlib
    with pytest.raises(ValueError, match="dlib-bin.*inversion.align=centre"):
        align_photo(_scene(128, 128, 0), 32)
