"""The distributions built from the repository: an sdist and a wheel (built from that sdist, so the sdist is
complete) whose metadata ``twine check`` passes, and a wheel that installs with its runtime dependencies only
(no moto) into a fresh environment, where Airflow lists the provider, every example DAG parses, and the CLI
plans a local file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import ROOT, MiB

UV = [sys.executable, "-m", "uv"]
CHECK = """
import importlib.util, sys
import airflow_ecr_layers.operators, airflow_ecr_layers.hooks, airflow_ecr_layers.sensors
import airflow_ecr_layers.triggers, airflow_ecr_layers.assets, airflow_ecr_layers.cli
from airflow_ecr_layers import get_provider_info
assert importlib.util.find_spec("moto") is None, "moto is installed"
assert not any(m == "moto" or m.startswith("moto.") for m in sys.modules)
assert importlib.util.find_spec("airflow_ecr_layers.core.engine.attempt") is not None
print(get_provider_info()["package-name"], airflow_ecr_layers.__file__)
"""
# Parses each folder given with a DagBag as the DAG processor does, and prints its DAG ids and import errors.
PARSE = """
import json, sys
try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow 3.0
    from airflow.models.dagbag import DagBag
found = {}
for folder in sys.argv[1:]:
    bag = DagBag(dag_folder=folder)  # AIRFLOW__CORE__LOAD_EXAMPLES is False
    found[folder] = {"dags": sorted(bag.dag_ids), "errors": {k: v[-300:] for k, v in bag.import_errors.items()}}
print(json.dumps(found))
"""
BROKEN_DAG = "from airflow.sdk import DAG\nfrom airflow_ecr_layers.operators import NoSuchOperator\n"


@dataclass(frozen=True)
class Installed:
    dist: Path
    venv: Path
    env: dict[str, str]
    cwd: Path

    def bin(self, name: str) -> Path:
        return self.venv / "bin" / name


def run(*argv: str | Path, cwd: Path = ROOT, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    assert done.returncode == 0, f"{argv}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done.stdout


def source_tree(target: Path) -> Path:
    """A copy of the checkout without its environments and build leftovers (setuptools writes
    ``build/`` and ``*.egg-info`` into the tree it builds)."""
    anywhere = shutil.ignore_patterns(".git", ".venv", ".venv-*", "*.egg-info", "__pycache__", ".demo", ".*_cache")

    def ignore(folder: str, names: list[str]) -> set[str]:
        found = set(anywhere(folder, names))
        if Path(folder) == ROOT:  # build/ and dist/ at the top only: airflow_ecr_layers/core/build/ is code
            found |= {"build", "dist"} & set(names)
        return found

    shutil.copytree(ROOT, target, ignore=ignore)
    return target


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    # no --sdist/--wheel: uv builds the sdist, then the wheel from the unpacked sdist
    run(*UV, "build", "--quiet", "--out-dir", dist, source_tree(tmp / "src"))
    venv = tmp / "venv"
    run(*UV, "venv", "--quiet", "--python", sys.executable, venv)
    (wheel,) = dist.glob("airflow_ecr_layers-*.whl")
    # runtime dependencies only, at the versions the lock pins (so it resolves in seconds)
    run(
        *UV,
        "pip",
        "install",
        "--quiet",
        "--python",
        venv / "bin" / "python",
        wheel,
        "-c",
        ROOT / "requirements" / "dev.lock",
    )
    home = tmp / "airflow-home"
    home.mkdir()
    drop = ("AIRFLOW", "PYTHONPATH", "VIRTUAL_ENV", "AWS_")  # nothing of the suite's Airflow, checkout or cloud
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env |= {"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PATH": f"{venv / 'bin'}:{env['PATH']}"}
    cwd = tmp / "elsewhere"  # not the checkout: only the installed wheel can be imported
    cwd.mkdir()
    return Installed(dist=dist, venv=venv, env=env, cwd=cwd)


def test_an_sdist_and_a_wheel_are_built_and_twine_check_passes(installed: Installed) -> None:
    names = sorted(p.name for p in installed.dist.iterdir() if not p.name.startswith("."))
    assert [n.endswith("-py3-none-any.whl") for n in names] == [True, False] and names[1].endswith(".tar.gz"), names
    out = run(sys.executable, "-m", "twine", "check", "--strict", *sorted(installed.dist.glob("airflow_ecr_layers-*")))
    assert out.count("PASSED") == 2, out


def test_the_wheel_installs_without_moto_and_the_provider_imports(installed: Installed) -> None:
    out = run(installed.bin("python"), "-c", CHECK, cwd=installed.cwd, env=installed.env)
    assert out.startswith("airflow-ecr-layers ")
    assert str(installed.venv) in out  # the installed wheel, not the checkout


def test_airflow_lists_the_provider_through_its_entry_point(installed: Installed) -> None:
    out = run(installed.bin("airflow"), "providers", "list", "--output", "json", cwd=installed.cwd, env=installed.env)
    providers = {p["package_name"]: p for p in json.loads(out[out.index("[") :])}
    from airflow_ecr_layers import __version__

    assert providers["airflow-ecr-layers"]["version"] == __version__
    assert "apache-airflow-providers-amazon" in providers


def test_every_example_dag_parses_in_the_installed_environment(installed: Installed, tmp_path: Path) -> None:
    examples = tmp_path / "example_dags"
    shutil.copytree(ROOT / "example_dags", examples, ignore=shutil.ignore_patterns("__pycache__"))
    broken = tmp_path / "broken_dags"  # proves the check sees an import error
    broken.mkdir()
    (broken / "broken_dag.py").write_text(BROKEN_DAG)
    out = run(installed.bin("python"), "-c", PARSE, examples, broken, cwd=installed.cwd, env=installed.env)
    found = json.loads(out.strip().splitlines()[-1])
    assert found[str(examples)]["errors"] == {}
    # each example file defines one DAG named after it
    assert found[str(examples)]["dags"] == sorted(f.stem for f in examples.glob("*.py"))
    errors = found[str(broken)]["errors"]
    assert list(errors) == [str(broken / "broken_dag.py")] and "NoSuchOperator" in errors[str(broken / "broken_dag.py")]


def test_the_installed_cli_plans_a_local_file(installed: Installed, tmp_path: Path) -> None:
    source = tmp_path / "model.bin"
    with source.open("wb") as f:
        f.truncate(12 * MiB + 5)
    out = run(
        installed.bin("airflow-ecr-layers"),
        "plan",
        source,
        "--part-size",
        str(5 * MiB),
        cwd=installed.cwd,
        env=installed.env,
    )
    plan = json.loads(out)
    assert plan["ranges"] == [[0, 5 * MiB - 1], [5 * MiB, 10 * MiB - 1], [10 * MiB, 12 * MiB + 4]]
