"""The EmoStyle pipeline: affective music, retrieval, guidance, on parts chosen by a profile.

`Pipeline.from_config` is the one place that turns configuration names into concrete
parts (a generator, a retrieval space, a guidance space, an identity network); the
stages below only call the parts' interfaces (`emostyle.parts`), so a notebook never
branches on the profile. `STAGES` describes the stages for Figure 1.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from . import registry
from .audio import read_audio
from .builders import build_pipeline, resolve_weights
from .config import Config, dataset_config, dataset_label, load_config
from .guidance import MANIPULATE_METHODS, GuidanceResult, guide, method as get_method, method_targets
from .parts import EmbeddingSpace, Generator, IdentityLoss, Judge
from .retrieval import Candidates, Retrieval, rank, read_candidates

if TYPE_CHECKING:
    from .inversion import Inversion
    from .photos import Photo

__all__ = ["STAGES", "Pipeline", "manipulate", "resolve_weights"]

STAGES = (
    dict(title="Retrieval", section="3.1", equation="Eq. 1-2", module="emostyle.retrieval",
         inputs=["song A", "N latents w"], outputs=["w with max softmax(E_img . E_a)"], parts=[]),
    dict(title="Affective music", section="3.2", equation="Eq. 3", module="emostyle.affective",
         inputs=["song A"], outputs=["lyrics L", "polarity P", "music M"], parts=[]),
    dict(title="Guidance", section="3.3", equation="Eq. 4-8", module="emostyle.guidance",
         inputs=["w", "A", "M", "L"], outputs=["manipulated G(w_a)"], parts=[]),
)


@dataclass
class Pipeline:
    """The parts of one profile, and the three stages of the paper on them."""

    config: Config
    generator: Generator
    retrieval_space: EmbeddingSpace
    guidance_space: EmbeddingSpace
    identity: IdentityLoss | None = None
    judge: Judge | None = None  # reads emotion on the saved images; never the guiding network
    notes: list[str] = field(default_factory=list)  # fallbacks taken while building, for manifests
    directions: torch.Tensor | None = None  # guidance.directions: the basis the edit keeps to (None: free)

    @classmethod
    def from_config(cls, config: Config | str, overrides: dict | None = None, progress: bool = True) -> "Pipeline":
        """Build (or reuse from this process's cache) the parts named by `config` (a profile's
        name or a Config) with dotted-key `overrides`; `progress`: a bar for the one long part
        (the emotion directions, `guidance.directions=emotions`, the first time)."""
        config = load_config(config, overrides) if isinstance(config, str) else config.with_overrides(overrides)
        return build_pipeline(cls, config, progress)

    # -- descriptions ---------------------------------------------------------------
    def describe(self) -> dict[str, str]:
        """Which concrete part stands behind each role (for manifests and figure notes)."""
        a = self.config.affective
        along = f", along {self.guidance_space.compares}" if self.guidance_space.compares else ""
        return {"profile": self.config.profile, "generator": f"{self.generator.name} ({self.generator.resolution} px)",
                "retrieval space": self.retrieval_space.name, "guidance space": self.guidance_space.name + along,
                "identity": self.identity.name if self.identity else "none",
                "judge": self.judge.name if self.judge else "none",
                "lyrics": a.lyrics, "polarity": a.polarity, "music": a.music,
                "edit": "free" if self.directions is None else f"along {len(self.directions)} emotion directions",
                "audio read by": getattr(self.guidance_space, "audio", "the space's audio encoder")}

    @property
    def note_parts(self) -> list[str]:
        """The phrases of `note`, in order (figures of two datasets print the shared ones once)."""
        d = self.describe()
        return [f"profile {d['profile']}", f"generator {d['generator']}", f"retrieval in {d['retrieval space']}",
                f"guidance in {d['guidance space']} (audio read by {d['audio read by']})", f"lyrics by {d['lyrics']} unless given",
                f"polarity {d['polarity']}", f"music {d['music']}", *self.notes]

    @property
    def note(self) -> str:
        """One line for the face of every figure this pipeline makes."""
        return " · ".join(self.note_parts)

    def stages(self) -> list[dict]:
        """STAGES with this pipeline's parts filled in (Figure 1)."""
        d, g = self.describe(), self.config.guidance
        masked = g.layer_masking and g.compat != "official"
        parts = [[f"generator: {d['generator']}", f"joint space: {d['retrieval space']}", "softmax over N candidates"],
                 [f"lyrics: {d['lyrics']}", f"polarity: {d['polarity']}", f"music: {d['music']}", "MIDI -> WAV renderer"],
                 [f"space: {d['guidance space']}", f"identity: {d['identity']}",
                  "Adam on the latent, lr ramp" if self.directions is None else
                  f"Adam, {len(self.directions)} emotion directions",
                  "adaptive layer masking g" if masked else "L2 latent regulariser"]]
        return [dict(stage, parts=p) for stage, p in zip(STAGES, parts)]

    # -- stage 2: affective music ----------------------------------------------------
    def affective_music(self, song: str | Path, out_dir: str | Path, lyrics: str | None = None,
                        label: str | None = None):
        """Paper 3.2 for one song: lyrics, polarity, emotional music (MIDI and WAV)."""
        from .affective import affective_music

        return affective_music(song, self.config, out_dir=out_dir, label=label, lyrics=lyrics)

    # -- stage 1: retrieval --------------------------------------------------------------
    def retrieve(self, song: str | Path, n: int | None = None, seed: int | None = None,
                 progress: bool = True, candidates: Candidates | None = None) -> Retrieval:
        """Paper 3.1: the best of N generated images for `song`. `candidates`: ones already read
        (`read_candidates`), to rank several songs against one set without drawing it again."""
        audio = self.retrieval_space.encode_audio(song)
        if candidates is None:
            candidates = self.read_candidates(n, seed, progress)
        return rank(candidates, self.retrieval_space, audio)

    def read_candidates(self, n: int | None = None, seed: int | None = None, progress: bool = True) -> Candidates:
        """The N generated images retrieval ranks (`retrieval.candidates`, drawn with `seed`),
        read in the retrieval space. The readings are kept in the kit's home (`manifest.keep`)
        under all they depend on (the configuration and the files it names, N, the seed, torch's
        version, device and thread count): the notebooks rank the same sets again and again (the
        retrieval figure's set is the first song's in Figures 2-4 and Table 1, and Figure 3's
        sounds draw the songs' seeds), and the offline profile's 128 faces take seconds to read.
        A kept set is rendered again, not read."""
        from .manifest import keep, kept

        r = self.config.retrieval
        n, seed = n or r.candidates, self.config.seed if seed is None else seed
        key = self.stored_key(n, seed)
        store = registry.home() / "cache" / "candidates"
        readings = kept(store, key, self.generator.device)
        candidates = read_candidates(self.generator, self.retrieval_space, n=n, batch=r.batch, seed=seed,
                                     progress=progress, readings=readings)
        if readings is None:
            keep(store, key, (candidates.embeddings, candidates.confidences))
        return candidates

    def stored_key(self, *parts) -> bytes:
        """What a result kept in the kit's home (`manifest.keep`) depends on besides `parts`: the
        configuration and the files it names, torch's version, the device and the thread count
        (the order of float sums)."""
        import json

        from .manifest import config_digest

        return config_digest(dataclasses.asdict(self.config)) + json.dumps(
            [*parts, torch.__version__, str(self.generator.device), torch.get_num_threads()]).encode()

    # -- instead of retrieval: the user's photo ------------------------------------------------
    def invert(self, photo: str | Path | Photo, steps: int | None = None, progress: bool = True) -> Inversion:
        """A user's photo (path or `emostyle.photos.Photo`) as a latent of this pipeline's generator.

        The photo is read and checked (`emostyle.photos`); a face is FFHQ-aligned from its
        landmarks (`inversion.align=ffhq`), anything else centre-cropped; the encoder (e4e),
        when there is one, gives the start that projection refines (`emostyle.inversion`).
        Returns an `Inversion`; guide its `latent` with its `generator` (it renders with the
        noise maps fitted to the photo, or grades the photo itself)."""
        from . import builders
        from .align import align_photo
        from .inversion import invert
        from .photos import Photo, centre_square, read_photo, to_tensor

        inv = self.config.inversion
        photo = photo if isinstance(photo, Photo) else read_photo(photo)
        size = self.generator.resolution
        with registry.recording() as files:  # kept with the result: a later run's manifest lists them
            if self.config.domain == "face" and inv.align == "ffhq":
                pixels = align_photo(photo.pixels, size, where=str(photo.path), zoom=inv.zoom)
                how = f"face aligned as FFHQ (zoom {inv.zoom:g}) to {size} px"
            else:
                pixels, how = centre_square(photo.pixels, size), f"centre square resized to {size} px"
            target = to_tensor(pixels, self.generator.device)
            perceptual, encoder = builders.build_inversion(self.config, str(self.generator.device), self.generator,
                                                           self.guidance_space, self.notes)
            with torch.no_grad():
                start = encoder(target) if encoder is not None else None
            result = invert(self.generator, target, perceptual, steps=inv.steps if steps is None else steps,
                            lr=inv.lr, l_mse=inv.l_mse, l_noise=inv.l_noise, noise=inv.noise,
                            noise_ramp=inv.noise_ramp, start=start, starts=inv.starts, seed=self.config.seed,
                            progress=progress)
        result.notes = [*photo.notes, how] + (["start from the e4e encoder"] if encoder is not None else [])
        result.source, result.weights, result.settings = str(photo.path), files, inversion_settings(self.config)
        return result

    # -- stage 3: guidance -----------------------------------------------------------------
    @property
    def subject(self) -> str:
        """What the images show, in the words the guidance space reads ("a happy <subject>")."""
        return "face" if self.config.domain == "face" else "landscape"

    def targets(self, songs: list[str | Path], music: list[str | Path | None],
                texts: list[str | None]) -> dict[str, torch.Tensor | None]:
        """Target embeddings (B, D) of audio, music and text in the guidance space, computed once.

        A piece in `music` may be None: one composed for lyrics of no polarity
        (`AffectiveResult.guiding_wav`). Its target is the origin, which has no direction and so
        no pull, as a neutral text's (VADER 0) has none."""
        space = self.guidance_space

        def stack(items, encode):
            if any(x is None for x in items):
                return None
            return torch.cat([encode(x) for x in items]).to(self.generator.device)

        def piece(path):
            return space.encode_audio(path) if path is not None else torch.zeros(1, space.dim)

        return {"audio": stack(songs, space.encode_audio),
                "music": torch.cat([piece(m).to(self.generator.device) for m in music]),
                "text": stack([t if t else None for t in texts], space.encode_text)}

    def weights(self, method: str) -> dict[str, float]:
        """l_Aud, l_Mus, l_Tex of a method; EmoStyle's come from the config (paper defaults)."""
        if method == "emostyle":
            g = self.config.guidance
            return {"audio": g.l_aud, "music": g.l_mus, "text": g.l_tex}
        return get_method(method).weights()

    def guide(self, start: torch.Tensor, targets: dict[str, torch.Tensor | None], method: str = "emostyle",
              steps: int | None = None, progress: bool = True) -> GuidanceResult:
        """Paper 3.3: optimise `start` latents (B, n_layers, dim) for one method."""
        g = self.config.guidance
        official = g.compat == "official"
        weights = self.weights(method)
        # compat=official: the scripts' text slot (wo-audio, wo-music), their masking flag, which
        # is never on (argparse type=bool, default False; no run_*.sh passes it), and their IDLoss,
        # which detaches the generated image (criteria/id_loss.py:31): L_ID without a gradient.
        targets = method_targets(get_method(method), targets, g.compat)
        masking = "gate" if g.layer_masking and not official else "off"
        identity = self.identity if g.l_id > 0 else None  # the identity network only runs when it counts
        return guide(self.generator, self.guidance_space, start.to(self.generator.device), targets, weights,
                     steps=steps or g.steps, lr=g.lr, l_id=g.l_id if identity else 0.0, l_sim=g.l_sim,
                     l_coarse=g.l_coarse, identity=identity, identity_gradient=not official, layer_masking=masking,
                     mask_scale=g.mask_scale, reg_reduction=g.reg_reduction, frame_every=g.frame_every,
                     directions=self.directions, jitter=g.jitter, progress=progress)


