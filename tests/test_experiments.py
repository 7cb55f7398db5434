"""The experiments of notebooks 03-05 on the tiny profile: columns, judge readings, tables."""

import math
from pathlib import Path

import pytest
import torch

from emostyle import samples
from emostyle.experiments import (Experiment, StartStudy, ablation_claims, changes_figure, random_edit, retrieval_sets,
                                  retrieval_sets_figure, retrieved_study, start_side_figure, start_study, study_figure)
from emostyle.pipeline import Pipeline
from emostyle.samples import Sample
from emostyle.scoring import available_scorers, metrics

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    root = tmp_path_factory.mktemp("experiment")
    experiment = Experiment("tiny", {"guidance.steps": 2, "retrieval.candidates": 2}, root / "figures", root / "run")
    experiment.store = root / "guidance"  # not the kit's home
    return experiment


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
    # Agreement counts only moves beyond what the judge reads when the inputs shift by one pixel.
    assert r.resolution == metrics.judge_resolution(r.columns["input"], r.pipe.judge)
    shift, agreement = r.shift("emostyle"), r.agreement("emostyle")
    assert torch.equal(agreement, (shift > r.resolution).float())


def test_a_figure_of_two_datasets_prints_their_shared_profile_phrases_once():
    from types import SimpleNamespace

    faces = SimpleNamespace(note_parts=["profile offline", "generator DCGAN", "lyrics whisper"])
    scenes = SimpleNamespace(note_parts=["profile offline", "generator photo grader", "lyrics whisper"])
    two = SimpleNamespace(datasets={"faces": faces, "scenes": scenes})
    assert Experiment.note.fget(two) == ("profile offline · lyrics whisper | faces: generator DCGAN | "
                                         "scenes: generator photo grader")
    one = SimpleNamespace(datasets={"faces": faces})
    assert Experiment.note.fget(one) == "profile offline · generator DCGAN · lyrics whisper"


