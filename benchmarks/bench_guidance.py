"""Steps per second of the kit's guidance loop against a loop with the official code's structure.

    python benchmarks/bench_guidance.py                              # CPU, tiny profile, batch 1 and 8
    python benchmarks/bench_guidance.py --device cuda --size paper --steps 50

Both loops run side by side in one process, on the same networks (one Pipeline's parts) and
the same inputs, at each batch size; their runs are interleaved so that a change in machine
load hits both. The two loops:

- kit: `Pipeline.guide` (`emostyle.guidance.guide`): the target embeddings of the audio, the
  music and the lyrics are computed once before the loop (included in its time); each step
  renders, encodes the image once and backpropagates; the identity network is skipped since
  l_ID = 0.
- official structure: sound-guided `optimization/run_optimization.py` and EmoStyle's
  `run_optimization_comprehensive.py` with `criteria/soundclip_loss.py`, written here with the
  kit's networks: every step re-encodes the audio and the music (SoundCLIP on the mel inputs)
  and the text (CLIP tokenizer and text encoder), runs the identity network on the generated
  and the original image even though l_ID = 0, backpropagates with `retain_graph=True`, and
  re-renders the image every `frame_every` steps (its intermediate saves).

Both get the same mel inputs (the librosa work, done once before the loop by both codes) and
the same lyrics; both use compat="official" (images into CLIP by x7 upsampling + average
pooling, similarity times exp(0.07)), the plain L2 latent regulariser (layer masking off, the
code's default) and l_ID = 0, so on step 0 they compute the same loss: the script checks it,
and how far the final latents drift apart. The networks are frozen here; the official code
leaves CLIP, SoundCLIP and ArcFace trainable, so it also computes their weight gradients every
step: this baseline is faster than the real official code, and the ratio a lower bound.

`--size tiny` (default) uses the `tiny` profile's parts; `--size paper` the paper's
architectures at full size with random weights (StyleGAN2 at `--resolution`, default 1024 as
paper-ffhq; CLIP ViT-B/32; SoundCLIP ResNet-18; ArcFace IR-SE50): slow on a CPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from emostyle import builders
from emostyle.config import load_config
from emostyle.guidance import lr_at
from emostyle.models.arcface import ArcFaceIdentity, Backbone, tiny_arcface
from emostyle.models.clip import CLIP, Tokenizer, clip_input
from emostyle.models.soundclip import AudioEncoder, audio_features
from emostyle.pipeline import Pipeline
from emostyle.spaces.clip_space import OFFICIAL_SIM_SCALE, ClipSpace

REPO = Path(__file__).resolve().parents[1]
LYRICS = "and so my fellow americans ask not what your country can do for you"
OFFICIAL_WEIGHTS = {"audio": 0.6, "music": 0.2, "text": 0.2}  # criteria/soundclip_loss.py


# --- the parts ---------------------------------------------------------------------------------

def _settings(args) -> dict:
    """Overrides under which the kit computes the official code's loss (l_ID = 0)."""
    return {"device": args.device, "guidance.compat": "official", "guidance.layer_masking": False,
            "guidance.l_aud": OFFICIAL_WEIGHTS["audio"], "guidance.l_mus": OFFICIAL_WEIGHTS["music"],
            "guidance.l_tex": OFFICIAL_WEIGHTS["text"], "guidance.l_sim": args.l_sim, "guidance.l_id": 0.0,
            "guidance.lr": args.lr, "guidance.frame_every": args.frame_every}


def _randomise(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Seeded random weights for every matrix and kernel (CLIP's constructor leaves zeros)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.ndim > 1:
                fan = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=generator) * fan**-0.5)
    return module.eval().requires_grad_(False)


def _ir_se50() -> Backbone:
    """ArcFace IR-SE50's units (3, 4, 14, 3 at widths 64-512; 112 px faces)."""
    units = []
    for in_ch, width, depth in ((64, 64, 3), (64, 128, 4), (128, 256, 14), (256, 512, 3)):
        units += [(in_ch, width, 2)] + [(width, width, 1)] * (depth - 1)
    return Backbone(units, reduction=16, embed_dim=512, input_size=112)