def inversion_settings(config: Config) -> dict:
    """What a photo's inversion depends on, and a run that edits it must share: the kind of image,
    the generator (the seed too where its weights are random) and the inversion's settings."""
    return {"domain": config.domain, "random_weights": config.random_weights,
            "generator": dataclasses.asdict(config.generator), "inversion": dataclasses.asdict(config.inversion),
            **({"seed": config.seed} if config.random_weights else {})}


def _song_caption(music, audio: dict | None) -> str:
    """What a run's figure titles say of the song: its lyrics' polarity and, where the space
    read it (`audio_reading`), how its audio was heard ("lyrics neutral (+0.00), audio P -0.23
    (Explosion)")."""
    from .spaces.affect import audio_caption

    heard = f", {audio_caption(audio)}" if audio is not None else ""
    return f"lyrics {music.polarity.caption()}{heard}"


def manipulate(song: str | Path, profile: str | Config = "offline", method: str = "emostyle",
               seed: int | None = None, out: str | Path = "out", overrides: dict | None = None,
               lyrics: str | Path | None = None, label: str | None = None, progress: bool = True,
               force: bool = False, image: str | Path | Inversion | None = None, dataset: str | None = None) -> dict:
    """The whole pipeline for one song; writes before/after images, frames, loss curve,
    music and manifest.json into `out`, and returns the manifest.

    dataset: one of the profile's datasets, run as the figures run it (`config.dataset_label`: its
    label, a word of it, or the kind of image, e.g. "scenes"), with `overrides` applied to it alone;
    the manifest names it. A dataset of another profile (paper-ffhq's LHQ is paper-lhq's) starts from
    that profile: settings changed in a `Config` given as `profile` do not reach it, `overrides` do.

    The song is transcribed unless `lyrics` are given (text, or the Path of a text file that holds
    them); `label` stands in where no lyrics are read
    from it (a sound's label), by default the .txt of the song's name beside it, as `reproduce
    --songs` reads a song (`samples.known_lyrics`).

    `out` appears only complete (`emostyle.outputs.staged_output`): it replaces a previous
    result of `manipulate` there; a folder holding other files (reproduce's figures among them, or
    a file put beside a previous result) is refused unless `force`, and one holding the song or the
    photo always. Warnings are shown
    once each and recorded in the manifest.

    image: the user's photo to edit instead of a retrieved image; it is inverted into the
    generator (`Pipeline.invert`), and photo.png, reconstruction.png and comparison.png/pdf (photo,
    reconstruction, result, with the judge's valence of each) are written too. An `Inversion`
    already made by `Pipeline.invert` (same profile) is used as it is: one photo, several songs."""
    import json

    from .manifest import MANIPULATION_KEYS, collected_warnings
    from .outputs import staged_output

    if dataset is not None:  # resolved first: a name that matches no dataset fails before `out` is touched
        base = profile if isinstance(profile, Config) else load_config(profile)
        dataset = dataset_label(base, dataset, overrides)
        profile, overrides = dataset_config(base, dataset, overrides), None
    inputs = (song,) + ((image,) if isinstance(image, (str, Path)) else ())
    if isinstance(lyrics, Path):  # a file of lyrics: read now, and kept out of `out` like the song
        from .samples import read_lyrics

        inputs, lyrics = inputs + (lyrics,), read_lyrics(lyrics)
    # The manifest lists the files this run used, not those of the process's earlier runs.
    with staged_output(out, force=force, result_keys=MANIPULATION_KEYS, inputs=inputs) as stage, \
            collected_warnings() as caught, registry.recording():
        _manipulate(song, profile, method, seed, stage, overrides, lyrics, label, progress, caught, image, dataset)
    return json.loads((Path(out).expanduser() / "manifest.json").read_text())


