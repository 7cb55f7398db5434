"""StyleGAN2 generator: parity with rosinality/stylegan2-pytorch, checkpoint loading, errors.

How tests/data/stylegan2_ref64_* were made (not reproducible here without that repository):
rosinality/stylegan2-pytorch at commit bef283a, `model.py` and `op/` copied to a /tmp scratch
dir; the module-level `load(...)` of the CUDA extensions in `op/fused_act.py` and
`op/upfirdn2d.py` replaced by `None`, so its CPU/native paths run; `Generator.channels`
narrowed to 16 for 4..32 px and `8 * channel_multiplier` at 64 px (its 512 base scaled by 1/32,
our `channel_base=16`). Then, on CPU with torch 2.13:
  torch.manual_seed(0); g = Generator(64, 32, 8, channel_multiplier=2)
  every parameter += 0.3 * randn (so biases, noise weights are non-zero); g.eval()
  latent_avg = g.mean_latent(256)[0]
  ckpt.pt = torch.save({"g_ema": g.state_dict(), "latent_avg": latent_avg,
                        "args": argparse.Namespace(size=64, ...)})   # train.py's format
  z = randn(2, 2, 32); wplus = 0.5 * randn(1, 10, 32) + latent_avg
  img_mix, latent_mix = g([z[0], z[1]], return_latents=True, inject_index=4, truncation=0.7,
                          truncation_latent=latent_avg[None], randomize_noise=False)
  img_wplus = g([wplus], input_is_latent=True, randomize_noise=False)[0]
  ops_*: x = randn(2, 3, 5, 6), kernel = rand(4, 3); for each case (up2: up=2 pad=(2, 1);
  down2: down=2 pad=(1, 1); crop: pad=(-1, 2); mixed: up=(2, 1) down=(1, 2) pad=(1, 2, 0, 3))
  out = op.upfirdn2d(x, kernel, ...), w = randn_like(out), grad = d sum(out * w) / dx;
  act: out = op.fused_leaky_relu(x, bias = randn(3)) and the gradients of out.sum().
"""

import argparse
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from emostyle.models.ops import FusedLeakyReLU, fused_leaky_relu, upfirdn2d
from emostyle.models.stylegan2 import Generator, _architecture, load_stylegan2

DATA = Path(__file__).parent / "data"
CKPT = DATA / "stylegan2_ref64_ckpt.pt"
OPS_CASES = {
    "up2": dict(up=2, down=1, pad=(2, 1)),
    "down2": dict(up=1, down=2, pad=(1, 1)),
    "crop": dict(up=1, down=1, pad=(-1, 2)),
    "mixed": dict(up=(2, 1), down=(1, 2), pad=(1, 2, 0, 3)),
}


@pytest.fixture(scope="module")
def expected():
    return {k: torch.from_numpy(v) for k, v in np.load(DATA / "stylegan2_ref64_expected.npz").items()}


@pytest.fixture(scope="module")
def reference():
    return load_stylegan2(CKPT)


def _tiny(size=32, seed=0, **kwargs):
    torch.manual_seed(seed)
    generator = Generator(size, style_dim=16, n_mlp=2, channel_base=8, **kwargs)
    with torch.no_grad():  # noise weights start at 0; make the noise visible
        for conv in [generator.conv1, *generator.convs]:
            conv.noise.weight.fill_(0.1)
    return generator.eval()


# (1) parity with the reference implementation

def test_images_match_reference_with_mixing_and_truncation(reference, expected):
    generator, latent_avg = reference
    z = expected["z"]
    with torch.no_grad():
        image, latent = generator([z[0], z[1]], return_latents=True, inject_index=4, truncation=0.7,
                                  truncation_latent=latent_avg[None], randomize_noise=False)
    assert image.shape == (2, 3, 64, 64)
    assert (image - expected["img_mix"]).abs().max() < 1e-4
    assert (latent - expected["latent_mix"]).abs().max() < 1e-5


def test_images_match_reference_from_w_plus(reference, expected):
    generator, _ = reference
    with torch.no_grad():
        image, latent = generator([expected["wplus"]], input_is_latent=True, randomize_noise=False)
    assert latent is None
    assert (image - expected["img_wplus"]).abs().max() < 1e-4
    # The stored noise buffers passed explicitly give the same image.
    with torch.no_grad():
        again, _ = generator([expected["wplus"]], input_is_latent=True,
                             noise=[getattr(generator.noises, f"noise_{i}") for i in range(9)])
    assert torch.equal(again, image)


