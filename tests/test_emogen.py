"""EmoGen in the kit: its networks load the released layouts strictly, its metrics follow the
reference arithmetic, the song's emotion category, and `--method emogen` on the tiny profile."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from emostyle.models.emogen import (EMOTIONS, POSITIVE, load_emotion_classifier, load_emotion_space, load_image_encoder,
                                    load_mapping_network, tiny_emotion_space)
from emostyle.scoring.emogen import (EmoGenJudge, EmoGenMetrics, emotion_accuracy, semantic_clarity,
                                     semantic_diversity)

SONG = "data/songs/happy_sunshine.wav"


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- the classifier ------------------------------------------------------------------------------

def test_classifier_loads_the_released_layout_strictly(tmp_path):
    g = torch.Generator().manual_seed(0)
    state = {"fc.weight": torch.randn(8, 768, generator=g), "fc.bias": torch.randn(8, generator=g)}
    path = tmp_path / "time_2023-11-12_03-29-best.pth"
    torch.save(state, path)  # training/main.py saves classifier.state_dict()
    net = load_emotion_classifier(path)
    x = torch.randn(5, 768, generator=g)
    torch.testing.assert_close(net(x), x @ state["fc.weight"].T + state["fc.bias"])
    with pytest.raises(ValueError, match="unexpected"):
        load_emotion_classifier({**state, "fc2.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="not EmoGen's emotion classifier"):
        load_emotion_classifier({"fc.weight": torch.zeros(7, 768), "fc.bias": torch.zeros(7)})
    with pytest.raises(FileNotFoundError, match="emostyle weights fetch emogen-emotion-classifier"):
        load_emotion_classifier(tmp_path / "missing.pth")


# --- the image encoder: torchvision ResNet-50 keys, written out here from the architecture ---------

def _resnet50_layout(width: int, classes: int, g: torch.Generator) -> dict:
    """A random state dict with torchvision resnet50's keys and shapes (at `width` instead of 64)."""
    state = {}

    def conv(name, cout, cin, k):
        state[f"{name}.weight"] = torch.randn(cout, cin, k, k, generator=g) * (cin * k * k) ** -0.5

    def bn(name, c):
        state.update({f"{name}.weight": 1 + 0.1 * torch.randn(c, generator=g), f"{name}.bias": 0.1 * torch.randn(c, generator=g),
                      f"{name}.running_mean": 0.1 * torch.randn(c, generator=g),
                      f"{name}.running_var": 0.5 + torch.rand(c, generator=g),
                      f"{name}.num_batches_tracked": torch.tensor(7)})

    conv("conv1", width, 3, 7)
    bn("bn1", width)
    cin = width
    for stage, blocks in enumerate((3, 4, 6, 3)):
        planes = width * 2**stage
        for b in range(blocks):
            p = f"layer{stage + 1}.{b}"
            conv(f"{p}.conv1", planes, cin, 1), bn(f"{p}.bn1", planes)
            conv(f"{p}.conv2", planes, planes, 3), bn(f"{p}.bn2", planes)
            conv(f"{p}.conv3", planes * 4, planes, 1), bn(f"{p}.bn3", planes * 4)
            if b == 0:
                conv(f"{p}.downsample.0", planes * 4, cin, 1), bn(f"{p}.downsample.1", planes * 4)
            cin = planes * 4
    state["fc.weight"] = torch.randn(classes, cin, generator=g) * cin**-0.5
    state["fc.bias"] = torch.randn(classes, generator=g)
    return state


