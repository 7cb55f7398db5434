"""The offline profile's embedding space: affect as PAD (pleasure, arousal, dominance).

No CLIP, CLAP or ImageBind weights install from PyPI, so the offline profile compares
images, audio and text in Mehrabian's three-dimensional PAD space, each axis in about
[-1, 1]. Every modality gets there through a real model or a published relation:

- face images: the probabilities of the 7 emotion terms weighted by their PAD values
  (Russell & Mehrabian 1977, `EMOTION_PAD`), i.e. the expected PAD of the expression;
  differentiable, so the guidance can pull a face toward a target. The probabilities are the
  FER2013 mini-Xception's (`face_reader="fer"`), or ("blendshapes") MediaPipe's face
  blendshapes read as action units and scored against FACS's emotion prototypes
  (`EMOTION_PROTOTYPES`, `prototype_probabilities`): the FER's "sad" is a raised chin and a
  pout on the DCGAN's faces, the prototype's is raised inner brows, lowered brows, lip
  corners pulled down and a raised chin;
- scene images: Valdez & Mehrabian (1994) colour-emotion equations on brightness and
  saturation (`scene_pad`); differentiable;
- audio and music (files): by default YAMNet (AudioSet's sound classes) hears whether a clip
  is music; music is read by musicnn's mood tags (a network trained on the Million Song
  Dataset's Last.fm tags) through the valence-arousal-dominance norms of the tag words
  (`emostyle.spaces.music_emotion`), its pleasure averaged with the mode cue, any other sound
  by YAMNet's classes through the norms of their names (`emostyle.spaces.sound_emotion`;
  `audio_reading`); or, with `audio="cues"`, tempo, mode, loudness and
  spectral brightness mapped to PAD by the directions that Gabrielsson & Lindstroem (2010)
  summarise (`MUSIC_CUES`), with unit weights (they do not separate happy from sad songs:
  sad songs read mildly pleasant). Each file's reading is cached by its content;
- text: VADER's compound polarity (Hutto & Gilbert 2014) along the line from neutral to
  the PAD of "happy" (positive) or "sad" (negative).

Guidance and retrieval compare a point with a target's *direction* from neutral, as CLIP
space compares unit vectors: `distance` is 1 - <e, t_hat> and `similarity` is <e_hat, t_hat>,
both in the pleasure-arousal plane (a scene's guidance along pleasure alone: `GUIDED_AXES`),
Russell's (1980) circumplex, the model in which music
emotion is studied and annotated (dominance is read and reported, not compared: music
models and listeners' ratings barely determine it, and in Valdez & Mehrabian's colour
equations it runs against pleasure on brightness, so a sad target's low dominance would
brighten a scene that its low pleasure darkens).
A squared distance ||e - t||^2 would not do: sum_k l_k ||e - t_k||^2 is minimal at the
weighted mean of the targets, a mild point inside the region the generator reaches, so the
optimisation stops there from whichever side it starts (a happy face guided by a happy song
got less happy). The directional loss has no such point: every term keeps pulling along its
target's direction until the identity loss and the regulariser hold the image, and the
weights l_k mix directions (EmoStyle's 0.6 / 0.2 / 0.2), not whichever target lies furthest.
A face is guided through its emotion terms (`guidance_reading`). A target credits the two
terms that enclose its direction on the circumplex, each by its projection on that direction
times its share of the angle between them (linear interpolation around the circle), and no
other term: credited for ceasing to show the opposite emotion, the guidance blanked faces
instead of making them show the song's; crediting every term of the target's side by its
projection (a sad song: disgust 0.43 and fear 0.37 beside sad's 0.69), it opened mouths that
a judge reads as smiling (FINDINGS.md, "What the offline profile shows"). Because credits are not
linear in the direction, a face's targets are not added term by term but, as the cosine's
terms add, into one pull along their weighted resultant (`guidance_loss`): a song whose lyrics
read against its audio weakens the pull instead of crediting both emotions.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from emostyle.affective.music import NEUTRAL_SCORE
from emostyle.audio import load_audio, same_in_every_process
from emostyle.models.fer import EMOTIONS, MiniXception, face_input, load_fer
from emostyle.parts import EmbeddingSpace

__all__ = ["AffectSpace", "AUDIO_READERS", "EMOTION_PAD", "FACE_LOSSES", "FaceTerms", "MIN_FACE_PRESENCE", "NEUTRAL_RADIUS", "audio_pad", "direction", "mode_cue", "MUSIC_CUES", "scene_pad", "music_cues", "music_pad", "tuned_chroma"]

DOMAINS = ("face", "scene")

# PAD of the FER2013 emotion terms, from the table of Russell & Mehrabian (1977), "Evidence
# for a three-factor theory of emotions", J. Research in Personality 11:273-294 (scales
# -1..1), as reproduced in the affective-computing literature: happy, sad, angry,
# surprised, disgusted, afraid (fearful). "neutral" is not a term of the table: it is the
# scales' origin, where the semantic-differential ratings are balanced.
EMOTION_PAD = {
    "angry": (-0.51, 0.59, 0.25),
    "disgust": (-0.60, 0.35, 0.11),
    "fear": (-0.64, 0.60, -0.43),
    "happy": (0.81, 0.51, 0.46),
    "sad": (-0.63, -0.27, -0.33),
    "surprise": (0.40, 0.67, -0.13),
    "neutral": (0.00, 0.00, 0.00),
}

# The emotion terms as action units (AU) of the Facial Action Coding System: the prototypes of
# Ekman & Friesen's EMFACS as tabulated in FACS's literature (happiness 6+12, sadness 1+4+15,
# surprise 1+2+5+26, fear 1+2+4+5+20+26, anger 4+5+7+23, disgust 9+15+16), with anger's lip
# tightener (AU23), which no blendshape moves, replaced by the lip pressor (AU24) that FACS's
# Table 11-1 gives for anger (4+5+7+24). Sadness is that table's major variant 1+4+15+17, with the
# chin raiser (AU17) that pushes the lower lip up into a pout: without it the guidance drew the
# brows and turned the lip corners down but took the pout away, which the judge read as less sad
# (FINDINGS.md, "What the offline profile shows"). "neutral" has none: it is what no prototype shows.
EMOTION_PROTOTYPES = {
    "angry": (4, 5, 7, 24),
    "disgust": (9, 15, 16),
    "fear": (1, 2, 4, 5, 20, 26),
    "happy": (6, 12),
    "sad": (1, 4, 15, 17),
    "surprise": (1, 2, 5, 26),
}
# The ARKit-style blendshapes (MediaPipe's names) that move each action unit; a unit's
# intensity is the mean of its sides.
ACTION_UNITS = {
    1: ("browInnerUp",), 2: ("browOuterUpLeft", "browOuterUpRight"), 4: ("browDownLeft", "browDownRight"),
    5: ("eyeWideLeft", "eyeWideRight"), 6: ("cheekSquintLeft", "cheekSquintRight"),
    7: ("eyeSquintLeft", "eyeSquintRight"), 9: ("noseSneerLeft", "noseSneerRight"),
    12: ("mouthSmileLeft", "mouthSmileRight"), 15: ("mouthFrownLeft", "mouthFrownRight"),
    16: ("mouthLowerDownLeft", "mouthLowerDownRight"), 17: ("mouthShrugLower",),
    20: ("mouthStretchLeft", "mouthStretchRight"),
    24: ("mouthPressLeft", "mouthPressRight"), 26: ("jawOpen",),
}
FACE_READERS = ("fer", "blendshapes")
# The loss on a face's emotion terms (`AffectSpace.distance`): linear in their probabilities, or
# the log of the credited probability, as classifier guidance takes it (Dhariwal & Nichol 2021;
# the non-saturating loss of Goodfellow et al. 2014).
FACE_LOSSES = ("linear", "log")


def _prototype_matrix() -> torch.Tensor:
    """(52, 7): blendshape -> emotion term weights, so that blendshapes @ matrix gives each
    term's prototype intensity (the mean over its units of each unit's mean over its sides)."""
    from emostyle.models.face_mesh import BLENDSHAPES

    matrix = torch.zeros(len(BLENDSHAPES), len(EMOTIONS))
    for e, units in EMOTION_PROTOTYPES.items():
        for au in units:
            for name in ACTION_UNITS[au]:
                matrix[BLENDSHAPES.index(name), EMOTIONS.index(e)] += 1 / (len(units) * len(ACTION_UNITS[au]))
    return matrix


_PROTOTYPES = _prototype_matrix()


def prototype_probabilities(blendshapes: torch.Tensor, presence: torch.Tensor | None = None) -> torch.Tensor:
    """Probabilities (B, 7) of the emotion terms in FER2013 order from blendshapes (B, 52) in
    MediaPipe's order: each prototype's intensity is the mean of its action units' (in [0, 1]:
    1 when the whole prototype is shown); the intensities are the terms' shares, scaled down
    together when they sum past 1, and "neutral" holds the rest. Differentiable.

    `presence` (B,) in [0, 1], the mesh's confidence that a face is in its crop, scales the
    shares (held constant: a guidance moves the expression, not the mesh's confidence). The
    blendshapes of a face the mesh barely sees (a profile, a dark or warped face) are a guess,
    and guiding them changed such faces in ways other readers took against the song (FINDINGS.md,
    "What the offline profile shows"); so such a face reads closer to no emotion, and its
    gradient under the linear face loss is weaker by as much (the log loss, `AffectSpace.distance`,
    takes a ratio of credits, on which a common scale has no effect: it weighs the face's loss by
    the presence instead, `FaceTerms`)."""
    shown = blendshapes @ _PROTOTYPES.to(blendshapes)
    shares = shown / shown.sum(dim=1, keepdim=True).clamp_min(1.0)
    if presence is not None:
        shares = shares * presence.detach().to(shares)[:, None]
    neutral = EMOTIONS.index("neutral")
    return shares + F.one_hot(torch.tensor(neutral), len(EMOTIONS)).to(shares) * (1 - shares.sum(dim=1, keepdim=True))


# Valdez & Mehrabian (1994), "Effects of color on emotions", J. Experimental Psychology:
# General 123(4):394-409, regression of PAD on brightness B and saturation S:
# P = 0.69 B + 0.22 S, A = -0.31 B + 0.60 S, D = -0.76 B + 0.32 S (rows: P, A, D).
_COLOUR_PAD = ((0.69, 0.22), (-0.31, 0.60), (-0.76, 0.32))

# Direction (+1/-1) of each musical cue on each PAD axis, from Gabrielsson & Lindstroem
# (2010), "The role of structure in the musical expression of emotions" (Handbook of Music
# and Emotion, ch. 14), the summary table of structural factors:
# - mode: major -> happiness, minor -> sadness (also the strongest cue in the factorial
#   study of Eerola, Friberg & Bresin 2013): pleasure only;
# - tempo: fast -> happiness and activity, slow -> sadness, calm: pleasure and arousal;
# - loudness: loud -> intensity, power (joy and anger alike), soft -> tenderness, sadness:
#   arousal and dominance, not pleasure;
# - brightness (timbre with much high-frequency energy): bright -> activity, potency,
#   happiness; dull -> tenderness, sadness: all three.
# A cue that the summary does not tie to an axis has 0 there. The weights are unit (each axis
# is the mean of its cues): the literature gives directions and a ranking, not coefficients
# for these audio measurements, and no weight is fitted here ("improper linear models",
# Dawes 1979).
MUSIC_CUES = {  # cue: (pleasure, arousal, dominance)
    "mode": (1, 0, 0),
    "tempo": (1, 1, 0),
    "loudness": (0, 1, 1),
    "brightness": (1, 1, 1),
}

# Krumhansl & Kessler (1982) key profiles (probe-tone ratings), C major and C minor.
_KK_MAJOR = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
_KK_MINOR = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)

# Scaling of each measurement to a cue in [-1, 1], fixed by convention (not fitted):
_TEMPO_REF_BPM = 120.0  # moderato; also the composer's MIDI tempo. One octave (60/240 bpm) = -1/+1
_LOUDNESS_REF_DB = -20.0  # SMPTE RP 155 alignment level (dBFS); -40 / 0 dBFS = -1/+1
_LOUDNESS_RANGE_DB = 20.0
_CENTROID_REF_HZ = 1000.0  # the reference frequency of acoustics; two octaves (250 Hz / 4 kHz) = -1/+1
_CENTROID_OCTAVES = 2.0
_SAMPLE_RATE = 22050  # librosa's default analysis rate


def scene_pad(images: torch.Tensor) -> torch.Tensor:
    """PAD (B, 3) of images (B, 3, H, W) in [-1, 1] from their mean brightness and saturation.

    Brightness: luma (0.299 R + 0.587 G + 0.114 B), the closest image measure to Munsell
    value; saturation: HSV saturation (max - min) / max, the closest to Munsell chroma.
    Valdez & Mehrabian's coefficients are standardised betas, so B and S must be centred:
    each mean in [0, 1] is mapped to [-1, 1] about the scale's midpoint 0.5 (a mid-grey,
    half-saturated image is the neutral origin).
    """
    rgb = (images.clamp(-1, 1) + 1) / 2
    luma = (rgb * rgb.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)
    high, low = rgb.max(1).values, rgb.min(1).values
    saturation = (high - low) / (high + 1e-3)
    b = 2 * luma.mean(dim=(1, 2)) - 1
    s = 2 * saturation.mean(dim=(1, 2)) - 1
    return torch.stack([b, s], dim=1) @ images.new_tensor(_COLOUR_PAD).T


def music_cues(path: str | Path) -> dict[str, float]:
    """The audio file's measurements and cues in [-1, 1] (see `MUSIC_CUES`).

    tempo (bpm, librosa's onset-autocorrelation estimate), mode (Krumhansl-Schmuckler: best
    correlation of the tuned chroma, `tuned_chroma`, with the 12 major minus the 12 minor KK
    profiles),
    loudness (mean RMS power in dBFS) and spectral centroid (Hz, mean over frames).
    """
    import librosa

    y = load_audio(path, sr=_SAMPLE_RATE)
    bpm = float(np.atleast_1d(librosa.feature.tempo(y=y, sr=_SAMPLE_RATE))[0])
    best = _key_correlations(y)
    loudness_db = float(10 * np.log10(np.mean(librosa.feature.rms(y=y) ** 2) + 1e-12))
    centroid = float(librosa.feature.spectral_centroid(y=y, sr=_SAMPLE_RATE).mean())
    return {
        "tempo_bpm": bpm,
        "major_r": float(best[0]),
        "minor_r": float(best[1]),
        "loudness_dbfs": loudness_db,
        "centroid_hz": centroid,
        "mode": float(np.clip(best[0] - best[1], -1, 1)),
        "tempo": float(np.clip(np.log2(bpm / _TEMPO_REF_BPM), -1, 1)),
        "loudness": float(np.clip((loudness_db - _LOUDNESS_REF_DB) / _LOUDNESS_RANGE_DB, -1, 1)),
        "brightness": float(np.clip(np.log2(centroid / _CENTROID_REF_HZ) / _CENTROID_OCTAVES, -1, 1)),
    }


# The tuned chroma's constant-Q analysis: three bins per semitone over seven octaves from C1
# (33 Hz to 4.2 kHz: the fundamentals and low partials of bass to melody).
_BINS_PER_SEMITONE = 3
_OCTAVES = 7


def tuned_chroma(y: np.ndarray) -> np.ndarray:
    """Chroma (12,) of `y` (at `_SAMPLE_RATE`) from the energy that lies on the equal-tempered
    grid only, averaged over time.

    A constant-Q spectrum at three bins per semitone, centred on the recording's own tuning
    (`librosa.estimate_tuning`); each semitone keeps what its centre bin holds beyond the larger
    of its two side bins. Tuned instruments (and a sung melody) put their notes on the semitones'
    centres; a speaking voice glides through pitch, so its partials fall between the semitones as
    much as on them and fill the side bins too (pYIN's pitch of espeak-ng's voice and of JFK's
    recording lies 0.24 and 0.26 semitone off the grid on average; a uniform spread gives 0.25).
    With the plain chroma (`chroma_cqt`) lyrics spoken over quiet chords read nearly modeless: the
    voice's chroma drowned the chords' (FINDINGS.md, "A voice over quiet chords")."""
    import librosa

    tuning = librosa.estimate_tuning(y=y, sr=_SAMPLE_RATE)  # in semitones, [-0.5, 0.5)
    fmin = librosa.note_to_hz("C1") * 2 ** ((tuning - 1 / _BINS_PER_SEMITONE) / 12)  # a side bin below C1
    with warnings.catch_warnings():
        # A clip shorter than the lowest octave's window (about 1.4 s: the piece composed for a
        # one-word label) is zero-padded by the STFT, which is what the analysis wants; librosa
        # warns of it at every such clip.
        warnings.filterwarnings("ignore", message=r"n_fft=\d+ is too large for input signal")
        spectrum = np.abs(librosa.cqt(y, sr=_SAMPLE_RATE, fmin=fmin, n_bins=12 * _BINS_PER_SEMITONE * _OCTAVES,
                                      bins_per_octave=12 * _BINS_PER_SEMITONE))
    below, centre, above = spectrum.reshape(_OCTAVES, 12, _BINS_PER_SEMITONE, -1).transpose(2, 0, 1, 3)
    return np.maximum(centre - np.maximum(below, above), 0).sum(axis=0).mean(axis=-1)


def _key_correlations(y: np.ndarray) -> list[float]:
    """Best correlation of the tuned chroma of `y` (`tuned_chroma`) with the 12 major and with
    the 12 minor Krumhansl-Kessler profiles (Krumhansl-Schmuckler key finding); 0 for both
    where the grid holds no pattern (silence: no key)."""
    chroma = tuned_chroma(y)
    if not chroma.std() > 0:
        return [0.0, 0.0]
    return [max(np.corrcoef(chroma, np.roll(profile, k))[0, 1] for k in range(12))
            for profile in (_KK_MAJOR, _KK_MINOR)]


def mode_cue(path: str | Path) -> float:
    """The mode cue in [-1, 1] (major minus minor key correlation; see `music_cues`)."""
    major, minor = _key_correlations(load_audio(path, sr=_SAMPLE_RATE))
    return float(np.clip(major - minor, -1, 1))


def music_pad(cues: dict[str, float]) -> np.ndarray:
    """PAD (3,) from the cues: on each axis, the mean of its signed cues (`MUSIC_CUES`)."""
    signs = np.array([MUSIC_CUES[c] for c in MUSIC_CUES], dtype=np.float64)  # (cues, 3)
    values = np.array([cues[c] for c in MUSIC_CUES])
    return values @ signs / np.abs(signs).sum(axis=0)


AUDIO_READERS = ("yamnet+musicnn+mode", "musicnn+mode", "musicnn", "cues")


def audio_pad(path: str | Path, reader: str = "yamnet+musicnn+mode") -> np.ndarray:
    """PAD (3,) of an audio file by `reader` (`audio_reading`'s "pad")."""
    return np.array(audio_reading(path, reader)["pad"], dtype=np.float64)


def audio_reading(path: str | Path, reader: str = "yamnet+musicnn+mode") -> dict:
    """How `reader` hears an audio file: {"pad": [P, A, D], "heard_as": "music" | "sound" | None,
    "classes": YAMNet's top classes [[name, score], ...] (YAMNet readers)}, computed once per file
    content, reader and version of the kit's code (a reading made by older code is not reused),
    and kept beside the affective stage's cache in the kit's home.

    - "yamnet+musicnn+mode": YAMNet (`emostyle.models.yamnet`) hears the clip; music (its top
      class besides speech and silence is music or singing: `sound_emotion.is_music`) is read by
      "musicnn+mode", any other sound by YAMNet's AudioSet classes through the norms of the class
      names (`sound_emotion.sound_pad`). A music tagger hears a giggle or a sob as a song, and
      reads them against their sense;
    - "musicnn": musicnn's mood tags through the norms of the tag words;
    - "musicnn+mode": the same, with its pleasure averaged (unit weights) with the mode cue.
      A tagger trained on Last.fm tags does not isolate mode, the strongest structural cue of
      happiness against sadness in music (Eerola, Friberg & Bresin 2013; Gabrielsson &
      Lindstroem 2010): measured here, musicnn read lyrics spoken over plain major chords as
      mildly sad (pleasure -0.05, -0.07) though less sad than over minor chords (-0.09, -0.08),
      while the mode cue alone put every such song on its side. The mode is read from the
      notes on the equal-tempered grid (`tuned_chroma`), where a speaking voice weighs little.
      Arousal and dominance stay musicnn's (mode bears on pleasure only, `MUSIC_CUES`);
    - "cues": the hand-set musical cues (`music_cues`, `music_pad`).
    """
    import json

    from emostyle import registry
    from emostyle.manifest import code_version, write_json

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    if reader not in AUDIO_READERS:
        raise ValueError(f"unknown audio reader {reader!r}; choose one of {', '.join(AUDIO_READERS)}")
    key = f"{reader}-{code_version()[:16]}-{registry.file_sha256(path)[:32]}"
    record = registry.home() / "cache" / "audio-pad" / f"{key}.json"
    try:
        reading = json.loads(record.read_text())
        registry.replay(reading.pop("weights"))  # the files it was made from, for this run's manifest
        return reading | {"audio": str(path)}  # kept by content: the copy read first may lie elsewhere
    except (OSError, ValueError, KeyError):  # absent, or unreadable (a damaged disk): read the file again
        pass
    # Two BLAS threads read a 13 s composed song 1e-8 apart from one, and the guidance amplified it
    # (Figure 4's w/o Audio faces: 9.15 or 9.13 grey levels).
    with registry.recording() as files, same_in_every_process():
        reading = _read_audio(path, reader)
    write_json(record, {**reading, "weights": files})  # whole or absent, never half-written
    return reading


def _read_audio(path: Path, reader: str) -> dict:
    """The reading itself: `audio_reading` without its cache."""
    heard_as, classes, reader_used = None, [], reader
    if reader == "yamnet+musicnn+mode":
        from emostyle.models.yamnet import class_scores
        from emostyle.spaces.sound_emotion import is_music, sound_pad, top_classes

        scores = class_scores(path)
        classes = [[name, round(score, 4)] for name, score in top_classes(scores)]
        heard_as = "music" if is_music(scores) else "sound"
        reader_used = "musicnn+mode" if heard_as == "music" else "yamnet"
    if reader_used == "cues":
        pad = music_pad(music_cues(path))
    elif reader_used == "yamnet":
        pad = sound_pad(scores)
    else:
        from emostyle.spaces.music_emotion import music_emotion_pad

        pad = np.array(music_emotion_pad(path), dtype=np.float64)
        if reader_used == "musicnn+mode":
            pad[0] = (pad[0] + mode_cue(path)) / 2
    return {"reader": reader, "audio": str(path), "pad": [float(v) for v in pad], "heard_as": heard_as,
            "classes": classes}


def audio_summary(reading: dict) -> str:
    """An `audio_reading` in a line: "heard as sound, speech and silence aside (Laughter 0.39,
    Speech 0.26): pleasure +0.44" (a song's voice often tops the classes it was not judged by);
    a reader that does not tell music from sounds hears music."""
    heard = ", ".join(f"{name} {score:.2f}" for name, score in reading["classes"])
    aside = ", speech and silence aside" if reading["heard_as"] and heard else ""
    return (f"heard as {reading['heard_as'] or 'music'}{aside}" + (f" ({heard})" if heard else "")
            + f": pleasure {reading['pad'][0]:+.2f}")


def audio_caption(reading: dict) -> str:
    """An `audio_reading` in a few words: "audio P +0.36 (Laughter)" for a sound (YAMNet's top
    class), "audio P -0.20 (music)" for music, the reader's name where it does not tell."""
    heard = reading["classes"][0][0] if reading["heard_as"] == "sound" else reading["heard_as"] or reading["reader"]
    return f"audio P {reading['pad'][0]:+.2f} ({heard})"


# A target closer to neutral than this is read as no emotion: its direction fades to zero
# instead of amplifying noise. VADER's neutral band (|compound| < 0.05; Hutto & Gilbert
# 2014), the finest valence distinction any of the space's readers makes.
NEUTRAL_RADIUS = NEUTRAL_SCORE


# The PAD axes that guidance compares with a target, per domain (1: compared). Faces: the
# pleasure-arousal plane, where their emotion terms lie (`term_credit`). Scenes: pleasure alone.
# In Valdez & Mehrabian's equations (`_COLOUR_PAD`) brightness raises pleasure but lowers arousal,
# as it lowers dominance, so in the plane a target's low arousal brightens a scene that its low
# pleasure darkens, and wins wherever |A| > 2.2 |P|. A song its readers hear as calm and only
# faintly sad (musicnn's pleasure near 0 and its arousal about -0.1, lyrics of no polarity)
# brightened and paled scenes, which a colour judge reads as happier: of 120 results of twelve
# unseen songs, 19 read against them (FINDINGS.md, "Scenes along pleasure"). Along pleasure the loss
# pushes brightness and saturation the same way, as pleasure does in those equations: a sad song
# darkens and greys a scene, a happy one brightens and colours it (on the pixels of a dark,
# saturated image HSV saturation can rise as light falls). Retrieval still compares the plane
# (`similarity`): a direction on one axis has two values and could not rank candidates.
GUIDED_AXES = {"face": (1.0, 1.0, 0.0), "scene": (1.0, 0.0, 0.0)}


def direction(targets: torch.Tensor) -> torch.Tensor:
    """Unit directions (M, 3) of PAD targets (M, 3) from neutral in the pleasure-arousal plane
    (dominance 0); shorter than `NEUTRAL_RADIUS` they shrink to zero continuously (t / radius)."""
    plane = targets * targets.new_tensor([1.0, 1.0, 0.0])
    return plane / plane.norm(dim=1, keepdim=True).clamp_min(NEUTRAL_RADIUS)


# MediaPipe's FaceLandmarker stops tracking a face whose presence falls under this
# (FaceLandmarkerOptions.min_face_presence_confidence, default 0.5): a face the mesh reads less
# surely is no face to it, and its blendshapes are a guess.
MIN_FACE_PRESENCE = 0.5


class FaceTerms(NamedTuple):
    """A face's `guidance_reading`: its emotion terms' probabilities (B, 7), as
    `prototype_probabilities` gives them (the shares scaled by the presence), and how surely the
    face reader sees the face (B,), held constant: 1 for the FER, the mesh's face presence."""

    probabilities: torch.Tensor
    presence: torch.Tensor

    @property
    def device(self) -> torch.device:
        return self.probabilities.device


def _face_terms(reading) -> bool:
    """Whether `reading` is a face's emotion terms (`FaceTerms`, or their probabilities), not PAD."""
    return isinstance(reading, FaceTerms) or reading.shape[1] == len(EMOTIONS)


class AffectSpace(EmbeddingSpace):
    """PAD space, dim 3; `domain` "face" reads expressions, "scene" reads colour.

    face_reader: "fer" (the FER2013 mini-Xception) or "blendshapes" (MediaPipe's face mesh
    through FACS's prototypes); fer / mesh: those networks (None: loaded from the registry).
    face_loss: how `distance` weighs a face's emotion terms, one of `FACE_LOSSES`.
    """

    name = "affect-pad"
    dim = 3
    # Softmax temperature of retrieval (Eq. 2). Similarities are cosines in [-1, 1]; a scale of
    # 10 makes a difference of 0.1 in cosine (about 26 degrees apart near alignment) multiply a
    # candidate's odds by e.
    logit_scale = 10.0

    def __init__(self, domain: str = "face", fer: MiniXception | None = None, audio: str = "yamnet+musicnn+mode",
                 face_reader: str = "fer", mesh=None, face_loss: str = "linear"):
        if domain not in DOMAINS:
            raise ValueError(f"unknown affect domain {domain!r}; choose one of {', '.join(DOMAINS)}")
        if audio not in AUDIO_READERS:
            raise ValueError(f"unknown audio reader {audio!r}; choose one of {', '.join(AUDIO_READERS)}")
        if face_reader not in FACE_READERS:
            raise ValueError(f"unknown face reader {face_reader!r}; choose one of {', '.join(FACE_READERS)}")
        if face_loss not in FACE_LOSSES:
            raise ValueError(f"unknown face loss {face_loss!r}; choose one of {', '.join(FACE_LOSSES)}")
        self.domain, self.audio, self.face_reader, self.face_loss = domain, audio, face_reader, face_loss
        self.compares = "pleasure alone" if GUIDED_AXES[domain] == (1.0, 0.0, 0.0) else ""
        self.fer = self.mesh = None
        if domain == "face" and face_reader == "fer":
            self.fer = fer if fer is not None else load_fer()
        elif domain == "face":
            from emostyle.models.face_mesh import load_face_mesh

            self.mesh = mesh if mesh is not None else load_face_mesh()
            self.name = "affect-pad (face blendshapes)"
            self.min_confidence = MIN_FACE_PRESENCE
        self._vader = None

    def emotion_pad(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The (7, 3) PAD table in FER2013 order."""
        return torch.tensor([EMOTION_PAD[e] for e in EMOTIONS], device=device)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Differentiable PAD (B, 3) of images (B, 3, H, W) in [-1, 1]."""
        return self.read_image(images)[0]

    def read_image(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """PAD (B, 3) and how surely the face reader sees a face (B,): the mesh's face presence;
        1 for colour and the FER, which read every image."""
        if self.domain == "scene":
            pad, presence = scene_pad(images), None
        else:
            probabilities, presence = self._emotion_probabilities(images)
            pad = probabilities @ self.emotion_pad(images.device)
        return pad, torch.ones(len(pad), device=pad.device) if presence is None else presence

    def guidance_reading(self, images: torch.Tensor) -> torch.Tensor | FaceTerms:
        """What `distance` compares with a target: a face's emotion terms and presence
        (`FaceTerms`), so that each term is credited by where it lies from the target on the
        circumplex (`term_credit`); a scene's PAD (B, 3)."""
        if self.domain == "scene":
            return self.encode_image(images)
        probabilities, presence = self._emotion_probabilities(images)
        return FaceTerms(probabilities, torch.ones(len(probabilities), device=probabilities.device)
                         if presence is None else presence)

    def emotion_probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Probabilities (B, 7) of the emotion terms in FER2013 order, by the face reader."""
        return self._emotion_probabilities(images)[0]

    def _emotion_probabilities(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The probabilities and the mesh's face presence (None: the FER reads every image)."""
        if self.fer is not None:
            return self.fer(face_input(images)).softmax(dim=1), None
        blendshapes, _, presence = self.mesh(images)
        return prototype_probabilities(blendshapes, presence), presence.detach()

    def emotion_readings(self, images: torch.Tensor) -> torch.Tensor:
        """The face reader's log-probabilities (B, 7) of its emotion terms (faces only: colour
        has none); a term no prototype shows reads log(1e-6), not -inf."""
        if self.domain == "scene":
            return super().emotion_readings(images)
        if self.fer is not None:
            return self.fer(face_input(images)).log_softmax(dim=1)
        return self.emotion_probabilities(images).clamp_min(1e-6).log()

    def encode_audio(self, path: str | Path) -> torch.Tensor:
        """PAD (1, 3) of an audio or music file by the space's audio reader (cached by content)."""
        return torch.tensor(audio_pad(path, self.audio), dtype=torch.float32).unsqueeze(0)

    def read_audio(self, path: str | Path) -> dict:
        """How the space's audio reader hears a file (`audio_reading`), for manifests and figures."""
        return audio_reading(path, self.audio)

    def audio_caption(self, path: str | Path) -> str:
        """How the audio reader heard a file, for a figure (`audio_caption`)."""
        return audio_caption(self.read_audio(path))

    def encode_text(self, text: str) -> torch.Tensor:
        """PAD (1, 3): VADER compound c times the PAD of "happy" (c >= 0) or of "sad" (c < 0).

        VADER measures valence only; its strength |c| scales the way from neutral toward the
        prototype, so the arousal and dominance of a text are those of the prototype term.
        """
        if self._vader is None:
            from emostyle.affective.polarity import VaderPolarity

            self._vader = VaderPolarity()
        c = self._vader.judge(text).score
        prototype = EMOTION_PAD["happy" if c >= 0 else "sad"]
        return abs(c) * torch.tensor(prototype).unsqueeze(0)

    def guided(self, targets: torch.Tensor) -> torch.Tensor:
        """Targets (M, 3) on the domain's `GUIDED_AXES` (a scene's: pleasure alone)."""
        return targets * targets.new_tensor(GUIDED_AXES[self.domain])

    def similarity(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cosines (B, M) between the directions of PAD points x (B, 3) and y (M, 3) in the
        pleasure-arousal plane: Eq. 1's dot product of unit embeddings, as ImageBind's. Retrieval
        so picks the candidate whose emotion is the song's, not the most intense one, and leaves
        the guidance room to move it (inside the neutral radius a point's cosine shrinks with its
        distance from neutral, to 0 there: `direction`)."""
        return direction(x.float()) @ direction(y.float().to(x.device)).T

    def term_credit(self, t_hat: torch.Tensor) -> torch.Tensor:
        """How much each emotion term counts toward target directions t_hat (M, 3): (7, M).

        The terms lie around the circumplex at their PAD's angle in the pleasure-arousal plane.
        A direction between two neighbouring terms credits each by its projection
        max(0, <PAD_k, t_hat>) times its share of the angle (1 at its own angle, 0 at the
        other's), so the credit moves continuously from term to term and a target along a
        term's direction credits that term alone. The terms have no pleasant, calm emotion: a
        target between about 293 and 302 degrees of the plane lies beyond 90 degrees of both
        its neighbours (sad, happy) and credits none."""
        pad = self.emotion_pad(t_hat.device)
        live = torch.nonzero(pad[:, :2].norm(dim=1) > 0).squeeze(1)  # "neutral" has no angle
        angle, order = torch.atan2(pad[live, 1], pad[live, 0]).sort()
        terms = live[order]
        theta = torch.atan2(t_hat[:, 1], t_hat[:, 0])
        below = (torch.searchsorted(angle, theta, right=True) - 1) % len(terms)  # cyclic
        above = (below + 1) % len(terms)
        span = (angle[above] - angle[below]) % (2 * torch.pi)
        share = ((theta - angle[below]) % (2 * torch.pi)) / span
        columns = torch.arange(len(t_hat), device=t_hat.device)
        weight = torch.zeros(len(pad), len(t_hat), device=t_hat.device)
        weight[terms[below], columns] = 1 - share
        weight[terms[above], columns] = share
        return weight * (pad @ t_hat.T).clamp_min(0)

    def guidance_loss(self, reading: torch.Tensor, weighted: list[tuple[float, torch.Tensor]]) -> torch.Tensor:
        """sum_k l_k (1 - <e, t_hat_k>) as the paper's cosine terms add: for a unit image embedding
        e they are sum_k l_k - <e, R>, one pull along the resultant R = sum_k l_k t_hat_k, so that
        targets in opposite directions cancel. A PAD point's `distance` is linear in t_hat and
        adds so already. A face's credits are not (`term_credit`): added target by target, a song
        whose audio reads sad and whose lyrics read happy credited the sad terms and the happy
        ones both, and the guidance drew whichever the face showed most readily (a smile),
        against the song's weightier reading. So a face is guided along R: sum_k l_k - |R| +
        |R| `distance`(e, R), which is the sum when the targets share a direction."""
        if not _face_terms(reading):
            return super().guidance_loss(reading, weighted)
        resultant = sum(weight * direction(target.to(reading.device)) for weight, target in weighted)
        strength = resultant.norm(dim=1)
        return sum(weight for weight, _ in weighted) - strength + strength * self.distance(reading, resultant)

    def distance(self, image_emb: torch.Tensor | FaceTerms, target: torch.Tensor) -> torch.Tensor:
        """Guidance loss (B,) to targets (B or 1, 3), linear along the target's direction t_hat
        (no fixed point short of the reachable boundary; see the module docstring).

        `image_emb` a PAD point e (B, 3): 1 - <e, t_hat>, t_hat the direction of the target's
        `guided` part (a scene's colour: its pleasure alone). The emotion terms of faces
        (`FaceTerms`, or their probabilities (B, 7) of a face seen surely):
        1 - sum_k p_k c_k, c = `term_credit(t_hat)`: a face comes closer to
        a song's emotion by showing it (or the term beside it that the song's direction leans
        to), not by ceasing to show the opposite one, nor by showing a term further round the
        circle.

        With `face_loss` "log" a face's loss is (c / 4) log(c / s), s = sum_k p_k c_k and c the
        largest credit (0 once the face shows that term fully). The face mesh's blendshapes are
        logistic outputs: on a face that shows no trace of a term they sit deep in the logistic's
        tail, and the linear loss pulls on that blendshape's logit by c p (1 - p), next to
        nothing (FINDINGS.md, "Not right yet"). The log pulls by about (c / 4)(1 - p): never harder
        than the linear loss at its steepest (p = 1/2), and still where that one lets go. Its ratio
        does not change when the face's presence scales the shares (as the linear loss does), so
        it is weighed by the presence: a face the mesh barely sees is pulled as weakly under both."""
        if not _face_terms(image_emb):
            return 1 - (image_emb * direction(self.guided(target.to(image_emb.device)))).sum(dim=1)
        probabilities, presence = image_emb if isinstance(image_emb, FaceTerms) else (image_emb, None)
        t_hat = direction(target.to(image_emb.device))  # a face's emotion terms lie in the plane
        credit = self.term_credit(t_hat).T
        shown = (probabilities * credit).sum(dim=1)
        if self.face_loss == "linear":
            return 1 - shown
        top = credit.max(dim=1).values
        if presence is not None:  # the credit before the presence scaled it, and the loss weighed by it
            presence = presence.detach().to(shown)
            shown = shown / presence.clamp_min(1e-12)
        # A target without direction credits nothing: its loss is 0, as the linear one is constant.
        log = top / 4 * torch.log(top.clamp_min(1e-12) / shown.clamp_min(1e-12))
        return log if presence is None else presence * log
