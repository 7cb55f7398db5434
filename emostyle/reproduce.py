"""`emostyle reproduce`: execute the notebooks with papermill to regenerate the paper's figures.

Parameters come from the profile (injected into each notebook's `parameters` cell), the
executed notebooks stay in a run directory, figures and tables go to `figures/`, and a run
manifest records the profile, resolved config, versions, device, seeds and how long each
notebook took. A failing cell stops the run with the notebook, the cell and the error named.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from .config import load_config
from .manifest import run_manifest, write_json

__all__ = ["NOTEBOOKS", "Notebook", "ReproduceError", "reproduce", "notebook_dir", "check_parameters_cell"]

_KERNEL = "emostyle-kit"


@dataclass(frozen=True)
class Notebook:
    """A notebook of the kit and the figures/tables (keys for `--only`) it regenerates."""

    name: str
    keys: tuple[str, ...]
    outputs: tuple[str, ...]  # file stems under figures/ (PNG+PDF or CSV+MD)


NOTEBOOKS = (
    Notebook("00_quickstart", ("fig1", "quickstart"), ("fig1_architecture", "quickstart")),
    Notebook("01_retrieval", ("retrieval",), ("retrieval",)),
    Notebook("02_affective_music", ("music",), ("affective_music",)),
    Notebook("03_guidance", ("fig2", "fig3"), ("fig2_lyrics", "fig3_sounds", "guidance_losses")),
    Notebook("04_ablations", ("fig4",), ("fig4_ablations",)),
    Notebook("05_vila_scoring", ("table1",), ("table1",)),
)


def _local_kernel_manager():
    """Kernels that talk to papermill over local (IPC) sockets rather than TCP: the run needs
    no network interface at all (it works with the network cut, `unshare -n`) and opens no port."""
    from jupyter_client.manager import KernelManager

    class LocalKernelManager(KernelManager):
        def __init__(self, **kwargs):
            super().__init__(transport="ipc", **kwargs)

    return LocalKernelManager


class ReproduceError(RuntimeError):
    """A notebook failed; the message names the notebook, the cell and the error."""


def notebook_dir() -> Path:
    """The kit's notebooks/ folder (beside the package in a checkout)."""
    return Path(__file__).resolve().parents[1] / "notebooks"


def check_parameters_cell(path: str | Path) -> None:
    """papermill silently ignores parameters when no cell is tagged `parameters`: refuse that."""
    nb = json.loads(Path(path).read_text())
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise ReproduceError(f"{path} must have exactly one cell tagged 'parameters' (found {len(tagged)})")


def _select(only: str | list[str] | None) -> list[Notebook]:
    if not only:
        return list(NOTEBOOKS)
    keys = [k.strip() for k in (only.split(",") if isinstance(only, str) else only) if k.strip()]
    valid = sorted({k for nb in NOTEBOOKS for k in nb.keys} | {nb.name for nb in NOTEBOOKS})
    unknown = [k for k in keys if k not in valid]
    if unknown:
        raise ValueError(f"unknown --only entries {unknown}; valid: {', '.join(valid)}")
    return [nb for nb in NOTEBOOKS if nb.name in keys or set(nb.keys) & set(keys)]


def _register_kernel(root: Path) -> None:
    """A kernelspec for this very interpreter, so papermill never picks another Python
    (the NoSuchKernel failures under conda and virtual environments)."""
    spec = root / "kernels" / _KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "EmoStyle kit", "language": "python"}))
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(root), os.environ.get("JUPYTER_PATH")]))


def reproduce(profile: str = "offline", *, only: str | list[str] | None = None, device: str = "auto",
              out: str | Path = "figures", run_dir: str | Path | None = None,
              overrides: dict | None = None, progress: bool = True) -> dict:
    """Execute the selected notebooks on `profile`; returns the run manifest."""
    import papermill

    overrides = dict(overrides or {})
    if device != "auto":
        overrides["device"] = device
    config = load_config(profile, overrides)  # a bad profile or override fails before any notebook runs
    selected = _select(only)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    run_dir = Path(run_dir or Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{profile}").resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    _register_kernel(run_dir)

    timings: dict[str, float] = {}
    bar = tqdm(selected, desc=f"reproduce ({profile})", unit="notebook", disable=not progress)
    for nb in bar:
        bar.set_postfix_str(nb.name)
        source = notebook_dir() / f"{nb.name}.ipynb"
        check_parameters_cell(source)
        params = {"profile": profile, "overrides": overrides, "figures_dir": str(out),
                  "run_dir": str(run_dir / nb.name)}
        begun = time.perf_counter()
        try:
            papermill.execute_notebook(str(source), str(run_dir / f"{nb.name}.ipynb"), parameters=params,
                                       kernel_name=_KERNEL, cwd=str(notebook_dir()), progress_bar=False,
                                       kernel_manager_class=_local_kernel_manager())
        except papermill.PapermillExecutionError as error:
            raise ReproduceError(
                f"notebook {nb.name} failed in cell {error.exec_count} ({error.ename}: {error.evalue}); "
                f"executed copy: {run_dir / (nb.name + '.ipynb')}") from None
        timings[nb.name] = round(time.perf_counter() - begun, 2)

    manifest = run_manifest(config, timings=timings, notebooks=[nb.name for nb in selected],
                            run_dir=str(run_dir), figures_dir=str(out))
    write_json(run_dir / "manifest.json", manifest)
    write_json(out / "manifest.json", manifest)
    return manifest