def build_parts(args) -> tuple[Pipeline, ArcFaceIdentity]:
    """A Pipeline with the guidance parts, and the identity network the official loop always runs."""
    if args.size == "tiny":
        config = load_config("tiny", _settings(args))
        pipe = Pipeline.from_config(config)
        identity = ArcFaceIdentity(tiny_arcface(seed=config.seed).to(args.device))  # what builders give for l_ID > 0
        return pipe, identity
    overrides = {**_settings(args), "random_weights": True, "generator.size": args.resolution}
    config = load_config("paper-ffhq", overrides)
    generator = builders.build_generator(config, args.device)
    clip = _randomise(CLIP(embed_dim=512, resolution=224, vision_patch=32, vision_width=768, vision_layers=12,
                           context_length=77, vocab_size=49408, text_width=512, text_layers=12), config.seed)
    # A byte-level tokenizer (the BPE vocabulary is a weight file); the text encoder reads 77 tokens either way.
    space = ClipSpace(clip.to(args.device), Tokenizer.from_merges([]),
                      _randomise(AudioEncoder(), config.seed + 1).to(args.device), compat="official")
    identity = ArcFaceIdentity(_randomise(_ir_se50(), config.seed + 2).to(args.device))
    pipe = Pipeline(config, generator, space, space, None, ["random weights at the paper's sizes"])
    return pipe, identity


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def describe_sizes(pipe: Pipeline, identity: ArcFaceIdentity) -> dict:
    g, space = pipe.generator, pipe.guidance_space
    clip, audio = space.clip, space.audio_encoder
    backbone = identity.backbone
    stages = [getattr(audio.feature_extractor, f"layer{i}") for i in range(1, 5)]
    return {
        "generator": {"resolution": g.resolution, "n_layers": g.n_layers, "latent_dim": g.latent_dim,
                      "params": _count(g.net)},
        "clip": {"embed_dim": clip.embed_dim, "vision_width": clip.visual.conv1.out_channels,
                 "vision_layers": len(clip.visual.transformer.resblocks),
                 "text_width": clip.token_embedding.embedding_dim, "text_layers": len(clip.transformer.resblocks),
                 "params": _count(clip)},
        "soundclip": {"widths": [stage[0].conv1.out_channels for stage in stages],
                      "depths": [len(stage) for stage in stages], "params": _count(audio)},
        "arcface": {"units": len(backbone.body), "input": backbone.input_size, "params": _count(backbone)},
    }


# --- inputs ------------------------------------------------------------------------------------

def synth_audio(folder: Path) -> tuple[Path, Path]:
    """Two seeded 12 s clips at 44.1 kHz: a noisy chirp (the song) and a sine melody (the music)."""
    import soundfile

    rate, seconds = 44100, 12.0
    t = np.arange(int(rate * seconds)) / rate
    rng = np.random.default_rng(0)
    song = 0.4 * np.sin(2 * np.pi * (200 + 40 * t) * t) + 0.05 * rng.standard_normal(t.size)
    notes = 220.0 * 2 ** (np.array([0, 4, 7, 12, 7, 4]) / 12)
    music = 0.4 * np.sin(2 * np.pi * notes[(t * 2).astype(int) % notes.size] * t)
    paths = folder / "song.wav", folder / "music.wav"
    for path, y in zip(paths, (song, music)):
        soundfile.write(path, y.astype(np.float32), rate)
    return paths


# --- the two loops -----------------------------------------------------------------------------

def kit_loop(pipe: Pipeline, start: torch.Tensor, mels: dict, text: str, steps: int):
    """The kit: targets once (from the mel inputs, as ClipSpace.encode_audio), then Pipeline.guide."""
    space = pipe.guidance_space
    with torch.no_grad():
        targets = {k: F.normalize(space.audio_encoder(mels[k]).mean(0, keepdim=True), dim=-1)
                   for k in ("audio", "music")}
    targets["text"] = space.encode_text(text)
    result = pipe.guide(start, targets, method="emostyle", steps=steps, progress=False)
    return result.history["total"][0], result.latents


