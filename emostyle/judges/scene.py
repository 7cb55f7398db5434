"""A scene-emotion judge from colour: published colour-emotion data and equations in CIELAB, per pixel.

The offline profile guides scenes with Valdez & Mehrabian (1994) on mean luma and HSV
saturation (`emostyle.spaces.affect.scene_pad`), so that model must not also judge them.
This judge reads the saved 8-bit image with other published colour-emotion models,
computed another way: every pixel goes to CIELAB, gets the reading of its colour, and the
image's reading is the pixel mean.

Colour conversion (exact standard formulas):
- sRGB (IEC 61966-2-1:1999) to linear light: c / 12.92 for c <= 0.04045, else
  ((c + 0.055) / 1.055)^2.4;
- linear RGB to XYZ with the standard's D65 matrix (`_SRGB_TO_XYZ`); the white point is
  the image of RGB = (1, 1, 1), so sRGB white is L* = 100, a* = b* = 0 exactly;
- XYZ to CIELAB (CIE 15; CIE e-ILV 17-23-076): L* = 116 f(Y/Yn) - 16,
  a* = 500 (f(X/Xn) - f(Y/Yn)), b* = 200 (f(Y/Yn) - f(Z/Zn)), f(t) = t^(1/3) for
  t > (6/29)^3, else (841/108) t + 4/29.

Readings of a colour:
- "valence": its happy/sad colour-emotion association, from Palmer, Schloss, Xu &
  Prado-Leon (2013), "Music-color associations are mediated by emotion", PNAS
  110(22):8836-8841: US and Mexican participants rated how strongly each of the 37
  colours of the Berkeley Color Project is associated with "happy" and with "sad"
  (BCP-37: 8 hues x saturated, light, muted, dark, plus black, three greys and white;
  ratings -100..100). `BCP37` holds each colour's CIELAB and its two mean ratings as the
  authors publish them (github.com/SchlossVRL/coloremoblues, T_BCP.csv, the data behind
  Schloss, Witzel & Lai 2020, "Blue hues don't bring the blues", JOSA A 37(5):813-824;
  CIELAB relative to their display's white, as ours is relative to sRGB white), combined
  as the authors' own analysis combines them, (happy - sad) / 2, and divided by 100 so that
  valence is in -1 (sad) .. 1 (happy) like the kit's other valences. A pixel takes the
  valence of the BCP colour nearest to it in CIELAB (CIE 1976 dE*ab), i.e. of the colour
  region it falls in.
- "arousal": colour activity, Ou, Luo, Woodcock & Wright (2004), "A study of colour
  emotion and colour preference. Part I: Colour emotions for single colours", Color Res.
  Appl. 29(3):232-240, the colour-activity factor
  CA = -2.1 + 0.06 [(L* - 50)^2 + (a* - 3)^2 + ((b* - 17) / 1.4)^2]^(1/2),
  the factor of Ou's factor analysis that carries the active-passive scale, read here as
  arousal (the activity dimension of the semantic differential). Units: Ou's scale
  (-2.1 at its centre, about -1.35 at mid grey, up to about 5 for vivid sRGB blue).

Why the pixel mean: Ou et al. (2004, Part II, Color Res. Appl. 29(4):292-298) found
colour emotions additive (a colour pair's emotion is the mean of its colours'), and
Solli & Lenz (2011, "Color emotions for multi-colored images", Color Res. Appl.
36(3):210-221) found observers' judgements of ordinary photographs to correlate with the
Part I models applied to the image's pixels. For the happy/sad associations the pixel mean is
this judge's assumption, stated here: Palmer et al. rated single colours.

How it differs from the guide: the guide is linear in the image's mean luma and mean
HSV saturation and blind to hue; this judge reads each pixel's colour in a perceptual
space, hue included (saturated yellow is the happiest colour, dark yellow the saddest
chromatic one; the greys are sadder than black and white), and is not linear in anything.
"""

from __future__ import annotations

import numpy as np

from emostyle.parts import Judge, check_images

