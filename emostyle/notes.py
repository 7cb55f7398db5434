"""What a reader of a manipulation's valences should know: notes drawn from its manifest.

`manipulate` keeps them in its manifest (`valence.notes`) and prints them, so a reader working
from the files sees the same diagnosis as one at the terminal.
"""

from __future__ import annotations

import numpy as np

from .scoring.metrics import POLARITIES

__all__ = ["manipulation_notes", "inversion_note", "targets_note", "valence_note"]


def manipulation_notes(manifest: dict) -> list[str]:
    """Every note that applies to a manipulation's manifest: those on the whole run first
    (untrained networks; a photo reconstructed with the judge's features), then the song's
    targets, then the valences."""
    return [note for note in (untrained_note(manifest), inversion_note(manifest), targets_note(manifest),
                              valence_note(manifest)) if note]


def untrained_note(manifest: dict) -> str | None:
    """random_weights (the tiny profile's): every reading below is an untrained network's."""
    if not (manifest.get("config") or {}).get("random_weights"):
        return None
    return ("random_weights is on: every network is untrained (the tiny profile's test setting), so the "
            "images and every reading here mean nothing; drop it to run the real models")


def inversion_note(manifest: dict) -> str | None:
    """A photo reconstructed by fitting the judge's own features: the judge then reads the
    reconstruction much as it reads the photo, whether or not a person would call them alike."""
    config = manifest.get("config") or {}
    fitted = (config.get("inversion") or {}).get("perceptual")
    if not manifest.get("inversion") or fitted != (config.get("scoring") or {}).get("judge"):
        return None
    return (f"the reconstruction of your photo was fitted to the judge's own features (inversion.perceptual="
            f"{fitted}), so the judge's reading of it flatters its likeness to the photo: look at "
            "reconstruction.png, or fit another network's features (--set inversion.perceptual=...)")


def targets_note(manifest: dict) -> str | None:
    """Which of the song's targets pull against its polarity, and how much of the method's weight
    they carry: a happy song whose audio reads sad leads the image toward sadness by as much."""
    v = manifest["valence"]
    sign = POLARITIES.get(v.get("polarity"), float("nan"))  # neutral: NaN, no direction to pull against
    weights = manifest["guidance"]["settings"]["weights"]
    pulls = v["in_guidance_space"].get("targets") or {}
    against = [k for k, x in pulls.items()
               if x is not None and x * sign < 0 and weights.get(k, 0) > 0]
    if not against:
        return None
    share = sum(weights[k] for k in against) / sum(weights.values())
    instead = ""
    if against == ["audio"] and share < 1:
        # Either reading may be the wrong one, and the kit cannot tell which: a slip of the ear or a
        # lexicon's word can turn a lyric's polarity ("grief" heard as "three"; "happy years are gone"),
        # and a voice without instruments is what the music model most often misreads (README, "Your own
        # songs"). So the note names a remedy for each and no default.
        misheard = ("give them with --lyrics if they were misheard, or "
                    if (manifest.get("lyrics") or {}).get("source") == "speech" else "")
        lyrics_way, audio_way = ("happy", "sad") if v["polarity"] == "positive" else ("sad", "happy")
        instead = (f"; one of the two is misread: if the song is {lyrics_way}, the audio is, and --method "
                   f"wo-audio guides by the lyrics and the music composed from them; if it is "
                   f"{audio_way}, the lyrics are: {misheard}--method lee guides by the audio alone")
    return (f"the song's {' and '.join(against)} {'pulls' if len(against) == 1 else 'pull'} the other way from its "
            f"{v['polarity']} polarity ({', '.join(f'{pulls[k]:+.2f}' for k in against)} in the guidance space) with "
            f"{share:.0%} of the method's weight: the image follows the weighted mix, so it may move less, or "
            f"the other way{instead}")


def valence_note(manifest: dict) -> str | None:
    """What a reader of a manipulation's valences should know, if anything: that the guiding model
    barely saw the input's subject, that the guidance had little to pull, or that the judge does
    not see the change the guidance space reports, or reads it the other way."""
    v, g = manifest["valence"], manifest["guidance"]
    space = v["in_guidance_space"]
    if space.get("confidence", 1.0) < space.get("min_confidence", 0.0):
        return (f"the guiding model barely sees a subject in the input (its confidence {space['confidence']:.2f}, "
                f"under {space['min_confidence']:.2f}): its reading of the emotion there is a guess, scaled down by "
                "that confidence, and so is its pull; give an image with a clear, frontal face")
    if None in (v["before"], v["after"]):
        return None
    pulled = [sum(w * float(np.mean(g[when][k])) for k, w in g["settings"]["weights"].items())
              for when in ("initial_losses", "final_losses")]
    if pulled[0] - pulled[1] < 0.05 * abs(pulled[0]):  # the guidance terms fell by under a twentieth
        # A distance of 1 - cos over weights summing to w: below w, the start already leans the song's way.
        if pulled[0] < sum(g["settings"]["weights"].values()):
            return ("the guidance terms barely fell: the guiding model already read the image where the song's "
                    "weighted targets point, so it had little to pull")
        kept = g["settings"].get("directions")
        return ("the guidance terms barely fell, though the guiding model reads the image against the song: it is "
                "sure of its reading (saturated), so its gradient is small and the identity loss holds the image"
                + (f"; along the {kept} emotion directions it could not move it (try --set guidance.directions=free)"
                   if kept else ""))
    judged = v["after"] - v["before"]
    optimised = v["in_guidance_space"]["after"] - v["in_guidance_space"]["before"]
    resolution = v.get("resolution") or 0.0
    if abs(judged) <= resolution or judged * optimised < 0:
        sign = POLARITIES.get(v.get("polarity"), float("nan"))  # neutral: never "already the song's emotion"
        # what explains a judge's move back toward no emotion, not one further the song's way
        already = (f"; the judge already read the input as the song's emotion ({v['before']:+.2f}), and likely "
                   "reads a change of such an image partly as a return toward no emotion (FINDINGS.md, \"Not right yet\")"
                   if sign * v["before"] > resolution and sign * judged < 0 else "")
        seen = (f"the judge does not see the change the guidance space reports (its reading moved {judged:+.2f}, "
                f"within its one-pixel resolution {resolution:.2f}, the most a one-pixel shift of the input moves it)"
                + (f"; the guidance space reports it against the song's {v['polarity']} polarity ({optimised:+.2f})"
                   if sign * optimised < 0 else "")
                if abs(judged) <= resolution else
                f"the judge reads the change the other way from the guidance space (the judge {judged:+.2f}, "
                f"beyond its one-pixel resolution {resolution:.2f}; the space {optimised:+.2f})")
        return f"{seen}{already}: look at the images before trusting the guidance space's number"
    return None
