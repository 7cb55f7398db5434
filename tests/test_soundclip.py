"""SoundCLIP: the reference mel input on real files, checkpoint layout and encoder parity.

Reference input: computed here the reference way (librosa.load at 44.1 kHz, librosa mel and
power_to_db, numpy padding/cropping, cv2.resize), as in kuai-lab's optimization/run_optimization.py.
Encoder parity: a random full-size checkpoint in the reference key layout (`module.` prefixed, as
DataParallel saves it) against a functional timm-layout ResNet-18 forward written in this file.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emostyle.models.soundclip import AudioEncoder, audio_features, load_soundclip, tiny_soundclip

cv2 = pytest.importorskip("cv2", reason="opencv-python-headless (test extra) gives the reference resize")


def _reference_mel(path):
    import librosa

    y, sr = librosa.load(str(path), sr=44100)
    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_mels=128)
    return librosa.power_to_db(mel, ref=np.max) / 80.0 + 1


def _reference_input(mel, start=0):
    if mel.shape[1] >= 864:
        window = mel[:, start: start + 864]
    else:
        window = np.zeros((128, 864))
        window[:, : mel.shape[1]] = mel
    return cv2.resize(window, (128, 512)).reshape(1, 1, 128, 512)


@pytest.mark.parametrize("name", ["drill", "giggling", "thunderstorm"])  # mono/stereo, 44.1/48 kHz, 24 bit
def test_features_match_the_reference(sound_samples, name):
    expected = _reference_input(_reference_mel(sound_samples[name]))
    ours = audio_features(sound_samples[name])
    assert ours.shape == (1, 1, 128, 512) and ours.dtype == torch.float32
    assert np.abs(ours.numpy() - expected).max() < 1e-5


def test_crops_of_a_long_clip(shared_data):
    path = shared_data / "audio" / "speech" / "jfk.flac"  # 11 s: 948 frames, longer than 864
    mel = _reference_mel(path)
    last = mel.shape[1] - 864
    assert last > 0
    for crop, start in (("start", 0), ("center", last // 2)):
        assert np.abs(audio_features(path, crop).numpy() - _reference_input(mel, start)).max() < 1e-5
    a, b = audio_features(path, "random", seed=7), audio_features(path, "random", seed=7)
    assert torch.equal(a, b)
    start = int(np.random.default_rng(7).integers(0, last + 1))
    assert np.abs(a.numpy() - _reference_input(mel, start)).max() < 1e-5
    windows = audio_features(path, "mean")
    assert windows.shape == (2, 1, 128, 512)
    assert np.abs(windows[1:].numpy() - _reference_input(mel, last)).max() < 1e-5
    with pytest.raises(ValueError, match="seed"):
        audio_features(path, "random")
    with pytest.raises(ValueError, match="'start', 'center', 'random', 'mean'"):
        audio_features(path, "middle")


def _random_reference_checkpoint(seed=0):
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in AudioEncoder().state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(100)
        elif key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(value.shape, generator=g)
        else:
            state[key] = torch.randn(value.shape, generator=g) * (value[0].numel() if value.ndim > 1 else 4) ** -0.5
    return {"module." + k: v for k, v in state.items()}


def _timm_resnet18(s, x):
    """conv -> timm resnet18 (num_classes=512) from a state dict, functionally."""
    def bn(x, p):
        return F.batch_norm(x, s[p + ".running_mean"], s[p + ".running_var"], s[p + ".weight"], s[p + ".bias"],
                            False, 0.0, 1e-5)

    x = F.conv2d(x, s["conv.weight"], s["conv.bias"])
    p = "feature_extractor."
    x = F.max_pool2d(F.relu(bn(F.conv2d(x, s[p + "conv1.weight"], stride=2, padding=3), p + "bn1")), 3, 2, 1)
    for stage in range(1, 5):
        for block in range(2):
            q = f"{p}layer{stage}.{block}."
            stride = 2 if stage > 1 and block == 0 else 1
            y = F.relu(bn(F.conv2d(x, s[q + "conv1.weight"], stride=stride, padding=1), q + "bn1"))
            y = bn(F.conv2d(y, s[q + "conv2.weight"], padding=1), q + "bn2")
            if q + "downsample.0.weight" in s:
                x = bn(F.conv2d(x, s[q + "downsample.0.weight"], stride=stride), q + "downsample.1")
            x = F.relu(y + x)
    return F.linear(x.mean((2, 3)), s[p + "fc.weight"], s[p + "fc.bias"])


def test_reference_checkpoint_loads_and_matches_timm_forward(tmp_path):
    checkpoint = _random_reference_checkpoint()
    for key in ("module.conv.weight", "module.feature_extractor.bn1.running_var",
                "module.feature_extractor.layer2.0.downsample.0.weight", "module.feature_extractor.layer4.1.bn2.bias",
                "module.feature_extractor.fc.weight"):
        assert key in checkpoint  # timm resnet18 names, as in resnet18.pth
    torch.save(checkpoint, tmp_path / "resnet18.pth")
    model = load_soundclip(tmp_path / "resnet18.pth")
    assert load_soundclip(tmp_path / "resnet18.pth") is model  # loaded once
    x = torch.randn(2, 1, 128, 512, generator=torch.Generator().manual_seed(1))
    plain = {k.removeprefix("module."): v for k, v in checkpoint.items()}
    with torch.no_grad():
        expected, ours = _timm_resnet18(plain, x), model(x)
    assert ours.shape == (2, 512)
    assert torch.allclose(ours, expected, atol=1e-4), (ours - expected).abs().max()
    with torch.no_grad():
        assert torch.allclose(load_soundclip(plain)(x), ours, atol=1e-6)  # no prefix: same encoder


def test_bad_checkpoints_are_clear_errors(tmp_path):
    (tmp_path / "page.pth").write_text("<html><body>Google Drive quota exceeded</body></html>")
    with pytest.raises(ValueError, match="HTML"):
        load_soundclip(tmp_path / "page.pth")
    with pytest.raises(FileNotFoundError, match="emostyle weights fetch soundclip-resnet18"):
        load_soundclip(tmp_path / "resnet18_57.pth")
    state = tiny_soundclip(0).state_dict()
    with pytest.raises(ValueError, match="SoundCLIP audio encoder"):
        load_soundclip({k: v for k, v in state.items() if not k.startswith("conv.")})
    state = dict(state)
    state.pop("feature_extractor.layer3.0.bn2.running_mean")
    with pytest.raises(ValueError, match="missing"):
        load_soundclip(state)


def test_tiny_encoder_is_seeded():
    x = torch.randn(1, 1, 128, 512, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(tiny_soundclip(3)(x), tiny_soundclip(3)(x))
        assert not torch.equal(tiny_soundclip(3)(x), tiny_soundclip(4)(x))
