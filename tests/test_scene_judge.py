"""The scene judge: colour emotion of saved 8-bit images (Palmer et al. 2013, Ou et al. 2004) in CIELAB."""

import numpy as np
import pytest
import torch

from emostyle.judges import ColourEmotionJudge
from emostyle.judges.scene import colour_activity, happy_sad, srgb_to_lab
from emostyle.parts import Judge, to_uint8

SIZE = 64


def uniform(rgb, size: int = 4) -> np.ndarray:
    """One 8-bit image (1, size, size, 3) of a single colour."""
    return np.broadcast_to(np.array(rgb, dtype=np.uint8), (1, size, size, 3)).copy()


# --- colour conversion -------------------------------------------------------------------


@pytest.mark.parametrize(
    "rgb, lab",
    [
        # Published sRGB (D65) -> CIELAB values of the primaries (B. Lindbloom's calculator,
        # which uses the full-precision sRGB matrix).
        ((255, 0, 0), (53.2408, 80.0925, 67.2032)),
        ((0, 255, 0), (87.7347, -86.1827, 83.1793)),
        ((0, 0, 255), (32.2970, 79.1875, -107.8602)),
    ],
)
def test_primaries_match_published_cielab(rgb, lab):
    """8-bit 0 and 255 are exactly 0 and 1, so quantisation adds nothing here; what remains is the
    standard's four-digit matrix against the full-precision one. Each entry differs by <= 5e-5 and
    the white (a row sum) by <= 1.5e-4, so t = X/Xn (or Y/Yn, Z/Zn) moves by dt <= 5e-5 + 1.6e-4 t,
    and f = t^(1/3) by (1/3) t^(-2/3) dt <= 2.5e-4 (largest at the smallest t a primary reaches,
    red's Z/Zn = 0.018). So L* = 116 f moves by < 0.03, a* = 500 (fx - fy) by < 0.25 and
    b* = 200 (fy - fz) by < 0.1."""
    got = srgb_to_lab(np.array(rgb, dtype=np.uint8))
    assert abs(got[0] - lab[0]) < 0.03
    assert abs(got[1] - lab[1]) < 0.25 and abs(got[2] - lab[2]) < 0.1


def test_white_black_and_mid_grey():
    white, black = srgb_to_lab(np.array([[255] * 3, [0] * 3], dtype=np.uint8))
    assert np.allclose(white, (100, 0, 0), atol=1e-9)  # the white point is sRGB white itself
    assert np.allclose(black, (0, 0, 0), atol=1e-9)
    # CIELAB mid grey L* = 50 is Y = (66 / 116)^3 = 0.1842; the nearest 8-bit grey is 119, and
    # one 8-bit step there moves L* by about 0.4, so the quantisation error is at most 0.2.
    greys = srgb_to_lab(np.array([[118] * 3, [119] * 3, [120] * 3], dtype=np.uint8))
    assert abs(greys[1, 0] - 50) < 0.2
    assert np.all(np.abs(greys[:, 1:]) < 1e-9)  # greys are neutral: a* = b* = 0
    assert np.all(np.diff(greys[:, 0]) > 0.3) and np.all(np.diff(greys[:, 0]) < 0.5)


def test_lab_of_uint8_and_of_floats_agree():
    rgb = np.random.default_rng(0).integers(0, 256, (50, 3)).astype(np.uint8)
    assert np.allclose(srgb_to_lab(rgb), srgb_to_lab(rgb / 255.0), atol=1e-9)


# --- the published models on single colours ---------------------------------------------


def test_colour_activity_by_hand():
    # Ou et al. (2004a): CA = -2.1 + 0.06 [(L* - 50)^2 + (a* - 3)^2 + ((b* - 17) / 1.4)^2]^(1/2)
    # mid grey (50, 0, 0): 0 + 9 + (17 / 1.4)^2 = 9 + 12.142857^2 = 9 + 147.4490 = 156.4490;
    #   sqrt = 12.50796; x 0.06 = 0.750478; - 2.1 = -1.349522
    # (70, 20, -30): 400 + 17^2 + (-47 / 1.4)^2 = 400 + 289 + 33.571429^2 = 689 + 1127.0408
    #   = 1816.0408; sqrt = 42.61503; x 0.06 = 2.556902; - 2.1 = 0.456902
    # the model's centre (50, 3, 17): -2.1 exactly
    got = colour_activity(np.array([[50, 0, 0], [70, 20, -30], [50, 3, 17]], dtype=float))
    assert np.allclose(got, [-1.349522, 0.456902, -2.1], atol=2e-6)  # hand arithmetic to 6 decimals


