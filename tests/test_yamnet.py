"""YAMNet in PyTorch against onnxruntime and TensorFlow; sounds read through AudioSet's class names.

tests/data/yamnet_parity.npz was made once, outside the repo, with TensorFlow 2.21.0 running
YAMNet's feature ops as `research/audioset/yamnet/features.py` calls them (tf.signal.stft,
linear_to_mel_weight_matrix, frame; the parameters of its params.py; `pad_waveform`'s padding)
and onnxruntime 1.32.0 running the registry's export (`yamnet-onnx`), not its code copied:
- `mel_matrix`: tf.signal.linear_to_mel_weight_matrix(64, 257, 16000, 125, 7500);
- `long_patches` (4, 96, 64) and `short_patches` (1, 96, 64): the log-mel patches of `_chirp(2.0, 0.5)`
  and `_chirp(0.5, 0.2)` (the short one padded to a patch);
- `chirp_logits`: onnxruntime's logits of the long patches, `chirp_scores` their sigmoid's mean;
- `random_logits`: onnxruntime's logits of `_random_patches()`.
Measured: mel matrix 8.2e-6; patches 2.8e-4 in mel units (of 93); logits 2.5e-5 (of 74).

Tolerances. A float32 dot product of K terms differs between summation orders by at most
gamma_K = K * 2**-24 times the sum of its terms' sizes. For the network the tolerance is that
bound for its longest sum (K = 1024, the last pointwise convolution and the dense layer) at the
scale of the largest logit: a rounding-level error (1e-4 of the largest logit; measured 2.5e-5).
It is a scale, not a worst case (a worst-case bound through 28 layers is astronomically loose);
that it still tells a right port from a wrong one is checked: one convolution padded on the wrong
side moves the logits thousands of times further. The FFT of n points errs by at most log2(n) + 2
roundings of the frame's L1 norm per bin, and a mel band sums that error over its bins.
"""

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emostyle.models.yamnet import N_FFT, SAMPLE_RATE, WINDOW, _mel_matrix, class_scores, load_yamnet, \
    log_mel_patches, read_yamnet_onnx
from emostyle.spaces.sound_emotion import class_pad, is_music, lemma, sound_pad

DATA = Path(__file__).parent / "data"
U = 2.0**-24


@pytest.fixture(scope="module")
def ref():
    return np.load(DATA / "yamnet_parity.npz")


@pytest.fixture(scope="module")
def yamnet(cached_weight):
    return load_yamnet(cached_weight("yamnet-onnx"))


def _chirp(seconds, amp):
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f = 200 + 1800 * t / seconds
    y = np.sin(2 * np.pi * np.cumsum(f) / SAMPLE_RATE) + 0.3 * np.sin(2 * np.pi * 3 * np.cumsum(f) / SAMPLE_RATE)
    return (amp * y * (0.6 + 0.4 * np.sin(2 * np.pi * 1.5 * t) ** 2)).astype(np.float32)


def _random_patches():
    return (np.random.RandomState(0).randn(2, 96, 64) * 2 - 4).astype(np.float32)


# --- features ------------------------------------------------------------------------------------


def test_mel_matrix_matches_tensorflow(ref):
    # TensorFlow builds it in float32. Each mel value m <= mel(8 kHz) is rounded about four times
    # (f / 700, log1p, x 1127, and the band edges' linspace): |error| <= 4 m u. A weight is
    # (m - lower) / (centre - lower): numerator and denominator each err by 2 x 4 m u, relative to
    # a band's width in mel, and the weight is at most 1; plus its own roundings (a few u).
    mel = 1127 * np.log1p(np.array([125.0, 7500.0, 8000.0]) / 700)
    width = (mel[1] - mel[0]) / 65
    np.testing.assert_allclose(_mel_matrix(), ref["mel_matrix"], rtol=0, atol=16 * mel[2] * U / width + 4 * U)


