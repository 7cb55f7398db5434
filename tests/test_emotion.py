"""The song's emotion reaches the image, as users run the offline pipeline, by judges that did not guide it.

Every test goes through the pipeline's own path: the profile's parts, targets built by
`Pipeline.targets` from the song, its composed music and its lyrics, the profile's method
weights, identity loss and regulariser, over many start images and several songs (the kit's
and songs made here), and reads the saved 8-bit images with the profile's judge (the FER2013
mini-Xception for faces, in no loss of the profile; a colour-emotion model for scenes), never with
the guiding network (MediaPipe's face mesh); a second FER2013 network gives a second reading of the
faces (its features are the identity loss, which holds them still: it can only understate a change).

A judge reading 64 px faces is not exact: it reads a face moved by one pixel differently
(the FER: up to about 0.3 on the DCGAN's faces). Each test measures that resolution on its own
start faces and counts only changes beyond it as moves.
"""

import numpy as np
import pytest
import torch
from scipy.stats import binomtest

from emostyle import samples
from emostyle.samples import Sample
from emostyle.config import dataset_configs, load_config
from emostyle.experiments import start_study
from emostyle.models.fer import EMOTIONS
from emostyle.pipeline import Pipeline
from emostyle.scoring import metrics

pytestmark = pytest.mark.slow

N_FACES = 16