__all__ = ["ColourEmotionJudge", "BCP37", "srgb_to_lab", "colour_activity", "happy_sad"]

# IEC 61966-2-1:1999 linear sRGB -> CIE XYZ (D65), the standard's four-digit matrix.
_SRGB_TO_XYZ = np.array(
    [
        [0.4124, 0.3576, 0.1805],
        [0.2126, 0.7152, 0.0722],
        [0.0193, 0.1192, 0.9505],
    ]
)
_WHITE = _SRGB_TO_XYZ.sum(axis=1)  # XYZ of RGB (1, 1, 1): D65 as the standard's matrix has it
_DELTA = 6 / 29  # CIELAB: f is a cube root above delta^3, linear below

# Ou et al. (2004) colour activity: centre (L*, a*, b*) and the b* divisor.
_ACTIVITY_CENTRE = (50.0, 3.0, 17.0)
_ACTIVITY_B_SCALE = 1.4

# Palmer et al. (2013), BCP-37 colours: (name, CIELAB, mean "happy" rating, mean "sad"
# rating), from the authors' T_BCP.csv (see the module docstring), to 4 decimals.
# Names: S[aturated], L[ight], M[uted], D[ark] x R[ed], O[range], Y[ellow], [c]H[artreuse],
# G[reen], C[yan], B[lue], P[urple]; BK black, A1-A3 dark to light grey, WH white.
BCP37 = (
    ("SR", (51.5730, 62.2338, 32.1979), 54.4792, -75.0312),
    ("LR", (71.5959, 31.5780, 16.6802), 32.6354, -39.5208),
    ("MR", (51.5730, 33.5804, 16.9811), 3.5312, -16.8333),
    ("DR", (30.7638, 37.0167, 16.3900), -3.4062, -26.1771),
    ("SO", (71.5959, 31.2150, 69.6472), 71.5938, -81.5000),
    ("LO", (81.3484, 15.0007, 30.1724), 15.1146, -35.3750),
    ("MO", (61.6988, 15.9404, 30.3296), -25.4167, 4.5833),
    ("DO", (36.5101, 18.3537, 30.5965), -48.5104, 12.5938),
    ("SY", (91.0820, -5.7506, 86.6779), 76.2188, -86.8125),
    ("LY", (91.0820, -5.4588, 47.7045), 32.0938, -41.4271),
    ("MY", (71.5959, -3.3302, 45.9362), -7.3958, -8.1771),
    ("DY", (46.8271, -0.9251, 43.3471), -51.5521, 24.0104),
    ("SH", (81.3484, -32.9191, 72.0548), 60.0000, -73.5104),
    ("LH", (86.4442, -20.6205, 40.6444), 16.8646, -27.9271),
    ("MH", (66.9393, -19.9751, 37.4495), -19.4479, 10.7292),
    ("DH", (46.8271, -19.9233, 36.8632), -31.2708, 13.5521),
    ("SG", (66.9393, -59.9477, 24.5372), 49.4688, -49.6771),
    ("LG", (79.0909, -34.1257, 15.2123), 19.5312, -22.9479),
    ("MG", (61.6988, -33.2675, 14.0645), -10.3229, 7.0833),
    ("DG", (38.9638, -33.2923, 12.4078), -11.2396, -4.3021),
    ("SC", (71.5959, -44.3152, -6.1068), 45.8750, -34.8958),
    ("LC", (81.3484, -26.1178, -2.7294), 26.7812, -11.4167),
    ("MC", (61.6988, -25.4016, -4.1266), -12.8646, 21.4792),
    ("DC", (41.2161, -24.2604, -5.4518), -25.3438, 16.9167),
    ("SB", (61.6988, -13.2085, -38.3995), 35.3229, -18.0521),
    ("LB", (76.7260, -8.8676, -20.8198), 10.4167, -2.1667),
    ("MB", (56.9913, -7.8584, -21.4108), -18.8646, 26.5625),
    ("DB", (36.5101, -6.5572, -23.7266), -27.5833, 31.8333),
    ("SP", (46.8271, 57.2118, -50.4899), 43.5938, -37.1042),
    ("LP", (71.5959, 26.0281, -27.8715), 30.7396, -25.3958),
    ("MP", (51.5730, 28.0519, -27.8159), -4.0521, -3.6146),
    ("DP", (30.7638, 33.0379, -29.6604), 6.8958, 3.7396),
    ("BK", (2.3361, -0.0012, -0.0693), -63.3438, 32.3229),
    ("A1", (38.9638, -0.0096, -0.5405), -72.8958, 58.4896),
    ("A2", (59.4185, -0.0132, -0.7416), -63.5729, 51.1458),
    ("A3", (79.0909, -0.0166, -0.9351), -24.2500, 8.2604),
    ("WH", (100.0000, -0.0203, -1.1407), 40.7396, -49.5208),
)
_BCP_LAB = np.array([lab for _, lab, _, _ in BCP37])
_BCP_VALENCE = np.array([(happy - sad) / 2 / 100 for _, _, happy, sad in BCP37])  # -1..1


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (..., 3) as (L*, a*, b*) of sRGB colours (..., 3): uint8, or floats in [0, 1]."""
    rgb = np.asarray(rgb)
    c = rgb / 255.0 if rgb.dtype == np.uint8 else rgb.astype(np.float64)
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    t = (linear @ _SRGB_TO_XYZ.T) / _WHITE
    f = np.where(t > _DELTA**3, np.cbrt(t), (841 / 108) * t + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def colour_activity(lab: np.ndarray) -> np.ndarray:
    """Ou et al. (2004) colour activity CA (...) of CIELAB colours (..., 3)."""
    l0, a0, b0 = _ACTIVITY_CENTRE
    lab = np.asarray(lab, dtype=np.float64)
    spread = np.sqrt((lab[..., 0] - l0) ** 2 + (lab[..., 1] - a0) ** 2 + ((lab[..., 2] - b0) / _ACTIVITY_B_SCALE) ** 2)
    return -2.1 + 0.06 * spread


def happy_sad(lab: np.ndarray) -> np.ndarray:
    """Happy/sad association (...) in -1..1 of CIELAB colours (..., 3): that of the nearest
    BCP-37 colour in dE*ab (Palmer et al. 2013; (happy - sad) / 200 of the mean ratings)."""
    lab = np.asarray(lab, dtype=np.float64)
    # |x - c|^2 without the |x|^2 term, which is the same for every c: one matrix product.
    distance2 = (_BCP_LAB**2).sum(-1) - 2 * lab @ _BCP_LAB.T
    return _BCP_VALENCE[distance2.argmin(-1)]


class ColourEmotionJudge(Judge):
    """Valence and arousal of scenes from their colours (see the module docstring).

    `read(images)`: uint8 RGB (B, H, W, 3) -> {"valence": (B,) happy/sad association in
    -1..1, "arousal": (B,) colour activity}, each the mean over the image's pixels.
    Every image has colours, so a reading is never NaN.
    """

    name = "colour emotion (Palmer et al. 2013 happy/sad, Ou et al. 2004 activity; CIELAB per pixel)"

    def read(self, images: np.ndarray) -> dict[str, np.ndarray]:
        images = np.asarray(images)
        check_images(images)
        valence, arousal = [], []
        for image in images:
            # A photo has far fewer distinct colours than pixels: read each colour once and
            # weight it by its pixel count (the same mean, at a fraction of the cost).
            code = image.reshape(-1, 3).astype(np.int32) @ np.array([1 << 16, 1 << 8, 1], dtype=np.int32)
            codes, counts = np.unique(code, return_counts=True)
            colours = np.stack([codes >> 16, (codes >> 8) & 255, codes & 255], axis=-1).astype(np.uint8)
            lab = srgb_to_lab(colours)
            weights = counts / counts.sum()
            valence.append(weights @ happy_sad(lab))
            arousal.append(weights @ colour_activity(lab))
        return {"valence": np.array(valence), "arousal": np.array(arousal)}