@pytest.mark.parametrize("name, seconds, amp", [("long", 2.0, 0.5), ("short", 0.5, 0.2)])
def test_log_mel_patches_match_tensorflow(ref, name, seconds, amp):
    want = ref[f"{name}_patches"]
    got = log_mel_patches(_chirp(seconds, amp))
    assert got.shape == want.shape and got.dtype == np.float32
    frame_l1 = amp * 1.3 * WINDOW  # |signal| <= amp * 1.3 under the window's peak of 1
    bins_per_band = _mel_matrix().sum(axis=0).max()
    bound = (np.log2(N_FFT) + 2) * U * frame_l1 * bins_per_band
    np.testing.assert_allclose(np.exp(got), np.exp(want), rtol=4 * U, atol=bound)


# --- the network ---------------------------------------------------------------------------------


def _tiny_export(path: Path, layers=((2, 4), (1, 8), (2, 8), (2, 16)), classes=5, seed=1):
    """A small YAMNet in the export's format: its operators, "same" written as explicit pads,
    batch norm folded, tensors in model.data beside model.onnx, both zipped."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.RandomState(seed)
    nodes, inits, x, channels = [], [], "audio", 1

    def conv(name, out, cin_per_group, stride, kernel, group):
        nonlocal x
        w = (rng.randn(out, cin_per_group, kernel, kernel) / np.sqrt(cin_per_group * kernel * kernel)).astype(np.float32)
        b = (0.1 * rng.randn(out)).astype(np.float32)
        inits.extend([numpy_helper.from_array(w, f"{name}.w"), numpy_helper.from_array(b, f"{name}.b")])
        pads = [0, 0, 0, 0] if kernel == 1 else ([1, 1, 1, 1] if stride == 1 else [0, 0, 1, 1])
        nodes.append(helper.make_node("Conv", [x, f"{name}.w", f"{name}.b"], [f"{name}.y"], group=group,
                                      kernel_shape=[kernel, kernel], pads=pads, strides=[stride, stride],
                                      dilations=[1, 1]))
        nodes.append(helper.make_node("Relu", [f"{name}.y"], [f"{name}.r"]))
        x = f"{name}.r"

    (stride, filters), *blocks = layers
    conv("c0", filters, 1, stride, 3, 1)
    channels = filters
    for i, (stride, out) in enumerate(blocks):
        conv(f"dw{i}", channels, 1, stride, 3, channels)
        conv(f"pw{i}", out, channels, 1, 1, 1)
        channels = out
    inits.append(numpy_helper.from_array(np.array([1, -1], dtype=np.int64), "shape"))
    w = rng.randn(classes, channels).astype(np.float32)
    inits += [numpy_helper.from_array(w, "fc.w"), numpy_helper.from_array(rng.randn(classes).astype(np.float32), "fc.b")]
    nodes += [helper.make_node("GlobalAveragePool", [x], ["gap"]), helper.make_node("Reshape", ["gap", "shape"], ["flat"]),
              helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["class_scores"], alpha=1.0, beta=1.0, transB=1)]
    graph = helper.make_graph(nodes, "yamnet", [helper.make_tensor_value_info("audio", TensorProto.FLOAT, [1, 1, 96, 64])],
                              [helper.make_tensor_value_info("class_scores", TensorProto.FLOAT, [1, classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    folder = path.parent / "export"
    folder.mkdir(exist_ok=True)
    onnx.save_model(model, folder / "model.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.data", size_threshold=64)  # the shape stays inline, as in the export
    with zipfile.ZipFile(path, "w") as z:
        for f in ("model.onnx", "model.data"):
            z.write(folder / f, f"job_export/{f}")
    return folder / "model.onnx"


def _onnxruntime(model_path, patches):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"audio": p[None, None]})[0] for p in patches])


def test_port_matches_onnxruntime_on_a_random_export(tmp_path):
    bundle = tmp_path / "tiny.onnx.zip"
    bare = _tiny_export(bundle)
    patches = _random_patches()
    want = _onnxruntime(bare, patches)
    for source in (bundle, bare):  # the zip as the wheel ships it, and a bare graph with its data beside it
        net = load_yamnet(source)
        with torch.no_grad():
            got = net(torch.from_numpy(patches)).numpy()
        bound = net.logits.in_features * U * float(np.abs(want).max())
        np.testing.assert_allclose(got, want, rtol=0, atol=bound)


def test_real_yamnet_matches_onnxruntime_and_scores_a_clip(yamnet, ref, monkeypatch):
    from emostyle.models import yamnet as module

    bound = 1024 * U * float(np.abs(ref["chirp_logits"]).max())
    with torch.no_grad():
        for patches, logits in ((_random_patches(), ref["random_logits"]), (ref["long_patches"], ref["chirp_logits"])):
            np.testing.assert_allclose(yamnet(torch.from_numpy(patches)).numpy(), logits, rtol=0, atol=bound)
        # The tolerance tells a wrong port: TF's "same" padding put before instead of after.
        monkeypatch.setattr(module, "_same", lambda x, stride, kernel=3: F.pad(x, (1, 1, 1, 1) if stride == 1
                                                                               else (1, 0, 1, 0)))
        wrong = yamnet(torch.from_numpy(ref["long_patches"])).numpy()
    assert np.abs(wrong - ref["chirp_logits"]).max() > 1000 * bound

def test_a_clip_scores_the_mean_of_its_patches_sigmoids(yamnet, ref, monkeypatch):
    from emostyle.models import yamnet as module

    # TensorFlow's patches of the chirp (the features are checked above): the sigmoid's slope is <= 1/4.
    monkeypatch.setattr(module, "log_mel_patches", lambda audio: ref["long_patches"])
    bound = 1024 * U * float(np.abs(ref["chirp_logits"]).max()) / 4
    np.testing.assert_allclose(class_scores(_chirp(2.0, 0.5), SAMPLE_RATE, network=yamnet), ref["chirp_scores"],
                               rtol=0, atol=bound)
    # A long clip is read in at most max_patches patches, spread from its start to its end.
    seen = []
    monkeypatch.setattr(module, "log_mel_patches", lambda audio: np.arange(10, dtype=np.float32)[:, None, None]
                        * np.ones((10, 96, 64), np.float32))
    monkeypatch.setattr(yamnet, "forward", lambda p: seen.append(p[:, 0, 0].tolist()) or p[:, :1, 0])
    class_scores(np.zeros(16000, np.float32), SAMPLE_RATE, network=yamnet, max_patches=4)
    assert seen == [[0.0, 3.0, 6.0, 9.0]]


def test_reader_refuses_broken_files(tmp_path):
    bundle = tmp_path / "tiny.onnx.zip"
    _tiny_export(bundle)
    with zipfile.ZipFile(bundle) as z:
        graph, data = z.read("job_export/model.onnx"), z.read("job_export/model.data")
    cut = tmp_path / "cut.zip"
    with zipfile.ZipFile(cut, "w") as z:
        z.writestr("m/model.onnx", graph)
        z.writestr("m/model.data", data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated.*fetch yamnet-onnx"):
        read_yamnet_onnx(cut)
    lonely = tmp_path / "lonely.zip"
    with zipfile.ZipFile(lonely, "w") as z:
        z.writestr("m/model.onnx", graph)
    with pytest.raises(ValueError, match="model.data, which is missing"):
        read_yamnet_onnx(lonely)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01not a protobuf" * 10)
    with pytest.raises(ValueError, match="not a readable ONNX file.*fetch yamnet-onnx"):
        read_yamnet_onnx(junk)
    graph_of_other = read_yamnet_onnx(bundle)
    graph_of_other["nodes"].insert(1, ("MaxPool", [], {}))
    with pytest.raises(ValueError, match="not YAMNet's graph.*MaxPool"):
        load_yamnet(graph_of_other)
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as z:
        for folder in ("a", "b"):
            z.writestr(f"{folder}/model.onnx", graph)
            z.writestr(f"{folder}/model.data", data)
    with pytest.raises(ValueError, match="2 .onnx graphs"):
        read_yamnet_onnx(two)


@pytest.mark.parametrize("conv, attribute, value", [(0, "pads", [1, 1, 1, 1]), (2, "pads", [0, 0, 1, 1]),
                                                    (1, "group", 1), (2, "kernel_shape", [3, 3]),
                                                    (3, "pads", [1, 1, 0, 0])])
def test_reader_refuses_a_convolution_unlike_yamnets(tmp_path, conv, attribute, value):
    """Each convolution's padding (TF "same": one each side at stride 1, one after at stride 2),
    groups (depthwise, then pointwise) and kernel must be the architecture's."""
    bundle = tmp_path / "tiny.onnx.zip"
    _tiny_export(bundle)
    graph = read_yamnet_onnx(bundle)
    load_yamnet(graph)  # as exported: fine
    convs = [attrs for op, _, attrs in graph["nodes"] if op == "Conv"]
    convs[conv][attribute] = value
    with pytest.raises(ValueError, match=f"convolution {conv} .*is not the one YAMNet has there"):
        load_yamnet(graph)