def _resnet50_features(state: dict, x: torch.Tensor) -> torch.Tensor:
    """torchvision's ResNet-50 forward (stride on the 3x3 conv), written with functional ops."""
    def bn(name, y):
        return F.batch_norm(y, state[f"{name}.running_mean"], state[f"{name}.running_var"], state[f"{name}.weight"],
                            state[f"{name}.bias"], training=False, eps=1e-5)

    y = F.relu(bn("bn1", F.conv2d(x, state["conv1.weight"], stride=2, padding=3)))
    y = F.max_pool2d(y, 3, 2, 1)
    for stage, blocks in enumerate((3, 4, 6, 3)):
        for b in range(blocks):
            p, stride = f"layer{stage + 1}.{b}", 2 if (b == 0 and stage > 0) else 1
            h = F.relu(bn(f"{p}.bn1", F.conv2d(y, state[f"{p}.conv1.weight"])))
            h = F.relu(bn(f"{p}.bn2", F.conv2d(h, state[f"{p}.conv2.weight"], stride=stride, padding=1)))
            h = bn(f"{p}.bn3", F.conv2d(h, state[f"{p}.conv3.weight"]))
            short = bn(f"{p}.downsample.1", F.conv2d(y, state[f"{p}.downsample.0.weight"], stride=stride)) \
                if b == 0 else y
            y = F.relu(h + short)
    return y.mean(dim=(2, 3))


def _backbone_checkpoint(width=4, dim=16, seed=0) -> dict:
    """EmoGen's BackBone state dict: cnn.* (the whole resnet50), backbone.{0,1,4-7}.* (the same
    tensors: Sequential(*resnet.children()[:-2])), fc_1 (2048 -> 768), fc_2.2 (768 -> 8)."""
    g = torch.Generator().manual_seed(seed)
    resnet = _resnet50_layout(width, 1000, g)
    state = {f"cnn.{k}": v for k, v in resnet.items()}
    index = {"conv1": 0, "bn1": 1, "layer1": 4, "layer2": 5, "layer3": 6, "layer4": 7}
    for k, v in resnet.items():
        head = k.split(".")[0]
        if head in index:
            state[f"backbone.{index[head]}.{k[len(head) + 1:]}"] = v
    feat = resnet["fc.weight"].shape[1]
    state.update({"fc_1.weight": torch.randn(dim, feat, generator=g) * feat**-0.5, "fc_1.bias": torch.randn(dim, generator=g),
                  "fc_2.2.weight": torch.randn(8, dim, generator=g), "fc_2.2.bias": torch.randn(8, generator=g)})
    return state


def test_image_encoder_loads_the_backbone_layout_and_matches_torchvision_arithmetic(tmp_path):
    state = _backbone_checkpoint()
    path = tmp_path / "2023-08-22-best.pth"
    torch.save(state, path)
    encoder = load_image_encoder(path)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    resnet = {k[4:]: v for k, v in state.items() if k.startswith("cnn.")}
    expected = _resnet50_features(resnet, x) @ state["fc_1.weight"].T + state["fc_1.bias"]
    with torch.no_grad():
        got = encoder(x)
        logits = encoder.emotion_logits(x)
    # float32 sums over a few thousand terms through 16 blocks: 1e-4 relative is ~100 ulps of slack
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
    torch.testing.assert_close(logits, F.relu(expected) @ state["fc_2.2.weight"].T + state["fc_2.2.bias"],
                               rtol=1e-4, atol=1e-3)


def test_image_encoder_rejects_a_broken_backbone_twin():
    state = _backbone_checkpoint()
    state["backbone.4.0.conv1.weight"] = state["backbone.4.0.conv1.weight"] + 1
    with pytest.raises(ValueError, match="backbone.4.0.conv1.weight has no equal twin"):
        load_image_encoder(state)
    state = _backbone_checkpoint()
    del state["cnn.layer4.2.bn3.running_var"], state["backbone.7.2.bn3.running_var"]
    with pytest.raises(ValueError, match="missing.*layer4.2.bn3.running_var"):
        load_image_encoder(state)


# --- the mapping network: EmoGen's MLP / SimpleMLP / FC layouts ------------------------------------

def _emogen_mlp(num_fc_layers, relu, ln, dropout, dim=12, hidden=20):
    """training/model.py's MLP, module by module (dims shrunk)."""
    layers = [nn.Linear(dim, hidden)]
    for i in range(num_fc_layers - 1):
        layers += [nn.LayerNorm(hidden)] * ln + [nn.ReLU()] * relu + [nn.Dropout(0.5)] * dropout
        layers.append(nn.Linear(hidden, hidden) if i < num_fc_layers - 2 else nn.Linear(hidden, dim))
    return nn.Sequential(*layers)


