"""A scene-emotion judge from colour: Ou et al.'s CIELAB colour-emotion models, per pixel.

The offline profile guides scenes with Valdez & Mehrabian (1994) on mean luma and HSV
saturation (`emostyle.spaces.affect.scene_pad`), so that model must not also judge them.
This judge reads the saved 8-bit image with a different, published model computed a
different way: every pixel goes to CIELAB, the single-colour models of Ou, Luo, Woodcock
& Wright (2004) give each pixel its reading, and the image reading is the pixel mean.

Colour conversion (exact standard formulas):
- sRGB (IEC 61966-2-1:1999) to linear light: c / 12.92 for c <= 0.04045, else
  ((c + 0.055) / 1.055)^2.4;
- linear RGB to XYZ with the standard's D65 matrix (`_SRGB_TO_XYZ`); the white point is
  the image of RGB = (1, 1, 1), so sRGB white is L* = 100, a* = b* = 0 exactly;
- XYZ to CIELAB (CIE 15; CIE e-ILV 17-23-076): L* = 116 f(Y/Yn) - 16,
  a* = 500 (f(X/Xn) - f(Y/Yn)), b* = 200 (f(Y/Yn) - f(Z/Zn)), f(t) = t^(1/3) for
  t > (6/29)^3, else (841/108) t + 4/29; C*ab = sqrt(a*^2 + b*^2).

Readings (per pixel, in CIELAB; the image's reading is the mean over its pixels):
- "arousal": colour activity, Ou et al. (2004a), "A study of colour emotion and colour
  preference. Part I: Colour emotions for single colours", Color Res. Appl. 29(3):232-240,
  the colour-activity factor model
  CA = -2.1 + 0.06 [(L* - 50)^2 + (a* - 3)^2 + ((b* - 17) / 1.4)^2]^(1/2).
  Its scales (active-passive, fresh-stale, clean-dirty, modern-classical) are the
  activity dimension of the semantic differential, i.e. arousal. Units: Ou's scale
  (about -1.4 at mid grey, up to about 3 for vivid primaries).
- "valence": colour preference, Ou et al. (2004c), "... Part III: Colour preference
  modeling", Color Res. Appl. 29(5):381-389, the model from colour-appearance attributes:
  "colour preference is determined by the colour difference between a test colour and
  the reference colour (L*, a*, b*) = (50, -8, 30)" (abstract, p. 381), the dark
  greenish yellow that is the least liked colour (also the least liked in Palmer &
  Schloss 2010, "An ecological valence theory of human color preference", PNAS
  107(19):8877-8882, who read colour preference as the colour's affective valence).
  The reading is the CIE 1976 difference dE*ab from that colour. The fitted slope and
  offset of the paper's model are not applied (we could not read the body of the
  paper, only the abstract): the reading is in dE*ab units, higher is more liked, and
  it is exact only up to the paper's positive affine scale and any axis weighting it
  uses inside the difference.

Why the pixel mean: Ou et al. (2004b, Part II, Color Res. Appl. 29(4):292-298) found
colour emotions additive (a pair's emotion is the mean of its colours' emotions), and
Solli & Lenz (2011, "Color emotions for multi-colored images", Color Res. Appl.
36(3):210-221) found the pixel mean of the Part I models to agree with observers'
judgements of ordinary photographs. (Part III notes that preference, unlike the
emotions, is not additive for colour pairs: the mean preference is this judge's
simplification, stated here.)

How it differs from the guide: the guide is linear in the image's mean luma and mean
HSV saturation and blind to hue; this judge is a distance in CIELAB from one hue
(greenish yellow), per pixel, so it is hue-dependent and non-monotone in lightness
(both black and white are far from L* = 50). A grade can raise the guide's pleasure
and lower this valence, and the validation of the module reports how often.
"""

from __future__ import annotations

import numpy as np

from emostyle.parts import Judge

__all__ = ["ColourEmotionJudge", "srgb_to_lab", "colour_activity", "colour_preference"]

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

# Ou et al. (2004a) colour activity: centre (L*, a*, b*) and the b* divisor.
_ACTIVITY_CENTRE = (50.0, 3.0, 17.0)
_ACTIVITY_B_SCALE = 1.4
# Ou et al. (2004c) colour preference: the least preferred colour (L*, a*, b*).
_DISLIKED = (50.0, -8.0, 30.0)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (..., 3) as (L*, a*, b*) of sRGB colours (..., 3): uint8, or floats in [0, 1]."""
    rgb = np.asarray(rgb)
    c = rgb / 255.0 if rgb.dtype == np.uint8 else rgb.astype(np.float64)
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    t = (linear @ _SRGB_TO_XYZ.T) / _WHITE
    f = np.where(t > _DELTA**3, np.cbrt(t), (841 / 108) * t + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def colour_activity(lab: np.ndarray) -> np.ndarray:
    """Ou et al. (2004a) colour activity CA (...) of CIELAB colours (..., 3)."""
    l0, a0, b0 = _ACTIVITY_CENTRE
    lab = np.asarray(lab, dtype=np.float64)
    spread = np.sqrt((lab[..., 0] - l0) ** 2 + (lab[..., 1] - a0) ** 2 + ((lab[..., 2] - b0) / _ACTIVITY_B_SCALE) ** 2)
    return -2.1 + 0.06 * spread


def colour_preference(lab: np.ndarray) -> np.ndarray:
    """Colour preference (...) of CIELAB colours (..., 3): dE*ab from Ou et al.'s (2004c)
    least preferred colour (L*, a*, b*) = (50, -8, 30); higher is more liked."""
    return np.linalg.norm(np.asarray(lab, dtype=np.float64) - np.array(_DISLIKED), axis=-1)


class ColourEmotionJudge(Judge):
    """Valence and arousal of scenes from their colours (see the module docstring).

    `read(images)`: uint8 RGB (B, H, W, 3) -> {"valence": (B,) colour preference in dE*ab,
    "arousal": (B,) colour activity}, each the mean over the image's pixels. Every image
    has colours, so a reading is never NaN.
    """

    name = "colour emotion (Ou et al. 2004, CIELAB per pixel)"

    def read(self, images: np.ndarray) -> dict[str, np.ndarray]:
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or 0 in images.shape:
            raise ValueError(
                f"the colour-emotion judge reads 8-bit RGB images (B, H, W, 3) of dtype uint8; got "
                f"{images.dtype} {images.shape} (convert tensors in [-1, 1] with emostyle.parts.to_uint8)"
            )
        lab = srgb_to_lab(images)
        return {
            "valence": colour_preference(lab).mean(axis=(1, 2)),
            "arousal": colour_activity(lab).mean(axis=(1, 2)),
        }