# --- sounds to PAD --------------------------------------------------------------------------------

_NAMES = ("Speech", "Child speech, kid speaking", "Speech synthesizer", "Giggle", "Crying, sobbing",
          "Baby cry, infant cry", "Rain on surface", "Bite and growl", "Singing", "Humming", "Music", "Happy music",
          "Music of Africa", "Scary music", "Water", "Silence", "Snickerdoodle")
_NORMS = {"speech": (6, 4, 6), "giggle": (8, 5, 5), "cry": (2, 6, 3), "sob": (2.5, 5.5, 3), "baby": (8, 4, 5),
          "sing": (7, 5, 6), "hum": (5.5, 4, 5), "music": (7.5, 5.5, 6), "happy": (8.5, 6, 7), "water": (7, 3.5, 6),
          "rain": (6.5, 3, 4), "surface": (5, 4, 5), "bite": (3, 6, 5), "growl": (3.5, 6.5, 5), "silence": (6, 2, 6)}


@pytest.fixture()
def norms(tmp_path):
    path = tmp_path / "norms.csv"
    path.write_text("Word,V.Mean.Sum,A.Mean.Sum,D.Mean.Sum\n" +
                    "".join(f"{w},{v},{a},{d}\n" for w, (v, a, d) in _NORMS.items()))
    return path


