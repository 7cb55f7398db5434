"""environment.yml (conda users) stays in step with pyproject.toml."""

import tomllib

import pytest
import yaml

from conftest import REPO


def _name(requirement: str) -> str:
    for sep in "<>=[ ;":
        requirement = requirement.split(sep)[0]
    return requirement.strip().lower().replace("_", "-")


def test_environment_yml_lists_every_dependency_of_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {_name(r): r for r in project["dependencies"]}
    for extra in ("offline", "sweep", "lab", "test", "paper"):
        wanted.update({_name(r): r for r in project["optional-dependencies"][extra]})
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {_name(r): r for r in pip if not r.startswith("-e")}
    assert sorted(set(wanted) - set(listed)) == [], "missing from environment.yml"
    assert sorted(set(listed) - set(wanted)) == [], "in environment.yml but not in pyproject.toml"
    for name, requirement in wanted.items():
        assert listed[name].replace(" ", "") == requirement.replace(" ", ""), name


def test_setuptools_reads_pyproject_without_deprecation_warnings(repo_root):
    """Each install printed the `project.license` table warning three times."""
    import warnings

    pytest.importorskip("setuptools", minversion="77")
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Event loops that earlier in-process papermill runs left to the garbage collector may be
        # collected in here; their ResourceWarning is not setuptools' (CI failed on one, stop 41).
        warnings.simplefilter("ignore", ResourceWarning)
        dist = apply_configuration(Distribution(), str(repo_root / "pyproject.toml"))
    assert [f"{w.category.__name__}: {str(w.message)[:80]}" for w in caught] == []
    assert dist.metadata.license_expression == "MIT"
