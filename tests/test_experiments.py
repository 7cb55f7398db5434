"""The experiments of notebooks 03-05 on the tiny profile: columns, judge readings, tables."""

import math

import pytest

from emostyle import samples
from emostyle.experiments import Experiment, ablation_claims
from emostyle.scoring import available_scorers

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    root = tmp_path_factory.mktemp("experiment")
    return Experiment("tiny", {"guidance.steps": 2, "retrieval.candidates": 2}, root / "figures", root / "run")


def test_every_method_is_read_by_the_judge_and_in_the_space(experiment):
    songs = samples.songs()[:2]
    runs = experiment.run_methods(songs, ["lee", "emostyle", "emogen"], progress=False)
    (label, r), = runs.items()
    assert set(r.columns) == {"input", "lee", "emostyle", "emogen"} and r.emogen_made  # tiny EmoGen runs
    for column in r.columns:
        assert r.judge[column].shape == (2,) and r.space[column].shape == (2,)
        assert not r.judge[column].isnan().any()
    results = r.results()
    assert set(results) == {s.name for s in songs}
    first, second = (results[s.name] for s in songs)
    # Each song keeps its own final losses (not the batch's), and EmoGen its category.
    assert first["emostyle"]["losses"]["total"] != second["emostyle"]["losses"]["total"]
    assert first["emogen"]["category"] in {m.categories.top for m in r.musics}


def test_metrics_table_carries_the_judge_and_emogens_metrics_for_every_method(experiment):
    records, extra = experiment.score(samples.songs()[:2], ["lee", "emostyle"], [0],
                                      available_scorers(experiment.pipe, ["brisque"]))
    assert {r["method"] for r in records} == {"input", "lee", "emostyle"}
    by = {}
    for row in extra:
        by.setdefault(row["scorer"], set()).add(row["method"])
    for scorer in ("valence-shift", "emotion-agreement", "valence-shift-space", "pixel-change", "emo-a", "sem-d"):
        assert by.get(scorer) == {"lee", "emostyle"}, (scorer, by.get(scorer))
    assert all(math.isfinite(row["score"]) for row in extra)


def test_ablation_claims_name_a_verdict_for_each_claim(experiment):
    runs = experiment.run_methods(samples.songs()[:2], ["emostyle", "wo-audio", "wo-music", "wo-text"], progress=False)
    claims = ablation_claims(runs)
    assert len(claims) == 3 and {c["measure"] for c in claims} == {"change", "shift", "agreement"}
    assert all(c["verdict"] in ("agrees with the paper", "DIFFERS from the paper", "no difference in this run",
                                "no clear difference (95% interval holds 0)",
                                "not measurable (under two items with a judge reading)")
               for c in claims)


def _runs(judge: dict, change: dict, polarities=("positive", "negative") * 3):
    """MethodRuns of 6 items whose judge readings and pixel changes are given per column."""
    from types import SimpleNamespace

    import torch

    from emostyle.experiments import MethodRuns

    n = len(polarities)
    start = torch.zeros(n, 3, 4, 4)
    runs = {m: SimpleNamespace(start_images=start, images=start + torch.tensor(c).view(n, 1, 1, 1) / 127.5)
            for m, c in change.items()}
    musics = [SimpleNamespace(polarity=SimpleNamespace(emotion=p)) for p in polarities]
    return {"faces": MethodRuns(label="faces", pipe=None, items=[None] * n, musics=musics, runs=runs, targets={},
                                judge={k: torch.tensor(v) for k, v in judge.items()}, space={})}


def test_ablation_verdicts_need_a_difference_beyond_the_items_spread():
    """A claim is upheld or contradicted only when the paired differences' t interval
    lies on one side of 0; differences of a few thousandths either way are no verdict."""
    up = [0.5, -0.5] * 3  # every item's valence moved 0.5 its song's way (positive, negative, ...)
    down = [-v for v in up]  # every item moved 0.5 against its song
    weaker = [0.2, -0.2] * 3
    jittered = [v + d for v, d in zip(up, (0.001, -0.002, 0.001, 0.002, -0.001, -0.001))]
    same = [10.0] * 6

    rows = ablation_claims(_runs({"input": [0.0] * 6, "emostyle": up, "wo-audio": up, "wo-music": weaker,
                                  "wo-text": up},
                                 {"emostyle": same, "wo-audio": [4.0, 5.0, 6.0] * 2, "wo-music": same, "wo-text": same}))
    verdicts = {r["measure"]: r["verdict"] for r in rows}
    assert verdicts["shift"] == "agrees with the paper", rows  # w/o Music subdued on every item
    assert verdicts["change"] == "DIFFERS from the paper", rows  # w/o Audio changed every image less
    assert verdicts["agreement"] == "no difference in this run", rows

    rows = ablation_claims(_runs({"input": [0.0] * 6, "emostyle": up, "wo-audio": up, "wo-music": jittered,
                                  "wo-text": down},
                                 {"emostyle": same, "wo-audio": same, "wo-music": same, "wo-text": same}))
    verdicts = {r["measure"]: r["verdict"] for r in rows}
    assert verdicts["shift"].startswith("no clear difference"), rows
    assert verdicts["change"] == "no difference in this run", rows
    assert verdicts["agreement"] == "agrees with the paper", rows  # w/o Text moved every item against its song
