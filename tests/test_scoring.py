"""Scorers: BRISQUE (quality) and the LAION aesthetic head.

BRISQUE runs on a real photo shipped with matplotlib (`grace_hopper.jpg`, 512x600) and on its
blurred and noised versions, made here exactly as below. `tests/data/brisque_reference.npz`
holds what the `image-quality==1.2.7` package computes for these three images (its 36 unscaled
features and its libsvm score), made in a scratch venv (/tmp/ref_scoring: scikit-image 0.20,
libsvm 3.23.0.4, with two shims for APIs those versions dropped: `rescale(multichannel=)` and
`scipy.ndarray`) from the same three arrays saved as PNG.
"""

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib import cbook
from PIL import Image
from scipy import ndimage

from emostyle.scoring.brisque import BrisqueModel, brisque_features, load_brisque
from emostyle.scoring.laion import load_aesthetic_head

DATA = Path(__file__).parent / "data"
REFERENCE = np.load(DATA / "brisque_reference.npz")


@pytest.fixture(scope="module")
def photos():
    sharp = np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))
    blur = ndimage.gaussian_filter(sharp.astype(float), (3, 3, 0)).round().clip(0, 255).astype(np.uint8)
    noise = sharp + np.random.default_rng(0).normal(0, 25, sharp.shape)
    return {"sharp": sharp, "blur": blur, "noise": noise.round().clip(0, 255).astype(np.uint8)}


@pytest.fixture(scope="module")
def brisque():
    try:
        return load_brisque()  # registry entries brisque-svm and brisque-normalize
    except FileNotFoundError as err:
        pytest.skip(f"BRISQUE model not available: {err}")


def test_brisque_features_match_image_quality(photos):
    for name, image in photos.items():
        ours = brisque_features(image)
        ref = REFERENCE[f"{name}_features"]
        # 1e-13 apart here. The blurred image has flat (clipped) regions whose MSCN values are 0 or
        # +-1e-11 depending on the last bit of the grey levels, and the AGGD fit counts 0 as
        # right-hand: another BLAS may move its features by up to ~3e-4.
        np.testing.assert_allclose(ours, ref, rtol=5e-4 if name == "blur" else 1e-7, err_msg=name)


def test_brisque_orders_sharp_noised_blurred(photos, brisque):
    scores = {name: brisque.score(image)[0] for name, image in photos.items()}
    for name, score in scores.items():
        assert score == pytest.approx(float(REFERENCE[f"{name}_score"]), abs=0.02), name
    assert scores["sharp"] < 20 < scores["noise"] < scores["blur"]  # lower is better
    assert brisque.higher_is_better is False


def test_brisque_tensor_input_matches_array(photos, brisque):
    x = torch.from_numpy(photos["sharp"][:128, :160].copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    assert brisque.score(x)[0] == pytest.approx(brisque.score(photos["sharp"][:128, :160])[0], abs=1e-6)


def test_svr_matches_sklearn(tmp_path):
    """Our libsvm reader and RBF regression against scikit-learn's SVR (libsvm inside) on random data."""
    svm = pytest.importorskip("sklearn.svm")
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-1, 1, (60, 36)), rng.normal(0, 10, 60)
    model = svm.SVR(kernel="rbf", gamma=0.05, C=100.0).fit(x, y)
    lines = ["svm_type epsilon_svr", "kernel_type rbf", "gamma 0.05", "nr_class 2",
             f"total_sv {len(model.support_)}", f"rho {-float(model.intercept_[0])!r}", "SV"]
    for coef, sv in zip(model.dual_coef_[0], model.support_vectors_):
        lines.append(f"{float(coef)!r} " + " ".join(f"{i + 1}:{float(v)!r}" for i, v in enumerate(sv) if v != 0))
    (tmp_path / "brisque_svm.txt").write_text("\n".join(lines) + "\n")
    import pickle

    (tmp_path / "normalize.pickle").write_bytes(pickle.dumps({"min_": [-1.0] * 36, "max_": [1.0] * 36}))
    ours = load_brisque(tmp_path, tmp_path)
    probe = rng.uniform(-1, 1, (5, 36))
    np.testing.assert_allclose(ours.predict(probe), model.predict(probe), rtol=1e-9, atol=1e-9)