def official_loop(pipe: Pipeline, identity: ArcFaceIdentity, start: torch.Tensor, mels: dict, text: str,
                  steps: int, l_id: float = 0.0):
    """The official code's loop, on the kit's networks, batched over the items of `start`."""
    g, space, settings = pipe.generator, pipe.guidance_space, pipe.config.guidance
    latent_init = start.detach().clone()
    with torch.no_grad():
        img_orig = g.render(latent_init)
    latent = latent_init.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([latent], lr=settings.lr)
    first = None
    for i in range(steps):
        optimizer.param_groups[0]["lr"] = lr_at(i / steps, settings.lr)
        img_gen = g.render(latent)
        # SoundCLIPLoss.forward: the image, and again the audio, the music and the text, every step.
        image = F.normalize(space.clip.encode_image(clip_input(img_gen, "official")), dim=-1)
        audio = F.normalize(space.audio_encoder(mels["audio"]), dim=-1)
        music = F.normalize(space.audio_encoder(mels["music"]), dim=-1)
        tokens = space.tokenizer(text, truncate=True).to(latent.device)
        words = F.normalize(space.clip.encode_text(tokens), dim=-1)
        sims = {k: (image * x).sum(dim=-1) * OFFICIAL_SIM_SCALE
                for k, x in (("audio", audio), ("music", music), ("text", words))}
        cosine = 1 - sum(OFFICIAL_WEIGHTS[k] * sims[k] for k in sims)
        similarity = ((latent_init - latent) ** 2).sum(dim=(1, 2))
        loss = settings.l_sim * similarity + cosine + l_id * identity(img_gen, img_orig)  # runs at l_ID = 0 too
        if first is None:
            first = loss.detach().cpu().tolist()
        optimizer.zero_grad()
        loss.sum().backward(retain_graph=True)
        optimizer.step()
        if i % settings.frame_every == 0:  # save_intermediate_image_every: a fresh render
            with torch.no_grad():
                g.render(latent).cpu()
    with torch.no_grad():
        g.render(latent_init)
    return first, latent.detach()


# --- timing ------------------------------------------------------------------------------------

def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(run, device: str, steps: int):
    """(steps per second, output) of one whole run: its set-up and final render count too."""
    _sync(device)
    begun = time.perf_counter()
    out = run(steps)
    _sync(device)
    return steps / (time.perf_counter() - begun), out


def bench_batch(pipe, identity, mels, text, batch: int, args) -> dict:
    start = pipe.generator.sample(batch, torch.Generator().manual_seed(pipe.config.seed))
    loops = {
        "kit": lambda n: kit_loop(pipe, start, mels, text, n),
        "official": lambda n: official_loop(pipe, identity, start, mels, text, n),
    }
    for run in loops.values():  # warm-up: kernels, allocators, caches; not timed
        if args.warmup:
            run(args.warmup)
    rates = {name: [] for name in loops}
    outputs = {}
    for r in range(args.repeats):
        for name in (("kit", "official") if r % 2 == 0 else ("official", "kit")):
            rate, outputs[name] = timed(loops[name], args.device, args.steps)
            rates[name].append(rate)
    median = {name: statistics.median(v) for name, v in rates.items()}
    (kit_first, kit_w), (off_first, off_w) = outputs["kit"], outputs["official"]
    check = {"step0_loss_kit": kit_first, "step0_loss_official": off_first,
             "step0_max_abs_diff": max(abs(a - b) for a, b in zip(kit_first, off_first)),
             "final_latent_max_abs_diff": (kit_w - off_w).abs().max().item()}
    paired = [k / o for k, o in zip(rates["kit"], rates["official"])]  # runs made back to back
    return {"batch": batch, "steps_per_s": median, "runs": rates, "ratio": median["kit"] / median["official"],
            "ratio_per_repeat": paired, "ratio_median_of_repeats": statistics.median(paired), "check": check}