def test_a_class_reads_as_the_head_word_of_each_of_its_names(norms):
    points = class_pad(_NAMES, norms)
    pad = {w: (np.array(v) - 5) / 4 for w, v in _NORMS.items()}
    np.testing.assert_allclose(points[_NAMES.index("Crying, sobbing")], (pad["cry"] + pad["sob"]) / 2)
    np.testing.assert_allclose(points[_NAMES.index("Baby cry, infant cry")], pad["cry"])  # a baby cry is a cry
    np.testing.assert_allclose(points[_NAMES.index("Child speech, kid speaking")], pad["speech"])  # no "speak" here
    np.testing.assert_allclose(points[_NAMES.index("Music of Africa")], pad["music"])
    np.testing.assert_allclose(points[_NAMES.index("Rain on surface")], pad["rain"])  # a phrase: before "on"
    np.testing.assert_allclose(points[_NAMES.index("Bite and growl")], (pad["bite"] + pad["growl"]) / 2)
    assert np.isnan(points[_NAMES.index("Snickerdoodle")]).all()
    table = {w: None for w in ("cry", "sob", "hum", "fly", "box", "giggle", "use", "bit", "bite", "write", "sing",
                               "singe", "hop", "hope", "hiss", "his", "tear")}
    words = ("crying", "sobbing", "humming", "flies", "boxes", "giggled", "used", "dog", "biting", "writing", "singing",
             "hoping", "hopping", "hissing", "tearing")
    assert [lemma(w, table) for w in words] == ["cry", "sob", "hum", "fly", "box", "giggle", "use", None, "bite",
                                                "write", "sing", "hope", "hop", "hiss", "tear"]


