"""ArcFace IR-SE50: the official key layout at full size, parity with a functional forward, L_ID.

The checkpoint is random, in the layout of TreB1eN/StyleCLIP's `Backbone(112, 50, 'ir_se')`
(`model_ir_se50.pth`), its shapes listed below independently of the kit's module.
"""

import pytest
import torch
import torch.nn.functional as F

from emostyle.models.arcface import ArcFaceIdentity, load_arcface, tiny_arcface

STAGES = [(64, 3), (128, 4), (256, 14), (512, 3)]  # (depth, units) of IR-50


def _units():
    units, in_ch = [], 64
    for depth, n in STAGES:
        for j in range(n):
            units.append((in_ch if j == 0 else depth, depth, 2 if j == 0 else 1))
        in_ch = depth
    return units


def _bn(state, prefix, n, g):
    state[prefix + ".weight"] = 1 + 0.1 * torch.randn(n, generator=g)
    state[prefix + ".bias"] = 0.1 * torch.randn(n, generator=g)
    state[prefix + ".running_mean"] = 0.1 * torch.randn(n, generator=g)
    state[prefix + ".running_var"] = 0.5 + torch.rand(n, generator=g)
    state[prefix + ".num_batches_tracked"] = torch.tensor(0)


def _official_checkpoint(seed=0):
    g = torch.Generator().manual_seed(seed)

    def conv(o, i, k):
        return torch.randn(o, i, k, k, generator=g) * (i * k * k) ** -0.5

    s = {"input_layer.0.weight": conv(64, 3, 3), "input_layer.2.weight": torch.full((64,), 0.25)}
    _bn(s, "input_layer.1", 64, g)
    for n, (i, d, _) in enumerate(_units()):
        p = f"body.{n}."
        if i != d:
            s[p + "shortcut_layer.0.weight"] = conv(d, i, 1)
            _bn(s, p + "shortcut_layer.1", d, g)
        _bn(s, p + "res_layer.0", i, g)
        s[p + "res_layer.1.weight"] = conv(d, i, 3)
        s[p + "res_layer.2.weight"] = torch.full((d,), 0.25)
        s[p + "res_layer.3.weight"] = conv(d, d, 3) * 0.3
        _bn(s, p + "res_layer.4", d, g)
        s[p + "res_layer.5.fc1.weight"] = conv(d // 16, d, 1)
        s[p + "res_layer.5.fc2.weight"] = conv(d, d // 16, 1)
    _bn(s, "output_layer.0", 512, g)
    s["output_layer.3.weight"] = torch.randn(512, 512 * 49, generator=g) * (512 * 49) ** -0.5
    s["output_layer.3.bias"] = torch.zeros(512)
    _bn(s, "output_layer.4", 512, g)
    return s


def _reference_forward(s, x):
    """Backbone(112, 50, 'ir_se') from the state dict, functionally (eval mode)."""
    def bn(x, p):
        return F.batch_norm(x, s[p + ".running_mean"], s[p + ".running_var"], s[p + ".weight"], s[p + ".bias"],
                            False, 0.0, 1e-5)

    x = F.prelu(bn(F.conv2d(x, s["input_layer.0.weight"], padding=1), "input_layer.1"), s["input_layer.2.weight"])
    for n, (i, d, stride) in enumerate(_units()):
        p = f"body.{n}."
        if i == d:
            shortcut = F.max_pool2d(x, 1, stride)
        else:
            shortcut = bn(F.conv2d(x, s[p + "shortcut_layer.0.weight"], stride=stride), p + "shortcut_layer.1")
        r = bn(x, p + "res_layer.0")
        r = F.prelu(F.conv2d(r, s[p + "res_layer.1.weight"], padding=1), s[p + "res_layer.2.weight"])
        r = bn(F.conv2d(r, s[p + "res_layer.3.weight"], stride=stride, padding=1), p + "res_layer.4")
        w = F.adaptive_avg_pool2d(r, 1)
        w = torch.sigmoid(F.conv2d(F.relu(F.conv2d(w, s[p + "res_layer.5.fc1.weight"])), s[p + "res_layer.5.fc2.weight"]))
        x = r * w + shortcut
    x = bn(x, "output_layer.0").flatten(1)
    x = F.linear(x, s["output_layer.3.weight"], s["output_layer.3.bias"])
    x = F.batch_norm(x, s["output_layer.4.running_mean"], s["output_layer.4.running_var"],
                     s["output_layer.4.weight"], s["output_layer.4.bias"], False, 0.0, 1e-5)
    return x / x.norm(dim=1, keepdim=True)


@pytest.fixture(scope="module")
def checkpoint():
    return _official_checkpoint()


def test_official_layout_loads_strictly_and_matches(checkpoint, tmp_path):
    torch.save(checkpoint, tmp_path / "model_ir_se50.pth")
    net = load_arcface(tmp_path / "model_ir_se50.pth")
    assert len(net.body) == 24 and net.input_size == 112
    faces = torch.rand(1, 3, 112, 112, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        ours, expected = net(faces), _reference_forward(checkpoint, faces)
    assert ours.shape == (1, 512)
    assert torch.allclose(ours, expected, atol=1e-5), (ours - expected).abs().max()


@pytest.mark.slow  # full IR-SE50 forward and backward on CPU, ~15 s
def test_identity_loss_preprocessing_and_gradient(checkpoint):
    net = load_arcface(checkpoint)
    loss_fn = ArcFaceIdentity(net)
    g = torch.Generator().manual_seed(2)
    reference = torch.rand(1, 3, 512, 512, generator=g) * 2 - 1
    images = (reference + 0.3 * torch.randn(1, 3, 512, 512, generator=g)).requires_grad_(True)
    loss = loss_fn(images, reference)
    # StyleCLIP's IDLoss: pool to 256, crop [35:223, 32:220], pool to 112, 1 - dot of unit features.
    def feats(x):
        x = torch.nn.AdaptiveAvgPool2d((256, 256))(x)[:, :, 35:223, 32:220]
        return _reference_forward(checkpoint, torch.nn.AdaptiveAvgPool2d((112, 112))(x))
    with torch.no_grad():
        expected = 1 - (feats(images) * feats(reference)).sum(1)
    assert loss.shape == (1,) and torch.allclose(loss, expected, atol=1e-5)
    loss.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert loss_fn(reference, reference).abs().max() < 1e-5


def test_tiny_identity_loss_per_item_and_errors(tmp_path):
    loss_fn = ArcFaceIdentity(tiny_arcface(0))
    g = torch.Generator().manual_seed(0)
    faces = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    loss = loss_fn(faces, faces.flip(0))
    assert loss.shape == (2,) and torch.allclose(loss[0], loss[1], atol=1e-5) and loss.min() > 1e-4
    assert torch.allclose(loss_fn(faces, faces[:1])[0], torch.tensor(0.0), atol=1e-5)
    with pytest.raises(ValueError, match="reference batch"):
        loss_fn(faces, torch.cat([faces, faces]))
    state = dict(tiny_arcface(0).state_dict())
    state.pop("body.1.res_layer.5.fc2.weight")
    with pytest.raises(ValueError, match="missing"):
        load_arcface(state)
    with pytest.raises(ValueError, match="IR-SE"):
        load_arcface({"conv.weight": torch.zeros(1)})
    (tmp_path / "page.pth").write_text("<!DOCTYPE html>")
    with pytest.raises(ValueError, match="HTML"):
        load_arcface(tmp_path / "page.pth")
    with pytest.raises(FileNotFoundError, match="emostyle weights fetch arcface-ir-se50"):
        load_arcface(tmp_path / "model_ir_se50.pth")