def test_brisque_bad_files(tmp_path, photos):
    (tmp_path / "brisque_svm.txt").write_text("<html>not found</html>")
    (tmp_path / "normalize.pickle").write_bytes(b"\x80\x04cos\nsystem\n.")
    with pytest.raises(ValueError, match="not a libsvm model"):
        load_brisque(tmp_path, tmp_path)
    with pytest.raises(FileNotFoundError, match="emostyle weights fetch brisque-svm"):
        load_brisque(tmp_path / "nowhere", tmp_path)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        brisque_features(photos["sharp"] / 127.5 - 1)
    with pytest.raises(ValueError, match="flat"):
        brisque_features(np.full((32, 32, 3), 128, np.uint8))
    model = BrisqueModel(np.zeros((1, 36)), np.ones(1), 0.05, 0.0, np.zeros(36), np.ones(36))
    with pytest.raises(ValueError, match="36 BRISQUE features"):
        model.predict(np.zeros(18))


def test_laion_head_scores_embeddings(shared_data):
    head = load_aesthetic_head(shared_data / "aesthetic" / "sa_0_4_vit_b_32_linear.pth")
    assert head.dim == 512
    e = torch.randn(4, 512, generator=torch.Generator().manual_seed(0))
    scores = head.score(e)
    assert scores.shape == (4,) and torch.isfinite(scores).all()
    state = torch.load(shared_data / "aesthetic" / "sa_0_4_vit_b_32_linear.pth", weights_only=True)
    manual = (e / e.norm(dim=1, keepdim=True)) @ state["weight"][0] + state["bias"][0]
    torch.testing.assert_close(scores, manual)
    torch.testing.assert_close(head.score(7.0 * e), scores)  # normalised: the scale of e does not matter
    assert head.score_images(torch.zeros(3, 3, 8, 8), lambda im: e[: len(im)] * 2, batch_size=2).shape == (3,)
    assert load_aesthetic_head(shared_data / "aesthetic" / "sa_0_4_vit_l_14_linear.pth").dim == 768
    with pytest.raises(ValueError, match=r"\(B, 512\)"):
        head.score(torch.zeros(2, 768))


def test_laion_head_rejects_wrong_files(tmp_path):
    (tmp_path / "page.pth").write_text("<!DOCTYPE html><html>quota exceeded</html>")
    with pytest.raises(ValueError, match="not a LAION aesthetic head"):
        load_aesthetic_head(tmp_path / "page.pth")
    torch.save({"layers.0.weight": torch.zeros(1024, 768)}, tmp_path / "mlp.pth")
    with pytest.raises(ValueError, match="layers.0.weight"):
        load_aesthetic_head(tmp_path / "mlp.pth")
    with pytest.raises(FileNotFoundError, match="emostyle weights fetch"):
        load_aesthetic_head(tmp_path / "missing.pth")


def test_available_scorers_and_score_images(shared_data, monkeypatch):
    from types import SimpleNamespace

    from emostyle.models.clip import tiny_clip
    from emostyle.scoring import available_scorers, score_images

    monkeypatch.setenv("EMOSTYLE_WEIGHT_LAION_AESTHETIC_VIT_B_32",
                       str(shared_data / "aesthetic" / "sa_0_4_vit_b_32_linear.pth"))
    clip = tiny_clip(embed_dim=512)
    with pytest.warns(UserWarning, match="scorer skipped: vila-r"):
        scorers = available_scorers(SimpleNamespace(guidance_space=SimpleNamespace(clip=clip, dim=512)))
    assert list(scorers)[0] == "laion-aesthetic"
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    scores = score_images(images, scorers)
    assert scores["laion-aesthetic"].shape == (2,) and np.isfinite(scores["laion-aesthetic"]).all()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        small = available_scorers(SimpleNamespace(guidance_space=SimpleNamespace(clip=tiny_clip(), dim=32)))
    assert "laion-aesthetic" not in small and any("32-d" in str(w.message) for w in caught)
