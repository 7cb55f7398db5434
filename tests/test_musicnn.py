"""musicnn in PyTorch against musicnn's own TensorFlow graph; the TF checkpoint reader; tags -> PAD.

The reference data were made once, outside the repo, with TensorFlow 2.21.0 (tf.compat.v1 in
graph mode, tf-keras 2.21.0 for `tf.compat.v1.layers`) running the graph-building functions of
the wheel `musicnn==0.1.0` (`musicnn/models.py`: `define_model`, and `frontend`, `midend`,
`backend` with small sizes), not its code copied:
- tests/data/musicnn_tiny/model.{index,data-00000-of-00001}: a tiny network in the official
  variable layout (`frontend(x, False, 10, num_filt=0.04)`, `midend(.., 3)`,
  `backend(.., 3 classes, 4 units)`) with every variable drawn from RandomState(1) (BatchNorm
  gammas and variances in [0.5, 1.5]), plus Adam slots for `dense_1/bias` and the two power
  accumulators, saved by `tf.compat.v1.train.Saver`;
- musicnn_parity.npz: `tiny_input` (2, 40, 10) and the tiny graph's `tiny_logits`;
  `tiny_names` (every variable name) and two tensors as `NewCheckpointReader` reads them;
  `msd_logits`: the real MSD checkpoint's logits for the two inputs of `_msd_inputs`;
  `chord_probs`: the extractor's `batch_data` (float32 log-mel, 187-frame patches, no
  overlap) and sigmoid-mean on the 7 s chord of `_chord`, `chord_patches` its patch count.
Measured: max |logit error| 9.5e-7 (tiny), 8.3e-6 (MSD); max |probability error| 3.9e-7 (chord).

Tolerances: a float32 dot product of K terms computed in another order differs by at most
K * 2**-24 times the size of the result (the gamma_K bound), taken here for the longest sum of
the network (K: 7 frames x the front-end channels of the first mid-end conv) times the largest
reference logit; sigmoid halves and halves again (slope <= 1/4).
"""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from emostyle.models.musicnn import MSD_TAGS, PATCH_FRAMES, SAMPLE_RATE, _patches, load_musicnn, log_mel, \
    tag_probabilities
from emostyle.models.tf_checkpoint import read_tf_checkpoint
from emostyle.spaces.music_emotion import MOOD_TAGS, mood_tag_pad, music_emotion_pad, tags_pad

DATA = Path(__file__).parent / "data"
TINY = DATA / "musicnn_tiny" / "model"
U = 2.0**-24


@pytest.fixture(scope="module")
def ref():
    return np.load(DATA / "musicnn_parity.npz")


@pytest.fixture(scope="module")
def tiny():
    return load_musicnn(TINY)


@pytest.fixture(scope="module")
def msd(cached_weight):
    torch.set_num_threads(1)  # small convolutions: one thread avoids spin-waiting on a shared runner
    return load_musicnn(cached_weight("musicnn-msd"))


def _tolerance(network, logits) -> float:
    longest = network.mid[0].conv.weight[0].numel()  # 7 x front-end channels
    return longest * U * float(np.abs(logits).max())


def _msd_inputs():
    rng = np.random.RandomState(0)
    t, f = np.arange(187)[:, None], np.arange(96)[None, :]
    a = 2.0 + np.sin(t / 7.0) * np.cos(f / 5.0) + 0.5 * rng.rand(187, 96)
    b = np.log10(10000 * rng.gamma(0.5, 0.01, (187, 96)) + 1)
    return np.stack([a, b]).astype(np.float32)


def _chord(seconds=7.0):
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    y = sum(np.sin(2 * np.pi * f0 * t) for f0 in (261.63, 329.63, 392.0)) / 3
    return (0.5 * y * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t) ** 2)).astype(np.float32)


# --- the checkpoint reader ---------------------------------------------------------------------------


def test_reader_matches_tensorflow_on_a_checkpoint_it_wrote(ref):
    tensors = read_tf_checkpoint(TINY)
    assert sorted(tensors) == sorted(ref["tiny_names"].tolist())
    np.testing.assert_array_equal(tensors["conv2d_1/kernel"], ref["tf_read_conv2d_1_kernel"])
    assert tensors["beta2_power"].shape == () and tensors["beta2_power"] == ref["tf_read_beta2_power"]
    assert all(v.dtype == np.float32 for v in tensors.values())
    same = read_tf_checkpoint(f"{TINY}.index")  # the .index file names the same checkpoint
    assert all(np.array_equal(same[k], v) for k, v in tensors.items())