@pytest.mark.parametrize("num_fc_layers,relu,ln,dropout", [(2, True, False, False), (3, True, True, False),
                                                           (2, False, False, False), (3, True, False, True),
                                                           (2, False, True, False)])
def test_mapping_network_loads_every_mlp_layout(num_fc_layers, relu, ln, dropout):
    torch.manual_seed(num_fc_layers * 8 + relu * 4 + ln * 2 + dropout)
    reference = nn.Module()
    reference.mlp = _emogen_mlp(num_fc_layers, relu, ln, dropout)
    for m in reference.mlp:  # non-trivial LayerNorm parameters
        if isinstance(m, nn.LayerNorm):
            nn.init.normal_(m.weight), nn.init.normal_(m.bias)
    reference.eval()
    mapper = load_mapping_network(reference.state_dict(), relu=relu or not dropout)
    x = torch.randn(4, 12)
    with torch.no_grad():
        torch.testing.assert_close(mapper(x), reference.mlp(x))


def test_mapping_network_fc_layout_and_the_relu_switch():
    fc = nn.Linear(12, 12)
    mapper = load_mapping_network({f"fc.{k}": v for k, v in fc.state_dict().items()})
    x = torch.randn(3, 12)
    with torch.no_grad():
        torch.testing.assert_close(mapper(x), fc(x))
    state = _emogen_mlp(2, True, False, False).state_dict()
    state = {f"mlp.{k}": v for k, v in state.items()}
    with torch.no_grad():
        with_relu, without = load_mapping_network(state)(x), load_mapping_network(state, relu=False)(x)
    assert not torch.allclose(with_relu, without)  # a lone gap is ReLU only when need_ReLU
    with pytest.raises(ValueError, match="not an EmoGen mapping network"):
        load_mapping_network({"weight": torch.zeros(2, 2)})


# --- the emotion space ---------------------------------------------------------------------------

def test_emotion_space_samples_its_gaussian_reproducibly():
    space = tiny_emotion_space(dim=6, seed=2)
    n = 20000
    x = space.sample("awe", n, torch.Generator().manual_seed(0))
    assert torch.equal(x, space.sample("awe", n, torch.Generator().manual_seed(0)))
    # the sample mean is within 5 standard errors of the mean, the std within 5 of its own error
    torch.testing.assert_close(x.mean(0), space.mean["awe"], rtol=0, atol=float(5 * space.std["awe"].max() / n**0.5))
    torch.testing.assert_close(x.std(0), space.std["awe"], rtol=5 / (2 * n) ** 0.5, atol=0)
    with pytest.raises(ValueError, match="unknown emotion category 'joy'"):
        space.sample("joy", 1, torch.Generator())


def test_emotion_space_reads_the_released_files(tmp_path):
    g = torch.Generator().manual_seed(0)
    for e in EMOTIONS:  # training/emo_space/prepare.py saves torch.mean / torch.std vectors
        torch.save(torch.randn(768, generator=g), tmp_path / f"{e}_mean_v2.pt")
        torch.save(torch.rand(768, generator=g), tmp_path / f"{e}_std_v2.pt")
    space = load_emotion_space(tmp_path)
    assert space.dim == 768 and torch.equal(space.mean["fear"], torch.load(tmp_path / "fear_mean_v2.pt"))
    (tmp_path / "awe_std_v2.pt").unlink()
    with pytest.raises(FileNotFoundError, match="emogen-space-awe-std"):
        load_emotion_space(tmp_path)