@pytest.mark.parametrize("case", OPS_CASES)
def test_upfirdn2d_matches_reference(case, expected):
    x = expected["ops_x"].clone().requires_grad_(True)
    out = upfirdn2d(x, expected["ops_kernel"], **OPS_CASES[case])
    assert out.shape == expected[f"ops_{case}_out"].shape
    assert (out - expected[f"ops_{case}_out"]).abs().max() < 1e-5
    (grad,) = torch.autograd.grad((out * expected[f"ops_{case}_w"]).sum(), x)
    assert (grad - expected[f"ops_{case}_grad"]).abs().max() < 1e-5


def test_fused_leaky_relu_matches_reference(expected):
    x = expected["ops_x"].clone().requires_grad_(True)
    bias = expected["ops_act_bias"].clone().requires_grad_(True)
    out = fused_leaky_relu(x, bias)
    assert (out - expected["ops_act_out"]).abs().max() < 1e-6
    grad_x, grad_bias = torch.autograd.grad(out.sum(), [x, bias])
    assert (grad_x - expected["ops_act_grad_x"]).abs().max() < 1e-6
    assert (grad_bias - expected["ops_act_grad_bias"]).abs().max() < 1e-5
    act = FusedLeakyReLU(3)
    assert set(act.state_dict()) == {"bias"}
    assert torch.allclose(act(x), fused_leaky_relu(x))


# (2) strict loading of rosinality's layout

def test_reference_checkpoint_has_our_keys_and_train_py_args(reference):
    generator, latent_avg = reference
    with torch.serialization.safe_globals([argparse.Namespace]):
        checkpoint = torch.load(CKPT, weights_only=True, map_location="cpu")
    assert isinstance(checkpoint["args"], argparse.Namespace)
    assert list(checkpoint["g_ema"]) == list(generator.state_dict())
    assert latent_avg.shape == (32,)
    assert (generator.size, generator.style_dim, generator.n_latent) == (64, 32, 10)


def test_bare_state_dict_and_loaded_dict_load_strictly(reference, expected):
    generator, latent_avg = reference
    bare, none = load_stylegan2(generator.state_dict())
    assert none is None
    for (k, v), w in zip(generator.state_dict().items(), bare.state_dict().values()):
        assert torch.equal(v, w), k
    _, avg = load_stylegan2({"g_ema": generator.state_dict(), "latent_avg": latent_avg})
    assert torch.equal(avg, latent_avg)


@pytest.mark.parametrize("size, channel_multiplier", [(32, 2), (64, 1), (128, 2), (128, 1)])
def test_architecture_is_read_from_the_state_dict(size, channel_multiplier):
    source = _tiny(size, channel_multiplier=channel_multiplier)
    loaded, _ = load_stylegan2({"g_ema": source.state_dict()})
    assert loaded.channels == source.channels
    w = torch.randn(2, source.n_latent, 16)
    with torch.no_grad():
        a, _ = source([w], input_is_latent=True, randomize_noise=False)
        b, _ = loaded([w], input_is_latent=True, randomize_noise=False)
    assert torch.equal(a, b)


@pytest.mark.parametrize("size, keys", [
    (256, {"convs.10.conv.weight": (1, 128, 256, 3, 3), "to_rgbs.5.conv.weight": (1, 3, 128, 1, 1)}),
    (1024, {"convs.14.conv.weight": (1, 32, 64, 3, 3), "noises.noise_16": (1, 1, 1024, 1024),
            "style.8.weight": (512, 512), "input.input": (1, 512, 4, 4),
            "convs.0.conv.blur.kernel": (4, 4), "to_rgbs.0.upsample.kernel": (4, 4),
            "conv1.activate.bias": (512,), "to_rgb1.conv.modulation.bias": (512,)}),
])
def test_full_width_layout_matches_rosinality(size, keys):
    # Built on the meta device: shapes without memory or time.
    with torch.device("meta"):
        generator = Generator(size)
    state = generator.state_dict()
    for key, shape in keys.items():
        assert tuple(state[key].shape) == shape, key
    assert _architecture(state, "meta") == dict(size=size, style_dim=512, n_mlp=8,
                                                channel_multiplier=2, channel_base=512)


# (3) resolution mismatch

def test_resolution_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"checkpoint is 64 px \(10 W\+ layers\), profile expects "
                                         r"512 px \(16 W\+ layers\)"):
        load_stylegan2(CKPT, size=512)
    assert load_stylegan2(CKPT, size=64)[0].size == 64