def test_reader_takes_a_folder_whose_prefix_is_the_folder(tmp_path):
    # musicnn's layout: files ".index" and ".data-00000-of-00001" inside the folder
    (tmp_path / ".index").write_bytes(Path(f"{TINY}.index").read_bytes())
    (tmp_path / ".data-00000-of-00001").write_bytes(Path(f"{TINY}.data-00000-of-00001").read_bytes())
    assert sorted(read_tf_checkpoint(tmp_path)) == sorted(read_tf_checkpoint(TINY))


def _copy(tmp_path, index: bytes | None = None, data: bytes | None = None) -> Path:
    prefix = tmp_path / "model"
    Path(f"{prefix}.index").write_bytes(index if index is not None else Path(f"{TINY}.index").read_bytes())
    Path(f"{prefix}.data-00000-of-00001").write_bytes(
        data if data is not None else Path(f"{TINY}.data-00000-of-00001").read_bytes())
    return prefix


def test_reader_rejects_corrupted_and_truncated_files(tmp_path):
    index = bytearray(Path(f"{TINY}.index").read_bytes())
    index[40] ^= 0xFF  # a byte inside the first data block
    with pytest.raises(ValueError, match="crc32c"):
        read_tf_checkpoint(_copy(tmp_path, index=bytes(index)))
    with pytest.raises(ValueError, match="magic number"):
        read_tf_checkpoint(_copy(tmp_path, index=bytes(index[:-10])))
    with pytest.raises(ValueError, match="not a readable TensorFlow checkpoint"):
        read_tf_checkpoint(_copy(tmp_path, index=b"<html>not found</html>"))
    data = Path(f"{TINY}.data-00000-of-00001").read_bytes()
    with pytest.raises(ValueError, match="truncated"):
        read_tf_checkpoint(_copy(tmp_path, data=data[: len(data) // 2]))
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x01  # one bit of one weight
    with pytest.raises(ValueError, match="fails its crc32c check"):
        read_tf_checkpoint(_copy(tmp_path, data=bytes(flipped)))


def test_crc32c_check_value_and_fast_path():
    from emostyle.models.tf_checkpoint import _mask, _masked_crc32c, _masked_crc32c_fast

    assert _masked_crc32c(b"123456789") == _mask(0xE3069283)  # the CRC-32C check value (RFC 3720)
    data = np.random.RandomState(0).bytes(200_003)  # lanes of 195 bytes and a ragged end
    assert _masked_crc32c_fast(data) == _masked_crc32c(data)


def test_reader_names_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_tf_checkpoint(tmp_path / "nothing")
    prefix = _copy(tmp_path)
    Path(f"{prefix}.data-00000-of-00001").unlink()
    with pytest.raises(FileNotFoundError, match="data shard"):
        read_tf_checkpoint(prefix)


# --- the network -------------------------------------------------------------------------------------


def test_tiny_network_matches_tensorflow(tiny, ref):
    with torch.no_grad():
        logits = tiny(torch.from_numpy(ref["tiny_input"])).numpy()
    np.testing.assert_allclose(logits, ref["tiny_logits"], rtol=0, atol=_tolerance(tiny, ref["tiny_logits"]))


def test_strict_loading_uses_every_model_variable_and_checks_shapes():
    variables = read_tf_checkpoint(TINY)  # holds Adam slots too: training state, left out on purpose
    load_musicnn(variables)
    short = {k: v for k, v in variables.items() if k != "batch_normalization_7/moving_mean"}
    with pytest.raises(ValueError, match="missing variables.*batch_normalization_7/moving_mean"):
        load_musicnn(short)
    with pytest.raises(ValueError, match="unexpected.*conv2d_8/kernel"):
        load_musicnn({**variables, "conv2d_8/kernel": np.zeros((7, 3, 1, 3), np.float32)})
    wrong = {**variables, "dense/bias": np.zeros(5, np.float32)}  # the layer has 4 units
    with pytest.raises(ValueError, match="dense"):
        load_musicnn(wrong)


def test_msd_network_matches_tensorflow(msd, ref):
    with torch.no_grad():
        logits = msd(torch.from_numpy(_msd_inputs())).numpy()
    np.testing.assert_allclose(logits, ref["msd_logits"], rtol=0, atol=_tolerance(msd, ref["msd_logits"]))


def test_song_tags_match_the_extractor(msd, ref):
    probs = tag_probabilities(_chord(), SAMPLE_RATE, network=msd)
    assert list(probs) == list(MSD_TAGS)
    tol = _tolerance(msd, ref["msd_logits"]) / 4
    np.testing.assert_allclose(list(probs.values()), ref["chord_probs"], rtol=0, atol=tol)


def test_patches_cover_the_song_like_the_extractor():
    spec = np.arange(1000 * 3, dtype=np.float32).reshape(1000, 3)
    whole = _patches(spec, max_patches=20)
    assert whole.shape == (1000 // PATCH_FRAMES, PATCH_FRAMES, 3)  # no overlap; the ragged end is dropped
    assert np.array_equal(whole[1], spec[PATCH_FRAMES:2 * PATCH_FRAMES])
    few = _patches(spec, max_patches=2)  # evenly spaced: the first and the last whole patch
    assert np.array_equal(few[0], whole[0]) and np.array_equal(few[1], whole[-1])
    short = _patches(spec[:50], max_patches=20)  # repeat-padded, as the model was trained
    assert short.shape == (1, PATCH_FRAMES, 3)
    assert np.array_equal(short[0, 50:100], spec[:50])


def test_loud_float_audio_gives_finite_tags(tiny, tmp_path):
    y = _chord(4.0) * 2000.0  # peak 1000 x full scale
    path = tmp_path / "loud.wav"
    sf.write(path, y, SAMPLE_RATE, subtype="FLOAT")
    loud = tag_probabilities(path, network=tiny)
    assert all(np.isfinite(v) for v in loud.values())
    assert np.isfinite(log_mel(y)).all()  # float32: 10000 x stays finite where float16 overflows
    at_full_scale = tag_probabilities(y / np.abs(y).max(), SAMPLE_RATE, network=tiny)
    np.testing.assert_allclose(list(loud.values()), list(at_full_scale.values()), rtol=0, atol=1e-5)


def test_bad_waveforms_are_refused(tiny):
    with pytest.raises(ValueError, match="sample_rate"):
        tag_probabilities(np.zeros(16000), network=tiny)
    with pytest.raises(ValueError, match="mono"):
        tag_probabilities(np.zeros((2, 16000)), SAMPLE_RATE, network=tiny)
    with pytest.raises(ValueError, match="NaN"):
        tag_probabilities(np.full(16000, np.nan), SAMPLE_RATE, network=tiny)


# --- tags -> PAD ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def norms(cached_weight):
    return cached_weight("warriner-vad-norms")


def _at_prior(scale=1.0):
    """Every mood tag at `scale` times its prior, genre tags anywhere: no mood is favoured."""
    from emostyle.spaces.music_emotion import _PRIOR_COUNTS, _PRIOR_SONGS

    probs = {tag: 0.3 for tag in MSD_TAGS}
    probs.update({tag: scale * n / _PRIOR_SONGS for tag, n in _PRIOR_COUNTS.items()})
    return probs


def test_tags_pad_is_neutral_without_mood_evidence(norms):
    for scale in (0.1, 1.0, 5.0):
        np.testing.assert_allclose(tags_pad(_at_prior(scale), norms), 0.0, atol=1e-12)
    assert np.array_equal(tags_pad({tag: 0.0 for tag in MSD_TAGS}, norms), np.zeros(3))
    genre_heavy = {**_at_prior(), "rock": 0.99, "metal": 0.99, "jazz": 0.0}
    np.testing.assert_allclose(tags_pad(genre_heavy, norms), 0.0, atol=1e-12)


def test_tags_pad_direction(norms):
    happy = tags_pad({**_at_prior(), "happy": 0.5}, norms)
    sad = tags_pad({**_at_prior(), "sad": 0.5}, norms)
    assert happy[0] > 0.3 and sad[0] < -0.3  # pleasure
    assert happy[1] > sad[1] and happy[2] > sad[2]  # happy is livelier and more dominant than sad
    points = mood_tag_pad(norms)
    assert points["happy"][0] > 0.8 and points["sad"][0] < -0.6  # (8.47 - 5) / 4, (2.10 - 5) / 4
    assert set(points) == set(MOOD_TAGS)


def test_tags_pad_refuses_bad_input(norms, tmp_path):
    with pytest.raises(ValueError, match="lack the mood tags"):
        tags_pad({"happy": 0.5}, norms)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        tags_pad({**_at_prior(), "sad": 1.5}, norms)
    other = tmp_path / "other.csv"
    other.write_text("word,valence\nhappy,8\n")
    with pytest.raises(ValueError, match="Warriner"):
        tags_pad(_at_prior(), other)


@pytest.mark.slow
def test_kit_happy_songs_read_happier_than_its_sad_songs(msd, norms, repo_root):
    songs = repo_root / "data" / "songs"
    pleasure = {name: music_emotion_pad(songs / f"{name}.wav", network=msd, norms=norms)[0]
                for name in ("happy_sunshine", "joyful_love", "lonely_night", "sad_rain")}
    assert min(pleasure["happy_sunshine"], pleasure["joyful_love"]) > max(pleasure["lonely_night"],
                                                                          pleasure["sad_rain"]), pleasure