def check_targets(pipe: Pipeline, mels: dict, paths: dict) -> float:
    """Largest difference between the kit loop's audio targets and ClipSpace.encode_audio."""
    space = pipe.guidance_space
    with torch.no_grad():
        return max((F.normalize(space.audio_encoder(mels[k]).mean(0, keepdim=True), dim=-1)
                    - space.encode_audio(paths[k])).abs().max().item() for k in mels)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--size", default="tiny", choices=["tiny", "paper"],
                        help="tiny: the tiny profile's parts; paper: full-size architectures, random weights")
    parser.add_argument("--resolution", type=int, default=1024, help="StyleGAN2 size with --size paper (256: LHQ)")
    parser.add_argument("--steps", type=int, default=10, help="optimisation steps per timed run")
    parser.add_argument("--warmup", type=int, default=2, help="steps of the untimed warm-up run of each loop")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per loop; the median is reported")
    parser.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    parser.add_argument("--audio", help="song for the audio term (default: a synthetic 12 s clip)")
    parser.add_argument("--music", help="music for the music term (default: a synthetic 12 s melody)")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--l-sim", type=float, default=0.008, help="the official default lambda_similarity")
    parser.add_argument("--frame-every", type=int, default=20, help="the official save_intermediate_image_every")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads; 0: torch's choice. One by default: with every core busy, a "
                             "CPU shared with other jobs slows to a crawl (OpenMP threads wait on each other)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "guidance.json"))
    args = parser.parse_args(argv)
    try:
        batches = [int(b) for b in args.batches.split(",")]
    except ValueError:
        parser.error(f"--batches must be comma-separated integers, got {args.batches!r}")
    if any(b < 1 for b in batches) or min(args.steps, args.repeats) < 1 or args.warmup < 0:
        parser.error("batches, --steps and --repeats must be >= 1, --warmup >= 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    if args.threads < 0:
        parser.error("--threads must be >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)

    built = time.perf_counter()
    pipe, identity = build_parts(args)
    built = time.perf_counter() - built
    with tempfile.TemporaryDirectory() as folder:
        song, music = synth_audio(Path(folder))
        paths = {"audio": Path(args.audio or song), "music": Path(args.music or music)}
        space = pipe.guidance_space  # the same window of long audio as the kit (official: a seeded random crop)
        mels = {k: audio_features(p, space.crop, space.seed).to(args.device) for k, p in paths.items()}
        target_diff = check_targets(pipe, mels, paths)
    sizes = describe_sizes(pipe, identity)
    results = [bench_batch(pipe, identity, mels, LYRICS, b, args) for b in batches]

    threads = torch.get_num_threads()
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu ({threads} thread{'s' * (threads > 1)})"
    report = {
        "device": device, "threads": threads, "torch": torch.__version__, "python": platform.python_version(),
        "platform": platform.platform(), "size": args.size, "sizes": sizes, "build_s": round(built, 3),
        "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats,
        "settings": {"compat": "official", "layer_masking": False, "l_id": 0.0, "l_sim": args.l_sim, "lr": args.lr,
                     "frame_every": args.frame_every, "weights": OFFICIAL_WEIGHTS,
                     "audio": args.audio or "synthetic", "music": args.music or "synthetic", "text": LYRICS},
        "target_vs_encode_audio_max_abs_diff": target_diff,
        "results": results,
    }
    print_report(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten: {out}")
    return report


def print_report(report: dict) -> None:
    s = report["sizes"]
    g = s["generator"]
    print(f"device {report['device']} · torch {report['torch']} · size {report['size']} · "
          f"{report['steps']} steps x {report['repeats']} runs (median), {report['warmup']} warm-up steps")
    print(f"generator {g['resolution']} px, W+ {g['n_layers']}x{g['latent_dim']} "
          f"({g['params'] / 1e6:.2f} M) · CLIP {s['clip']['params'] / 1e6:.2f} M · "
          f"SoundCLIP {s['soundclip']['params'] / 1e6:.2f} M · ArcFace {s['arcface']['params'] / 1e6:.2f} M")
    print(f"\n{'batch':>5}  {'kit steps/s':>12}  {'official steps/s':>16}  {'ratio kit/official':>18}  "
          f"{'paired':>6}  runs steps/s (kit | official)")
    for r in report["results"]:
        runs = " | ".join(" ".join(f"{x:.2f}" for x in r["runs"][name]) for name in ("kit", "official"))
        print(f"{r['batch']:>5}  {r['steps_per_s']['kit']:>12.3f}  {r['steps_per_s']['official']:>16.3f}  "
              f"{r['ratio']:>18.2f}  {r['ratio_median_of_repeats']:>6.2f}  {runs}")
    print("ratio: of the medians; paired: median of the ratios of runs made back to back")
    print("\nsame math (l_ID = 0): step-0 loss of both loops, and the final latents after the timed steps")
    print(f"  audio targets vs ClipSpace.encode_audio: max |diff| {report['target_vs_encode_audio_max_abs_diff']:.2e}")
    for r in report["results"]:
        c = r["check"]
        kit, off = c["step0_loss_kit"], c["step0_loss_official"]
        print(f"  batch {r['batch']}: step-0 loss kit {kit[0]:.6f} official {off[0]:.6f} (item 0), "
              f"max |diff| over items {c['step0_max_abs_diff']:.2e}; final latents max |diff| "
              f"{c['final_latent_max_abs_diff']:.2e}")
    ok = all(r["check"]["step0_max_abs_diff"] < 1e-5 for r in report["results"])
    print(f"  {'OK: same loss on step 0' if ok else 'MISMATCH: the loops do not compute the same loss'}")


if __name__ == "__main__":
    main()