def test_happy_sad_by_hand():
    # Palmer et al. (2013) mean ratings (happy, sad) of the BCP-37 colours, valence (happy - sad) / 200
    # of the colour nearest in dE*ab:
    # sRGB white (100, 0, 0): nearest WH (100, -0.0203, -1.1407), dE 1.14 (A3 at L* 79.1 is 20.9
    #   away): (40.7396 + 49.5208) / 200 = 0.451302
    # black (0, 0, 0): nearest BK (2.3361, ...), dE 2.34: (-63.3438 - 32.3229) / 200 = -0.4783335
    # mid grey (50, 0, 0): A2 (59.4185, ...) at dE 9.45 beats A1 (38.9638, ...) at 11.05 (the
    #   nearest chromatic colour, MB, is 23.9 away): (-63.5729 - 51.1458) / 200 = -0.5735935
    # saturated yellow (91, -5, 85): SY (91.082, -5.7506, 86.6779) at dE 1.8 (LY is 37 away):
    #   (76.2188 + 86.8125) / 200 = 0.8151565
    # dark olive (47, -2, 42): DY (46.8271, -0.9251, 43.3471) at dE 1.7, DH 18 away:
    #   (-51.5521 - 24.0104) / 200 = -0.3778125
    lab = np.array([[100, 0, 0], [0, 0, 0], [50, 0, 0], [91, -5, 85], [47, -2, 42]], dtype=float)
    assert np.allclose(happy_sad(lab), [0.451302, -0.4783335, -0.5735935, 0.8151565, -0.3778125], atol=1e-9)


def test_happy_sad_picks_the_nearest_colour_in_cielab():
    """Along the segment from dark yellow DY to saturated yellow SY the reading passes through muted
    yellow MY's region: its midpoint (68.95, -3.34, 65.01) is 19.3 from MY and 31.0 from both ends,
    while the points a tenth from each end are 6.2 from that end and over 20 from any other colour."""
    dy, sy = np.array([46.8271, -0.9251, 43.3471]), np.array([91.0820, -5.7506, 86.6779])
    got = happy_sad(np.stack([dy + t * (sy - dy) for t in (0.1, 0.5, 0.9)]))
    # DY (-51.5521 - 24.0104) / 200 = -0.3778125; MY (-7.3958 + 8.1771) / 200 = 0.0039065;
    # SY (76.2188 + 86.8125) / 200 = 0.8151565
    assert np.allclose(got, [-0.3778125, 0.0039065, 0.8151565], atol=1e-9)


# --- the judge ----------------------------------------------------------------------------


def test_uniform_image_reads_its_colour():
    """A uniform image reads finite values: its colour's single-colour readings."""
    judge = ColourEmotionJudge()
    assert isinstance(judge, Judge) and judge.name
    for rgb in [(0, 0, 0), (255, 255, 255), (119, 119, 119), (30, 200, 90)]:
        r = judge.read(uniform(rgb))
        lab = srgb_to_lab(np.array(rgb, dtype=np.uint8))
        assert set(r) == {"valence", "arousal"}
        assert r["valence"].shape == r["arousal"].shape == (1,)
        assert np.isfinite(r["valence"]).all() and np.isfinite(r["arousal"]).all()
        assert r["valence"][0] == pytest.approx(happy_sad(lab), abs=1e-9)
        assert r["arousal"][0] == pytest.approx(colour_activity(lab), abs=1e-9)


def test_image_reading_is_the_pixel_mean():
    """Ou et al. (2004b) additivity: a two-colour image reads the mean of its two colours, whatever
    their layout and however many pixels (here a quarter of one colour, three quarters of the other)."""
    a, b = (200, 40, 40), (40, 90, 200)
    image = uniform(b, size=8)
    image[0, :4, :4] = a
    single = {c: ColourEmotionJudge().read(uniform(c)) for c in (a, b)}
    r = ColourEmotionJudge().read(np.concatenate([image, image[:, ::-1].transpose(0, 2, 1, 3)]))
    for key in ("valence", "arousal"):
        expected = 0.25 * single[a][key][0] + 0.75 * single[b][key][0]
        assert np.allclose(r[key], expected, atol=1e-9)


