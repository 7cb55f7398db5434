"""The preflight names real registry entries and installable packages, and follows the configuration."""

import pytest

from emostyle import registry
from emostyle.config import PROFILES, load_config
from emostyle.preflight import PACKAGES, requirements


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("overrides", [{}, {"affective.music": "gru-ebs", "affective.polarity": "chatglm"},
                                       {"affective.lyrics": "whisper-at", "guidance.space": "affect"},
                                       {"affective.audio_reader": "cues", "retrieval.space": "affect"}])
def test_every_requirement_is_a_registry_entry_or_a_known_package(profile, overrides):
    need = requirements(load_config(profile, overrides))
    for name in need.files:
        assert registry.entry(name).name == name  # a KeyError here is a name the registry lacks
    assert set(need.modules) <= set(PACKAGES)


def test_requirements_follow_the_configuration():
    paper = requirements(load_config("paper-lhq"))
    assert {"stylegan2-lhq-256", "whisper-at-large-v1", "arcface-ir-se50", "chatglm3-6b"} <= set(paper.files)
    assert "imagebind-huge" not in paper.files  # retrieval falls back to CLIP space without it
    given = requirements(load_config("paper-lhq"), lyrics_given=True)
    assert not any(n.startswith("whisper") for n in given.files) and "whisper_at" not in given.modules
    assert requirements(load_config("tiny")).files == ["whisper-ct2-base"]  # random networks read no weights
    cues = requirements(load_config("offline", {"affective.audio_reader": "cues"}))
    assert "musicnn-msd" not in cues.files and "musicnn-msd" in requirements(load_config("offline")).files
    offline = requirements(load_config("offline"))
    assert {"yamnet-onnx", "yamnet-class-map"} <= set(offline.files) and "onnx" in offline.modules
    assert "yamnet-onnx" not in cues.files and "onnx" not in cues.modules
    music_only = requirements(load_config("offline", {"affective.audio_reader": "musicnn+mode"}))
    assert "yamnet-onnx" not in music_only.files and "musicnn-msd" in music_only.files
    assert "arcface-ir-se50" not in requirements(load_config("paper-lhq", {"guidance.l_id": 0.0})).files


def test_emogen_as_a_method_is_checked_for_all_it_reads(monkeypatch, tmp_path):
    """`manipulate --method emogen` lists Stable Diffusion, the unpublished mapper and the emotion space
    together, before a 4 GB download could find the next file missing."""
    from emostyle.models.emogen import EMOTIONS
    from emostyle.preflight import MissingRequirementsError, check

    offline = load_config("offline")
    need = requirements(offline, method="emogen")
    space = {f"emogen-space-{e}-{k}" for e in EMOTIONS for k in ("mean", "std")}
    assert {"stable-diffusion-v1-5", "emogen-mapper"} | space <= set(need.files) and "diffusers" in need.modules
    assert "dcgan-faces" in requirements(offline).files and "dcgan-faces" not in need.files and "whisper-ct2-base" in need.files  # no guidance; the lyrics still
    mapper = tmp_path / "mapper.pth"
    mapper.touch()
    chosen = requirements(load_config("offline", {"emogen.mapper": str(mapper), "emogen.space": str(tmp_path)}),
                          method="emogen")
    assert "emogen-mapper" not in chosen.files and not space & set(chosen.files)  # files the user named
    assert requirements(load_config("tiny"), method="emogen").files == ["whisper-ct2-base"]
    monkeypatch.setattr(registry, "path", lambda name: (_ for _ in ()).throw(registry.MissingWeightError(name)))
    with pytest.raises(MissingRequirementsError, match=r"stable-diffusion-v1-5.*emogen-mapper that no public source"):
        check(offline, command="manipulate --method emogen", method="emogen")


def test_doctor_reads_every_dataset_of_a_profile():
    """`reproduce` guides the offline profile's scenes beside its faces: what they read (the photo
    grader's photos) is part of what the profile needs, though `manipulate` on faces does not read it."""
    from emostyle.models.photo_grader import PHOTOS

    offline = load_config("offline")
    photos = {name for name, *_ in PHOTOS}
    assert photos <= set(requirements(offline, datasets=True).files)
    assert not photos & set(requirements(offline).files)
    assert set(requirements(offline).files) <= set(requirements(offline, datasets=True).files)


@pytest.mark.parametrize("profile", PROFILES)
def test_fetching_a_profile_covers_all_that_doctor_asks_for(profile):
    """`emostyle weights fetch --profile P` (the README's way to get a profile's files) fetches every
    file that `doctor` and `reproduce` then ask for, both datasets' included: a user who fetched the
    profile is not told afterwards that it lacks a file."""
    need = requirements(load_config(profile), datasets=True).files
    assert set(need) <= set(registry.profile_files(profile)), sorted(set(need) - set(registry.profile_files(profile)))
