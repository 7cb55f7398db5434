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
                                "not measurable (no judge reading)") for c in claims)
