"""BRISQUE: a no-reference image *quality* score (Mittal, Moorthy & Bovik 2012). Lower is better.

This is a quality model (distortions: blur, noise, compression), not an aesthetic one; the
offline profile uses it where no CLIP or VILA weights exist. Features follow the `image-quality`
package (Apache-2.0), whose RBF support-vector regressor we load:

  grey image in [0, 1] -> MSCN coefficients (7x7 Gaussian window, sigma 7/6, C = 1/255)
  -> an asymmetric generalised Gaussian fit of the MSCN map (alpha, mean of the two variances)
  and of its four neighbour products (alpha, mean, left and right variances): 18 features
  -> the same at half scale (order-2 spline, no anti-aliasing): 36 features
  -> min-max scaling to [-1, 1] -> epsilon-SVR with an RBF kernel.

The SVM (`brisque_svm.txt`, libsvm text) and its scaling (`normalize.pickle`, a dict of two
float lists) are members of the `image-quality==1.2.7` wheel: registry entries `brisque-svm` and
`brisque-normalize`. The pickle is read with an unpickler that refuses every global.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage, optimize, signal, special

__all__ = ["BrisqueModel", "brisque_features", "load_brisque"]

_SVM_FILE = "brisque_svm.txt"
_SCALE_FILE = "normalize.pickle"
_N_FEATURES = 36


def _to_grey(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 or float in [0, 1], or (H, W) -> float64 grey in [0, 1] (ITU-R 709 luma)."""
    x = np.asarray(image)
    if x.dtype == np.uint8:
        x = x.astype(np.float64) * (1.0 / 255.0)  # as skimage.img_as_float: bit-exact grey levels
    elif np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
        if x.min() < -1e-6 or x.max() > 1 + 1e-6:
            raise ValueError("float images must lie in [0, 1]; convert [-1, 1] images with (x + 1) / 2")
    else:
        raise ValueError(f"image dtype must be uint8 or float, got {x.dtype}")
    if x.ndim == 3 and x.shape[2] == 3:
        x = x @ np.array([0.2125, 0.7154, 0.0721])
    elif x.ndim != 2:
        raise ValueError(f"image must be (H, W, 3) RGB or (H, W) grey, got shape {x.shape}")
    if min(x.shape) < 16:
        raise ValueError(f"image too small for BRISQUE: {x.shape}, need at least 16x16")
    return x


def _gaussian_window(size: int = 7, sigma: float = 7 / 6) -> np.ndarray:
    y, x = np.indices((size, size)) - size // 2
    # the normalising prefactor cancels, but keeping it keeps the package's exact rounding
    w = 1 / (2 * np.pi * sigma**2) * np.exp(-(x**2 + y**2) / (2 * sigma**2))
    return w / np.sum(w)