def test_read_tensor_reads_the_saved_image():
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    judge = ColourEmotionJudge()
    for key, value in judge.read_tensor(images).items():
        assert np.array_equal(value, judge.read(to_uint8(images))[key])


@pytest.mark.parametrize(
    "bad",
    [np.zeros((1, 4, 4, 3), dtype=np.float32), np.zeros((4, 4, 3), dtype=np.uint8),
     np.zeros((1, 4, 4, 4), dtype=np.uint8), np.zeros((0, 4, 4, 3), dtype=np.uint8)],
)
def test_bad_input_says_what_to_pass(bad):
    with pytest.raises(ValueError, match=r"uint8.*to_uint8"):
        ColourEmotionJudge().read(bad)


# --- graded real photos (the offline profile's scenes) -------------------------------------


@pytest.fixture(scope="module")
def grader():
    from emostyle import registry
    from emostyle.models.photo_grader import PHOTOS, load_photo_grader

    try:
        paths = {name: registry.path(name) for name, *_ in PHOTOS}
    except registry.MissingWeightError as error:
        pytest.skip(f"photos not cached: {error}")
    return load_photo_grader(SIZE, paths=paths)


def _operation(name: str) -> int:
    from emostyle.models.photo_grader import OPERATIONS

    return [op for op, _ in OPERATIONS].index(name)


def _valence(grader, photo: int, strength: torch.Tensor) -> np.ndarray:
    """Judge valence (B,) of the saved images of one photo under strengths (B, n_ops)."""
    latents = torch.stack([strength, torch.full_like(strength, photo)], dim=2)
    with torch.no_grad():
        return ColourEmotionJudge().read(to_uint8(grader.render(latents)))["valence"]


def test_darker_reads_lower_brighter_higher(grader):
    """From each photo as it is, exposure -1 stop reads lower valence and +1 stop higher."""
    k = _operation("exposure")
    for photo, name in enumerate(grader.names):
        strength = torch.zeros(3, grader.n_layers)
        strength[0, k], strength[2, k] = -20.0, 20.0  # tanh(20) = 1: the full stop
        darker, as_is, brighter = _valence(grader, photo, strength)
        assert darker < as_is < brighter, name


@pytest.mark.parametrize("operation", ["exposure", "saturation"])
def test_darker_or_greyer_reads_lower_from_many_starts(grader, operation):
    """From 24 random starting grades of each photo (the grader's own start spread), setting the
    operation to its low end (-1 stop; chroma x 0.4) reads lower valence than its high end
    (+1 stop; chroma x 1.6): the direction the guide asks of a sad and a happy song."""
    k = _operation(operation)
    generator = torch.Generator().manual_seed(0)
    for photo, name in enumerate(grader.names):
        start = 0.3 * torch.randn(24, grader.n_layers, generator=generator)
        low, high = start.clone(), start.clone()
        low[:, k], high[:, k] = -20.0, 20.0
        assert np.all(_valence(grader, photo, high) > _valence(grader, photo, low)), name


def _guide_pleasure(rgb) -> float:
    """Valdez & Mehrabian pleasure (the guide's reading) of a uniform 8-bit colour."""
    from emostyle.spaces.affect import scene_pad

    image = torch.tensor(rgb, dtype=torch.float32).view(1, 3, 1, 1) / 127.5 - 1
    return float(scene_pad(image)[0, 0])


def test_not_a_restatement_of_the_guide():
    """The guide reads only mean luma and HSV saturation: two colours equal in both up to 8-bit
    rounding (luma within 0.5 / 255, saturation within 1 / 255), a yellow-green and a cyan, are the
    same to it. The judge reads their hue: the yellow-green falls in the region of saturated
    chartreuse (happy/sad 0.668), the cyan in that of light cyan (0.191)."""
    yellow, cyan = (200, 200, 50), (64, 230, 255)  # luma 182.9 and 183.2; saturation 0.750 and 0.749
    assert _guide_pleasure(yellow) == pytest.approx(_guide_pleasure(cyan), abs=0.01)
    judge = ColourEmotionJudge()
    gap = judge.read(uniform(yellow))["valence"][0] - judge.read(uniform(cyan))["valence"][0]
    assert gap > 0.2  # on the -1..1 scale
    half = uniform(yellow, size=8)
    half[0, :, 4:] = cyan
    assert judge.read(half)["valence"][0] == pytest.approx(judge.read(uniform(yellow))["valence"][0] - gap / 2)