def test_metrics_table_carries_the_judge_and_emogens_metrics_for_every_method(experiment):
    records, extra = experiment.score(samples.songs()[:2], ["lee", "emostyle"], [0],
                                      available_scorers(experiment.pipe, ["brisque"]))
    assert {r["method"] for r in records} == {"input", "lee", "emostyle"}
    by = {}
    for row in extra:
        by.setdefault(row["scorer"], set()).add(row["method"])
    for scorer in ("valence-shift", "emotion-agreement", "valence-shift-space", "pixel-change", "emo-a", "sem-d"):
        assert by.get(scorer) == {"lee", "emostyle"}, (scorer, by.get(scorer))
    assert by["judge-resolution"] == {"input"}  # a property of the judge on the inputs, not of a method
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
    items = [Sample(f"song{i}", Path(f"song{i}.wav")) for i in range(n)]
    return {"faces": MethodRuns(label="faces", pipe=None, items=items, musics=musics, runs=runs, targets={},
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


def test_start_study_runs_every_song_from_the_same_starts_and_draws_both_figures(experiment):
    songs = samples.songs()[:2]
    (label, study), = experiment.start_study(songs, n_starts=3, seed=5, progress=False).items()
    assert study.starts.shape[0] == 3 and study.images.shape[:2] == (2, 3) and study.after.shape == (2, 3)
    assert [r["song"] for r in study.rows()] == [s.name for s in songs] + ["all songs"]
    judged = metrics.judge_readings(study.images[1], study.pipe.judge)  # the second song's results, read again
    assert study.components and all(torch.allclose(c[2], judged[k], equal_nan=True) for k, c in study.components.items())
    again = start_study(study.pipe, songs, n_starts=3, seed=5, run_dir=experiment.run_dir / "music", progress=False)
    assert torch.equal(again.images, study.images)  # one seed: the same starts and the same guidance
    # a song's control is its own, whichever songs are studied beside it and in whatever order
    alone = start_study(study.pipe, songs[1:], n_starts=3, seed=5, run_dir=experiment.run_dir / "music", progress=False)
    assert torch.equal(alone.control[0], study.control[1]) and not torch.equal(study.control[0], study.control[1])
    # unmoved, as the pipeline guides: the guidance moves some faces; at a learning rate a millionth
    # of the profile's it leaves every face as it was, and the table says so
    assert study.unmoved() < 6
    still = start_study(Pipeline.from_config(study.pipe.config, {"guidance.lr": study.pipe.config.guidance.lr * 1e-6}),
                        songs, n_starts=3, seed=5, run_dir=experiment.run_dir / "music", progress=False)
    assert still.unmoved() == 6 and still.rows()[-1]["unmoved"] == 6 and torch.equal(still.starts, study.starts)
    # the person, as a face-recognition network in no loss reads it (the tiny profile's: narrow and
    # random), moved further in the results the guidance moved than in those it left as they were
    assert study.face_distances.shape == (2, 3) and (study.face_distances >= 0).all()
    assert still.rows()[-1]["face_distance"] < study.rows()[-1]["face_distance"]
    dots, examples = study_figure({label: study}, "note")
    assert list(examples) == [label] and len(examples[label].axes) == 2 * 6 and dots.axes[0].get_xticklabels()
    by_start = start_side_figure({label: study}, "note")
    drawn = {p for p in study.polarities if p != "neutral"}
    assert [next(p for p in ("positive", "negative") if f"{p} songs" in ax.get_title()) for ax in by_start.axes] == \
        [p for p in ("positive", "negative") if p in drawn]
    assert all(any(s.name in ax.get_title() for s in songs) for ax in by_start.axes)  # the songs each marker is
    moved = changes_figure({label: study}, top=3)
    assert [ax.get_title().split(": ")[1].split(" songs")[0] for ax in moved.axes] == \
        sorted({p for p in study.polarities if p != "neutral"}, reverse=True)
    with pytest.raises(ValueError, match="n_starts must be at least 2"):
        start_study(study.pipe, songs, n_starts=1)
    pipe = Pipeline.from_config("tiny", {"scoring.judge": "none"})
    with pytest.raises(ValueError, match="needs a judge"):
        start_study(pipe, songs, n_starts=2)


def test_a_stated_emotion_is_what_a_song_is_counted_toward(experiment):
    """A song whose emotions.csv row says "negative" is counted toward negative, whatever its
    lyrics read; the table and the figures show both, so a misread lyric is seen, and which way
    its audio pulls where that is against the direction counted (here one song, counted both ways:
    exactly one of its labels says so; the tiny profile's audio reading is random)."""
    import dataclasses

    happy = samples.songs()[0]
    assert happy.emotion == "positive"  # the kit's songs state the mood they were made with
    stated = dataclasses.replace(happy, emotion="negative")
    (label, study), = experiment.start_study([happy, stated], n_starts=2, seed=5, progress=False).items()
    assert study.polarities == ["positive", "negative"]
    assert study.lyrics_polarities[0] == study.lyrics_polarities[1] and study.lyrics_polarities[0].startswith("positive")
    torch.testing.assert_close(study.shifts[1], -study.shifts[0])  # the same results, counted the other way
    rows = study.rows()
    read = study.lyrics_polarities[0]
    assert [(r["polarity"], r["lyrics_polarity"]) for r in rows[:2]] == [("positive", read), ("negative", read)]
    audio = study.audio_valence(0)
    assert audio == study.audio_valence(1) and audio != 0 and [r["audio_valence"] for r in rows[:2]] == [round(audio, 2)] * 2
    pulls = f"\naudio pulls\nthe other way ({audio:+.2f})"
    assert study.song_label(0) == f"{happy.name}\npositive" + (pulls if audio < 0 else "")
    assert study.song_label(1) == f"{happy.name}\nnegative (stated)\nlyrics read\n{read}" + (pulls if audio > 0 else "")


def test_retrieved_study_starts_each_song_from_its_own_retrieved_images(experiment):
    """As a user starts: each song from the image retrieval chooses for it, one retrieval seed per start."""
    songs = samples.songs()[:2]
    (label, by_song), = experiment.retrieved_study(songs, n_starts=3, seed=5, progress=False).items()
    pipe = experiment.datasets[label]
    assert list(by_song) == [s.name for s in songs]
    for s in songs:
        study = by_song[s.name]
        expected = torch.cat([pipe.generator.render(pipe.retrieve(s.path, seed=5100 + k, progress=False).best_latent)
                              for k in range(3)])
        torch.testing.assert_close(study.starts, expected.cpu())
        assert study.items == [s] and study.images.shape[:2] == (1, 3) and study.rows()[0]["song"] == s.name
    with pytest.raises(ValueError, match="n_starts must be at least 2"):
        retrieved_study(pipe, songs, n_starts=1)


def test_retrieval_sets_read_each_songs_choice_as_the_retrieval_figure_makes_it(experiment, tmp_path):
    """The first set is the retrieval figure's (the config's seed), each later one its own draw;
    each song's choice is the one `Pipeline.retrieve` makes from that set, read by the judge; a
    song counts toward its stated emotion, else its lyrics' polarity; sets where one side has no
    song, or no reading, are not compared."""
    import dataclasses

    kit = samples.songs()[:2]
    songs = [dataclasses.replace(kit[0], emotion="negative"), dataclasses.replace(kit[1], emotion=None)]
    pipe = experiment.pipe
    sets = retrieval_sets(pipe, songs, n_sets=3, run_dir=tmp_path, progress=False)
    assert sets.seeds == [pipe.config.seed + k for k in range(3)] and sets.judge == pipe.judge.name
    read = pipe.affective_music(songs[1].path, tmp_path / songs[1].name, label=songs[1].stand_in).polarity.emotion
    assert sets.emotions == ["negative", read]
    for k, seed in enumerate(sets.seeds):
        candidates = pipe.read_candidates(seed=seed, progress=False)
        judged = metrics.judge_valence(candidates.images, pipe.judge)
        for i, s in enumerate(songs):
            best = pipe.retrieve(s.path, candidates=candidates).best
            assert sets.chosen[k, i] == best
            torch.testing.assert_close(sets.valence[k, i], judged[best])
    assert [r["song"] for r in sets.rows()] == [s.name for s in songs] * 3
    spread, faces = retrieval_sets_figure(sets, "profile tiny")
    assert "sets" in spread.axes[0].get_title() and len(faces.axes) == 3 * 2  # a column per set, a row per side
    torch.testing.assert_close(sets.images[:, 0], torch.stack([
        pipe.read_candidates(seed=seed, progress=False).images[sets.chosen[k, 0]] for k, seed in enumerate(sets.seeds)]))
    # The count, on readings made here: sets 0 and 3 happier, set 1 not, set 2 not compared (a side unread);
    # with no happy song, no set is compared.
    nan = float("nan")
    made = dataclasses.replace(sets, emotions=["positive", "negative"], seeds=[0, 1, 2, 3],
                               valence=torch.tensor([[0.3, -0.1], [-0.2, 0.1], [nan, 0.2], [0.5, 0.1]]))
    assert made.sides(0) == pytest.approx((0.3, -0.1)) and made.happier() == (2, 3)
    made = dataclasses.replace(made, emotions=["neutral", "negative"])
    assert made.happier() == (0, 0)
    with pytest.raises(ValueError, match="n_sets must be at least 1"):
        retrieval_sets(pipe, songs, n_sets=0)
    with pytest.raises(ValueError, match="no judge"):
        retrieval_sets(dataclasses.replace(pipe, judge=None), songs)


def test_start_study_counts_only_moves_beyond_the_judges_resolution():
    """Toward / within / against by the judge's resolution (a change equal to it is within),
    signed by each song's polarity; unread faces and songs without polarity are not counted.
    The all-songs sign test counts each start once, by its mean shift over the songs; results the
    guidance left as they were are counted apart, by their pixels, whatever the judge read."""
    nan = float("nan")
    before = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0])
    # Dyadic values: exact in float32, so a change equal to the resolution is exactly that.
    after = torch.tensor([[0.375, 0.0625, -0.25, nan, 0.125],  # positive: toward, within, against, unread, within
                          [-0.375, -0.375, 0.0, 0.25, -0.1875],  # negative: toward, toward, within, against, toward
                          [0.5, 0.5, 0.5, 0.5, 0.5]])  # neutral: no polarity, nothing counted
    items = [Sample(name, Path(f"{name}.wav")) for name in ("up", "down", "sound")]
    control = torch.tensor([[0.0, 0.25, -0.25, 0.0, nan],  # positive: within, toward, against, within, unread
                            [0.25, 0.125, -0.25, 0.0, 0.0],  # negative: against, within, toward, within, within
                            [0.5, 0.5, 0.5, 0.5, 0.5]])
    # Unmoved: a saved image within half a grey level of its start's on average (48 values of 4 x 4 RGB).
    images = torch.zeros(3, 5, 3, 4, 4)
    images[0, 0] = 0.5  # about 64 grey levels everywhere: moved
    images[0, 1, 0, 0, 0] = 20 / 127.5  # one value by 20 levels: 0.42 on average, unmoved
    images[0, 2, 0, 0, 0] = 30 / 127.5  # by 30: 0.63, moved
    images[2] = 0.5
    study = StartStudy("faces", None, items, ["positive", "negative", "neutral"], 0.125, before, after,
                       torch.zeros(5, 3, 4, 4), images, control)
    assert (study.unmoved(0), study.unmoved(1), study.unmoved(2), study.unmoved()) == (3, 5, 0, 8)
    assert study.counts(0) == dict(read=4, unread=1, toward=1, within=2, against=1)
    assert study.counts(1) == dict(read=5, unread=0, toward=3, within=1, against=1)
    assert study.counts(2)["read"] == 0 and study.counts() == dict(read=9, unread=6, toward=4, within=3, against=2)
    assert [study.verdicts(study.shifts[0])[k] for k in (0, 1, 2, 4)] == ["toward", "within", "against", "within"]
    assert study.counts(0, control=True) == dict(read=4, unread=1, toward=1, within=2, against=1)
    assert study.counts(1, control=True) == dict(read=5, unread=0, toward=1, within=3, against=1)
    rows = {r["song"]: r for r in study.rows()}
    assert (rows["all songs"]["control_toward"], rows["all songs"]["control_against"]) == (2, 2)
    assert (rows["up"]["unmoved"], rows["down"]["unmoved"], rows["all songs"]["unmoved"]) == (3, 5, 8)
    assert math.isnan(rows["up"]["face_distance"])  # no face-recognition reading given
    assert rows["up"]["sign_test_p"] == 0.75 and math.isnan(rows["sound"]["sign_test_p"])  # P(X >= 1), X ~ B(2, 1/2)
    # Per start, the mean over the songs it was read for: 0.375, 0.219, -0.125, -0.25, 0.156 ->
    # 3 toward, 1 within, 1 against: P(X >= 3), X ~ B(4, 1/2) = 5/16.
    assert rows["all songs"]["sign_test_p"] == 0.31
    assert rows["all songs"]["sign_test"] == "3 toward / 1 against of 5 starts"  # what the test counted
    assert rows["up"]["sign_test"] == "1 toward / 1 against of 4 starts"
    assert study.extremes(0) == [("lowest", 2), ("median", 1), ("highest", 0)] and study.extremes(2) == []
    # Every start read, none moved beyond the resolution: no evidence either way, p = P(X >= 0) = 1 (not NaN,
    # which is kept for a song with nothing to count).
    still = StartStudy("faces", None, items[:1], ["positive"], 0.125, before, torch.full((1, 5), 0.0625),
                       torch.zeros(5, 3, 4, 4), torch.zeros(1, 5, 3, 4, 4), torch.zeros(1, 5))
    assert still.rows()[0]["sign_test"] == "0 toward / 0 against of 5 starts" and still.rows()[0]["sign_test_p"] == 1.0


