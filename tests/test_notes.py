"""The notes a manipulation's manifest carries (`emostyle.notes`), on manifests made by hand: each
case of the guidance's numbers that a reader should be told about, and none where all is well."""

from emostyle.notes import inversion_note, targets_note, valence_note


def _manifest(judge, space, initial, final, resolution=0.1):
    """The parts of a manipulation's manifest that valence_note reads (two guidance terms)."""
    return {"valence": {"before": judge[0], "after": judge[1], "resolution": resolution,
                        "in_guidance_space": {"before": space[0], "after": space[1]}},
            "guidance": {"settings": {"weights": {"audio": 0.6, "music": 0.4}},
                         "initial_losses": {"audio": [initial], "music": [initial]},
                         "final_losses": {"audio": [final], "music": [final]}}}


def test_the_targets_note_names_a_target_that_pulls_against_the_song():
    """A happy song whose audio reads sad: the note names the audio and its share of the weight;
    none where every weighted target agrees, for a song without polarity, or for a target the
    method does not weigh (Lee et al. reads the audio alone)."""
    manifest = _manifest((0.1, 0.2), (0.2, 0.5), 1.8, 0.6)
    manifest["valence"]["polarity"] = "positive"
    manifest["valence"]["in_guidance_space"]["targets"] = {"audio": -1.34, "music": 1.2, "text": None}
    note = targets_note(manifest)
    assert "audio pulls the other way" in note and "-1.34" in note and "60%" in note and "audio and music" not in note
    # Which reading is wrong the kit cannot tell: a remedy for each (the lyrics' way, the audio's way)
    assert note.endswith("one of the two is misread: if the song is happy, the audio is, and --method wo-audio "
                         "guides by the lyrics and the music composed from them; if it is sad, the lyrics are: "
                         "--method lee guides by the audio alone")
    assert "--lyrics" not in note  # the lyrics were not transcribed: nothing was heard to mishear
    manifest["lyrics"] = {"source": "speech"}  # transcribed: the polarity may come from a slip of the ear
    assert targets_note(manifest).endswith("the lyrics are: give them with --lyrics if they were misheard, or "
                                           "--method lee guides by the audio alone")
    manifest["valence"]["in_guidance_space"]["targets"]["audio"] = 0.4
    assert targets_note(manifest) is None
    manifest["valence"]["in_guidance_space"]["targets"].update(audio=-0.4, music=-0.3)
    assert "audio and music pull" in targets_note(manifest) and "100%" in targets_note(manifest)
    assert "wo-audio" not in targets_note(manifest)  # leaving the audio out would not help
    manifest["valence"]["polarity"] = "neutral"
    assert targets_note(manifest) is None
    manifest["valence"]["polarity"] = "negative"
    manifest["valence"]["in_guidance_space"]["targets"] = {"audio": -0.5, "text": 0.9}  # text not weighed
    assert targets_note(manifest) is None