def _mscn(grey: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients; zero padding at the border as in the package.

    The same direct convolution as the package, because flat (clipped) regions give MSCN values
    of exactly 0 or of +-1e-11 depending on rounding, and the AGGD fit counts 0 as right-hand."""
    w = _gaussian_window()
    mu = signal.convolve2d(grey, w, mode="same")
    sigma = np.sqrt(np.abs(mu**2 - signal.convolve2d(grey**2, w, mode="same")))
    return (grey - mu) / (sigma + 1.0 / 255.0)


def _phi(alpha):
    return special.gamma(2 / alpha) ** 2 / (special.gamma(1 / alpha) * special.gamma(3 / alpha))


def _aggd_fit(x: np.ndarray) -> tuple[float, float, float, float]:
    """Asymmetric generalised Gaussian fit by moments: (alpha, mean, left variance, right variance)."""
    x = x.ravel()
    left, right = x[x < 0], x[x >= 0]
    var_l = np.mean(left**2) if left.size else 0.0
    var_r = np.mean(right**2) if right.size else 0.0
    if var_l == 0 or var_r == 0:
        raise ValueError("BRISQUE needs an image with texture; this one is flat")
    gamma = np.sqrt(var_l / var_r)
    r_hat = np.mean(np.abs(x)) ** 2 / np.mean(x**2)
    big_r = r_hat * (gamma**3 + 1) * (gamma + 1) / (gamma**2 + 1) ** 2
    # phi rises monotonically from 0 to 3/4, so the moment equation has one root: bracket it.
    big_r = float(np.clip(big_r, _phi(0.05), _phi(50.0)))
    alpha = optimize.brentq(lambda a: _phi(a) - big_r, 0.05, 50.0, xtol=1e-12)
    const = np.sqrt(special.gamma(1 / alpha) / special.gamma(3 / alpha))
    mean = (np.sqrt(var_r) - np.sqrt(var_l)) * const * special.gamma(2 / alpha) / special.gamma(1 / alpha)
    return alpha, mean, var_l, var_r


def _scale_features(grey: np.ndarray) -> np.ndarray:
    m = _mscn(grey)
    alpha, _, var_l, var_r = _aggd_fit(m)
    feats = [alpha, (var_l + var_r) / 2]
    pairs = (
        m[:, :-1] * m[:, 1:],  # horizontal
        m[:-1, :] * m[1:, :],  # vertical
        m[:-1, :-1] * m[1:, 1:],  # main diagonal
        m[1:, :-1] * m[:-1, 1:],  # secondary diagonal
    )
    for p in pairs:
        feats.extend(_aggd_fit(p))
    return np.array(feats)


def _half_scale(grey: np.ndarray) -> np.ndarray:
    # skimage.transform.rescale(order=2, mode="constant", anti_aliasing=False) as the package does,
    # including its clip to the input's range (widened to the zero border value when it shows up).
    out = ndimage.zoom(grey, 0.5, order=2, mode="grid-constant", grid_mode=True)
    lo, hi = grey.min(), grey.max()
    if not lo <= 0.0 <= hi and out.min() <= 0.0 <= out.max():
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    return np.clip(out, lo, hi)


def brisque_features(image: np.ndarray) -> np.ndarray:
    """The 36 unscaled BRISQUE features of an image ((H, W, 3) uint8 or float in [0, 1], or grey)."""
    grey = _to_grey(image)
    return np.concatenate([_scale_features(grey), _scale_features(_half_scale(grey))])


def _reject_globals(module, name):
    raise pickle.UnpicklingError(f"{_SCALE_FILE} must hold only plain lists of floats, found {module}.{name}")


class _PlainUnpickler(pickle.Unpickler):
    find_class = staticmethod(_reject_globals)


@dataclass
class BrisqueModel:
    """The epsilon-SVR of BRISQUE: f(x) = sum_i coef_i exp(-gamma |sv_i - x|^2) - rho."""

    support_vectors: np.ndarray  # (n_sv, 36)
    coefficients: np.ndarray  # (n_sv,)
    gamma: float
    rho: float
    feature_min: np.ndarray  # (36,)
    feature_max: np.ndarray  # (36,)

    name = "brisque"
    higher_is_better = False

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Scores (B,) of unscaled features (B, 36) or (36,)."""
        f = np.atleast_2d(np.asarray(features, dtype=np.float64))
        if f.shape[1] != _N_FEATURES:
            raise ValueError(f"expected {_N_FEATURES} BRISQUE features, got {f.shape[1]}")
        x = -1 + 2.0 * (f - self.feature_min) / (self.feature_max - self.feature_min)
        d2 = ((x[:, None, :] - self.support_vectors[None]) ** 2).sum(-1)
        return np.exp(-self.gamma * d2) @ self.coefficients - self.rho

    def score(self, images) -> np.ndarray:
        """BRISQUE quality (B,) of images: one array (H, W, 3) or a list of them, or a tensor
        (B, 3, H, W) in [-1, 1]. About 0 (pristine) to 100 (heavily distorted); lower is better."""
        return self.predict(np.stack([brisque_features(im) for im in _as_image_list(images)]))


def _as_image_list(images) -> list:
    if hasattr(images, "detach"):  # a torch tensor (B, 3, H, W) in [-1, 1]
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"image tensors must be (B, 3, H, W), got {tuple(images.shape)}")
        x = ((images.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
        return list(x.astype(np.float64))
    if isinstance(images, np.ndarray) and images.ndim in (2, 3):
        return [images]
    return list(images)


def _parse_svm(path: Path) -> tuple[np.ndarray, np.ndarray, float, float]:
    header, rows = {}, []
    lines = path.read_text().splitlines()
    if not lines or not lines[0].startswith("svm_type"):
        raise ValueError(f"{path} is not a libsvm model file (first line should be 'svm_type ...')")
    body = iter(lines)
    for line in body:
        if line.strip() == "SV":
            break
        key, _, value = line.partition(" ")
        header[key] = value.strip()
    if header.get("svm_type") != "epsilon_svr" or header.get("kernel_type") != "rbf":
        raise ValueError(f"{path}: expected an epsilon_svr with an rbf kernel, got {header}")
    for line in body:
        if not line.strip():
            continue
        coef, *pairs = line.split()
        x = np.zeros(_N_FEATURES + 1)
        for pair in pairs:  # libsvm is sparse: omitted indices are zero
            i, v = pair.split(":")
            x[int(i)] = float(v)
        rows.append((float(coef), x[1:]))
    if len(rows) != int(header.get("total_sv", -1)):
        raise ValueError(f"{path} is truncated: {len(rows)} support vectors, header says {header.get('total_sv')}")
    coefs = np.array([c for c, _ in rows])
    svs = np.stack([x for _, x in rows])
    return svs, coefs, float(header["gamma"]), float(header["rho"])


def load_brisque(svm: str | Path | None = None, normalize: str | Path | None = None) -> BrisqueModel:
    """Load the BRISQUE regressor: `svm` is `brisque_svm.txt` (libsvm text), `normalize` is
    `normalize.pickle` (feature minima and maxima); each defaults to its registry entry
    (`brisque-svm`, `brisque-normalize`) and may also be a folder holding the file."""
    svm = _model_file(svm, "brisque-svm", _SVM_FILE)
    normalize = _model_file(normalize, "brisque-normalize", _SCALE_FILE)
    svs, coefs, gamma, rho = _parse_svm(svm)
    with open(normalize, "rb") as f:
        try:
            scale = _PlainUnpickler(f).load()
        except (pickle.UnpicklingError, EOFError, ValueError) as err:
            raise ValueError(f"{normalize} is not the BRISQUE scaling pickle: {err}") from None
    if not isinstance(scale, dict) or set(scale) != {"min_", "max_"}:
        raise ValueError(f"{normalize}: expected a dict with 'min_' and 'max_'")
    lo, hi = np.asarray(scale["min_"], float), np.asarray(scale["max_"], float)
    if lo.shape != (_N_FEATURES,) or hi.shape != (_N_FEATURES,):
        raise ValueError(f"{normalize}: expected {_N_FEATURES} minima and maxima")
    return BrisqueModel(svs, coefs, gamma, rho, lo, hi)


def _model_file(given: str | Path | None, entry: str, filename: str) -> Path:
    if given is None:
        from emostyle import registry

        return registry.path(entry)
    path = Path(given)
    if path.is_dir():
        path = path / filename
    if not path.is_file():
        raise FileNotFoundError(f"BRISQUE file {path} not found; run `emostyle weights fetch {entry}`")
    return path
