"""LPIPS-VGG against the `lpips` package (v0.1, net='vgg') on random weights.

tests/data/lpips_vgg_expected.json was made once in a scratch environment by the PyPI
package `lpips==0.1.4` (its LPIPS class, with torchvision's VGG16 `features` layout), loaded
with the state below (`random_state(LPIPS(), 0)`, mapped to its key names), on the inputs below.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from emostyle.models.checkpoint import random_state
from emostyle.models.lpips import LPIPS, load_lpips

EXPECTED = json.loads((Path(__file__).parent / "data" / "lpips_vgg_expected.json").read_text())


def _files(tmp_path):
    """The random state, written as the two official files: torchvision's VGG16 and lpips' vgg.pth."""
    state = random_state(LPIPS(), EXPECTED["seed_state"])
    vgg = {k: v for k, v in state.items() if k.startswith("features.")}
    vgg["classifier.0.weight"] = torch.zeros(8, 8)  # torchvision's file also holds the classifier
    lin = {k: v for k, v in state.items() if k.startswith("lin")}
    torch.save(vgg, tmp_path / "vgg16-397923af.pth")
    torch.save(lin, tmp_path / "vgg.pth")
    return tmp_path / "vgg16-397923af.pth", tmp_path / "vgg.pth"


def test_matches_the_lpips_package(tmp_path):
    model = load_lpips(*_files(tmp_path))
    g = torch.Generator().manual_seed(EXPECTED["seed_inputs"])
    a = torch.rand(3, 3, 48, 48, generator=g) * 2 - 1
    b = (a + 0.3 * torch.randn(3, 3, 48, 48, generator=g)).clamp(-1, 1)
    with torch.no_grad():
        got = model(a, b)
    # float32 convolutions summed in another order: a few ulps of the features, relative.
    torch.testing.assert_close(got, torch.tensor(EXPECTED["lpips"]), rtol=1e-4, atol=1e-9)


def test_zero_on_equal_images_and_differentiable(tmp_path):
    model = load_lpips(*_files(tmp_path))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert model(x, x).abs().max() < 1e-12
    y = x.clone().requires_grad_()
    model(y + 0.1, x).sum().backward()
    assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


def test_wrong_files_are_named(tmp_path):
    vgg, lin = _files(tmp_path)
    with pytest.raises(ValueError, match="no `features"):
        load_lpips({"classifier.0.weight": torch.zeros(1)}, lin)
    lin_state = torch.load(lin)
    del lin_state["lin4.model.1.weight"]
    with pytest.raises(ValueError, match="lin4.model.1.weight"):
        load_lpips(vgg, lin_state)
