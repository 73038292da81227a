"""pyproject's lower bounds are exactly what ``requirements/floor.lock`` pins (and so what
``scripts/test-floor.sh`` tests): a floor raised or lowered on one side only fails here."""

from __future__ import annotations

import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from helpers import ROOT

FLOORED = ("apache-airflow", "apache-airflow-providers-amazon", "apache-airflow-providers-openlineage")


def declared_floors() -> dict[str, Version]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"], *project["optional-dependencies"]["openlineage"]]
    floors: dict[str, Version] = {}
    for text in requirements:
        requirement = Requirement(text)
        lows = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
        if lows:
            floors[canonicalize_name(requirement.name)] = max(lows)
    return floors


def locked_versions() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in (ROOT / "requirements" / "floor.lock").read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, _, version = line.strip().partition("==")
            pins[canonicalize_name(name.split("[")[0])] = Version(version)
    return pins


def test_pyproject_floors_are_what_the_floor_lock_pins() -> None:
    floors, pins = declared_floors(), locked_versions()
    for name in FLOORED:
        assert floors[name] == pins[name], f"{name}: pyproject says >={floors[name]}, floor.lock pins {pins[name]}"


def test_every_runtime_requirement_is_satisfied_by_the_floor_lock() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = locked_versions()
    for text in project["dependencies"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert pins[name] in requirement.specifier, f"floor.lock pins {name}=={pins[name]}, pyproject needs {text}"