def _manipulate(song, profile, method, seed, out, overrides, lyrics, label, progress, caught, image, dataset) -> None:
    from .figures import (frames_figure, judge_note, loss_figure, photo_figure, save_figure, save_image, shown_frames,
                          signed)
    from .inversion import Inversion
    from .manifest import run_manifest, write_json
    from .photos import read_photo
    from .preflight import check
    from .samples import known_lyrics

    if method not in MANIPULATE_METHODS:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(MANIPULATE_METHODS)}")
    overrides = dict(overrides or {})
    if seed is not None:
        overrides["seed"] = seed
    config = profile.with_overrides(overrides) if isinstance(profile, Config) else load_config(profile, overrides)
    config.resolve_device()  # a device this machine lacks fails before anything loads
    song = Path(song)
    read_audio(song)  # a missing, corrupt, silent or too short song fails before any model loads
    if lyrics is None and label is None:
        label = known_lyrics(song)
    inverted = image if isinstance(image, Inversion) else None
    photo = read_photo(image) if image is not None and inverted is None else None  # and so does a bad photo
    if inverted is not None:
        ours = inversion_settings(config)
        differ = sorted(k for k in {*inverted.settings, *ours} if inverted.settings.get(k) != ours.get(k))
        if differ:
            raise ValueError(f"the photo was inverted with other settings ({', '.join(differ)}) than this run's: "
                             "invert it with this run's configuration, or pass the photo's file")
    if method == "emogen":  # not a weighting of the guidance loss: EmoGen generates from the song's category
        from .emogen import manipulate as emogen_manipulate

        if image is not None:
            raise ValueError("EmoGen generates a new image from the song; it cannot edit a photo: "
                             "drop --image or choose another method")
        check(config, lyrics_given=lyrics is not None, command="manipulate --method emogen", method="emogen")
        manifest = emogen_manipulate(song, config, out, lyrics=lyrics, label=label)
        write_json(out / "manifest.json", {**manifest, "dataset": dataset, "warnings": caught})
        return
    check(config, lyrics_given=lyrics is not None, command="manipulate")  # then all missing files and packages at once
    timings = {}

    begun = time.perf_counter()
    pipe = Pipeline.from_config(config, progress=progress)
    timings["build"] = time.perf_counter() - begun

    begun = time.perf_counter()
    music = pipe.affective_music(song, out / "music", lyrics=lyrics, label=label)
    timings["affective_music"] = time.perf_counter() - begun

    begun = time.perf_counter()
    found = None
    if image is None:
        found = pipe.retrieve(song, progress=progress)
        start = found.best_latent
        timings["retrieval"] = time.perf_counter() - begun
    else:
        if inverted is None:
            inverted = pipe.invert(photo, progress=progress)
        registry.replay(inverted.weights)  # an Inversion made before this run read them for it
        start = inverted.latent
        # Guidance edits the photo: the generator now renders with what was fitted to it.
        pipe = dataclasses.replace(pipe, generator=inverted.generator)
        timings["inversion"] = time.perf_counter() - begun

    begun = time.perf_counter()
    text = music.transcript.text or None
    targets = pipe.targets([song], [music.guiding_wav], [text])
    result = pipe.guide(start, targets, method=method, progress=progress)
    timings["guidance"] = time.perf_counter() - begun

    from .notes import manipulation_notes
    from .scoring.metrics import judge_resolution, judge_valence, space_valence, target_valences

    both = torch.cat([result.start_images, result.images])
    space_before, space_after = space_valence(both, pipe.guidance_space, pipe.subject).tolist()
    pulls = target_valences(targets, pipe.guidance_space, pipe.subject)
    with torch.no_grad():  # how surely the guiding model saw the input's subject (the face mesh's presence)
        seen = float(pipe.guidance_space.read_image(result.start_images[:1])[1][0])
    judged = judge_valence(both, pipe.judge).tolist() if pipe.judge is not None else [float("nan")] * 2
    before, after = (None if v != v else v for v in judged)  # NaN: no face found, or no judge
    resolution = judge_resolution(result.start_images, pipe.judge, base=judged[:1]) if pipe.judge is not None \
        else float("nan")
    if pipe.judge is not None and None in (before, after):
        unread = " and ".join(n for n, v in (("before.png", before), ("after.png", after)) if v is None)
        warnings.warn(f"the judge ({pipe.judge.name}) found no face in {unread}: its valence there is n/a; "
                      "look at the images", stacklevel=2)
    save_image(result.start_images[0], out / "before.png")
    save_image(result.images[0], out / "after.png")
    # How the guidance space's audio reader heard the song: music or a sound, and what it heard.
    audio = pipe.guidance_space.read_audio(song) if hasattr(pipe.guidance_space, "read_audio") else None
    frames, frames_caption, frames_note = shown_frames(result.frames), None, pipe.note
    if pipe.judge is not None:  # the emotion seen to move, step by step
        read = judge_valence(torch.cat([images[:1] for _, images in frames]), pipe.judge).tolist()
        frames_caption = [f"judge {signed(v)}" for v in read]
        frames_note = f"{judge_note(pipe.judge.name, read, space=False)}\n{pipe.note}"
    save_figure(frames_figure(frames, note=frames_note, caption=frames_caption,
                              title=f"{get_method(method).title}, step by step: {Path(song).stem}, "
                                    f"{_song_caption(music, audio)}"), "frames", out)
    save_figure(loss_figure(result.history, title=f"{get_method(method).title}: loss terms", note=pipe.note,
                            weights=result.term_weights), "loss", out)
    torch.save({"start": start.cpu(), "final": result.latents.cpu()}, out / "latents.pt")
    if inverted is not None:
        photo_valence = judge_valence(inverted.target, pipe.judge).tolist() if pipe.judge is not None else [None]
        save_image(inverted.target[0], out / "photo.png")
        save_image(inverted.reconstruction[0], out / "reconstruction.png")
        save_figure(photo_figure(inverted.target, inverted.reconstruction, result.images[:1], inverted.error,
                                 [photo_valence[0], before, after], pipe.judge.name if pipe.judge else None,
                                 title=f"{get_method(method).title} on your photo: {Path(song).stem}, "
                                       f"{_song_caption(music, audio)}", note=pipe.note), "comparison", out)

    manifest = run_manifest(
        config, timings={k: round(v, 3) for k, v in timings.items()}, method=method, song=str(song), dataset=dataset,
        parts=pipe.describe(), notes=pipe.notes,
        lyrics={"text": music.transcript.text, "source": music.transcript.source, "backend": music.transcript.backend,
                "quality": music.transcript.quality},
        polarity=music.polarity.to_json(),
        audio=audio,
        music={"midi": str(music.midi_path), "wav": str(music.wav_path), "renderer": music.renderer},
        categories=music.categories.to_json() if music.categories else None,  # EmoGen's eight categories
        retrieval=None if found is None else {"space": found.space, "scores": found.scores.tolist(),
                                              "probs": found.probs.tolist(), "best": found.best,
                                              "seen": None if found.seen is None else found.seen.tolist()},
        inversion=None if inverted is None else {
            "photo": inverted.source, "notes": inverted.notes, "steps": len(inverted.losses["total"]),
            "seconds": round(inverted.seconds, 3), "error": inverted.error, "start_error": inverted.start_error,
            "final_losses": {k: v[-1] for k, v in inverted.losses.items() if v},
            "valence_of_photo": None if photo_valence[0] != photo_valence[0] else photo_valence[0]},
        guidance={"settings": result.settings, "initial_losses": {k: v[0] for k, v in result.history.items()},
                  "final_losses": {k: v[-1] for k, v in result.history.items()},
                  "seconds": round(result.seconds, 3)},
        # Did the image move the way the song's polarity says? "before"/"after" are read on the
        # saved images by the judge, a model that did not guide them; "in_guidance_space" by the
        # space that was optimised ("a happy ..." minus "a sad ..."), which can report changes
        # nobody sees. "resolution": the largest change the judge reads when the input moves by
        # one pixel; a smaller change is within its error. "confidence": how surely the guiding
        # model saw the input's subject; under "min_confidence" its reading, and its pull, are a guess.
        # "targets": which way each of the song's targets pulls, read as the images are (None: absent).
        valence={"judge": pipe.judge.name if pipe.judge else None, "before": before, "after": after,
                 "resolution": None if resolution != resolution else resolution,
                 "polarity": music.polarity.emotion,
                 "in_guidance_space": {"before": space_before, "after": space_after, "confidence": seen,
                                       "min_confidence": pipe.guidance_space.min_confidence,
                                       "targets": pulls}},
    )
    manifest["valence"]["notes"] = manipulation_notes(manifest)  # what the numbers above mean, if anything
    write_json(out / "manifest.json", {**manifest, "warnings": caught})