# (4) wrong files

def test_missing_file_names_the_fetch_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="emostyle weights fetch"):
        load_stylegan2(tmp_path / "absent.pt")


@pytest.mark.parametrize("content, message", [
    (b"<!DOCTYPE html><html><body>Google Drive quota exceeded</body></html>", "HTML"),
    (b"", "empty"),
    ("truncated", "not a readable PyTorch checkpoint"),
    (b"\x00garbage" * 20, "not a readable PyTorch checkpoint"),
])
def test_non_checkpoint_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "stylegan2.pt"
    if content == "truncated":
        data = CKPT.read_bytes()
        content = data[: len(data) // 2]
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        load_stylegan2(path)
    assert str(path) in str(info.value)


class _Unsafe:
    pass


def test_checkpoint_with_foreign_objects_is_refused(tmp_path):
    path = tmp_path / "unsafe.pt"
    torch.save({"g_ema": {}, "payload": _Unsafe()}, path)
    with pytest.raises(ValueError, match="holds a Python object .* besides tensors"):
        load_stylegan2(path)


def test_dict_without_generator_and_wrong_shapes_are_clear_errors(tmp_path, reference):
    path = tmp_path / "discriminator.pt"
    torch.save({"d": {"convs.0.0.weight": torch.zeros(1)}}, path)
    with pytest.raises(ValueError, match="has no 'g_ema'") as info:
        load_stylegan2(path)
    assert str(path) in str(info.value)

    state = dict(reference[0].state_dict())
    state["convs.3.conv.weight"] = torch.zeros(1, 16, 8, 3, 3)
    with pytest.raises(ValueError, match="shape mismatches.*convs.3.conv.weight"):
        load_stylegan2(state)
    del state["convs.3.conv.weight"]
    with pytest.raises(ValueError, match="missing.*convs.3.conv.weight"):
        load_stylegan2(state)


# (5) gradients, (6) seeds, (7) latent count

def test_gradients_reach_the_w_plus_latent():
    generator = _tiny(32)
    latent = torch.randn(2, generator.n_latent, 16, requires_grad=True)
    image, _ = generator([latent], input_is_latent=True, randomize_noise=False)
    image.square().mean().backward()
    per_layer = latent.grad.abs().sum(dim=(0, 2))
    assert torch.all(per_layer > 0), per_layer  # every W+ layer influences the image


def test_same_seed_same_image():
    generator = _tiny(32)
    z = torch.randn(2, 16, generator=torch.Generator().manual_seed(1))

    def render(seed):
        rng = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            return generator([z], generator=rng)[0]

    assert torch.equal(render(3), render(3))
    assert not torch.allclose(render(3), render(4))
    with torch.no_grad():
        mixed = [generator([z, z.flip(0)], generator=torch.Generator().manual_seed(5))[0]
                 for _ in range(2)]
    assert torch.equal(*mixed)
    assert torch.equal(generator.mean_latent(64), generator.mean_latent(64))
    assert torch.equal(generator.mean_latent(64, torch.Generator().manual_seed(2)),
                       generator.mean_latent(64, torch.Generator().manual_seed(2)))
    noise = generator.make_noise(torch.Generator().manual_seed(0))
    assert [tuple(n.shape[-2:]) for n in noise] == [(4, 4), (8, 8), (8, 8), (16, 16), (16, 16),
                                                    (32, 32), (32, 32)]


@pytest.mark.parametrize("size", [4, 8, 32, 256, 512, 1024])
def test_n_latent_is_two_log2_size_minus_two(size):
    with torch.device("meta"):
        generator = Generator(size)
    assert generator.n_latent == 2 * int(math.log2(size)) - 2
    assert generator.num_layers == 2 * int(math.log2(size)) - 3


def test_bad_arguments_are_clear_errors():
    generator = _tiny(16)
    z = torch.randn(1, 16)
    with pytest.raises(ValueError, match="power of two"):
        Generator(100)
    with pytest.raises(ValueError, match="truncation_latent"):
        generator([z], truncation=0.5)
    with pytest.raises(ValueError, match="one latent or two"):
        generator([z, z, z])
    with pytest.raises(ValueError, match=r"W\+ latent must be \(B, 6, 16\)"):
        generator([torch.randn(1, 5, 16)], input_is_latent=True)
    with pytest.raises(ValueError, match="noise must hold 5 maps"):
        generator([z], noise=[None])
