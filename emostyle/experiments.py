"""The paper's experiments (section 4) as notebooks 03-05 run them, so their cells read like the paper.

`Experiment` holds one pipeline per dataset of a profile (FFHQ-style faces, LHQ-style scenes);
`Experiment.run_methods` retrieves a start image per song and guides all songs at once with each
method from the same starts, and reads every image twice: by the profile's *judge* (a model that
did not guide it, on the saved 8-bit image) and in the *guidance space* (the guiding model's reading).
`method_grid` draws Figures 2-4 with both readings under each image, `ablation_claims` checks
Figure 4 against the paper's claims, and `score` collects Table 1 and the metrics table.
`start_study` asks what one figure cannot: from many start images, does each song move every
one of them its way, as the judge reads the saved images (notebook 07)?
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .builders import build_face_recognizer
from .config import dataset_configs
from .guidance import METHODS, GuidanceResult
from .parts import Generator
from .pipeline import Pipeline
from .registry import file_sha256, home
from .retrieval import rank
from .samples import Sample
from .scoring import metrics

__all__ = ["Experiment", "MethodRuns", "START_SIDES", "StartStudy", "UNMOVED", "ablation_claims", "changes_figure",
           "RetrievalSets", "random_edit", "retrieval_sets", "retrieval_sets_figure", "retrieved_study", "start_side_figure", "start_study", "stored_guidance", "study_figure"]


@dataclass
class MethodRuns:
    """One dataset's items, each guided by every method from the same retrieved start.

    `judge` and `space` map a column ("input" or a method) to valences (B,): the judge's
    reading of the saved images (NaN where it cannot read one, or no judge) and the reading
    in the guidance space. `resolution`: the judge's one-pixel resolution on the inputs
    (`metrics.judge_resolution`; 0 without a judge): its agreement counts no smaller move."""

    label: str
    pipe: Pipeline
    items: list[Sample]
    musics: list
    runs: dict[str, GuidanceResult]
    targets: dict[str, torch.Tensor | None]
    judge: dict[str, torch.Tensor]
    space: dict[str, torch.Tensor]
    # EmoGen's images (B, 3, H, W) generated from each song's emotion category (not a guidance
    # method: no start image), and their captions; absent unless asked for.
    emogen: torch.Tensor | None = None
    emogen_captions: list[str] | None = None
    emogen_made: bool = False  # False: panels saying its weights are missing (nothing to score)
    resolution: float = 0.0

    @property
    def columns(self) -> dict[str, torch.Tensor]:
        """"input", each method's images (B, 3, H, W), and "emogen" where it generated images
        (its panels saying that its weights are missing are nothing to read, score or show)."""
        first = next(iter(self.runs.values()))
        columns = {"input": first.start_images} | {m: r.images for m, r in self.runs.items()}
        return columns | ({"emogen": self.emogen} if self.emogen_made else {})

    @property
    def emotions(self) -> list[str]:
        """Each item's direction: its stated emotion (`Sample.emotion`), else its lyrics' polarity:
        positive, negative or neutral (no lyrics)."""
        return [s.direction(m.polarity.emotion) for s, m in zip(self.items, self.musics)]

    def shift(self, method: str, reader: str = "judge") -> torch.Tensor:
        """Valence shift (B,) of a method's results, signed by each song's polarity, as the judge
        (or, `reader="space"`, the guidance space) reads them."""
        readings = getattr(self, reader)
        return metrics.valence_shift(readings["input"], readings[method], self.emotions)

    def agreement(self, method: str, reader: str = "judge") -> torch.Tensor:
        """Emotion agreement (B,): 1 where a method moved the valence the song's way, beyond the
        judge's resolution (the guidance space reads exactly: any move)."""
        readings = getattr(self, reader)
        return metrics.emotion_agreement(readings["input"], readings[method], self.emotions,
                                         self.resolution if reader == "judge" else 0.0)

    def pixel_change(self, method: str) -> torch.Tensor:
        """Mean absolute change (B,) of the saved 8-bit images from the input, in grey levels."""
        return metrics.pixel_change(self.runs[method].start_images, self.runs[method].images)

    def results(self) -> dict:
        """Per item: its polarity, and per method its own final losses and both valence readings."""
        out = {}
        change = {m: self.pixel_change(m) for m in self.runs}  # once per method, not per item
        for i, (item, music) in enumerate(zip(self.items, self.musics)):
            entry = {"polarity": music.polarity.emotion, "score": music.polarity.score, "stated": item.emotion,
                     "input": {"judge": float(self.judge["input"][i]), "space": float(self.space["input"][i])}}
            for m, run in self.runs.items():
                entry[m] = {"losses": {k: v[-1][i] for k, v in run.history.items()},
                            "judge": float(self.judge[m][i]), "space": float(self.space[m][i]),
                            "pixel_change": float(change[m][i])}
            if self.emogen is not None:
                entry["emogen"] = {"category": music.categories.top, "caption": self.emogen_captions[i],
                                   "judge": float(self.judge["emogen"][i]) if self.emogen_made else float("nan")}
            out[item.name] = entry
        return out


# A result whose saved image differs from its start by less than half a grey level on average
# rounds to its start: the guidance left that face as it was (`StartStudy.unmoved`).
UNMOVED = 0.5
# Where a start already lay before the guidance, as the judge read it (`StartStudy.by_start`):
# the name of each side, and the verdict that the study's one rule gives its signed reading.
START_SIDES = {"the song's way": "toward", "neither way": "within", "the other way": "against"}
VERDICT_COLOURS = {"toward": "tab:green", "within": "0.45", "against": "tab:red"}  # the study's figures
# The songs of a polarity in `start_side_figure`: matplotlib's marker, and the character that names it in a title.
SONG_MARKERS = (("o", "\u25cf"), ("s", "\u25a0"), ("^", "\u25b2"), ("D", "\u25c6"), ("v", "\u25bc"), ("<", "\u25c0"),
                (">", "\u25b6"), ("*", "\u2605"), ("p", "\u2b1f"), ("h", "\u2b22"))