def _chords(path, root_hz, minor, bpm, seconds=12.0, sr=22050):
    """Block chords (I-IV-V-I, or i-iv-v-i in minor) with a few harmonics: a song without the kit's data."""
    import soundfile as sf

    third = 3 if minor else 4
    beat = 60.0 / bpm
    t = np.arange(int(sr * beat)) / sr
    y = []
    for step in range(int(seconds / beat)):
        base = root_hz * 2 ** ([0, 5, 7, 0][(step // 4) % 4] / 12)
        chord = [base, base * 2 ** (third / 12), base * 2 ** (7 / 12)]
        y.append(sum(np.sin(2 * np.pi * f * k * t) / k for f in chord for k in (1, 2, 3)) * np.exp(-2.5 * t))
    y = np.concatenate(y)
    sf.write(path, 0.5 * y / np.abs(y).max(), sr)
    return path


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    """(song, expected polarity): two kit songs (transcribed, as users run them), two made here
    (chords without a voice: their lyrics are given)."""
    folder = tmp_path_factory.mktemp("songs")
    kit = {s.name: s.path for s in samples.songs()}
    return [
        (Sample("happy_sunshine", kit["happy_sunshine"]), "positive"),
        (Sample("lonely_night", kit["lonely_night"]), "negative"),
        (Sample("major_fast", _chords(folder / "major.wav", 293.66, False, 150),
                lyrics="we are dancing in the bright summer light, so happy and free"), "positive"),
        (Sample("minor_slow", _chords(folder / "minor.wav", 220.0, True, 56),
                lyrics="alone in the cold and empty night, I cry for you, my heart is broken"), "negative"),
    ]


def _study(pipe, songs, n, seed, tmp_path):
    """The start study as notebook 07 runs it; each song read with the polarity it should have."""
    study = start_study(pipe, [s for s, _ in songs], n_starts=n, seed=seed, run_dir=tmp_path, progress=False)
    assert study.polarities == [p for _, p in songs]
    return study


def _expression_judge():
    from emostyle.judges.expression import ExpressionJudge
    from emostyle.models.expression_cnn import load_expression_cnn

    return ExpressionJudge(load_expression_cnn())


@pytest.fixture(scope="module")
def faces():
    pipe = Pipeline.from_config("offline")
    assert pipe.judge is not None, f"the offline profile's face judge is missing: {pipe.notes}"
    return pipe


def test_faces_move_toward_the_songs_emotion_from_every_start(faces, songs, tmp_path):
    """EmoStyle as the profile runs it, from 16 start faces per song, read by a judge that did
    not guide them. For every song the mean moves its way, and more faces move its way than
    against it beyond the judge's one-pixel resolution; over all songs at most one reading in
    eight moves against its song beyond it, more move the songs' way than when each start moves
    as far in a random latent direction, and a one-sided sign test over the starts (each start
    once, by the sign of its mean shift over the songs: one start's readings are not
    independent) finds the songs' way at the conventional 5 % level. The FER's one-pixel resolution is coarse
    (0.15 on these starts, over its six views), so the sign test reads signs: under no effect of the song a
    start's mean shift is as likely down as up. A second FER2013 network reads the songs' way on average.

    Measured on this start set: 27 toward / 36 within / 1 against (random edits, each song's drawn from
    its content: 4 / 56 / 4); 14 of the 16 starts' mean shifts the songs' way (p = 0.002); by sign 13, 12,
    12 and 10 of the 16 results of the four songs (AMD EPYC, the mode read from the tuned chroma; with the
    plain chroma 29 / 34 / 1, 14 of 16; before sadness's prototype took the chin raiser, on an AVX-512
    machine: 27 / 37 / 0, 15 of 16 starts). On 3 other sets of 8 starts (seeds 11-13, the kit's songs), by
    sign 85 % of the happy songs' results and 58 % of the sad songs'; 0 and 10 of 48 against beyond the
    resolution."""
    study = _study(faces, songs, N_FACES, 2024, tmp_path)
    for i, (song, _) in enumerate(songs):
        moved = study.counts(i)
        assert moved["read"] >= N_FACES // 2, f"{song.name}: the judge found {moved['read']} faces of {N_FACES}"
        assert study.shifts[i].nanmean() > 0 and moved["toward"] > moved["against"], \
            f"{song.name}: {moved}, {study.shifts[i].tolist()}"
    everything = study.rows()[-1]
    per_start = study.shifts.nanmean(dim=0)
    up, down = int((per_start > 0).sum()), int((per_start < 0).sum())
    assert binomtest(up, up + down, alternative="greater").pvalue < 0.05, per_start.tolist()
    assert everything["against"] <= everything["read"] // 8, (everything, study.resolution)
    # A change of the same size in a random latent direction (the study's control) moves fewer.
    assert everything["toward"] > everything["control_toward"], everything
    expression = _expression_judge()
    before = metrics.judge_valence(study.starts, expression)
    second = torch.cat([metrics.valence_shift(before, metrics.judge_valence(images, expression), polarity)
                        for images, polarity in zip(study.images, study.polarities)])
    assert second.mean() > 0, f"the second FER2013 network read {second.tolist()}"


def test_the_log_face_loss_moves_faces_the_linear_one_leaves_as_they_were(faces, songs, tmp_path):
    """As a user sets it (`--set guidance.face_loss=log`), 8 start faces toward happy_sunshine,
    everything else as the profile runs it. On faces that show no trace of a smile the mesh's smile
    blendshapes sit deep in their logistic tail, and the linear loss (the profile's) leaves them as
    they were; the log loss moves each of them, the mesh reads each happier, and the judge, which
    guided nothing, reads them happier on average.

    Measured on these starts (seed 11, the song's known lyrics): the linear loss left 3 of 8
    unmoved; the log loss moved them by 18-23 grey levels, the mesh's P(happy) from 0.00 to 0.47,
    0.06 and 0.44, the judge's valence by +1.23, +0.01 and +0.68. On 3 sets of 8 starts it moved
    15 of 16 such results toward the song beyond the judge's resolution (FINDINGS.md, "Not right
    yet": they also drift to other faces)."""
    from emostyle.experiments import UNMOVED

    song = songs[0][0]
    assert song.name == "happy_sunshine"
    music = faces.affective_music(song.path, tmp_path / song.name, lyrics=song.lyrics, label=song.label)
    targets = faces.targets([song.path], [music.guiding_wav], [music.transcript.text or song.label])
    latents = faces.generator.sample(8, torch.Generator().manual_seed(11))
    log = Pipeline.from_config("offline", {"guidance.face_loss": "log"})
    runs = {"linear": faces.guide(latents, targets, progress=False), "log": log.guide(latents, targets, progress=False)}
    change = {k: metrics.pixel_change(r.start_images, r.images) for k, r in runs.items()}
    still = change["linear"] < UNMOVED
    assert still.any(), f"the linear loss moved every start ({change['linear'].tolist()}): nothing to revive here"
    assert (change["log"][still] >= UNMOVED).all(), change
    happy = EMOTIONS.index("happy")
    with torch.no_grad():
        mesh = [log.guidance_space.emotion_probabilities(x[still])[:, happy] for x in (runs["log"].start_images,
                                                                                         runs["log"].images)]
    assert (mesh[1] > mesh[0]).all(), mesh
    judged = [metrics.judge_valence(x[still], faces.judge) for x in (runs["log"].start_images, runs["log"].images)]
    assert (judged[1] - judged[0]).mean() > 0, judged


def test_lyrics_of_no_polarity_give_the_composed_music_no_pull(faces, songs, tmp_path):
    """Sad songs whose lyrics read neutral (a transcript misheard, a .txt of facts): the composer
    needs one of its two labels and composes "positive", a tie-break, not the song's mood. Its
    piece must not pull: from 8 start faces, EmoStyle as the profile weighs it guides exactly as
    with no music term at all, and `manipulate` reports the music's pull as 0. The composed piece
    did pull toward happy (+1.4 in the guidance space, against the song's audio): on a misheard
    sad song 4 of 10 faces moved toward happy by the judge."""
    from emostyle.pipeline import manipulate

    neutral = "The train leaves at nine from platform two, and the bus comes after it."
    without_music = Pipeline.from_config("offline", {"guidance.l_mus": 0.0})
    latents = faces.generator.sample(8, torch.Generator().manual_seed(5))
    for song, polarity in songs:
        if polarity != "negative":
            continue
        music = faces.affective_music(song.path, tmp_path / song.name, lyrics=neutral)
        assert music.polarity.emotion == "neutral" and music.polarity.label == "positive"
        targets = faces.targets([song.path], [music.guiding_wav], [music.transcript.text])
        runs = [pipe.guide(latents, targets, progress=False) for pipe in (faces, without_music)]
        assert torch.equal(runs[0].latents, runs[1].latents), f"{song.name}: the neutral piece pulled"
    manifest = manipulate(songs[1][0].path, seed=3, out=tmp_path / "run", lyrics=neutral, progress=False)
    assert manifest["polarity"]["emotion"] == "neutral"
    pulls = manifest["valence"]["in_guidance_space"]["targets"]
    assert pulls["music"] == 0 and pulls["audio"] < 0, pulls


def test_lyrics_that_read_against_the_audio_do_not_draw_the_face_their_way(faces, songs, tmp_path):
    """The two songs made here with each other's lyrics: minor chords at 56 bpm sung as "so happy
    and free", major chords at 150 bpm as "I cry for you". EmoStyle weighs the audio 0.6 and the
    lyrics' two readings (the text, the piece composed from it) 0.2 each; the paper's cosine terms
    add to one pull along their resultant, so the lyrics weaken the audio's pull and must not
    draw the face their way. From 16 start faces each, at most one reading in eight (4 of 32)
    moves toward the lyrics' emotion beyond the judge's resolution.

    Measured (seed 2024): 1 and 0 of 16 toward the lyrics, 1 and 0 toward the audio, the rest
    within. The face's loss added target by target credited the smile and the frown both, and the
    face drew whichever it showed most readily: 7 and 2 of 16 toward the lyrics (1 and 3 toward
    the audio)."""
    swapped = {"negative": songs[2][0].lyrics, "positive": songs[3][0].lyrics}
    latents = faces.generator.sample(N_FACES, torch.Generator().manual_seed(2024))
    with torch.no_grad():
        starts = faces.generator.render(latents)
    before = metrics.judge_valence(starts, faces.judge)
    resolution = metrics.judge_resolution(starts, faces.judge, base=before)
    toward_lyrics = 0
    for song, polarity in songs[2:]:
        music = faces.affective_music(song.path, tmp_path / song.name, lyrics=swapped[polarity])
        assert music.polarity.label != polarity, music.polarity.caption()
        targets = faces.targets([song.path], [music.guiding_wav], [music.transcript.text])
        audio = faces.guidance_space.encode_audio(song.path)[0, 0]
        assert (audio > 0) == (polarity == "positive"), f"{song.name}: the audio reads {audio:+.2f}"
        after = metrics.judge_valence(faces.guide(latents, targets, progress=False).images, faces.judge)
        shift = metrics.valence_shift(before, after, polarity)  # + toward the audio's emotion
        toward_lyrics += int((shift < -resolution).sum())
    assert toward_lyrics <= 2 * N_FACES // 8, (toward_lyrics, resolution)


def test_a_happy_song_retrieves_a_happier_face_than_a_sad_one(faces, songs):
    """Six candidate sets (one seed each), ranked against two happy and two sad songs: the happy
    songs never choose the sad songs' face, and their choices read happier on average to both
    judges (each judge alone is noisy on one 64 px face; pooled over sets it is not). Every
    choice is a face MediaPipe itself would track, where the set has one."""
    from emostyle.judges.blendshapes import BlendshapeJudge
    from emostyle.parts import to_uint8

    judges = {"fer": faces.judge, "expression": _expression_judge()}
    mediapipe = BlendshapeJudge()  # MediaPipe's graph as its interpreter runs it, not the torch port
    chosen = {j: {"positive": [], "negative": []} for j in judges}
    for seed in range(6):
        best, candidates = {}, faces.read_candidates(seed=seed, progress=False)
        for song, polarity in songs:
            found = faces.retrieve(song.path, candidates=candidates)
            best.setdefault(polarity, set()).add(found.best)
            # a face MediaPipe would track (presence 0.5, its default), wherever there is one
            presence = mediapipe.read(to_uint8(found.images))["presence"]
            if (presence >= 0.5).any():
                assert presence[found.best] >= 0.5, f"seed {seed} {song.name}: chose {found.best}, {presence.tolist()}"
            for j, judge in judges.items():
                chosen[j][polarity].append(float(metrics.judge_valence(found.images[found.best:found.best + 1],
                                                                       judge)[0]))
        assert not best["positive"] & best["negative"], f"seed {seed}: happy and sad songs chose {best}"
    for j, by in chosen.items():
        assert np.nanmean(by["positive"]) > np.nanmean(by["negative"]), f"{j}: {by}"


def test_retrieval_softmax_is_readable(faces, songs):
    """The softmax over 16 candidates at the space's temperature is neither flat nor one-hot."""
    found = faces.retrieve(songs[1][0].path, seed=0, progress=False)
    n = len(found.probs)
    assert 1.5 / n < float(found.probs.max()) < 0.95


def _luma_and_saturation(images):
    """Mean luma (Rec. 601) and HSV saturation (B,) of images (B, 3, H, W) in [-1, 1]."""
    rgb = (images.clamp(-1, 1) + 1) / 2
    luma = (rgb * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1).mean((1, 2))
    high, low = rgb.max(1).values, rgb.min(1).values
    return luma, ((high - low) / (high + 1e-3)).mean((1, 2))


def test_sad_songs_darken_and_grey_scenes_happy_songs_brighten_them(songs, tmp_path):
    """LHQ-style scenes (the photo grader) as the profile's dataset runs them: a sad song lowers
    brightness and saturation and the colour judge's valence; a happy song raises them."""
    config = dataset_configs(load_config("offline"))["LHQ-style scenes"]
    pipe = Pipeline.from_config(config)
    assert pipe.judge is not None, pipe.notes
    assert "guidance in affect-pad, along pleasure alone" in pipe.note  # the figures say what the scenes follow

    study = _study(pipe, songs, 6, 7, tmp_path)
    l0, s0 = _luma_and_saturation(study.starts)
    for i, (song, polarity) in enumerate(songs):
        l1, s1 = _luma_and_saturation(study.images[i])
        assert (study.shifts[i] > 0).all(), f"{song.name}: the colour judge read {study.shifts[i].tolist()}"
        if polarity == "negative":
            assert (l1 < l0).all() and (s1 < s0).all(), f"{song.name}: luma {l0}->{l1}, saturation {s0}->{s1}"
        else:
            assert (l1 > l0).all(), f"{song.name}: luma {l0}->{l1}"


def test_a_scene_is_graded_as_far_as_the_song_pulls(songs, tmp_path, cached_weight):
    """A sound whose audio reads well inside VADER's neutral band of pleasure (|P| < 0.025, so at most
    0.6 x 0.5 of a full pull; drill reads -0.01, 0.12) and whose label reads no polarity (drill)
    pulls a scene much less than a song whose readings agree: it
    grades every start's photo less far, and on average less than half as far (a start graded
    near the grader's range leaves the full pull little room, so one start's ratio can be larger).
    The regulariser alone holds a graded photo, and under Adam only the pull's ratio to it counts;
    too light, every pull ran to the grader's range and a neutral sound darkened scenes as far as
    the saddest song (ratios 0.73-0.93)."""
    from emostyle.spaces.affect import NEUTRAL_RADIUS

    pipe = Pipeline.from_config(dataset_configs(load_config("offline"))["LHQ-style scenes"])
    sad, drill = songs[1][0], Sample("drill", cached_weight("audio-drill"), label="drill")
    pleasure = float(pipe.guidance_space.encode_audio(drill.path)[0, 0])
    assert abs(pleasure) < NEUTRAL_RADIUS / 2, f"drill's audio reads pleasure {pleasure:+.3f}: not a weak pull"
    study = start_study(pipe, [sad, drill], n_starts=6, seed=7, run_dir=tmp_path, progress=False)
    assert study.polarities == ["negative", "neutral"], study.polarities

    before = _luma_and_saturation(study.starts)[0]
    moved = [(_luma_and_saturation(study.images[i])[0] - before).abs() for i in range(2)]
    said = f"luma moved {moved[0].tolist()} (sad song), {moved[1].tolist()} (drill)"
    assert (moved[1] < moved[0]).all() and moved[1].mean() < moved[0].mean() / 2, said