def test_sound_pad_follows_the_evidence_and_is_neutral_without_it(norms):
    flat = np.full(len(_NAMES), 0.3)
    np.testing.assert_allclose(sound_pad(flat, _NAMES, norms), 0, atol=1e-12)  # no class favoured: neutral
    rng = np.random.RandomState(0)
    for _ in range(20):  # any background, one class clearly heard
        background = rng.uniform(0, 0.05, len(_NAMES))
        for name, sign in (("Giggle", 1), ("Crying, sobbing", -1), ("Baby cry, infant cry", -1)):
            scores = background.copy()
            scores[_NAMES.index(name)] = 0.9
            assert sign * sound_pad(scores, _NAMES, norms)[0] > 0
    # Music (the music reader's) and silence carry no affect in a sound's reading.
    scores = rng.uniform(0, 0.05, len(_NAMES))
    louder = scores.copy()
    for name in ("Music", "Happy music", "Scary music", "Singing", "Silence"):
        louder[_NAMES.index(name)] = 0.95
    np.testing.assert_allclose(sound_pad(louder, _NAMES, norms), sound_pad(scores, _NAMES, norms))
    with pytest.raises(ValueError, match="one score per class"):
        sound_pad(np.zeros(3), _NAMES, norms)
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        sound_pad(np.full(len(_NAMES), 2.0), _NAMES, norms)


def test_music_is_told_from_other_sounds():
    """Music when the clip's top class, speech and silence aside, is music or singing: lyrics louder
    than the band are still a song, and a song may end in silence; a sound that outscores the
    music in the clip is a sound."""
    def clip(**heard):
        out = np.full(len(_NAMES), 0.01)
        for name, value in heard.items():
            out[_NAMES.index(name.replace("_", " "))] = value
        return out

    assert is_music(clip(Music=0.05, Speech=0.9), _NAMES)  # spoken lyrics over quiet chords
    assert is_music(clip(Humming=0.6), _NAMES) and is_music(clip(Scary_music=0.3), _NAMES)
    assert is_music(clip(Music=0.3, Silence=0.6), _NAMES)  # a song, then silence
    assert not is_music(clip(Giggle=0.45, Music=0.38), _NAMES)
    assert not is_music(clip(Water=0.03, Music=0.02, Speech=0.94), _NAMES)
    with pytest.raises(ValueError, match="one score per class"):
        is_music(np.zeros((2, len(_NAMES))), _NAMES)
    with pytest.raises(ValueError, match="not YAMNet's AudioSet classes"):
        is_music(np.zeros(2), ("Dog", "Cat"))


def test_figure_3_sounds_and_the_kit_songs_as_the_pipeline_reads_them(cached_weight):
    """The default reader on real audio: every sound of Figure 3 is heard as a sound, giggling
    pleasant and sobbing and the explosion unpleasant; every song of the kit is heard as music and
    read exactly as the music reader reads it."""
    from emostyle import samples
    from emostyle.spaces.affect import audio_reading

    for name in ("yamnet-onnx", "yamnet-class-map", "musicnn-msd", "warriner-vad-norms"):
        cached_weight(name)
    from emostyle.spaces.affect import AffectSpace

    sounds = {s.name: audio_reading(s.path) for s in samples.sounds()}
    giggling = next(s.path for s in samples.sounds() if s.name == "giggling")
    assert AffectSpace("scene").audio_caption(giggling) == \
        f"audio P {sounds['giggling']['pad'][0]:+.2f} ({sounds['giggling']['classes'][0][0]})"
    assert {r["heard_as"] for r in sounds.values()} == {"sound"}
    assert sounds["giggling"]["pad"][0] > 0 > sounds["sobbing"]["pad"][0]
    assert sounds["explosion"]["pad"][0] < 0 < sounds["explosion"]["pad"][1]  # unpleasant and arousing
    for song in samples.songs():
        reading = audio_reading(song.path)
        assert reading["heard_as"] == "music", (song.name, reading["classes"])
        assert reading["pad"] == audio_reading(song.path, "musicnn+mode")["pad"]