def test_the_real_released_files():
    from emostyle import registry

    try:
        space, classifier = load_emotion_space(), load_emotion_classifier()
    except registry.MissingWeightError:
        pytest.skip("EmoGen's files are not fetched (`emostyle weights fetch emogen-space-<emotion>-mean`, "
                    "`emogen-emotion-classifier`)")
    assert classifier.dim == 768  # CLIP ViT-L/14's projection
    assert space.dim == 768
    assert all(bool((space.std[e] > 0).all()) for e in EMOTIONS)
    # a usable emotion space: vectors sampled for a category lie nearest that category's mean
    # (measured: the means are 13.7-24.8 apart, a sample lies about 12-14 from its own mean)
    means = torch.stack([space.mean[e] for e in EMOTIONS])
    g = torch.Generator().manual_seed(0)
    for k, e in enumerate(EMOTIONS):
        nearest = torch.cdist(space.sample(e, 50, g), means).argmin(1)
        assert (nearest == k).float().mean() >= 0.9, e


# --- Emo-A, Sem-C, Sem-D arithmetic (inference.py emo_cls, other_metrics.py) ----------------------

def test_emotion_accuracy_by_hand():
    probs = np.array([
        [.70, .10, .05, .05, .02, .02, .03, .03],  # amusement; says amusement (8: hit, 2: hit)
        [.05, .05, .05, .05, .10, .10, .20, .40],  # awe; says sadness (8: miss, 2: 0.2 vs 0.8 miss)
        [.30, .05, .05, .05, .35, .05, .05, .10],  # anger; says anger (8: hit; 2: 0.45 vs 0.55 hit)
        [.20, .20, .10, .05, .25, .05, .05, .10],  # fear; says anger (8: miss; 2: 0.55 vs 0.45 miss)
    ])
    r = emotion_accuracy(probs, ["amusement", "awe", "anger", 6])
    assert r["acc8"] == pytest.approx(50.0) and r["acc2"] == pytest.approx(50.0)
    assert r["score8"] == pytest.approx((.70 + .05 + .35 + .05) / 4)
    assert r["score2"] == pytest.approx((.90 + .20 + .55 + .45) / 4)
    assert r["per_class"] == {"amusement": (100.0, pytest.approx(.70)), "awe": (0.0, pytest.approx(.05)),
                              "anger": (100.0, pytest.approx(.35)), "fear": (0.0, pytest.approx(.05))}
    with pytest.raises(ValueError, match="unknown emotion category 'joy'"):
        emotion_accuracy(probs, ["joy"] * 4)


def test_semantic_clarity_takes_the_larger_top_probability():
    scene = np.array([[.6, .4], [.1, .9], [.5, .5]])
    objects = np.array([[.2, .3, .5], [.3, .3, .4], [.05, .05, .9]])
    np.testing.assert_allclose(semantic_clarity(scene, objects), [.6, .9, .9])


def test_semantic_diversity_by_hand():
    x, y = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]
    features = np.array([x, y, x, x, x, [-1.0, 0.0, 0.0]])
    categories = ["awe", "awe", "fear", "fear", "sadness", "sadness"]
    # with two images a pair is always those two: 1 - cos = 1 (orthogonal), 0 (same), 2 (opposite)
    r = semantic_diversity(features, categories, pairs=7)
    assert r["per_class"] == {"awe": pytest.approx(1.0), "fear": pytest.approx(0.0), "sadness": pytest.approx(2.0)}
    assert r["sem-d"] == pytest.approx(1.0)
    # the reference never empties its list: later categories draw from earlier ones too
    same = np.array([x, x, y, y])
    assert semantic_diversity(same, ["amusement", "amusement", "sadness", "sadness"])["sem-d"] == 0.0
    official = semantic_diversity(same, ["amusement", "amusement", "sadness", "sadness"], compat="official")
    assert official["per_class"]["amusement"] == 0.0 and official["per_class"]["sadness"] > 0.0
    with pytest.raises(ValueError, match="at least two images"):
        semantic_diversity(np.eye(2), ["awe", "fear"])


# --- the judge: CLIPProcessor + get_image_features + the classifier, against transformers ----------

def _tiny_transformers_clip():
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(vocab_size=99, hidden_size=32, intermediate_size=128, num_attention_heads=1,
                         num_hidden_layers=1, hidden_act="quick_gelu", bos_token_id=97, eos_token_id=98),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=64, intermediate_size=256,
                           num_attention_heads=1, num_hidden_layers=2, hidden_act="quick_gelu"),
        projection_dim=24)
    return CLIPModel(config).eval()


