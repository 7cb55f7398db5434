"""Does adaptive layer masking keep the image closer to the original at equal emotion change?

Compares the kit's layer masking (Eq. 8 read as a gate with a prior, `emostyle.guidance`)
with the plain L2 regulariser (Eq. 7) on the same loop, the same starts and the same
targets, sweeping l_sim so that each regulariser traces its curve of emotion change
against distance from the original; the curves are compared at equal emotion change.

- `scene`: the offline profile's LHQ-style set-up, real photos through the photo grader (one
  latent layer per grading operation), emotion read by the guidance space (the affect space's
  pleasure from colour); guidance pulls pleasure up (happy) or down (sad), directionally.
- `tiny`: the tiny profile's StyleGAN2 (8 W+ layers, random weights) in the tiny random CLIP
  space, guided toward a random unit target; "emotion" is the cosine to that target.

Emotion change is what the guidance space reads (it is not a judge's reading); distance is
the RMS pixel difference from the start image in [0, 1] units. Writes a JSON summary.

    python benchmarks/bench_masking.py --out masking.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from emostyle.guidance import guide
from emostyle.parts import EmbeddingSpace

L_SIMS = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3)


class _Pleasure(EmbeddingSpace):
    """The affect space's pleasure axis of scene images, as a directional loss: -sign * P."""

    name, dim = "pleasure", 1

    def __init__(self, sign: float):
        from emostyle.spaces.affect import scene_pad

        self.read, self.sign = scene_pad, sign

    def encode_image(self, images):
        return self.read(images)[:, :1]

    def encode_audio(self, path):
        raise NotImplementedError

    def encode_text(self, text):
        raise NotImplementedError

    def similarity(self, x, y):
        return x @ y.T

    def distance(self, image_emb, target):
        return -self.sign * image_emb[:, 0]


def _scene(seeds: int):
    from emostyle.models.photo_grader import load_photo_grader

    gen = load_photo_grader(size=128)
    starts = gen.sample(len(gen.photos) * seeds, torch.Generator().manual_seed(0))
    setups = []
    for sign, label in ((1.0, "happy"), (-1.0, "sad")):
        space = _Pleasure(sign)
        setups.append((label, gen, space, starts, {"audio": torch.zeros(1, 1)},
                       lambda im, space=space: space.encode_image(im)[:, 0] * space.sign))
    return setups


def _tiny(seeds: int):
    from emostyle.config import load_config
    from emostyle.pipeline import Pipeline

    pipe = Pipeline.from_config(load_config("tiny", {"device": "cpu"}))
    gen, space = pipe.generator, pipe.guidance_space
    starts = gen.sample(seeds, torch.Generator().manual_seed(0))
    setups = []
    for k in range(2):
        rng = torch.Generator().manual_seed(100 + k)
        target = torch.nn.functional.normalize(torch.randn(1, space.dim, generator=rng), dim=-1)
        setups.append((f"target{k}", gen, space, starts, {"audio": target},
                       lambda im, space=space, t=target: (space.encode_image(im) * t).sum(-1)))
    return setups


def _run(gen, space, starts, targets, masking, l_sim, steps, lr, mask_scale):
    r = guide(gen, space, starts, targets, {"audio": 1.0}, steps=steps, lr=lr, l_sim=l_sim,
              layer_masking=masking, mask_scale=mask_scale, progress=False)
    return r


def _at_equal_change(curve_a, curve_b):
    """Distances of a and b at the emotion changes both curves reach (linear interpolation)."""
    (ea, da), (eb, db) = curve_a, curve_b
    oa, ob = np.argsort(ea), np.argsort(eb)
    ea, da, eb, db = ea[oa], da[oa], eb[ob], db[ob]
    low, high = max(ea.min(), eb.min()), min(ea.max(), eb.max())
    if high <= low:
        return None
    levels = np.linspace(low, high, 7)[1:-1]
    return np.interp(levels, ea, da), np.interp(levels, eb, db), levels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", choices=["scene", "tiny", "both"], default="both")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--mask-scale", type=float, nargs="+", default=[0.01])
    parser.add_argument("--out", default="masking.json")
    args = parser.parse_args()
    torch.set_num_threads(1)

    setups = []
    if args.setup in ("scene", "both"):
        setups += [("scene/" + s[0], *s[1:]) for s in _scene(args.seeds)]
    if args.setup in ("tiny", "both"):
        setups += [("tiny/" + s[0], *s[1:]) for s in _tiny(args.seeds)]

    report = {"settings": vars(args), "l_sims": L_SIMS, "setups": {}}
    begun = time.perf_counter()
    for label, gen, space, starts, targets, emotion in setups:
        with torch.no_grad():
            base_images = gen.render(starts)
            base = emotion(base_images)
        curves = {}
        for masking, scale in [("off", None)] + [("gate", s) for s in args.mask_scale]:
            change, dist = [], []
            for l_sim in L_SIMS:
                r = _run(gen, space, starts, targets, masking, l_sim, args.steps, args.lr, scale or 1.0)
                with torch.no_grad():
                    change.append((emotion(r.images) - base).numpy())
                    dist.append((((r.images - base_images) / 2) ** 2).mean(dim=(1, 2, 3)).sqrt().numpy())
            curves[masking if scale is None else f"gate@{scale}"] = (np.array(change).T, np.array(dist).T)
        summary = {}
        change_off, dist_off = curves["off"]
        for name, (change, dist) in curves.items():
            if name == "off":
                continue
            ratios, wins = [], 0
            for i in range(change.shape[0]):
                found = _at_equal_change((change[i], dist[i]), (change_off[i], dist_off[i]))
                if found is None:
                    continue
                d_gate, d_off, _ = found
                ratios.extend((d_gate / np.maximum(d_off, 1e-12)).tolist())
                wins += int(np.median(d_gate) < np.median(d_off))
            summary[name] = {
                "median distance ratio (gate / L2) at equal emotion change": float(np.median(ratios)) if ratios else None,
                "quartiles": [float(np.percentile(ratios, 25)), float(np.percentile(ratios, 75))] if ratios else None,
                "starts where the gate is closer": f"{wins} of {change.shape[0]}",
                "max emotion change (gate, L2)": [float(change.max()), float(change_off.max())],
            }
        report["setups"][label] = {"summary": summary,
                                   "curves": {k: {"change": c.tolist(), "distance": d.tolist()} for k, (c, d) in curves.items()}}
        print(label, json.dumps(summary, indent=1))
    report["seconds"] = round(time.perf_counter() - begun, 1)
    with open(args.out, "w") as handle:
        json.dump(report, handle, indent=1)
    print(f"wrote {args.out} in {report['seconds']} s")


if __name__ == "__main__":
    main()
