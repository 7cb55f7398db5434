"""Shared fixtures: the reference data of ../shared/data (never committed; see its README)."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_data() -> Path:
    return Path(os.environ.get("EMOSTYLE_MIRROR", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of the reference files (audio, aesthetic heads, GRU-EBS vocabularies)."""
    root = _shared_data()
    if not root.is_dir():
        pytest.skip(f"reference data not found at {root}; set EMOSTYLE_MIRROR")
    return root


@pytest.fixture(scope="session")
def sound_samples(shared_data) -> dict:
    """The eight sound-guided samples by name (drill, explosion, ...)."""
    folder = shared_data / "audio" / "sound-guided"
    return {p.stem: p for p in sorted(folder.glob("*.wav"))}


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def cached_weight():
    """`cached_weight(name)`: the registry file's path, or skip the test naming the fetch command."""
    from emostyle import registry

    def get(name: str) -> Path:
        try:
            return registry.path(name)
        except registry.MissingWeightError:
            pytest.skip(f"{name} is not in the cache: run `emostyle weights fetch {name}`")

    return get


@pytest.fixture(scope="session")
def dcgan(cached_weight):
    """The offline profile's 64 px DCGAN face generator (registry `dcgan-faces`), or a skip."""
    from emostyle.models.dcgan import load_dcgan

    return load_dcgan(cached_weight("dcgan-faces"))
