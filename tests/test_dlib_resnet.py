"""dlib's face-recognition ResNet in PyTorch, read from dlib's own file format without dlib.

The tests write networks with random weights in dlib's serialization (as `dlib::serialize` lays
them out: versions from the loss layer down, then each layer's details from the input up, each
followed by its scratch tensors) and check them against dlib itself, which reads the same file.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emostyle.models.dlib_dnn import read_dlib_net
from emostyle.models.dlib_resnet import DlibFaceIdentity, load_dlib_resnet

# dlib_face_recognition_resnet_model_v1's units (in, out, down), as dnn_face_recognition_ex.cpp builds them
FULL_UNITS = [(32, 32, False)] * 3 + [(32, 64, True)] + [(64, 64, False)] * 3 + [(64, 128, True)] + \
             [(128, 128, False)] * 2 + [(128, 256, True)] + [(256, 256, False)] * 2 + [(256, 256, True)]
TINY_UNITS = [(4, 4, False), (4, 8, True), (8, 8, False), (8, 12, True)]


# --- dlib's encodings (dlib/serialize.h, dlib/cuda/tensor.h) ---------------------------------

def _int(value: int) -> bytes:
    body = abs(value).to_bytes(max(1, (abs(value).bit_length() + 7) // 8), "little")
    return bytes([len(body) | (0x80 if value < 0 else 0)]) + body


def _real(value: float) -> bytes:
    mantissa, exponent = math.frexp(value)
    return _int(int(mantissa * 2 ** 53)) + _int(exponent - 53)


def _str(text: str) -> bytes:
    return _int(len(text)) + text.encode()


def _tensor(values: np.ndarray | None = None, shape=(0, 0, 0, 0)) -> bytes:
    shape = shape if values is None else values.shape
    data = b"" if values is None else np.ascontiguousarray(values, "<f4").tobytes()
    return _int(2) + b"".join(_int(n) for n in shape) + data


def _alias(*shape) -> bytes:
    return _int(1) + b"".join(_int(n) for n in shape)


# Set up (else dlib would draw new weights at the first forward), gradient not stale, output
# enabled; then empty x_grad, cached output and params_grad.
_SCRATCH = b"100" + _tensor() * 3


def _con(rng, n_in, n_out, size, stride) -> bytes:
    filters = rng.standard_normal((n_out, n_in, size, size)) * math.sqrt(2 / (n_in * size * size))
    biases = rng.standard_normal(n_out) * 0.1
    padding = 0 if stride != 1 else size // 2
    return (_str("con_4") + _tensor(np.concatenate([filters.ravel(), biases]).astype(np.float32)[None, :, None, None])
            + b"".join(_int(v) for v in (n_out, size, size, stride, stride, padding, padding))
            + _alias(n_out, n_in, size, size) + _alias(1, n_out, 1, 1) + _real(1.0) + _real(1.0) + _real(1.0)
            + _real(0.0))


def _affine(rng, k) -> bytes:
    params = np.concatenate([1 + 0.2 * rng.standard_normal(k), 0.1 * rng.standard_normal(k)])
    return _str("affine_") + _tensor(params.astype(np.float32)[None, :, None, None]) + _alias(1, k, 1, 1) \
        + _alias(1, k, 1, 1) + _int(0)


def _pool(kind: str, size: int, stride: int) -> bytes:
    return _str(kind) + b"".join(_int(v) for v in (size, size, stride, stride, 0, 0))


def dlib_file(units, dim=128, input_size=150, seed=0) -> bytes:
    """A dlib-serialized metric ResNet with random weights: the stem, `units` and the head."""
    rng = np.random.default_rng(seed)
    stem = units[0][0]
    # Outermost first: each entry is (version, details or None for tags and skips).
    layers = [(2, _str("fc_2") + _int(dim) + _int(units[-1][1])
               + _tensor((rng.standard_normal((units[-1][1], dim)) / math.sqrt(units[-1][1])).astype(np.float32)
                         .reshape(1, -1, 1, 1)) + _alias(units[-1][1], dim, 1, 1) + _alias(0, 0, 0, 0)
               + _int(1) + _real(1.0) + _real(1.0) + _real(1.0) + _real(0.0)),
              (2, _pool("avg_pool_2", 0, 1))]
    for n_in, n_out, down in reversed(units):
        layers += [(2, _str("relu_")), (2, _str("add_prev_"))]
        if down:
            layers += [(2, _pool("avg_pool_2", 2, 2)), (1, None), (1, None)]  # avg pool, skip1, tag2
        layers += [(2, _affine(rng, n_out)), (2, _con(rng, n_out, n_out, 3, 1)), (2, _str("relu_")),
                   (2, _affine(rng, n_out)), (2, _con(rng, n_in, n_out, 3, 2 if down else 1)), (1, None)]
    layers += [(2, _pool("max_pool_2", 3, 2)), (2, _str("relu_")), (2, _affine(rng, stem))]
    out = _int(1) + _str("loss_metric_2") + _real(0.04) + _real(0.6)
    out += b"".join(_int(v) for v, _ in layers) + _int(3)  # the add_layer over the input: version 3
    out += _str("input_rgb_image_sized") + _real(122.782) + _real(117.001) + _real(104.298)
    out += _int(input_size) + _int(input_size)
    out += _con(rng, 3, stem, 7, 2) + _SCRATCH + _int(1)  # and its sample expansion factor
    for _, details in reversed(layers):
        if details is not None:
            out += details + _SCRATCH
    return out


@pytest.fixture(scope="module")
def full_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("dlib") / "random_resnet.dat"
    path.write_bytes(dlib_file(FULL_UNITS, seed=1))
    return path


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("dlib") / "tiny_resnet.dat"
    path.write_bytes(dlib_file(TINY_UNITS, dim=16, input_size=64, seed=2))
    return path


def _faces(n, size, seed):
    rng = np.random.default_rng(seed)
    # smooth images plus noise, so the network sees structure at every scale
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack([128 + 100 * np.sin(6 * xx + k) * np.cos(4 * yy - k) for k in range(3)], -1)
    return [np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8) for _ in range(n)]


def _descriptors(net, images):
    with torch.no_grad():
        return net(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()).numpy()


def _dlib_agrees(path, images, ours):
    dlib = pytest.importorskip("dlib")
    reference = dlib.face_recognition_model_v1(str(path))
    for image, got in zip(images, ours):
        want = np.array(reference.compute_face_descriptor(image))
        # float32 sums of up to 2304 products per value over 29 layers: relative error ~1e-6;
        # a misplaced weight or a wrong padding changes the descriptor by its own size.
        assert np.abs(got - want).max() <= 1e-4 * np.linalg.norm(want)


def test_dlib_reads_the_written_file_and_agrees_with_the_network(full_file):
    net = load_dlib_resnet(full_file)
    assert [(u.conv1.in_channels, u.conv1.out_channels, u.down) for u in net.units] == FULL_UNITS
    images = _faces(3, 150, seed=3)
    ours = _descriptors(net, images)
    assert ours.shape == (3, 128)
    _dlib_agrees(full_file, images, ours)


def test_the_published_network_matches_dlib(cached_weight):
    path = cached_weight("dlib-face-resnet")
    images = _faces(2, 150, seed=4)
    _dlib_agrees(path, images, _descriptors(load_dlib_resnet(path), images))


def test_reader_keeps_each_layer_in_order(tiny_file):
    loss, layers = read_dlib_net(tiny_file)
    assert loss.kind == "loss_metric_2" and loss.fields == pytest.approx(dict(margin=0.04, dist_thresh=0.6))
    assert layers[0].kind == "input_rgb_image_sized" and layers[0].fields["nr"] == 64
    convs = [layer for layer in layers if layer.kind == "con_4"]
    assert [c.fields["filters"] for c in convs][:3] == [(4, 3, 7, 7), (4, 4, 3, 3), (4, 4, 3, 3)]
    assert [c.fields["stride_y"] for c in convs] == [2, 1, 1, 2, 1, 1, 1, 2, 1]
    assert layers[-1].kind == "fc_2" and layers[-1].params.size == 12 * 16


def test_reader_rejects_truncated_and_foreign_files(tiny_file, tmp_path):
    data = tiny_file.read_bytes()
    for name, content, message in [
        ("cut.dat", data[:len(data) // 2], "ends early"),
        ("long.dat", data + b"\x01\x00", "bytes left"),
        ("text.dat", b"\x01\x01" + data[2:].replace(b"loss_metric_2", b"loss_hinge_22", 1), "loss"),
        ("zeros.dat", bytes(64), "loss layer"),
    ]:
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ValueError, match=message):
            read_dlib_net(path)


def test_a_network_of_another_shape_is_refused_by_name(tmp_path):
    path = tmp_path / "other.dat"
    # A unit whose shortcut is missing: the layers no longer spell dlib's ResNet.
    path.write_bytes(dlib_file(TINY_UNITS, dim=16, input_size=64).replace(_str("add_prev_"), _str("relu_"), 1))
    with pytest.raises(ValueError, match="not dlib's face-recognition ResNet"):
        load_dlib_resnet(path)


def test_missing_file_names_the_fetch_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="emostyle weights fetch dlib-face-resnet"):
        load_dlib_resnet(tmp_path / "absent.dat")


def test_identity_loss_is_zero_at_the_reference_and_has_a_gradient(tiny_file):
    identity = DlibFaceIdentity(load_dlib_resnet(tiny_file))
    faces = torch.from_numpy(np.stack(_faces(2, 48, seed=5))).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert identity(faces, faces).abs().max() < 1e-6
    moved = (faces + 0.3 * torch.randn_like(faces)).clamp(-1, 1).requires_grad_(True)
    loss = identity(moved, faces)
    assert (loss > 0).all()
    loss.sum().backward()
    assert moved.grad.abs().sum() > 0 and torch.isfinite(moved.grad).all()
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        identity.features(faces[:, :1])


def test_the_pipeline_holds_the_face_through_dlib_when_the_config_says_so(repo_root):
    """`guidance.identity=dlib`: the builder gives the pipeline this loss (a narrow random network on
    random weights), and the guidance pays for moving away from the start's descriptor."""
    from emostyle.config import load_config
    from emostyle.pipeline import Pipeline

    pipe = Pipeline.from_config(load_config("tiny", {"guidance.identity": "dlib", "guidance.l_id": 1.0,
                                                     "retrieval.candidates": 2}))
    assert isinstance(pipe.identity, DlibFaceIdentity) and pipe.identity.network.input_size == 64
    song = repo_root / "data/songs/happy_sunshine.wav"
    start = pipe.generator.sample(1, torch.Generator().manual_seed(0))
    result = pipe.guide(start, pipe.targets([song], [song], ["a happy day"]), steps=4, progress=False)
    held = [step[0] for step in result.history["id"]]
    assert held[0] == pytest.approx(0.0, abs=1e-5) and max(held[1:]) > 0


def test_the_metrics_read_the_person_with_a_network_that_held_nothing():
    """`face-distance` comes from dlib's network only where no loss used it: faces, and an identity
    loss other than dlib's (the tiny profile: a narrow random network, seeded apart from the loss's)."""
    from emostyle.builders import build_face_recognizer
    from emostyle.config import load_config

    assert isinstance(build_face_recognizer(load_config("tiny"), "cpu"), DlibFaceIdentity)
    assert build_face_recognizer(load_config("tiny", {"guidance.identity": "dlib", "guidance.l_id": 1.0}), "cpu") is None
    assert build_face_recognizer(load_config("tiny", {"domain": "scene", "scoring.judge": "colour"}), "cpu") is None
