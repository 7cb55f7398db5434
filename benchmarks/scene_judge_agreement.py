"""How the colour-emotion judge (Ou et al.) reads graded photos, against the guide (Valdez & Mehrabian).

    python benchmarks/scene_judge_agreement.py [--grades 400] [--size 128] [--seed 0]

Grades the offline profile's real photos (registry `photo-*`, fetch them with
`emostyle weights fetch --profile offline`) with the photo grader and prints:
1. the agreement over random grades between the judge's valence and the guide's pleasure
   (Valdez & Mehrabian on the same 8-bit images), pooled and within each photo: Pearson and
   Spearman correlations and the share of image pairs that the two order differently;
2. for each grading operation at -1 and +1 (tanh strength), the change of the judge's
   valence and arousal and of the guide's pleasure and arousal, per photo.
Not a test: it measures how far the judge is from a restatement of the guide.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from emostyle.judges import ColourEmotionJudge
from emostyle.models.photo_grader import OPERATIONS, load_photo_grader
from emostyle.parts import to_uint8
from emostyle.spaces.affect import scene_pad


def _latents(index: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """(B, n_ops, 2) latents: strengths (B, n_ops), photo indices (B,)."""
    return torch.stack([strength, index.float().view(-1, 1).expand_as(strength)], dim=2)


def _readings(grader, latents: torch.Tensor) -> dict[str, np.ndarray]:
    """Judge and guide readings of the saved 8-bit images of the latents."""
    saved = to_uint8(grader.render(latents))
    judge = ColourEmotionJudge().read(saved)
    # The guide reads the same quantised image the judge reads.
    pad = scene_pad(torch.from_numpy(saved).permute(0, 3, 1, 2).float() / 127.5 - 1).numpy()
    return {"valence": judge["valence"], "arousal": judge["arousal"], "P": pad[:, 0], "A": pad[:, 1]}


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    rank = lambda v: np.argsort(np.argsort(v))  # noqa: E731 - no ties in continuous readings
    return float(np.corrcoef(rank(x), rank(y))[0, 1])


def _discordant(x: np.ndarray, y: np.ndarray) -> float:
    """Share of pairs (i, j) that x and y order differently."""
    dx, dy = np.sign(x[:, None] - x[None]), np.sign(y[:, None] - y[None])
    pairs = np.triu(np.ones_like(dx, dtype=bool), 1)
    return float((dx * dy < 0)[pairs].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grades", type=int, default=400, help="random grades (spread over the photos)")
    parser.add_argument("--size", type=int, default=128, help="photo size in px")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    grader = load_photo_grader(args.size)
    n_photos, n_ops = len(grader.names), grader.n_layers
    generator = torch.Generator().manual_seed(args.seed)
    index = torch.arange(args.grades) % n_photos
    # Strengths N(0, 1) before tanh: grades across the whole range, not only mild ones.
    with torch.no_grad():
        r = _readings(grader, _latents(index, torch.randn(args.grades, n_ops, generator=generator)))
    print(f"{args.grades} random grades of {n_photos} photos at {args.size} px")
    print(f"{'':16s}{'pearson':>9s}{'spearman':>9s}{'discord':>9s}   (judge valence vs guide P; arousal vs A)")
    rows = [("pooled", np.ones(args.grades, bool))] + [(n, (index == i).numpy()) for i, n in enumerate(grader.names)]
    for name, m in rows:
        v_p = np.corrcoef(r["valence"][m], r["P"][m])[0, 1]
        a_a = np.corrcoef(r["arousal"][m], r["A"][m])[0, 1]
        v, p = r["valence"][m], r["P"][m]
        print(f"{name:16s}{v_p:9.3f}{_spearman(v, p):9.3f}{_discordant(v, p):9.3f}   arousal {a_a:6.3f}")

    print("\nchange from the photo (strength 0) to the operation at tanh = -1 / +1, per photo")
    big = 20.0  # tanh(20) = 1 in float32
    with torch.no_grad():
        base = _readings(grader, _latents(torch.arange(n_photos), torch.zeros(n_photos, n_ops)))
        for k, (op, _) in enumerate(OPERATIONS):
            for sign in (-1, 1):
                s = torch.zeros(n_photos, n_ops)
                s[:, k] = sign * big
                g = _readings(grader, _latents(torch.arange(n_photos), s))
                d = {key: g[key] - base[key] for key in g}
                cells = "  ".join(
                    f"{n.removeprefix('photo-')}: V {d['valence'][i]:+6.2f} A {d['arousal'][i]:+5.2f} | "
                    f"P {d['P'][i]:+5.2f}"
                    for i, n in enumerate(grader.names)
                )
                print(f"{op:>11s} {sign:+d}  {cells}")


if __name__ == "__main__":
    main()
