"""Reading weight files and loading them strictly, with one clear error per way they go wrong.

Every network of the kit reads its official checkpoint through these two functions, so a
missing file names the command that fetches it, an HTML page saved by a failed download or
a truncated file says so, and a checkpoint of another architecture lists the keys that
do not fit instead of torch's long message.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import nn

__all__ = ["check_download", "read_checkpoint", "read_state_dict", "without_data_parallel", "load_strict",
           "build_from_shapes", "load_network", "random_state"]


def _hint(fetch: str | tuple[str, ...]) -> str:
    names = (fetch,) if isinstance(fetch, str) else fetch
    return "run " + " or ".join(f"`emostyle weights fetch {n}`" for n in names)


def check_download(path: str | Path, what: str, fetch: str | tuple[str, ...]) -> Path:
    """`path` if it is a plausible download of `what` (registry entries `fetch`); else a clear error."""
    path = Path(path)
    hint = _hint(fetch)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}; {hint}")
    with open(path, "rb") as handle:
        head = handle.read(512).lstrip()
    if not head:
        raise ValueError(f"{path} is empty, not {what}; delete it and {hint}")
    if head[:1] == b"<":
        raise ValueError(f"{path} is an HTML page (a failed download?), not {what}; delete it and {hint}")
    return path


def read_checkpoint(path: str | Path, what: str, fetch: str | tuple[str, ...], safe_globals: Iterable[type] = (),
                    map_location: str | torch.device = "cpu") -> Any:
    """torch.load(weights_only=True) of a checked download; `safe_globals` are the only
    classes besides tensors that the file may hold (never weights_only=False)."""
    path = check_download(path, what, fetch)
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for unreadable files
        text = str(error).strip()
        unsafe = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        if unsafe:  # torch's own message advises weights_only=False: never, on a file we did not make
            raise ValueError(f"{path} holds a Python object ({unsafe.group(1)}) besides tensors, which is not "
                             f"part of {what}: the kit loads only tensors, so this is another kind of file; "
                             f"delete it and {_hint(fetch)}") from None
        reason = text.splitlines()[0] if text else type(error).__name__
        raise ValueError(f"{path} is not a readable PyTorch checkpoint of {what} (truncated download or "
                         f"another format?): {reason}; delete it and {_hint(fetch)}") from None


def without_data_parallel(state: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    """The state dict without the `module.` prefix that torch.nn.DataParallel adds to every key."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return state


def read_state_dict(path: str | Path, what: str, fetch: str | tuple[str, ...],
                    map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """A state dict of tensors from a checked download (unwrapping `{"state_dict": ...}` and
    the DataParallel prefix); a clear error when the file holds something else."""
    state = read_checkpoint(path, what, fetch, map_location=map_location)
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict of tensors "
                         f"(torch.save(model.state_dict())) for {what}")
    return dict(without_data_parallel(state))


def load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> nn.Module:
    """model.load_state_dict(state, strict=True), with one readable error listing the missing,
    unexpected and mis-shaped keys when the checkpoint does not fit."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
                  if k in own and own[k].shape != v.shape]
    if missing or unexpected or mismatched:
        raise ValueError(f"{what} does not fit the network its keys describe: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}, shape mismatches (checkpoint vs model) {mismatched[:5]}")
    model.load_state_dict(dict(state), strict=True)
    return model


def build_from_shapes(cls: Callable[..., nn.Module], state: Mapping[str, torch.Tensor],
                      sizes: Callable[[Mapping[str, torch.Tensor]], dict], what: str, expected: str) -> nn.Module:
    """`cls(**sizes(state))`, the network the tensors' shapes describe, loaded strictly from
    `state`; a key that `sizes` looks for and does not find is one clear error that names
    the `expected` file and keys."""
    try:
        config = sizes(state)
    except (KeyError, AttributeError, IndexError) as err:
        raise ValueError(f"not a {what} state dict (missing {err}); expected the keys of {expected}") from None
    return load_strict(cls(**config), state, what)


def load_network(path_or_state: str | Path | Mapping | None, device: str | torch.device, registry_name: str,
                 read: Callable[[Path], Mapping], build: Callable[[Mapping, str], nn.Module]) -> nn.Module:
    """A network from a weight file (None: the registry's `registry_name`) or a state dict.

    Files are read with `read`, turned into a network by `build(state, name)`, and kept for the
    process: each (file, device) loads once and is shared.
    """
    if isinstance(path_or_state, Mapping):
        return build(path_or_state, "the given state dict").to(device)
    if path_or_state is None:
        from emostyle import registry

        path_or_state = registry.path(registry_name)
    return _load_cached(read, build, str(Path(path_or_state).resolve()), str(torch.device(device)))


@functools.lru_cache(maxsize=8)
def _load_cached(read, build, path: str, device: str) -> nn.Module:
    return build(read(Path(path)), path).to(device)


def random_state(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """A seeded random state dict in `model`'s own layout, for the tiny profile's networks:
    weights scaled by 1/sqrt(fan-in), BatchNorm running variances in [0.5, 1.5)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = value
        elif key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(value.shape, generator=generator)
        else:
            fan = value[0].numel() if value.ndim > 1 else 1
            state[key] = torch.randn(value.shape, generator=generator) * fan**-0.5
    return state