@pytest.mark.parametrize("songs", [10, 11])
def test_a_start_study_of_many_songs_reads_at_page_width(songs):
    """Ten songs in one row of panels made a 14 in figure whose 8 pt text, shrunk to a page, was 4 pt
    (a helper's ten songs): the panels wrap at `STUDY_ROW` songs, every song is drawn once, and every
    text reads at 6 points or more at page width."""
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    from emostyle.experiments import STUDY_ROW
    from emostyle.figures import PAGE_WIDTH

    n = 4
    items = [Sample(f"song_{k}", Path(f"song_{k}.wav")) for k in range(songs)]
    polarities = (["positive", "negative"] * songs)[:songs]
    shifts = torch.linspace(-0.3, 0.3, songs * n).reshape(songs, n)
    studies = {label: StartStudy(label, None, items, polarities, 0.1, torch.zeros(n), shifts, torch.zeros(n, 3, 4, 4),
                                 torch.zeros(songs, n, 3, 4, 4), -shifts) for label in ("faces", "scenes")}
    dots, _ = study_figure(studies, "profile offline · generator dcgan-faces " * 6)
    width = dots.get_size_inches()[0]
    dots.canvas.draw()
    texts = [t for t in dots.findobj(Text) if t.get_text().strip() and t.get_visible()]
    assert min(t.get_fontsize() for t in texts) * min(1.0, PAGE_WIDTH / width) >= 6 - 1e-9, width
    ticks = [t.get_text() for ax in dots.axes for t in ax.get_xticklabels()]
    assert len(dots.axes) == 2 * -(-songs // STUDY_ROW)
    assert sorted(ticks) == sorted(st.song_label(i) for st in studies.values() for i in range(songs))
    assert f"(song{'s 6-10' if songs == 10 else ' 11'} of {songs})" in dots.axes[-1].get_title()
    plt.close("all")


def test_start_study_counts_by_where_each_start_lay():
    """`by_start`: each result counted by its start's own reading signed toward its song (the
    song's way beyond the resolution, neither way, the other way), for the guidance and the
    random edits; one start lies on opposite sides for songs of opposite emotions; an unread
    start and a song without polarity are not counted."""
    nan = float("nan")
    before = torch.tensor([0.5, 0.25, 0.0, -0.125, -0.5, nan])  # dyadic: exact in float32
    after = torch.tensor([[0.25, 0.5, 0.5, 0.0, -0.25, 0.0],  # up: against, toward, toward, within, toward, unread
                          [0.75, 0.0, -0.5, -0.5, -0.25, 0.0],  # down: against, toward, toward, toward, against, unread
                          [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])  # sound: no polarity
    control = before.expand(3, -1).clone()  # the random edits moved nothing, but for one start
    control[1, 2] = 0.25  # down's start 2 (neither way): against
    items = [Sample(name, Path(f"{name}.wav")) for name in ("up", "down", "sound")]
    study = StartStudy("faces", None, items, ["positive", "negative", "neutral"], 0.125, before, after,
                       torch.zeros(6, 3, 4, 4), torch.zeros(3, 6, 3, 4, 4), control)
    # up (positive): starts 0, 1 the song's way; 2, 3 (0.125: at the resolution) neither; 4 the other way
    # down (negative): 4 the song's way; 2, 3 neither; 0, 1 the other way
    table = {(r["polarity"], r["start"]): r for r in study.by_start()}
    assert list(table) == [(p, side) for p in ("positive", "negative") for side in
                           ("the song's way", "neither way", "the other way")]
    counts = {k: (r["results"], r["toward"], r["within"], r["against"]) for k, r in table.items()}
    assert counts == {("positive", "the song's way"): (2, 1, 0, 1), ("positive", "neither way"): (2, 1, 1, 0),
                      ("positive", "the other way"): (1, 1, 0, 0),
                      ("negative", "the song's way"): (1, 0, 0, 1), ("negative", "neither way"): (2, 2, 0, 0),
                      ("negative", "the other way"): (2, 1, 0, 1)}
    assert table[("positive", "the song's way")]["mean_shift"] == 0.0  # -0.25 and +0.25
    assert table[("negative", "neither way")]["mean_shift"] == 0.438  # 0.5 and 0.375
    controls = {k: (r["control_toward"], r["control_within"], r["control_against"]) for k, r in table.items()}
    assert controls[("negative", "neither way")] == (0, 1, 1) and controls[("positive", "neither way")] == (0, 2, 0)
    assert table[("negative", "neither way")]["control_mean_shift"] == -0.125
    assert sum(r["results"] for r in table.values()) == study.counts()["read"]  # every result read, once


def test_start_study_lists_the_components_that_moved_most_per_polarity():
    """`changes`: per polarity, components ranked by the size of their mean change over that
    polarity's songs and starts (unread values left out), with the t statistic of the change."""
    nan = float("nan")
    before, after = torch.zeros(4), torch.zeros(3, 4)
    components = {  # rows: the starts, then songs up, down, sound
        "gaze_down": torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0],
                                   [0.25, 0.5, 0.25, 0.5], [1.0, 1.0, 1.0, 1.0]]),
        "smile": torch.tensor([[0.5, 0.5, 0.5, 0.5], [1.0, 0.75, 1.0, nan],
                               [0.5, 0.25, 0.5, 0.5], [0.0, 0.0, 0.0, 0.0]]),
    }
    items = [Sample(name, Path(f"{name}.wav")) for name in ("up", "down", "sound")]
    study = StartStudy("faces", None, items, ["positive", "negative", "neutral"], 0.125, before, after,
                       torch.zeros(4, 3, 4, 4), torch.zeros(3, 4, 3, 4, 4), after, components)
    rows = study.changes(top=2)
    assert [(r["polarity"], r["reading"]) for r in rows] == [("positive", "smile"), ("positive", "gaze_down"),
                                                            ("negative", "gaze_down"), ("negative", "smile")]
    up_smile, up_gaze, down_gaze, down_smile = rows
    # smile for "up": changes 0.5, 0.25, 0.5 (one unread): mean 5/12, sd sqrt(1/48), t = (5/12) / (sd / sqrt 3) = 5
    assert up_smile["mean_change"] == 0.417 and up_smile["t"] == 5.0 and up_smile["results"] == 3
    assert math.isnan(up_gaze["t"]) and up_gaze["mean_change"] == 0  # no change at all: no t
    # gaze for "down": 0.25, 0.5, 0.25, 0.5: mean 0.375, sd sqrt(1/48), t = 0.375 / (sd / 2) = 5.2
    assert down_gaze["mean_change"] == 0.375 and down_gaze["t"] == 5.2 and down_smile["t"] == -1.0
    assert study.changes(top=1) == [up_smile, down_gaze]