def test_judge_matches_emogens_reference_pipeline():
    """EmoGen's emo_cls: CLIPProcessor(images) -> CLIPModel.get_image_features -> emo_classifier -> softmax."""
    from PIL import Image
    from transformers import CLIPImageProcessor

    from emostyle.models.clip import load_clip

    hf = _tiny_transformers_clip()
    g = torch.Generator().manual_seed(3)
    state = {"fc.weight": torch.randn(8, 24, generator=g), "fc.bias": torch.randn(8, generator=g)}
    judge = EmoGenJudge(load_clip(hf.state_dict()), load_emotion_classifier(state))
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    images = np.random.default_rng(0).integers(0, 256, (3, 50, 41, 3), dtype=np.uint8)
    pixels = processor(images=[Image.fromarray(im) for im in images], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        features = hf.get_image_features(pixel_values=pixels)
        features = getattr(features, "pooler_output", features)
        expected = F.softmax(features @ state["fc.weight"].T + state["fc.bias"], dim=1).numpy()
    reading = judge.read(images)
    np.testing.assert_allclose(reading["probs"], expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(reading["valence"], 2 * expected[:, :4].sum(1) - 1, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="8-bit RGB"):
        judge.read(images.astype(np.float32))


def test_emogen_judge_is_a_profile_judge():
    from emostyle.builders import build_judge
    from emostyle.config import load_config

    config = load_config("tiny", {"scoring.judge": "emogen"})
    judge = build_judge(config, "cpu", None, [])
    assert isinstance(judge, EmoGenJudge)
    reading = judge.read_tensor(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert reading["valence"].shape == (2,) and np.all(np.abs(reading["valence"]) <= 1)


def test_metrics_rows_average_to_the_metrics():
    from emostyle.scoring.emogen import tiny_emogen_judge

    judge = tiny_emogen_judge(seed=1)
    images = np.random.default_rng(1).integers(0, 256, (6, 40, 40, 3), dtype=np.uint8)
    categories = ["awe", "awe", "awe", "fear", "fear", "sadness"]
    table = EmoGenMetrics(judge, pairs=5, seed=4)
    table.add(images[:4], categories[:4], method="emostyle", dataset="x")
    table.add(images[4:], categories[4:], method="emostyle", dataset="x")
    rows = table.records()
    mean = {k: np.mean([r["score"] for r in rows if r["scorer"] == k]) for k in ("emo-a", "emo-a-2", "sem-d")}
    direct = emotion_accuracy(judge.probabilities(images), categories)
    assert mean["emo-a"] == pytest.approx(direct["acc8"]) and mean["emo-a-2"] == pytest.approx(direct["acc2"])
    sem_d = semantic_diversity(judge.features(images), categories, pairs=5, seed=4)
    assert mean["sem-d"] == pytest.approx(sem_d["sem-d"])  # equal pairs per category: the mean of means
    assert all(r["method"] == "emostyle" and r["dataset"] == "x" for r in rows)


def test_metrics_read_a_sweeps_runs(tmp_path):
    from PIL import Image

    from emostyle.scoring.emogen import tiny_emogen_judge

    rows, pixels = [], np.random.default_rng(2).integers(0, 256, (3, 24, 24, 3), dtype=np.uint8)
    for i, (method, top) in enumerate([("emostyle", "awe"), ("emostyle", "fear"), ("emogen", "awe")]):
        out = tmp_path / f"run{i}"
        out.mkdir()
        Image.fromarray(pixels[i]).save(out / "after.png")
        (out / "manifest.json").write_text(json.dumps({"categories": {"top": top}}))
        rows.append({"status": "ok", "out": str(out), "method": method, "dataset": "d"})
    rows.append({"status": "failed", "out": str(tmp_path / "nothing"), "method": "lee", "dataset": "d"})
    judge = tiny_emogen_judge(seed=0)
    table = EmoGenMetrics(judge)
    table.add_runs(rows)
    got = [r for r in table.records() if r["scorer"] == "emo-a"]
    hits = judge.probabilities(pixels).argmax(1) == np.array([1, 6, 1])  # awe, fear, awe
    assert [(r["method"], r["score"]) for r in got] == [("emostyle", 100.0 * hits[0]), ("emostyle", 100.0 * hits[1]),
                                                       ("emogen", 100.0 * hits[2])]
    (tmp_path / "run0" / "manifest.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="categories"):
        EmoGenMetrics(judge).add_runs(rows)


# --- the song's emotion category -----------------------------------------------------------------

LEXICON = {"laugh": ["joy", "surprise", "positive"], "calm": ["trust", "positive"], "tears": ["sadness"],
           "furious": ["anger", "negative"], "monster": ["fear", "negative"], "tomorrow": ["anticipation"],
           "wonder": ["surprise", "positive"]}


@pytest.mark.parametrize("lyrics,top,polarity", [
    ("We laugh and laugh all night", "amusement", "positive"),
    ("so calm, so calm by the sea", "contentment", "positive"),
    ("Tears and tears again", "sadness", "negative"),
    ("I am furious at you", "anger", "negative"),
    ("the monster under my bed, I'm so scared", "fear", "negative"),
    ("Tomorrow, tomorrow, I can't wait", "excitement", "positive"),
    ("I stand in awe and wonder", "awe", "positive"),
])
def test_lexicon_categories_on_sentences(lyrics, top, polarity):
    from emostyle.affective.categories import LexiconCategories

    c = LexiconCategories(LEXICON).categorise(lyrics)
    assert (c.top, c.polarity, c.fallback) == (top, polarity, False)
    assert sum(c.probs.values()) == pytest.approx(1.0) and list(c.probs) == list(EMOTIONS)


def test_lexicon_without_emotion_words_is_uniform_and_flagged():
    from emostyle.affective.categories import LexiconCategories

    c = LexiconCategories(LEXICON).categorise("la la la, the table and the chair")
    assert c.fallback and set(c.probs.values()) == {1 / 8}
    # A figure never names the tie's first category as if the words had chosen it.
    assert c.caption.startswith("none found") and c.caption != c.top and "tie" in c.caption
    assert LexiconCategories(LEXICON).categorise("I cry, so sad").caption == "sadness"
    assert c.explained == c.caption  # no word read: nothing to list


def test_lexicon_reads_inflected_forms_as_their_lemmas():
    """NRC lists lemmas: a sound's label ("sobbing", "giggling") or a lyric's verb ("cried", "died")
    read nothing before; a short word is not an inflection of a shorter one ("feed", "fee")."""
    from emostyle.affective.categories import LexiconCategories

    reader = LexiconCategories({"cry": ["sadness"], "sob": ["sadness"], "giggle": ["joy", "surprise"],
                                "fee": ["anger"], "die": ["fear"], "stop": ["fear"], "kiss": ["sadness"],
                                "scar": ["joy"], "scare": ["fear"]})
    for text in ("sobbing", "she cried", "cries", "died", "stopped", "kissing", "scaring", "scared"):
        said = reader.categorise(text)
        assert not said.fallback and said.raw == text.split()[-1] and said.polarity == "negative", (text, said)
    assert reader.categorise("giggling").top == "amusement"
    assert reader.categorise("feed the birds").fallback
    # What a category was read from, each word once; where none is of the song's side, it says so
    happy = reader.categorise("giggling, giggling, then sobbing")
    assert happy.within("positive").explained == "amusement (the lexicon read: giggling, sobbing)"
    assert happy.within("negative").explained == "sadness (the lexicon read: giggling, sobbing)"
    assert reader.categorise("sobbing").within("positive").explained == (
        "none found (amusement as a tie-break): the lexicon read only sobbing, none of the song's side")


def test_a_songs_categories_keep_to_its_polaritys_side():
    """Lexicon words of both sides ("laugh" and twice "tears"): kept to the positive side the
    laugh's categories share all the mass; to the negative side, sadness all of it; a neutral song
    keeps the whole distribution; a side without any of its words is uniform and flagged."""
    from emostyle.affective.categories import LexiconCategories

    both = LexiconCategories(LEXICON).categorise("we laugh, then tears and tears")
    assert both.top == "sadness" and 0 < both.positive < 0.5
    happy = both.within("positive")
    assert (happy.top, happy.polarity, happy.fallback) == ("amusement", "positive", False)
    assert sum(happy.probs.values()) == pytest.approx(1.0)
    assert happy.probs["awe"] / happy.probs["contentment"] == pytest.approx(both.probs["awe"] / both.probs["contentment"])
    assert both.within("negative").probs["sadness"] == pytest.approx(1.0)
    assert both.within("neutral") is both
    none = LexiconCategories(LEXICON).categorise("Tears and tears again").within("positive")
    assert none.fallback and none.polarity == "positive" and set(none.probs[e] for e in POSITIVE) == {1 / 4}


def test_real_nrc_lexicon_reads_happy_and_sad_lyrics():
    from emostyle import registry
    from emostyle.affective.categories import LexiconCategories

    try:
        lexicon = LexiconCategories()
    except registry.MissingWeightError:
        pytest.skip("the NRC lexicon is not fetched (`emostyle weights fetch nrc-emotion-lexicon`)")
    happy = lexicon.categorise("I love this sunny wonderful day, we dance and sing with joy")
    sad = lexicon.categorise("I cry alone in the dark, my heart is broken and lost")
    assert happy.polarity == "positive" and happy.positive > 0.8
    assert sad.polarity == "negative" and sad.top == "sadness"


@pytest.mark.parametrize("reply,expected", [
    ("Sadness.", ["sadness"]), ("The emotion of these lyrics is excitement!", ["excitement"]),
    ("It is not fear; it is awe.", ["awe"]), ("悲伤", ["sadness"]), ("angry and disgusted", ["anger", "disgust"]),
    ("I cannot tell.", []),
    ("Judge the emotion category of these lyrics (one of amusement, awe, contentment, excitement, anger, disgust, "
     "fear, sadness): contentment", ["contentment"]),
])
def test_parse_category_reply(reply, expected):
    from emostyle.affective.categories import parse_category_reply

    assert parse_category_reply(reply) == expected


class _FakeLLM:
    name = "chatglm"

    def __init__(self, reply):
        self.reply, self.queries = reply, []

    def ask(self, query):
        self.queries.append(query)
        return self.reply


def test_llm_categories_and_the_lexicon_fallback():
    from emostyle.affective.categories import PROMPT, LexiconCategories, LLMCategories

    llm = _FakeLLM("The emotion is fear or sadness.")
    c = LLMCategories(llm, LexiconCategories(LEXICON)).categorise("the monster")
    assert llm.queries == [f"{PROMPT} the monster"] and c.probs["fear"] == c.probs["sadness"] == 0.5
    with pytest.warns(UserWarning, match="named no emotion category"):
        c = LLMCategories(_FakeLLM("Hmm."), LexiconCategories(LEXICON)).categorise("tears")
    assert (c.top, c.backend, c.fallback, c.raw) == ("sadness", "chatglm->nrc-lexicon", True, "Hmm.")


# --- EmoGen as a method --------------------------------------------------------------------------

def test_tiny_emogen_prompt_states_equal_emogens_added_token():
    """EmoGen's inference.py adds a placeholder token, writes m(e) into its embedding row and
    encodes the prompt "<c>"; the kit's embedding replacement must give the same states."""
    import copy

    from emostyle.emogen import tiny_emogen

    model = tiny_emogen(seed=0)
    tokens = torch.randn(2, 32, generator=torch.Generator().manual_seed(0))
    states = model.prompt_embeds(tokens)
    encoder = copy.deepcopy(model.pipe.text_encoder)
    vocab = encoder.get_input_embeddings().weight.shape[0]
    encoder.resize_token_embeddings(vocab + 1)  # tokenizer.add_tokens("<c>") -> id = vocab
    ids = torch.full((1, encoder.config.max_position_embeddings), model.pad)
    ids[0, :3] = torch.tensor([model.bos, vocab, model.eos])
    for i in range(2):
        with torch.no_grad():
            encoder.get_input_embeddings().weight[vocab] = tokens[i]
            torch.testing.assert_close(states[i:i + 1], encoder(ids)[0])
    empty = model.prompt_embeds(None, 2)  # tokenizer("") padded: start, end, padding
    ids[0, 1:3] = model.eos
    with torch.no_grad():
        torch.testing.assert_close(empty, encoder(ids)[0].expand(2, -1, -1))


def test_tiny_emogen_generates_reproducibly_and_by_category():
    from emostyle.emogen import tiny_emogen

    model = tiny_emogen(seed=0)
    a = model("awe", n=2, seed=5, steps=2, size=32)
    b = model("awe", n=2, seed=5, steps=2, size=32)
    c = model("fear", n=2, seed=5, steps=2, size=32)
    assert a.images.shape == (2, 3, 32, 32) and a.images.min() >= -1 and a.images.max() <= 1
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    with pytest.raises(ValueError, match="unknown emotion category 'joy'"):
        model("joy")


def test_load_emogen_reads_diffusers_folders_and_emogens_files(tmp_path):
    """The paper profiles' loader on a diffusers folder, EmoGen's mapper.pth and emo_space files
    (the tiny model saved in those formats) generates what the model in memory generates."""
    from emostyle.config import load_config
    from emostyle.emogen import load_emogen, tiny_emogen

    model = tiny_emogen(seed=0)
    folder = tmp_path / "sd"
    for name in ("unet", "vae", "text_encoder", "scheduler"):
        getattr(model.pipe, name).save_pretrained(folder / name)
    vocab = {f"t{i}</w>": i for i in range(62)} | {"<|startoftext|>": 62, "<|endoftext|>": 63}
    (folder / "tokenizer").mkdir()
    (folder / "tokenizer" / "vocab.json").write_text(json.dumps(vocab))
    (folder / "tokenizer" / "merges.txt").write_text("#version: 0.2\n")
    torch.save(model.mapper.state_dict(), tmp_path / "mapper.pth")
    for e in EMOTIONS:
        torch.save(model.space.mean[e], tmp_path / f"{e}_mean_v2.pt")
        torch.save(model.space.std[e], tmp_path / f"{e}_std_v2.pt")
    config = load_config("paper-lhq", {"emogen.weights": str(folder), "emogen.mapper": str(tmp_path / "mapper.pth"),
                                       "emogen.space": str(tmp_path), "device": "cpu"})
    loaded = load_emogen(config)
    assert (loaded.bos, loaded.eos, loaded.pad) == (model.bos, model.eos, model.pad)
    expected = model("sadness", seed=2, steps=2, size=32).images
    torch.testing.assert_close(loaded("sadness", seed=2, steps=2, size=32).images, expected)


@pytest.mark.slow
def test_manipulate_method_emogen_on_tiny(tmp_path, repo_root):
    from emostyle.cli import main

    out = tmp_path / "run"
    assert main(["manipulate", str(repo_root / SONG), "--profile", "tiny", "--method", "emogen",
                 "--out", str(out), "--set", "emogen.steps=2"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["method"] == "emogen" and (out / "after.png").stat().st_size > 100
    assert manifest["emogen"]["category"] == manifest["categories"]["top"]
    assert manifest["categories"]["polarity"] == "positive" and math.isclose(sum(manifest["categories"]["probs"].values()), 1)
    assert manifest["emogen"]["steps"] == 2 and manifest["emogen"]["size"] == 32


def test_column_image_says_so_where_no_diffusion_weights(monkeypatch, tmp_path):
    from emostyle.config import load_config
    from emostyle.emogen import UNAVAILABLE, column_image

    monkeypatch.setenv("EMOSTYLE_HOME", str(tmp_path))  # an empty cache
    image, caption = column_image("awe", load_config("offline"))
    assert image.dtype == np.uint8 and image.shape[2] == 3 and image.std() > 0  # text drawn on the panel
    assert caption.startswith(UNAVAILABLE) and "emostyle weights fetch stable-diffusion-v1-5" in caption
