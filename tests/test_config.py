"""Profiles, typed validation and overrides of the one configuration system."""

import pytest

from emostyle.config import PROFILES, ConfigError, load_config, parse_overrides


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_loads_and_names_itself(profile):
    config = load_config(profile)
    assert config.profile == profile
    assert config.guidance.steps >= 1


def test_paper_profiles_carry_the_paper_settings():
    ffhq, lhq = load_config("paper-ffhq"), load_config("paper-lhq")
    assert (ffhq.guidance.l_id, ffhq.guidance.l_sim) == (0.008, 0.004)
    assert (lhq.guidance.l_id, lhq.guidance.l_sim) == (0.002, 0.0)
    for c in (ffhq, lhq):
        assert c.guidance.steps == 300 and c.generator.truncation == 0.7
        assert (c.guidance.l_aud, c.guidance.l_mus, c.guidance.l_tex) == (0.6, 0.2, 0.2)
        assert c.retrieval.space == "imagebind" and c.guidance.space == "clip"
    assert ffhq.generator.size == 1024 and lhq.generator.size == 256


def test_cli_style_overrides_are_typed():
    overrides = parse_overrides(["guidance.steps=50", "guidance.lr=0.05", "guidance.layer_masking=false", "seed=7"])
    config = load_config("tiny", overrides)
    assert config.guidance.steps == 50 and config.guidance.lr == 0.05
    assert config.guidance.layer_masking is False and config.seed == 7


@pytest.mark.parametrize("overrides, message", [
    ({"guidance.stepz": 3}, "unknown config key 'guidance.stepz'; did you mean steps"),
    ({"guidanse.steps": 3}, "unknown config key 'guidanse'"),
    ({"guidance.steps": "many"}, "guidance.steps must be an integer"),
    ({"guidance.steps": 0}, "guidance.steps must be >= 1"),
    ({"guidance.lr": 0}, "guidance.lr must be > 0"),
    ({"generator.truncation": 1.5}, "generator.truncation must be <= 1.0"),
    ({"guidance.compat": "legacy"}, "guidance.compat must be one of paper, official"),
    ({"guidance.l_aud": float("nan")}, "guidance.l_aud must be finite"),
    ({"device": "tpu"}, "device must be one of auto, cpu, cuda"),
])
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config("offline", overrides)


def test_a_section_given_whole_sets_its_keys_and_keeps_the_rest():
    """guidance={} once replaced the section with the dataclass's defaults (the paper's CLIP guidance),
    and the error then asked for CLIP weights; now a mapping sets the keys it names."""
    base = load_config("offline")
    assert load_config("offline", {"guidance": {}}) == base
    config = load_config("offline", {"guidance": {"steps": 3, "lr": 0.01}})
    assert (config.guidance.steps, config.guidance.lr, config.guidance.face_reader) == (3, 0.01, base.guidance.face_reader)
    assert load_config("offline", {"datasets": {}}).datasets == {}  # a free mapping is replaced: this profile alone
    with pytest.raises(ConfigError, match="unknown config key 'guidance.stepz'"):
        load_config("offline", {"guidance": {"stepz": 3}})


def test_the_profile_is_not_an_override():
    """--set profile=paper-lhq ran the offline models and recorded the run as paper-lhq."""
    with pytest.raises(ConfigError, match="profile cannot be overridden: choose it with --profile"):
        load_config("offline", {"profile": "paper-lhq"})


def test_unknown_profile_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="valid profiles: paper-lhq, paper-ffhq, offline, tiny"):
        load_config("paper")


def test_malformed_override():
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_overrides(["guidance.steps"])


def test_datasets_are_profiles_with_the_run_overrides():
    from emostyle.config import dataset_configs

    overrides = {"guidance.steps": 5, "seed": 3}
    datasets = dataset_configs(load_config("paper-ffhq", overrides), overrides)
    assert set(datasets) == {"FFHQ", "LHQ"}
    assert datasets["LHQ"].profile == "paper-lhq" and datasets["LHQ"].generator.size == 256
    assert all(d.guidance.steps == 5 and d.seed == 3 for d in datasets.values())
    assert dataset_configs(load_config("tiny")).keys() == {"tiny"}


def test_a_bad_dataset_entry_is_refused_at_load():
    with pytest.raises(ConfigError, match="unknown profile"):
        load_config("tiny", {"datasets": {"x": {"profile": "nope"}}})
    with pytest.raises(ConfigError, match="unknown config key 'guidance.nope'"):
        load_config("tiny", {"datasets": {"x": {"overrides": {"guidance.nope": 1}}}})