@pytest.mark.parametrize("profile", ["tiny", "offline"])  # StyleGAN2's W+ and the DCGAN's z
def test_random_edit_changes_each_image_as_far_as_asked(profile):
    """The start study's control: each start moved along its own random latent direction until its
    saved image changed by the grey levels asked, at least and by less than a tenth of a grey level
    more (the bisection ends within 2^-20 of the bracket, where the image is continuous up to one
    8-bit rounding); the same draw gives the same edits."""
    generator = Pipeline.from_config(profile).generator
    latents = generator.sample(4, torch.Generator().manual_seed(0))
    with torch.no_grad():
        starts = generator.render(latents)
    asked = torch.tensor([0.0, 2.0, 8.0, 20.0])
    edited = random_edit(generator, latents, starts, asked, torch.Generator().manual_seed(1))
    changed = metrics.pixel_change(starts, edited)
    assert (changed >= asked).all() and (changed - asked < 0.1).all(), changed
    assert torch.equal(random_edit(generator, latents, starts, asked, torch.Generator().manual_seed(1)), edited)


def test_method_runs_are_stored_and_reused_until_anything_they_depend_on_changes(experiment, tmp_path, monkeypatch):
    songs = samples.songs()[:2]
    monkeypatch.setattr(experiment, "store", tmp_path)
    (tmp_path / "0123456789abcdef").mkdir()  # what an older version of the kit stored
    (tmp_path / "0123456789abcdef" / "old.pt").write_bytes(b"old")
    first = experiment.run_methods(songs, ["lee"], progress=False)
    stored = sorted(tmp_path.rglob("*"))
    assert len(stored) == 2 and stored[1].suffix == ".pt"  # one run per (dataset, method), nothing half-written
    assert stored[0].is_dir() and stored[0].name != "0123456789abcdef"  # the older version's results are gone
    with monkeypatch.context() as m:
        m.setattr(Pipeline, "guide", lambda *a, **k: pytest.fail("guided again what was stored"))
        again = experiment.run_methods(songs, ["lee"], progress=False)
    (label, a), = first.items()
    b = again[label]
    assert torch.equal(a.runs["lee"].images, b.runs["lee"].images) and a.runs["lee"].history == b.runs["lee"].history
    assert torch.equal(a.judge["lee"], b.judge["lee"]) and torch.equal(a.space["lee"], b.space["lee"])
    experiment.run_methods(songs[::-1], ["lee"], progress=False)  # other starts and targets: guided anew
    other = Experiment("tiny", {"guidance.steps": 3, "retrieval.candidates": 2}, tmp_path / "f", tmp_path / "r")
    other.store = tmp_path
    other.run_methods(songs, ["lee"], progress=False)  # another configuration: guided anew
    assert len(list(tmp_path.rglob("*.pt"))) == 3 and not list(tmp_path.rglob(".*"))
