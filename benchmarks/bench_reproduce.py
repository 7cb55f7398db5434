"""Wall time of `emostyle reproduce` (offline profile): cold, again with nothing changed, and with
another job holding one core; optionally against another commit of the kit ("today's run").

Each run is a fresh process (`python -m emostyle reproduce`) writing into a scratch folder, so
`figures/` and `runs/` of the checkout are not touched. "Cold" means every notebook executes
(`--force`) and the kit's cache of affective-music results is emptied first; the weights stay.
The load is a process spinning on one core (what another user's job does). Prints a table and
writes benchmarks/results/reproduce.json. Takes the time of a few full runs: minutes each.

    python benchmarks/bench_reproduce.py                          # cold, warm, cold under load
    python benchmarks/bench_reproduce.py --baseline main          # also the same runs of `main`
    python benchmarks/bench_reproduce.py --baseline main --no-kit --kinds cold        # the baseline alone
    python benchmarks/bench_reproduce.py --only fig1,music --kinds cold,again         # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _reproduce(checkout: Path, scratch: Path, name: str, extra: list[str], force: bool) -> dict:
    """One `emostyle reproduce` of `checkout` in its own process; its wall time and manifest."""
    out, runs = scratch / name / "figures", scratch / "runs"
    command = [sys.executable, "-m", "emostyle", "reproduce", "--out", str(out),
               "--run-dir", str(runs / name), *extra] + (["--force"] if force and checkout == REPO else [])
    env = os.environ | {"PYTHONPATH": str(checkout)}
    begun = time.perf_counter()
    done = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - begun
    manifest = {}
    if (out / "manifest.json").exists():
        manifest = json.loads((out / "manifest.json").read_text())
    notebooks = manifest.get("notebooks", {})
    per_notebook = ({n: e.get("seconds") for n, e in notebooks.items()} if isinstance(notebooks, dict)
                    else manifest.get("timings_s", {}))
    return {"run": name, "seconds": round(seconds, 1), "returncode": done.returncode,
            "notebooks": per_notebook, "stderr_tail": done.stderr[-800:] if done.returncode else ""}


def _cold_cache() -> None:
    """Empty the kit's result caches (not the weights)."""
    from emostyle import registry

    shutil.rmtree(registry.home() / "cache", ignore_errors=True)


class _Spinner:
    """Another job holding one core: a process in a busy loop."""

    def __enter__(self):
        self.process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        return self

    def __exit__(self, *exc):
        self.process.kill()
        self.process.wait()


def _checkout(ref: str, scratch: Path) -> Path:
    """The files of commit `ref` in a scratch folder (`git archive`: the repository is not touched)."""
    path = scratch / f"kit-{ref.replace('/', '-')}"
    path.mkdir()
    archive = subprocess.run(["git", "archive", ref], cwd=REPO, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(path)], input=archive, check=True)
    return path


def _show(row: dict) -> None:
    per = ", ".join(f"{n}={s}" for n, s in row["notebooks"].items())
    print(f"{row['run']:<28} {row['seconds']:>8.1f} {row['returncode']:>3}  {per}", flush=True)
    if row["returncode"]:
        print(row["stderr_tail"], flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=None, help="a git ref to time the same way (e.g. main)")
    parser.add_argument("--only", default=None, help="passed to reproduce (e.g. fig1,music)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="passed to reproduce")
    parser.add_argument("--jobs", default=None, help="passed to reproduce (e.g. 1: one notebook at a time)")
    parser.add_argument("--kinds", default="cold,again,cold-loaded", help="which runs (default: all three)")
    parser.add_argument("--no-kit", action="store_true", help="time only the baseline")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "reproduce.json"))
    args = parser.parse_args(argv)
    extra = (["--only", args.only] if args.only else []) + [x for kv in args.overrides for x in ("--set", kv)]
    extra += ["--jobs", args.jobs] if args.jobs else []

    scratch = Path(tempfile.mkdtemp(prefix="bench-reproduce-"))
    kinds = args.kinds.split(",")
    kits = {} if args.no_kit else {"kit": REPO}
    if args.baseline:
        kits[args.baseline] = _checkout(args.baseline, scratch)
    rows = []
    print(f"{'run':<28} {'wall s':>8}  rc  per notebook (s)", flush=True)

    def run(label, checkout, kind, force):
        rows.append({"kit": label, **_reproduce(checkout, scratch, f"{label}-{kind}", extra, force=force)})
        _show(rows[-1])

    try:
        for label, checkout in kits.items():
            if "cold" in kinds:
                _cold_cache()
                run(label, checkout, "cold", True)
            if "again" in kinds and checkout == REPO:  # an older kit has no cache: its second run is its first
                run(label, checkout, "again", False)
            if "cold-loaded" in kinds:
                _cold_cache()
                with _Spinner():
                    run(label, checkout, "cold-loaded", True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    seconds = {r["run"]: r["seconds"] for r in rows if r["returncode"] == 0}
    ratios = {}
    for label in kits:
        cold, loaded = seconds.get(f"{label}-cold"), seconds.get(f"{label}-cold-loaded")
        if cold and loaded:
            ratios[f"{label}: loaded / idle"] = round(loaded / cold, 2)
    if args.baseline:
        for kind in ("cold", "cold-loaded"):
            a, b = seconds.get(f"kit-{kind}"), seconds.get(f"{args.baseline}-{kind}")
            if a and b:
                ratios[f"{kind}: kit / {args.baseline}"] = round(a / b, 2)
    for name, value in ratios.items():
        print(f"{name}: {value}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rows": rows, "ratios": ratios, "cpus": os.cpu_count()}, indent=2))
    return 0 if all(r["returncode"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