def test_overrides_as_text_as_papermill_passes_them():
    from emostyle.config import ConfigError, dataset_configs, load_config

    assert load_config("tiny", '{"guidance.steps": 7, "seed": 3}').guidance.steps == 7  # papermill -p: JSON text
    assert load_config("tiny", "guidance.steps: 7").guidance.steps == 7  # or YAML
    offline = load_config("offline")
    assert {c.guidance.steps for c in dataset_configs(offline, '{"guidance.steps": 9}').values()} == {9}
    with pytest.raises(ConfigError, match="must be a mapping of dotted keys"):
        load_config("tiny", "[1, 2]")
    with pytest.raises(ConfigError, match="are not JSON or YAML"):
        load_config("tiny", "{a: [}")


@pytest.mark.parametrize("overrides, message", [
    ({"domain": "scene"}, "scoring.judge=fer does not read scene images (domain=scene): choose scoring.judge=colour or emogen"),
    ({"scoring.judge": "colour"}, "scoring.judge=colour does not read face images (domain=face): choose"),
])
def test_a_judge_of_the_other_domain_is_refused_at_load(overrides, message):
    """--set domain=scene alone had the FER face classifier "judge" a photo of a building."""
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        load_config("tiny", overrides)
    assert "\n" not in str(info.value)


def test_a_runs_face_judge_judges_the_faces_and_the_scenes_keep_theirs():
    """reproduce --set scoring.judge=landmarks (the README's other face judge) gave the scenes a face
    judge too; refused there, it failed every notebook after minutes of work."""
    from emostyle.config import dataset_configs

    run = {"scoring.judge": "landmarks"}
    configs = dataset_configs(load_config("offline", run), run)
    assert {c.domain: c.scoring.judge for c in configs.values()} == {"face": "landmarks", "scene": "colour"}


def test_a_dataset_is_named_by_its_label_or_a_word_of_it():
    """`manipulate --dataset scenes` edits the offline profile's LHQ-style scenes as the figures
    do (their own generator, judge and regulariser), with the run's own settings on top; a name
    that matches no dataset, or several, is one line that lists them. A face generator told to
    draw scenes is refused: it ran, and drew a ghost of a face."""
    from emostyle.config import dataset_config

    offline = load_config("offline", {"seed": 5})
    scenes = dataset_config(offline, "scenes", {"seed": 5, "guidance.steps": 7})
    assert (scenes.domain, scenes.generator.kind, scenes.scoring.judge) == ("scene", "grader", "colour")
    assert scenes.guidance.l_sim == dataset_config(offline, "LHQ-style scenes").guidance.l_sim != offline.guidance.l_sim
    assert (scenes.seed, scenes.guidance.steps) == (5, 7)
    for name in ("lhq", "FFHQ", "faces"):
        assert dataset_config(offline, name).domain == ("scene" if name == "lhq" else "face")
    with pytest.raises(ConfigError, match=r"'lake' is none of profile offline's datasets: 'FFHQ-style faces', 'LHQ-style scenes'"):
        dataset_config(offline, "lake")
    with pytest.raises(ConfigError, match="'style' names more than one"):
        dataset_config(offline, "style")
    for name in ("lhq", "scenes"):  # a paper profile's LHQ holds scenes too
        assert dataset_config(load_config("paper-ffhq"), name).profile == "paper-lhq"
    with pytest.raises(ConfigError, match="generator.kind=dcgan draws face images, not scene ones"):
        load_config("offline", {"domain": "scene"})  # the generator's error first: --dataset mends the judge too
    with pytest.raises(ConfigError, match="generator.kind=grader draws scene images"):
        dataset_config(offline, "scenes", {"domain": "face", "scoring.judge": "fer"})
    # The run's settings are checked on the dataset named, not on the profile's faces first, and a judge
    # named for it is not set aside as `reproduce` sets aside a face judge for the scenes.
    assert dataset_config(offline, "scenes", {"scoring.judge": "colour", "generator.kind": "grader"}).domain == "scene"
    with pytest.raises(ConfigError, match="scoring.judge=fer does not read scene images"):
        dataset_config(offline, "scenes", {"scoring.judge": "fer"})
    with pytest.raises(ConfigError, match="profile tiny has no datasets .*--profile offline --dataset scenes"):
        dataset_config(load_config("tiny"), "scenes")