def test_the_valence_note_tells_saturated_guidance_from_an_unseen_change():
    # Guidance terms flat (the guiding model already agreed with the song: distances under 1): not "unseen".
    assert "already read the image where the song's weighted targets point" in valence_note(
        _manifest((0.96, 0.96), (1.99, 1.99), 0.182, 0.181))
    # Flat though the model reads the image against the song (distances near 2): saturated, held by the
    # identity loss; kept to emotion directions, the note names the setting that frees the latent.
    stuck = _manifest((0.96, 0.96), (1.99, 1.99), 1.948, 1.947)
    assert "against the song" in valence_note(stuck) and "directions" not in valence_note(stuck)
    stuck["guidance"]["settings"]["directions"] = 7
    assert "guidance.directions=free" in valence_note(stuck)
    # The terms fell and the space moved, the judge did not beyond its one-pixel resolution: unseen.
    assert "does not see" in valence_note(_manifest((0.10, 0.11), (0.20, 1.50), 1.8, 0.6))
    assert "does not see" in valence_note(_manifest((0.10, 0.25), (0.20, 1.50), 1.8, 0.6, resolution=0.2))
    assert valence_note(_manifest((0.10, 0.25), (0.20, 1.50), 1.8, 0.6, resolution=0.1)) is None
    # ... or the judge moved the other way.
    other_way = valence_note(_manifest((0.10, -0.30), (0.20, 1.50), 1.8, 0.6))
    assert "does not see" not in other_way and "the other way" in other_way and "the judge -0.40, beyond its one-pixel resolution 0.10; the space +1.30" in other_way
    # An input the judge already read as the song's emotion, beyond its resolution: the note says so
    # (a sad song's input read at -0.40; one read at -0.05, within 0.1, or a happy song's, is not that case).
    sad = _manifest((-0.40, -0.30), (-0.20, -1.50), 1.8, 0.6)
    assert "already read the input as the song's emotion (-0.40)" not in valence_note(sad)
    sad["valence"]["polarity"] = "negative"
    assert "already read the input as the song's emotion (-0.40)" in valence_note(sad)
    sad["valence"]["after"] = -0.45  # unseen, but further the song's way: no return toward no emotion to explain
    assert "does not see" in valence_note(sad) and "already read the input" not in valence_note(sad)
    assert "its reading moved -0.05, within its one-pixel resolution 0.10" in valence_note(sad)
    sad["valence"].update(before=-0.05, after=-0.10)
    assert "does not see" in valence_note(sad) and "already read the input" not in valence_note(sad)
    happy = _manifest((-0.40, -0.45), (0.20, 1.50), 1.8, 0.6)
    happy["valence"]["polarity"] = "positive"
    assert "does not see" in valence_note(happy) and "already read the input" not in valence_note(happy)
    assert "against the song's" not in valence_note(happy)
    # The space itself reports the image moved against the song (a happy song whose audio reads sad): said.
    pulled_away = _manifest((-0.18, -0.19), (-0.49, -1.08), 1.8, 0.6)
    pulled_away["valence"]["polarity"] = "positive"
    assert "against the song's positive polarity (-0.59)" in valence_note(pulled_away)
    # The guiding model did not see the input's subject (a face mesh's presence under its threshold):
    # that, not "already the song's emotion", is why nothing was pulled.
    unseen = _manifest((0.96, 0.96), (0.00, 0.00), 0.50, 0.50)
    unseen["valence"]["in_guidance_space"].update(confidence=0.02, min_confidence=0.5)
    assert "barely sees a subject" in valence_note(unseen) and "already" not in valence_note(unseen)
    unseen["valence"]["in_guidance_space"]["confidence"] = 0.97
    assert "already read the image where the song's" in valence_note(unseen)
    # Both moved the same way: nothing to say; no judge reading: nothing to compare.
    assert valence_note(_manifest((0.10, 0.60), (0.20, 1.50), 1.8, 0.6)) is None
    assert valence_note(_manifest((None, None), (0.20, 1.50), 1.8, 0.6)) is None


def test_untrained_networks_are_said_to_mean_nothing():
    """--set random_weights=true ran untrained networks and printed the judge's valences as readings."""
    from emostyle.notes import untrained_note

    assert "untrained" in untrained_note({"config": {"random_weights": True}})
    assert untrained_note({"config": {"random_weights": False}}) is None


def test_the_inversion_note_warns_when_the_judge_fitted_the_reconstruction():
    """The offline profile fits a photo's reconstruction to the FER's features, and the FER judges:
    its reading of the reconstruction then says little about the likeness. Fitted to another
    network, or with no photo, there is nothing to say."""
    manifest = {"config": {"inversion": {"perceptual": "fer"}, "scoring": {"judge": "fer"}},
                "inversion": {"photo": "me.jpg"}}
    assert "inversion.perceptual=fer" in inversion_note(manifest)
    manifest["config"]["inversion"]["perceptual"] = "expression"
    assert inversion_note(manifest) is None
    manifest["config"]["inversion"]["perceptual"] = "fer"
    manifest["inversion"] = None  # a retrieved image: nothing was reconstructed
    assert inversion_note(manifest) is None