@dataclass
class StartStudy:
    """One dataset's start study: the same `n` start images guided toward each song, as the
    profile runs it, and every image read by the judge on the saved 8-bit image.

    A judge reading small images is not exact: `resolution` is the largest change it reads
    when the start images move by one pixel (`metrics.judge_resolution`); a change within it
    is not counted as a move either way. Nor does a judge read every change of a face as no
    change of emotion: `control` holds its reading of each start moved along a random latent
    direction as far as the guidance moved it (`random_edit`), counted by the same rule, so
    that the guidance's counts can be read against what a change of that size alone gives."""

    label: str
    pipe: Pipeline
    items: list[Sample]
    # Each song's direction, what its results are counted toward: its stated emotion
    # (`Sample.emotion`), else its lyrics' polarity: positive, negative or neutral (no lyrics).
    polarities: list[str]
    resolution: float
    before: torch.Tensor  # (n,) the judge's valence of the start images (NaN: unread)
    after: torch.Tensor  # (songs, n) the judge's valence after each song's guidance
    starts: torch.Tensor  # (n, 3, H, W)
    images: torch.Tensor  # (songs, n, 3, H, W)
    control: torch.Tensor  # (songs, n) the judge's valence after a random edit of each song's size
    # The judge's components (`Judge.components`: a blendshape, an emotion's probability) by
    # name, each (1 + songs, n): the start images, then each song's results.
    components: dict[str, torch.Tensor] = field(default_factory=dict)
    # (songs, n) how far dlib's face-recognition network, in no loss, sees each result's person
    # from its start's (`metrics.face_distance`); None for scenes, or where it held the faces.
    face_distances: torch.Tensor | None = None
    lyrics_polarities: list[str] = field(default_factory=list)  # what the pipeline read, with its score
    # Each song's targets (audio, music, text) read in the guidance space, > 0 toward happy
    # (`metrics.target_valences`): a target that pulls against the song's direction shows here.
    target_valences: list[dict[str, float | None]] = field(default_factory=list)

    def song_label(self, song: int) -> str:
        """A song's name and direction, what the pipeline read where a stated emotion overrules it,
        and where the song's audio pulls the other way."""
        s, direction = self.items[song], self.polarities[song]
        read = self.lyrics_polarities[song] if self.lyrics_polarities else ""
        overruled = s.emotion and not read.startswith(direction)
        audio = self.audio_valence(song)
        opposed = audio * metrics.POLARITIES.get(direction, float("nan")) < 0
        return (f"{s.name}\n{direction}" + (f" (stated)\nlyrics read\n{read}" if overruled else "")
                + (f"\naudio pulls\nthe other way ({audio:+.2f})" if opposed else ""))

    def audio_valence(self, song: int) -> float:
        """Which way the song's audio target pulls in the guidance space (NaN: not read)."""
        pulls = self.target_valences[song] if self.target_valences else {}
        return float("nan") if pulls.get("audio") is None else pulls["audio"]

    @functools.cached_property
    def shifts(self) -> torch.Tensor:
        """(songs, n) valence change toward each song's polarity (NaN: unread or no polarity);
        computed once: the counts, rows and figures all read it."""
        return self._shifts(self.after)

    @functools.cached_property
    def control_shifts(self) -> torch.Tensor:
        """(songs, n) as `shifts`, for the random edits of the same size (`control`)."""
        return self._shifts(self.control)

    @functools.cached_property
    def start_readings(self) -> torch.Tensor:
        """(songs, n) the judge's valence of each start signed toward each song (NaN: unread or no
        polarity): where the start already lay, the song's way (> 0) or the other, from the
        judge's no emotion (0)."""
        return torch.stack([metrics.valence_shift(torch.zeros_like(self.before), self.before, p)
                            for p in self.polarities])

    def _shifts(self, after: torch.Tensor) -> torch.Tensor:
        return torch.stack([metrics.valence_shift(self.before, a, p) for a, p in zip(after, self.polarities)])

    def verdicts(self, shift: torch.Tensor) -> list[str]:
        """The study's one rule, per value of `shift`: toward or against the song beyond the
        resolution, within it, or unread (NaN: the judge could not read the start or the result)."""
        r = self.resolution
        return ["unread" if v != v else "toward" if v > r else "against" if v < -r else "within"
                for v in shift.flatten().tolist()]

    def counts(self, song: int | None = None, control: bool = False) -> dict[str, int]:
        """Readings of the start images' change (`read`; a start the judge cannot read before or
        after is `unread`), and how many moved toward the song, stayed within the resolution, or
        moved against it; `song` None: every song's readings together; `control`: of the random
        edits of the same size instead of the guidance."""
        shifts = self.control_shifts if control else self.shifts
        return self._count(shifts if song is None else shifts[song])

    def unmoved(self, song: int | None = None) -> int:
        """How many of `song`'s results (None: every song's) the guidance left as they were: their
        saved image within `UNMOVED` grey levels of the start's, on average."""
        return int((self.pixel_change(song) < UNMOVED).sum())

    def _count(self, shift: torch.Tensor) -> dict[str, int]:
        verdicts = self.verdicts(shift)
        c = {k: verdicts.count(k) for k in ("unread", "toward", "within", "against")}
        return dict(read=len(verdicts) - c["unread"], **c)

    def rows(self) -> list[dict]:
        """A row per song and one for all songs: the counts, the mean shift, the pixel change and
        a one-sided sign test (the chance that a guidance with no preferred direction moves as
        many starts the song's way, of those it moves beyond the resolution, or more). A song's
        test counts its starts; the all-songs test counts each start once, by its mean shift over
        the songs, since one start's readings for several songs are not independent: its
        `sign_test` column says what it counted. `control_toward`, `control_against` and
        `control_unread`: the same counts for the random edits of the same size (`control`).
        `unmoved`: the results the guidance left as they were (`unmoved`), whatever their verdict.
        `face_distance`: the mean distance of the results' persons from the starts' as dlib's
        face-recognition network reads them (a network in no loss; NaN for scenes or where it is
        the identity loss; it puts two photos of one person within 0.6). `polarity`: the direction
        counted, `lyrics_polarity`: the one the pipeline read from the lyrics (they differ only
        where `emotions.csv` states another), `audio_valence`: which way the song's audio target
        pulls in the guidance space (> 0 toward happy; EmoStyle gives it most of its weight)."""
        from scipy.stats import binomtest

        def sign_test(c):
            # Starts read but none moved beyond the resolution: P(X >= 0) = 1, no evidence either way;
            # none read (a sound without polarity): no test, NaN.
            moved = c["toward"] + c["against"]
            if not moved:
                return 1.0 if c["read"] else float("nan")
            return float(f"{binomtest(c['toward'], moved, alternative='greater').pvalue:.2g}")

        rows = []
        for i, name in enumerate([s.name for s in self.items] + ["all songs"]):
            song = i if i < len(self.items) else None
            c, control = self.counts(song), self.counts(song, control=True)
            shift = self.shifts if song is None else self.shifts[song]
            tested = c if song is not None else self._count(self.shifts.nanmean(dim=0))
            rows.append(dict(dataset=self.label, judge=_judge_name(self.pipe), song=name,
                             polarity=self.polarities[song] if song is not None else "",
                             lyrics_polarity=self.lyrics_polarities[song] if song is not None and self.lyrics_polarities
                             else "",
                             audio_valence=round(self.audio_valence(song), 2) if song is not None else "",
                             **c, mean_shift=_mean(shift),
                             pixel_change=round(float(self.pixel_change(song).mean()), 1), unmoved=self.unmoved(song),
                             face_distance=self._mean_face_distance(song),
                             sign_test=f"{tested['toward']} toward / {tested['against']} against of "
                                       f"{tested['read']} starts",
                             sign_test_p=sign_test(tested),
                             control_toward=control["toward"], control_against=control["against"],
                             control_unread=control["unread"]))
        return rows

    def by_start(self) -> list[dict]:
        """The counts by where each start already lay (`START_SIDES`): per polarity of the songs,
        the results whose start the judge read the song's way beyond its resolution, within it,
        or the other way, counted as `counts` does, for the guidance and for the random edits of
        the same size (`control_*`). A judge likely reads a change of a face it already reads as
        the song's emotion partly as a return toward no emotion, whatever the change (FINDINGS.md, "Not
        right yet"); these rows say where the guidance's counts come from, and whether it beats a
        random change there."""
        rows = []
        for polarity in ("positive", "negative"):
            songs = [i for i, p in enumerate(self.polarities) if p == polarity]
            if not songs:
                continue
            sides = np.array(self.verdicts(self.start_readings[songs]))
            shifts, control = self.shifts[songs].flatten(), self.control_shifts[songs].flatten()
            for side, verdict in START_SIDES.items():
                chosen = torch.from_numpy(sides == verdict)
                c, r = self._count(shifts[chosen]), self._count(control[chosen])
                rows.append(dict(dataset=self.label, judge=_judge_name(self.pipe), polarity=polarity, start=side,
                                 results=c["read"], toward=c["toward"], within=c["within"], against=c["against"],
                                 mean_shift=_mean(shifts[chosen]), control_toward=r["toward"],
                                 control_within=r["within"], control_against=r["against"],
                                 control_mean_shift=_mean(control[chosen])))
        return rows

    @functools.cached_property
    def _changes(self) -> torch.Tensor:
        """(songs, n) grey levels each result changed by; computed once, as `shifts`."""
        return torch.stack([metrics.pixel_change(self.starts, images) for images in self.images])

    def _mean_face_distance(self, song: int | None) -> float:
        d = self.face_distances
        return float("nan") if d is None else round(float(d.mean() if song is None else d[song].mean()), 3)

    def pixel_change(self, song: int | None = None) -> torch.Tensor:
        """Grey levels (of 255) that each start image changed by for `song` ((n,)), or for every
        song ((songs * n,)): how much the guidance changed what a viewer sees."""
        return self._changes.flatten() if song is None else self._changes[song]

    def changes(self, top: int = 5) -> list[dict]:
        """What the judge saw move besides valence: per polarity of the songs, the `top`
        components whose mean change over that polarity's songs and starts is largest, each with
        its t statistic (mean over standard error; |t| > 2: the same sign on most starts) and the
        number of results it was read on (`results`: songs times starts, less the unread). A
        valence weighs some of the judge's readings in one number; the others (which expression
        rose, which fell; a scene's arousal) say what changed."""
        rows = []
        for polarity in ("positive", "negative"):
            songs = [i for i, p in enumerate(self.polarities) if p == polarity]
            if not songs:
                continue
            moved = []
            for name, reading in self.components.items():
                change = (reading[[1 + i for i in songs]] - reading[0]).flatten()
                change = change[~change.isnan()]
                if len(change) < 2:
                    continue
                mean, error = float(change.mean()), float(change.std() / math.sqrt(len(change)))
                moved.append(dict(dataset=self.label, judge=_judge_name(self.pipe), polarity=polarity, reading=name,
                                  mean_change=round(mean, 3),
                                  t=round(mean / error, 1) if error > 0 else float("nan"), results=len(change)))
            rows += sorted(moved, key=lambda r: -abs(r["mean_change"]))[:top]
        return rows

    def extremes(self, song: int) -> list[tuple[str, int]]:
        """The start images of the lowest, the (lower) median and the highest shift toward the
        song, as (which, index); empty when the judge read none."""
        shift = self.shifts[song]
        read = [int(i) for i in torch.argsort(shift) if not shift[i].isnan()]
        return list(zip(("lowest", "median", "highest"), (read[0], read[(len(read) - 1) // 2], read[-1]))) \
            if read else []


def start_study(pipe: Pipeline, items: list[Sample], n_starts: int = 16, seed: int | None = None,
                method: str = "emostyle", run_dir: str | Path = "runs/manual", label: str = "",
                progress: bool = True, latents: torch.Tensor | None = None) -> StartStudy:
    """Guide the same `n_starts` random start images toward each song with `method`, targets as
    the pipeline builds them (identity loss and regulariser as the profile sets them), and read
    them all with the profile's judge. A song's known lyrics (`Sample.lyrics`) stand in for its
    transcript, so that a transcription slip does not count against the guidance; songs
    without them are transcribed. The judge's resolution is the largest change it reads for a
    one-pixel shift of any start: more starts can only widen it. `latents`: the starts' latents
    (n_starts is then their number); None: drawn with `seed`."""
    from tqdm.auto import tqdm

    if pipe.judge is None:
        raise ValueError(f"{label or pipe.config.profile}: the start study needs a judge "
                         f"(scoring.judge is none or its model is missing: {'; '.join(pipe.notes) or 'no notes'})")
    n_starts = n_starts if latents is None else len(latents)
    if n_starts < 2:
        raise ValueError(f"n_starts must be at least 2, got {n_starts}")
    base = pipe.config.seed if seed is None else seed
    if latents is None:
        latents = pipe.generator.sample(n_starts, torch.Generator().manual_seed(base))
    with torch.no_grad():
        starts = pipe.generator.render(latents)
    readings = [metrics.judge_readings(starts, pipe.judge)]
    before = readings[0]["valence"]
    resolution = metrics.judge_resolution(starts, pipe.judge, base=before)
    if math.isnan(resolution):
        raise ValueError(f"{label or pipe.config.profile}: the judge ({pipe.judge.name}) read none of the "
                         f"{n_starts} start images; draw others (seed) or choose another scoring.judge")
    polarities, read, pulls, images, control, persons = [], [], [], [], [], []
    recognizer = build_face_recognizer(pipe.config, str(pipe.generator.device))
    for s in tqdm(items, desc=f"start study {label}".strip(), disable=not progress):
        music = pipe.affective_music(s.path, Path(run_dir) / s.name, lyrics=s.lyrics, label=s.label)
        targets = pipe.targets([s.path], [music.guiding_wav], [music.transcript.text or s.label])
        torch.manual_seed(base)
        run = pipe.guide(latents, targets, method=method, progress=False)
        polarities.append(s.direction(music.polarity.emotion))
        read.append(music.polarity.caption())
        pulls.append(metrics.target_valences(targets, pipe.guidance_space, pipe.subject))
        readings.append(metrics.judge_readings(run.images, pipe.judge))
        images.append(run.images.detach().cpu())
        edited = random_edit(pipe.generator, latents, starts, metrics.pixel_change(starts, run.images),
                             _control_draw(base, s.path))
        control.append(metrics.judge_valence(edited, pipe.judge))
        if recognizer is not None:
            persons.append(metrics.face_distance(run.images, starts, recognizer))
    if all(p == "neutral" for p in polarities):
        raise ValueError("no song has a polarity (sounds without lyrics ask for no direction): nothing to count; "
                         "give songs with lyrics")
    stacked = {k: torch.stack([r[k] for r in readings]) for k in readings[0]}  # (1 + songs, n) each
    after = stacked.pop("valence")[1:]
    return StartStudy(label, pipe, list(items), polarities, resolution, before, after,
                      starts.cpu(), torch.stack(images), torch.stack(control), stacked,
                      torch.stack(persons) if persons else None, read, pulls)


def _control_draw(seed: int, song: Path) -> torch.Generator:
    """The random directions of a song's control, drawn from the seed and the song's content: the
    same whichever songs are studied beside it, and in whatever order (one draw shared by the
    songs in turn gave a song other directions when another was added before it)."""
    digest = hashlib.sha256(f"{seed}:{file_sha256(song)}".encode()).hexdigest()
    return torch.Generator().manual_seed(int(digest[:15], 16))


def retrieved_study(pipe: Pipeline, items: list[Sample], n_starts: int = 8, seed: int | None = None,
                    method: str = "emostyle", run_dir: str | Path = "runs/manual", label: str = "",
                    progress: bool = True) -> dict[str, StartStudy]:
    """`start_study` from the starts a user gets: each song's own retrieved image, for
    `n_starts` retrieval seeds (`seed * 1000 + 100 + k`, apart from the figures' `seed * 1000 + i`);
    a study per song, since no two songs start from the same images."""
    base = pipe.config.seed if seed is None else seed
    audio = {s.name: pipe.retrieval_space.encode_audio(s.path) for s in items}  # each song encoded once
    chosen = {s.name: [] for s in items}
    for k in range(n_starts):  # each seed's candidates are read once and ranked for every song
        candidates = pipe.read_candidates(seed=base * 1000 + 100 + k, progress=False)
        for s in items:
            chosen[s.name].append(rank(candidates, pipe.retrieval_space, audio[s.name]).best_latent)
    return {s.name: start_study(pipe, [s], seed=base, method=method, run_dir=run_dir, label=label,
                                progress=progress, latents=torch.cat(chosen[s.name])) for s in items}


@dataclass
class RetrievalSets:
    """Each song's retrieved image over several candidate sets, read by the judge, which did not
    rank them: does a happy song retrieve a happier face than a sad one, set after set, and not
    only on the one set a figure shows?"""

    songs: list[str]
    emotions: list[str]  # what each song's choice is counted toward: its stated emotion, else its lyrics' polarity
    seeds: list[int]  # the candidate sets' seeds; the first is the retrieval figure's
    chosen: torch.Tensor  # (sets, songs) the index of each song's choice in its set
    valence: torch.Tensor  # (sets, songs) the judge's valence of each song's choice; NaN: unread
    judge: str
    images: torch.Tensor  # (sets, songs, 3, H, W) each song's choice, in [-1, 1]

    def side(self, emotion: str) -> list[int]:
        """The indices of the songs counted toward `emotion`."""
        return [i for i, e in enumerate(self.emotions) if e == emotion]

    def sides(self, k: int) -> tuple[float, float]:
        """Set k's mean judge valence of the happy songs' choices and of the sad songs' (NaN: none)."""
        def mean(emotion):
            values = self.valence[k, self.side(emotion)]
            values = values[~values.isnan()]
            return float(values.mean()) if len(values) else float("nan")

        return mean("positive"), mean("negative")

    def happier(self) -> tuple[int, int]:
        """(sets where the happy songs' choices read happier than the sad songs', sets with both read)."""
        pairs = [self.sides(k) for k in range(len(self.seeds))]
        compared = [(h, s) for h, s in pairs if h == h and s == s]
        return sum(h > s for h, s in compared), len(compared)

    def rows(self) -> list[dict]:
        """A row per set and song, for `write_rows`."""
        return [{"set": k, "seed": seed, "song": song, "emotion": emotion, "chosen": int(self.chosen[k, i]),
                 "judge": self.judge, "judge_valence": None if v != v else round(v, 3)}
                for k, seed in enumerate(self.seeds)
                for i, (song, emotion) in enumerate(zip(self.songs, self.emotions))
                for v in [float(self.valence[k, i])]]


def retrieval_sets(pipe: Pipeline, items: list[Sample], n_sets: int = 8, seed: int | None = None,
                   run_dir: str | Path = "runs/manual", progress: bool = True) -> RetrievalSets:
    """Rank `n_sets` candidate sets (seeds `seed` to `seed + n_sets - 1`; the first is the
    retrieval figure's) against every song, and read each song's choice by the pipeline's judge.
    A song counts toward its stated emotion, else toward its lyrics' polarity (the affective
    stage's, as Figures 2-4 read it; its files in `run_dir`)."""
    from tqdm.auto import tqdm

    if pipe.judge is None:
        raise ValueError(f"the {pipe.config.profile} profile has no judge to read the retrieved images (scoring.judge)")
    if n_sets < 1:
        raise ValueError(f"n_sets must be at least 1, got {n_sets}")
    emotions = [s.emotion or pipe.affective_music(s.path, Path(run_dir) / s.name, label=s.stand_in).polarity.emotion
                for s in items]
    base = pipe.config.seed if seed is None else seed
    audio = [pipe.retrieval_space.encode_audio(s.path) for s in items]  # each song encoded once
    seeds, chosen, valence, images = list(range(base, base + n_sets)), [], [], []
    for k in tqdm(seeds, desc="retrieval sets", disable=not progress):
        candidates = pipe.read_candidates(seed=k, progress=False)
        best = torch.tensor([rank(candidates, pipe.retrieval_space, a).best for a in audio])
        faces, which = best.unique(return_inverse=True)  # the judge reads each chosen face once
        chosen.append(best)
        valence.append(metrics.judge_valence(candidates.images[faces], pipe.judge)[which])
        images.append(candidates.images[best])
    return RetrievalSets([s.name for s in items], emotions, seeds, torch.stack(chosen), torch.stack(valence),
                         pipe.judge.name, torch.stack(images))


def retrieval_sets_figure(result: RetrievalSets, note: str | None = None):
    """Two figures: the judge's valence of each song's choice, a column per candidate set (happy
    songs' choices left, sad songs' right, their means as bars; the title counts the sets where
    the happy songs' choices read happier), and the faces themselves, a column per set: the face
    most of the happy songs chose above the one most of the sad songs chose."""
    import matplotlib.pyplot as plt

    from .figures import fit, image_grid, note_height, signed, stamp

    n = len(result.seeds)
    fig, ax = plt.subplots(figsize=(max(6.5, 0.75 * n + 1.6), 3.6))
    for k in range(n):
        for (emotion, side, colour, marker, dx), mean in zip(_RETRIEVAL_SIDES, result.sides(k)):
            songs = result.side(emotion)
            values = result.valence[k, songs].numpy()
            jitter = np.random.default_rng(k).uniform(-0.06, 0.06, len(values))  # fixed: the figure does not change
            names = ", ".join(result.songs[i] for i in songs)  # whose songs: a user's figure names them
            ax.scatter(k + dx + jitter, values, c=colour, marker=marker, s=22, zorder=2,
                       label=fit(f"{side} songs' choices ({emotion}): {names}", 2.4, 8) if k == 0 else None)
            if mean == mean:
                ax.plot([k + dx - 0.14, k + dx + 0.14], [mean, mean], color=colour, lw=2.2, zorder=3)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(range(n), [f"{s}\n(retrieval\nfigure's)" if k == 0 else str(s) for k, s in enumerate(result.seeds)],
                  fontsize=8)
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_xlabel("candidate set (seed)", fontsize=9)
    ax.set_ylabel("judge's valence of the\nchosen face (saved image)", fontsize=9)
    ax.tick_params(axis="y", labelsize=8)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    won, compared = result.happier()
    title = (f"Retrieval over {n} candidate sets: the happy songs' choice reads happier than the sad songs' "
             f"in {won} of {compared} sets (bars: each side's mean; judge: {result.judge})")
    ax.set_title(fit(title, fig.get_size_inches()[0] * 0.75, 10), fontsize=10)
    fig.tight_layout(rect=(0, note_height(fig, note), 1, 1))
    stamp(fig, note)
    rows, captions, labels = [], [], []
    for emotion, side, *_ in _RETRIEVAL_SIDES:
        songs = result.side(emotion)
        if not songs:
            continue
        row, caption = [], []
        for k in range(n):
            picks = result.chosen[k, songs].tolist()
            face = max(picks, key=picks.count)  # the face most of this side's songs chose (the first, if tied)
            i = songs[picks.index(face)]
            row.append(result.images[k, i])
            caption.append(f"judge {signed(result.valence[k, i])}\n{picks.count(face)} of {len(songs)} songs")
        rows.append(row), captions.append(caption), labels.append(f"{side} songs' choice")
    faces = None
    if rows:
        faces = image_grid(rows, row_labels=labels, captions=captions, note=note, cell=1.3,
                           col_labels=[f"set {s}" + (" (retrieval figure's)" if k == 0 else "")
                                       for k, s in enumerate(result.seeds)],
                           title=f"Retrieval over {n} candidate sets: the face most of each side's songs chose "
                                 f"(judge: {result.judge})")
    return fig, faces


_RETRIEVAL_SIDES = (("positive", "happy", "tab:orange", "^", -0.17), ("negative", "sad", "tab:blue", "v", 0.17))


def random_edit(generator: Generator, latents: torch.Tensor, starts: torch.Tensor, grey_levels: torch.Tensor,
                rng: torch.Generator, halvings: int = 20) -> torch.Tensor:
    """Images of `latents` (rendered as `starts`) each moved along a random latent direction
    until it differs from its start by `grey_levels` (n,) once saved as 8-bit images: a change
    as large as the guidance's that seeks no emotion. The direction is the one a random goal
    pulls the latent: the gradient of the rendered images' product with Gaussian noise (drawn
    with `rng`), so that it moves only what guidance can move (not the photo grader's choice
    of photo). The step is found by bisection (`halvings` times, after doubling from the
    latent's own length until every image changed enough); the result changes by at least
    `grey_levels`, within a step of 2^-halvings of the bracket."""
    shape = (-1,) + (1,) * (latents.dim() - 1)
    noise = torch.randn(starts.shape, generator=rng).to(starts)
    with torch.enable_grad():
        latent = latents.detach().clone().requires_grad_(True)
        u, = torch.autograd.grad((generator.render(latent) * noise).sum(), latent)
    with torch.no_grad():
        u = u / u.flatten(1).norm(dim=1).clamp_min(1e-12).view(shape)

        def edit(step):
            images = generator.render(latents + step.to(latents).view(shape) * u)
            return images, metrics.pixel_change(starts, images) >= grey_levels

        low, high = torch.zeros(len(latents)), latents.flatten(1).norm(dim=1).cpu()
        for _ in range(16):  # 2^16 latent lengths: far past any image the generator draws
            _, far = edit(high)
            if far.all():
                break
            low, high = torch.where(far, low, high), torch.where(far, high, 2 * high)
        for _ in range(halvings):
            middle = (low + high) / 2
            _, far = edit(middle)
            low, high = torch.where(far, low, middle), torch.where(far, middle, high)
        return edit(high)[0].cpu()


STUDY_ROW = 5  # songs per row of the start study's panels


def study_figure(studies: dict[str, StartStudy], note: str | None = None):
    """A figure with a panel per dataset and every start's shift toward each song (a dot per
    start image; the grey band is the judge's resolution; counts toward / within / against
    above), and per dataset a figure (a page each) of each song's start images of the lowest,
    the median and the highest shift, before and after, each captioned with its verdict:
    returns (the first, {dataset: its figure}). `note`: the first's; where given, each dataset's
    figure carries its own pipeline's note instead."""
    import matplotlib.pyplot as plt

    from .figures import fit, image_grid, signed

    # A row of panels per dataset and up to STUDY_ROW songs: 1.25 in each, so that a row stays about a
    # page wide and its 8 pt text reads as drawn (ten songs in one row made a 14 in figure whose text,
    # shrunk to a page, was 4 pt).
    per_row = min(STUDY_ROW, max(len(st.items) for st in studies.values()))
    panels = [(label, st, range(first, min(first + STUDY_ROW, len(st.items))))
              for label, st in studies.items() for first in range(0, max(1, len(st.items)), STUDY_ROW)]
    dots, axes = plt.subplots(len(panels), 1, figsize=(max(6.5, 1.25 * per_row + 1.4), 2.9 * len(panels) + 1.0),
                              squeeze=False)
    for ax, (label, st, shown) in zip(axes[:, 0], panels):
        extra = 0  # lines of counts above some song past the first two: the title moves up for them
        for x, i in enumerate(shown):
            ax.fill_between([x - 0.38, x + 0.38], -st.resolution, st.resolution, color="0.88", zorder=0)
            for shifts, centre, spread, hollow in ((st.shifts, -0.1, 0.16, False), (st.control_shifts, 0.27, 0.06, True)):
                colour = [VERDICT_COLOURS.get(v, "none") for v in st.verdicts(shifts[i])]  # unread: not drawn
                jitter = np.random.default_rng(i).uniform(-spread, spread, shifts.shape[1])  # fixed: the figure does not change
                ax.scatter(x + centre + jitter, shifts[i].numpy(), s=12, zorder=2, linewidths=0.9,
                           **(dict(facecolors="none", edgecolors=colour) if hollow else dict(c=colour)))
            c, r, unmoved = st.counts(i), st.counts(i, control=True), st.unmoved(i)
            lines = [f"{c['toward']}/{c['within']}/{c['against']}", f"random {r['toward']}/{r['within']}/{r['against']}"]
            lines += [f"unmoved {unmoved}"] if unmoved else []
            lines += [f"unread {c['unread']}, random {r['unread']}"] if c["unread"] or r["unread"] else []
            if st.polarities[i] == "neutral":
                lines = ["no polarity"]
            extra = max(extra, len(lines) - 2)
            ax.text(x, 1.01, "\n".join(lines), ha="center", va="bottom", fontsize=8, transform=ax.get_xaxis_transform())
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xticks(range(len(shown)), [st.song_label(i) for i in shown], fontsize=8)
        ax.set_xlim(-0.6, per_row - 0.4)
        part = "" if len(shown) == len(st.items) else f" (song {shown.stop} of {len(st.items)})" if len(shown) == 1 \
            else f" (songs {shown.start + 1}-{shown.stop} of {len(st.items)})"
        ax.set_title(fit(f"{label}{part}: {len(st.before)} starts, resolution {st.resolution:.3f}; judge: "
                         f"{_judge_name(st.pipe)}", ax.get_position().width * dots.get_size_inches()[0], 9),
                     fontsize=9, pad=30 + 11 * extra)
        ax.tick_params(axis="y", labelsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("valence shift toward the song\n(judge, saved images)", fontsize=9)
    _verdicts_on_top(dots, "Start study: every start image's valence shift toward each song, read by the judge",
                     "moved beyond the judge's resolution (grey band) or within it; filled: the guidance; hollow: "
                     "the\nsame start moved as far in a random latent direction; above each song: toward / within / "
                     f"against\n(unmoved: the guidance left the start as it was, within {UNMOVED} grey levels on "
                     "average;\nunread: results the judge could not read, e.g. no face found)", note, 8, 11)
    examples = {}
    for label, st in studies.items():
        rows, labels, captions = [], [], []
        for i in range(len(st.items)):
            picks, verdicts = st.extremes(i), st.verdicts(st.shifts[i])
            if not picks:  # no polarity, or nothing read: no direction to rank the starts by
                continue
            rows.append([x for _, k in picks for x in (st.starts[k], st.images[i, k])])
            captions.append([c for which, k in picks for c in (
                f"judge {signed(st.before[k])}",
                f"judge {signed(st.after[i, k])}\n{which}: {signed(st.shifts[i, k])} {verdicts[k]}")])
            labels.append(st.song_label(i))
        if rows:
            examples[label] = image_grid(
                rows, row_labels=labels, captions=captions, cell=1.3,
                note=st.pipe.note if note and st.pipe is not None else note,  # this dataset's parts only
                col_labels=["start", "lowest", "start", "median", "start", "highest"],
                title=f"{label}: each song's lowest, median and highest shift toward it, before and after "
                      f"(judge: {_judge_name(st.pipe)})")
    return dots, examples


def start_side_figure(studies: dict[str, StartStudy], note: str | None = None):
    """A row per dataset, a column per polarity: each result's shift toward its song (y) over
    its start's own reading signed toward the song (x), both as the judge reads them; filled
    marks the guidance's, hollow the random edits of the same size, a marker per song (`SONG_MARKERS`,
    named in the panel's title; a song's marks sit a little apart from the others' so that equal
    results stay visible); the grey bands are the judge's resolution. Above each band of start
    readings (`StartStudy.by_start`): the counts toward / within / against, of the guidance and
    of the random edits."""
    import matplotlib.pyplot as plt

    from .figures import fit

    polarities = [p for p in ("positive", "negative") if any(p in st.polarities for st in studies.values())]
    fig, axes = plt.subplots(len(studies), max(1, len(polarities)), figsize=(7.0, 3.3 * len(studies) + 1.5),
                             squeeze=False)
    for row, (label, st) in zip(axes, studies.items()):
        counts = {(r["polarity"], r["start"]): r for r in st.by_start()}
        for ax, polarity in zip(row, polarities):
            songs = [i for i, p in enumerate(st.polarities) if p == polarity]
            res = st.resolution
            ax.axhspan(-res, res, color="0.88", zorder=0)
            ax.axvspan(-res, res, color="0.93", zorder=0)
            ax.axhline(0, color="k", lw=0.6)
            if not songs:
                ax.set_title(fit(f"{label}: no {polarity} song", 3.2, 8), fontsize=8)
                continue
            read = st.start_readings[songs].abs()
            read = read[~read.isnan()]
            # Symmetric about the judge's no emotion, so that each band of start readings is in sight.
            reach = max(2 * res, 1.08 * float(read.max()) if len(read) else 0.0)
            for k, song in enumerate(songs):
                x = st.start_readings[song] + (k - (len(songs) - 1) / 2) * 0.02 * reach
                marker = SONG_MARKERS[k % len(SONG_MARKERS)][0]
                for shifts, hollow in ((st.shifts[song], False), (st.control_shifts[song], True)):
                    colour = [VERDICT_COLOURS.get(v, "none") for v in st.verdicts(shifts)]  # unread: not drawn
                    ax.scatter(x.numpy(), shifts.numpy(), s=14, marker=marker, zorder=2 if hollow else 3,
                               linewidths=0.9,
                               **(dict(facecolors="none", edgecolors=colour) if hollow else dict(c=colour)))
            ax.set_xlim(-reach, reach)
            # Each band's counts over the middle of its band; the outer two at least 0.6 reach out, so that
            # a narrow middle band's counts do not run into theirs (0.6 reach lies past the band: reach >= 2 res).
            side = max((reach + res) / 2, 0.6 * reach)
            for band, where in zip(START_SIDES, (side, 0.0, -side)):
                c = counts[(polarity, band)]
                ax.text(where, 1.01, f"{band}\n{c['toward']}/{c['within']}/{c['against']}\n"
                        f"random {c['control_toward']}/{c['control_within']}/{c['control_against']}",
                        ha="center", va="bottom", fontsize=6.5, transform=ax.get_xaxis_transform())
            names = ", ".join(f"{SONG_MARKERS[k % len(SONG_MARKERS)][1]}\u00a0{st.items[i].name}"  # kept together
                              for k, i in enumerate(songs))
            title = f"{label}, {polarity} songs\n" + fit(f"{len(st.before)} starts each: {names}",
                                                           ax.get_position().width * fig.get_size_inches()[0], 8)
            ax.set_title(title, fontsize=8, pad=34)
            ax.set_xlabel("the start's valence signed toward the song (judge)\n"
                          "> 0: it already read as the song's emotion", fontsize=8)
            ax.tick_params(labelsize=7)
        row[0].set_ylabel("valence shift toward the song\n(the judge, on the saved images)", fontsize=8)
    _verdicts_on_top(fig, "Start study by where each start lay: each result's shift toward its song over its "
                     "start's reading", "each result at its start's own reading (x) and its shift toward the song "
                     "(y), a marker per song; grey bands:\nthe judge's resolution; above each band of start readings: "
                     "toward / within / against, of the guidance and of the random edits", note, 7, 9)
    return fig


def _verdicts_on_top(fig, title: str, legend_title: str, note: str | None, size: float, title_size: float) -> None:
    """The start study's figures' head and foot: the title, under it the legend of the verdicts (a
    filled dot each, and the hollow dot of the random edits), the panels laid out below the
    legend, and the note at the foot. `size`: the legend's points."""
    from matplotlib.lines import Line2D

    from .figures import note_height, stamp

    handles = [Line2D([], [], ls="", marker="o", color=c, label=v) for v, c in VERDICT_COLOURS.items()]
    handles.append(Line2D([], [], ls="", marker="o", markerfacecolor="none", color="0.45",
                          label="random latent edit, as large"))
    height = fig.get_size_inches()[1]
    legend = fig.legend(handles=handles, loc="upper center", fontsize=size, ncol=4, frameon=False,
                        title_fontsize=size, bbox_to_anchor=(0.5, 1 - 0.3 / height), title=legend_title)
    below = legend.get_window_extent(fig.canvas.get_renderer()).y0 / fig.bbox.height  # the legend's foot
    fig.tight_layout(rect=(0, note_height(fig, note), 1, below - 0.05 / height))  # the title and the legend above
    # after the layout, which would otherwise keep the title's room a second time, under the legend
    fig.suptitle(title, fontsize=title_size, y=1 - 0.05 / height, va="top")
    stamp(fig, note)


def _item_label(item: Sample, music, space=None) -> str:
    """A row's song, the polarity read from its lyrics, its stated emotion where that differs, and
    how the space's audio reader heard it (a space that says: `AffectSpace.audio_caption`)."""
    stated = f"\nstated: {item.emotion}" if item.emotion and item.emotion != music.polarity.emotion else ""
    heard = f"\n{space.audio_caption(item.path)}" if hasattr(space, "audio_caption") else ""
    return f"{item.name}\n{music.polarity.caption()}{stated}{heard}"


def changes_figure(studies: dict[str, StartStudy], top: int = 6, note: str | None = None):
    """A row per dataset, a column per polarity: the judge's components that moved most over
    that polarity's songs and starts (`StartStudy.changes`), a bar per component with whiskers
    of twice its standard error, labelled with its t statistic."""
    import matplotlib.pyplot as plt

    from .figures import note_height, stamp

    polarities = [p for p in ("positive", "negative") if any(p in st.polarities for st in studies.values())]
    changes = {label: {p: [r for r in st.changes(top) if r["polarity"] == p] for p in polarities}
               for label, st in studies.items()}
    bars = [max(1, *(len(rows) for rows in c.values())) for c in changes.values()]  # a row as tall as its bars
    fig, axes = plt.subplots(len(studies), len(polarities), squeeze=False,
                             gridspec_kw=dict(height_ratios=[b + 2.5 for b in bars]),
                             figsize=(3.5 * len(polarities) + 0.2, 0.3 * sum(b + 2.5 for b in bars) + 1.2),
                             layout="constrained")  # places the two-line title without a gap under it
    for ax_row, (label, c), n in zip(axes, changes.items(), bars):
        for ax, (polarity, rows) in zip(ax_row, c.items()):
            if rows:
                _change_bars(ax, f"{label}: {polarity} songs", rows, n)
            else:
                ax.axis("off")
    fig.suptitle("What else the judge saw move: its readings that changed most\n"
                 "(whiskers: 2 standard errors; |t| > 2: the same way on most starts)", fontsize=10)
    fig.get_layout_engine().set(rect=(0, note_height(fig, note), 1, 1 - note_height(fig, note)))
    stamp(fig, note)
    return fig


def _change_bars(ax, title: str, rows: list[dict], n: int) -> None:
    """One panel of `changes_figure`: `rows` of `StartStudy.changes` as bars, n bar places."""
    means = [r["mean_change"] for r in rows]
    errors = [2 * abs(r["mean_change"] / r["t"]) if r["t"] == r["t"] and r["t"] else 0 for r in rows]
    y = n - 1 - np.arange(len(rows))  # from the top down
    ax.barh(y, means, height=0.7, xerr=errors, color=["tab:blue" if m >= 0 else "tab:orange" for m in means],
            error_kw=dict(lw=0.8, capsize=2))
    ax.set_ylim(-0.5, n - 0.5)
    ax.set_yticks(y, [f"{r['reading']}  (t {r['t']:+.1f})" for r in rows], fontsize=8)
    ax.axvline(0, color="k", lw=0.6)
    ax.set_title(f"{title}, {rows[0]['results']} results", fontsize=9)
    ax.tick_params(axis="x", labelsize=8)
    ax.set_xlabel(textwrap.fill(f"mean change of each reading, in its own units, by {rows[0]['judge']} "
                                "on the saved images", 55), fontsize=8)


def stored_guidance(pipe: Pipeline, starts: torch.Tensor, targets: dict, method: str,
                    store: str | Path | None) -> GuidanceResult:
    """`pipe.guide` of `method` from `starts` toward `targets`, kept in `store` (None: not kept)
    under the hash of all it depends on: the kit's code, registry and profiles, the pipeline's
    configuration and the files it names, the start latents, the targets, torch's version, device
    and thread count (the order of float sums). Figures 2 and 4 and Table 1 guide the same songs from the same starts
    in separate notebooks: each reuses what another already ran. A stored result keeps only its
    last frame; it is written whole (a temporary file, then renamed), so a reader never sees
    half of one. Results are filed by the code's version, and storing one removes those of
    other versions (a run is about a megabyte: a changed kit would otherwise pile them up)."""
    if store is None:
        return pipe.guide(starts, targets, method=method, progress=False)
    from .manifest import keep, kept

    h = hashlib.sha256(pipe.stored_key(method))
    for name in ("start", *sorted(targets)):
        value = starts if name == "start" else targets[name]
        h.update(name.encode() + (b"-" if value is None else value.detach().cpu().contiguous().numpy().tobytes()))
    run = kept(store, h.digest(), starts.device)
    if run is None:
        run = pipe.guide(starts, targets, method=method, progress=False)
        run = dataclasses.replace(run, frames=run.frames[-1:])  # as it will read when reused
        keep(store, h.digest(), run)
    return run


class Experiment:
    """The pipelines of a profile's datasets, and where a notebook writes its outputs."""

    def __init__(self, profile: str = "offline", overrides: dict | None = None,
                 figures_dir: str | Path = "figures", run_dir: str | Path = "runs/manual"):
        self.figures_dir, self.run_dir = Path(figures_dir), Path(run_dir)
        self.figures_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.pipe = Pipeline.from_config(profile, overrides)
        self.config, self._overrides = self.pipe.config, overrides
        self.store: Path | None = home() / "cache" / "guidance"  # run_methods' results (stored_guidance); None: not kept

    @functools.cached_property
    def datasets(self) -> dict[str, Pipeline]:
        """The paper shows faces (FFHQ) and landscapes (LHQ): one pipeline per dataset of the
        profile, built when first asked for."""
        return {label: Pipeline.from_config(c) for label, c in dataset_configs(self.config, self._overrides).items()}

    @property
    def note(self) -> str:
        """The profile notes of every dataset, for the face of a figure: the phrases every
        dataset shares once, then each dataset's own ("faces: ... | scenes: ...")."""
        parts = {label: p.note_parts for label, p in self.datasets.items()}
        shared = [x for x in next(iter(parts.values())) if all(x in ps for ps in parts.values())]
        own = [f"{label}: " + " · ".join(x for x in ps if x not in shared) for label, ps in parts.items()
               if any(x not in shared for x in ps)]
        return " | ".join(x for x in [" · ".join(shared), *own] if x)

    @property
    def judges(self) -> str:
        """Which judge reads each dataset ("FFHQ-style faces: ...; LHQ-style scenes: ..."), for
        the face of every table and figure whose emotion numbers it gives."""
        return "; ".join(f"{label}: {_judge_name(p)}" for label, p in self.datasets.items())

    def run_methods(self, items: list[Sample], methods: list[str], seed: int | None = None,
                    progress: bool = True) -> dict[str, MethodRuns]:
        """For each dataset: retrieve a start per item (one retrieval seed per item), guide all
        items at once with each method, and read every image by the judge and in the space.
        "emogen" among `methods` generates EmoGen's image from each song's emotion category
        (a panel that says so where its diffusion weights are missing)."""
        from tqdm.auto import tqdm

        out = {}
        with_emogen = "emogen" in methods
        methods = [m for m in methods if m != "emogen"]
        bar = tqdm(total=len(self.datasets) * len(methods), desc="methods", disable=not progress)
        for label, pipe in self.datasets.items():
            musics = [pipe.affective_music(s.path, self.run_dir / s.name, label=s.stand_in)
                      for s in items]
            base = pipe.config.seed if seed is None else seed
            starts = torch.cat([pipe.retrieve(s.path, seed=base * 1000 + i, progress=False).best_latent
                                for i, s in enumerate(items)])
            texts = [m.transcript.text or s.stand_in for s, m in zip(items, musics)]
            targets = pipe.targets([s.path for s in items], [m.guiding_wav for m in musics], texts)
            runs = {}
            for m in methods:
                bar.set_postfix_str(f"{label}: {METHODS[m].title}")
                runs[m] = stored_guidance(pipe, starts, targets, m, self.store)
                bar.update()
            result = MethodRuns(label, pipe, list(items), musics, runs, targets, {}, {})
            if with_emogen:
                result.emogen, result.emogen_captions, result.emogen_made = _emogen_column(pipe, musics, base)
            nothing = torch.full((len(items),), float("nan"))
            for name, images in result.columns.items():
                result.space[name] = metrics.space_valence(images, pipe.guidance_space, pipe.subject)
                result.judge[name] = (metrics.judge_valence(images, pipe.judge) if pipe.judge is not None
                                      else nothing)
            if pipe.judge is not None:
                resolution = metrics.judge_resolution(result.columns["input"], pipe.judge,
                                                      base=result.judge["input"])
                result.resolution = 0.0 if math.isnan(resolution) else resolution
            out[label] = result
        bar.close()
        return out

    def start_study(self, items: list[Sample], n_starts: int = 16, seed: int | None = None,
                    method: str = "emostyle", progress: bool = True) -> dict[str, StartStudy]:
        """`start_study` on every dataset of the profile (see there)."""
        return {label: start_study(pipe, items, n_starts, seed, method, self.run_dir / "music", label, progress)
                for label, pipe in self.datasets.items()}

    def retrieved_study(self, items: list[Sample], n_starts: int = 8, seed: int | None = None,
                        method: str = "emostyle", progress: bool = True) -> dict[str, dict[str, StartStudy]]:
        """`retrieved_study` on every dataset of the profile: {dataset: {song: its study}}."""
        return {label: retrieved_study(pipe, items, n_starts, seed, method, self.run_dir / "music", label, progress)
                for label, pipe in self.datasets.items()}

    def method_grid(self, items: list[Sample], methods: list[str], title: str, cell: float = 1.7,
                    seed: int | None = None, by_item: bool = True):
        """Figures 2-4: a row per item and a column per (dataset, method), the input first
        (`by_item`), or a row per (dataset, method) and a column per item. Under each image the
        judge's valence and, after it, the guidance space's. Returns the figure and the runs."""
        from .figures import image_grid, judge_note, signed

        runs = self.run_methods(items, methods, seed=seed)
        any_runs = next(iter(runs.values()))
        shown = {label: r.columns for label, r in runs.items()}  # EmoGen without its weights: the note says so

        def caption(r, name, i):
            text = f"judge {signed(r.judge[name][i])}\nspace {signed(r.space[name][i])}"
            return f"{r.emogen_captions[i]}\n{text}" if name == "emogen" else text

        if by_item:  # the datasets side by side, so that a song's row reads across both
            rows = [[images[i] for label in runs for images in shown[label].values()] for i in range(len(items))]
            captions = [[caption(r, name, i) for label, r in runs.items() for name in shown[label]]
                        for i in range(len(items))]
            labels = [_item_label(s, m, any_runs.pipe.guidance_space) for s, m in zip(items, any_runs.musics)]
            col_labels = [column_title(name) for label in runs for name in shown[label]]
            groups = [(label, len(columns)) for label, columns in shown.items()]
        else:
            rows = [list(images) for label in runs for images in shown[label].values()]
            captions = [[caption(r, name, i) for i in range(len(items))] for label, r in runs.items()
                        for name in shown[label]]
            labels = [f"{label}\n{column_title(name)}" for label in runs for name in shown[label]]
            col_labels = [_item_label(s, m, any_runs.pipe.guidance_space) for s, m in zip(items, any_runs.musics)]
            groups = []
        read = [r.judge[name][i] for r in runs.values() for name in r.columns for i in range(len(items))]
        note = f"{judge_note(self.judges, read)}\n{self.note}"
        if hasattr(any_runs.pipe.guidance_space, "audio_caption"):
            note += ("\naudio P = the pleasure the audio reader heard in the file (from every class it heard), and "
                     "what it heard: music, or the one sound class YAMNet scored highest")
        if any(r.emogen is not None and not r.emogen_made for r in runs.values()):
            wanted = "; ".join(f"{s.name}: {m.categories.explained}" for s, m in zip(items, any_runs.musics))
            note += ("\nEmoGen not shown: its Stable Diffusion 1.5 and mapping-network weights do not install from "
                     "PyPI (emostyle weights fetch stable-diffusion-v1-5; the mapper is unpublished, EmoGen issue #10); "
                     f"the categories it would be given: {wanted}")
        fig = image_grid(rows, row_labels=labels, col_labels=col_labels, captions=captions, title=title,
                         note=note, cell=cell, groups=groups)
        return fig, runs

    def score(self, items: list[Sample], methods: list[str], seeds: list[int], scorers: dict):
        """Table 1's records (a score per image and scorer) and the metrics table's records
        (alignment, identity, latent distance, and emotion by the judge and in the space; for
        faces, the person's change as a face-recognition network in no loss reads it)."""
        from .scoring import score_images
        from .scoring.emogen import load_emogen_metrics

        records, extra, emogen_metrics = [], [], {}
        for seed in seeds:
            for label, r in self.run_methods(items, methods, seed=seed).items():
                for m, images in r.columns.items():
                    for scorer, values in score_images(images, scorers).items():
                        records += [dict(method=m, dataset=label, scorer=scorer, seed=seed, score=float(v))
                                    for v in values]
                space = r.pipe.guidance_space
                recognizer = build_face_recognizer(r.pipe.config, str(r.pipe.generator.device))
                for m, run in r.runs.items():
                    with torch.no_grad():
                        emb = space.encode_image(run.images)
                    values = {f"align-{k}": metrics.alignment(emb, t, space) for k, t in r.targets.items()
                              if t is not None}
                    values["latent-distance"] = metrics.latent_distance(run.latents, run.start_latents)
                    values["pixel-change"] = r.pixel_change(m)
                    for reader, suffix in (("judge", ""), ("space", "-space")):
                        values[f"valence-shift{suffix}"] = r.shift(m, reader)
                        values[f"emotion-agreement{suffix}"] = r.agreement(m, reader)
                    if r.pipe.identity is not None:
                        values["identity"] = metrics.identity_similarity(run.images, run.start_images, r.pipe.identity)
                    if recognizer is not None:
                        values["face-distance"] = metrics.face_distance(run.images, run.start_images, recognizer)
                    extra += [dict(method=m, dataset=label, scorer=k, seed=seed, score=float(v))
                              for k, vs in values.items() for v in torch.as_tensor(vs).flatten()
                              if not torch.isnan(v)]
                if r.pipe.judge is not None:  # what the judge's agreement could not tell from a one-pixel shift
                    extra.append(dict(method="input", dataset=label, scorer="judge-resolution", seed=seed,
                                      score=r.resolution))
                if label not in emogen_metrics:  # loaded once per dataset (None offline, warned once)
                    emogen_metrics[label] = load_emogen_metrics(r.pipe.config)
                emogen = emogen_metrics[label]
                if emogen is not None:  # EmoGen's classifier judges every method (paper profiles)
                    categories = [mu.categories.top for mu in r.musics]
                    for m, images in r.columns.items():
                        if m != "input":
                            emogen.add(images, categories, method=m, dataset=label, seed=seed)
        for emogen in emogen_metrics.values():
            if emogen is not None:
                extra += emogen.records()
        return records, extra


def ablation_claims(runs: dict[str, MethodRuns], level: float = 0.95) -> list[dict]:
    """The paper's claims about Figure 4 (section 4.3.3), checked on these runs per dataset.

    Each claim compares an ablation with full EmoStyle item by item (the same start and song),
    by the judge (emotion) and the saved images (fidelity):
    - w/o Audio: "a noticeable decline in image fidelity": it changes the image more;
    - w/o Music: "subdued emotional expressions": its signed valence shift is smaller;
    - w/o Text: "errors in emotional judgment": it agrees with the song's polarity less often
      (moves the judge's valence the song's way beyond the judge's resolution).
    A verdict needs the t interval (`level`) of the mean paired difference to lie on one side
    of 0 (a paired t-test): with a few songs a difference of a few thousandths is no evidence
    either way. Rows: dataset, claim, measure, read_by (the judge, or the saved pixels), n (items
    with a reading in both columns: the judge may find no face, a neutral song has no polarity),
    the two means, the interval of (ablation - EmoStyle) and the verdict."""
    from scipy.stats import t as student

    rows = []
    for label, r in runs.items():
        if "emostyle" not in r.runs:
            continue

        checks = (("wo-audio", "w/o Audio changes the image more (lower fidelity)", "change", r.pixel_change, 1),
                  ("wo-music", "w/o Music moves the emotion less (subdued)", "shift", r.shift, -1),
                  ("wo-text", "w/o Text agrees with the polarity less often (beyond the judge's resolution)",
                   "agreement", r.agreement, -1))
        for m, claim, name, measure, sign in checks:
            if m not in r.runs:
                continue
            full, ablated = (measure(x).float().numpy() for x in ("emostyle", m))
            keep = ~(np.isnan(full) | np.isnan(ablated))
            row = dict(dataset=label, claim=claim, measure=name,
                       read_by="the saved pixels" if name == "change" else _judge_name(r.pipe), n=int(keep.sum()))
            if keep.sum() < 2:
                rows.append(dict(row, emostyle=float("nan"), ablation=float("nan"), interval="",
                                 verdict="not measurable (under two items with a judge reading)"))
                continue
            difference = (ablated[keep] - full[keep]).astype(np.float64)
            half = student.ppf((1 + level) / 2, len(difference) - 1) * difference.std(ddof=1) / np.sqrt(len(difference))
            low, high = difference.mean() - half, difference.mean() + half
            if name == "agreement":  # a difference of two shares lies in [-1, 1]
                low, high = max(low, -1.0), min(high, 1.0)
            if not difference.any():
                verdict = "no difference in this run"
            elif (sign > 0 and low > 0) or (sign < 0 and high < 0):
                verdict = "agrees with the paper"
            elif (sign > 0 and high < 0) or (sign < 0 and low > 0):
                verdict = "DIFFERS from the paper"
            else:
                verdict = f"no clear difference ({level:.0%} interval holds 0)"
            # Three decimals throughout, as text: a table that prints 0.04 beside 0.043 reads as two precisions.
            rows.append(dict(row, emostyle=f"{float(full[keep].mean()):.3f}",
                             ablation=f"{float(ablated[keep].mean()):.3f}",
                             interval=f"[{low:+.3f}, {high:+.3f}]", verdict=verdict))
    return rows


def _emogen_column(pipe: Pipeline, musics: list, seed: int) -> tuple[torch.Tensor, list[str], bool]:
    """EmoGen's image per song from its emotion category: images (B, 3, H, W), captions, and
    whether they were generated (False: panels saying its weights are missing)."""
    from .emogen import UNAVAILABLE, column_image

    made = [column_image(m.categories.top, pipe.config, seed=seed) for m in musics]
    images = torch.stack([torch.from_numpy(a.copy()).permute(2, 0, 1).float() / 127.5 - 1 for a, _ in made])
    captions = ["not run\n(see the note)" if c.startswith(UNAVAILABLE) else
                f"EmoGen: {m.categories.caption}" for (_, c), m in zip(made, musics)]
    return images, captions, not any(c.startswith(UNAVAILABLE) for _, c in made)


def _mean(values: torch.Tensor) -> float:
    """The mean of the values read, to 3 decimals (NaN where none was)."""
    values = values[~values.isnan()]
    return round(float(values.mean()), 3) if len(values) else float("nan")


def _judge_name(pipe: Pipeline | None) -> str:
    """The name of the judge that read a run's images ("none" without one)."""
    judge = getattr(pipe, "judge", None)
    return judge.name if judge is not None else "none"


def column_title(column: str) -> str:
    """The name a figure gives a column: "input", "EmoGen" or the method's title."""
    return {"input": "input", "emogen": "EmoGen"}.get(column) or METHODS[column].title
