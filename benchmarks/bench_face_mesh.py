"""Seconds per guidance step of the offline face reader (MediaPipe's face mesh in torch),
against the kit of another commit, side by side.

    python benchmarks/bench_face_mesh.py --baseline 86f327e          # one thread, batch 12
    python benchmarks/bench_face_mesh.py --baseline main --batch 4 --threads 2

One step as guidance takes it: 64 px DCGAN faces in [-1, 1] -> framing, detection, the
landmarker's crops, landmarks, blendshapes -> FACS prototype probabilities, then the gradient
back to the pixels. Each timing is a fresh process running one checkout's code (`git archive`
of `--baseline` into a scratch folder; the repository is not touched) on the same faces; the
kit's and the baseline's runs alternate, so that a change in machine load hits both. The
blendshapes of both are compared, and their gradient to the pixels: a speed-up must not change
what the mesh reads or where it guides. Needs the bundle (`emostyle weights fetch
mediapipe-face-landmarker`). Writes benchmarks/results/face_mesh.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Runs in the checkout's own process: prints {"seconds": [...], "blendshapes": [...], "gradient": [...]}
# (the last step's, the gradient to the pixels flattened).
_STEP = """
import json, sys, time, torch
torch.set_num_threads({threads})
from emostyle.models.face_mesh import load_face_mesh
from emostyle.spaces.affect import prototype_probabilities
mesh = load_face_mesh()
faces = torch.rand({batch}, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
seconds = []
for step in range({steps} + 1):
    x = faces.clone().requires_grad_(True)
    begun = time.perf_counter()
    shapes = mesh(x)[0]
    prototype_probabilities(shapes).sum().backward()
    seconds.append(time.perf_counter() - begun)
print(json.dumps({{"seconds": seconds[1:], "blendshapes": shapes.detach().tolist(), "gradient": x.grad.flatten().tolist()}}))
"""


def _time(checkout: Path, args) -> dict:
    code = _STEP.format(threads=args.threads, batch=args.batch, steps=args.steps)
    env = os.environ | {"PYTHONPATH": str(checkout)}
    done = subprocess.run([sys.executable, "-c", code], cwd=checkout, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{checkout}: the step failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="a commit of the kit to compare with")
    parser.add_argument("--batch", type=int, default=12, help="faces per step (the start study's 12)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per process (after one untimed)")
    parser.add_argument("--repeats", type=int, default=3, help="processes per side, alternating")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (reproduce gives each notebook 1)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "face_mesh.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        baseline = Path(scratch) / "baseline"
        baseline.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.baseline], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(baseline)], input=archive.stdout, check=True)
        runs = {"kit": [], "baseline": []}
        for _ in range(args.repeats):
            for side, checkout in (("kit", REPO), ("baseline", baseline)):
                runs[side].append(_time(checkout, args))
    per_face = {side: statistics.median(s for r in rs for s in r["seconds"]) / args.batch for side, rs in runs.items()}
    kit, base = (runs[side][-1]["blendshapes"] for side in ("kit", "baseline"))
    largest = max(abs(a - b) for row_a, row_b in zip(kit, base, strict=True) for a, b in zip(row_a, row_b, strict=True))
    gradients = [runs[side][-1]["gradient"] for side in ("kit", "baseline")]
    largest_gradient = max(abs(a - b) for a, b in zip(*gradients, strict=True))
    result = dict(baseline=args.baseline, batch=args.batch, threads=args.threads, steps=args.steps,
                  repeats=args.repeats, seconds_per_face_step=per_face,
                  speedup=per_face["baseline"] / per_face["kit"], largest_blendshape_difference=largest,
                  largest_gradient_difference=largest_gradient)
    print(f"seconds per face and step (median of {args.repeats * args.steps} steps, batch {args.batch}, "
          f"{args.threads} thread(s)): kit {per_face['kit']:.4f}, {args.baseline} {per_face['baseline']:.4f}; "
          f"{result['speedup']:.2f}x; blendshapes differ by at most {largest:.1e}, their gradient to the pixels by "
          f"{largest_gradient:.1e}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
