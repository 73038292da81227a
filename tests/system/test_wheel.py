"""A wheel built from the repository installs with its runtime dependencies only (no moto),
and the provider imports there."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from helpers import ROOT

UV = [sys.executable, "-m", "uv"]
CHECK = """
import importlib.util, sys
import airflow_ecr_layers.operators, airflow_ecr_layers.hooks, airflow_ecr_layers.sensors
import airflow_ecr_layers.triggers, airflow_ecr_layers.assets, airflow_ecr_layers.cli
from airflow_ecr_layers import get_provider_info
assert importlib.util.find_spec("moto") is None, "moto is installed"
assert not any(m == "moto" or m.startswith("moto.") for m in sys.modules)
assert importlib.util.find_spec("airflow_ecr_layers.core.attempt") is not None
print(get_provider_info()["package-name"], airflow_ecr_layers.__file__)
"""


def run(*argv: str | Path, cwd: Path = ROOT) -> str:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd=cwd, timeout=600)
    assert done.returncode == 0, f"{argv}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done.stdout


def source_tree(target: Path) -> Path:
    """A copy of the checkout without its environment and build leftovers (setuptools writes
    ``build/`` and ``*.egg-info`` into the tree it builds)."""
    ignore = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".demo")
    shutil.copytree(ROOT, target, ignore=ignore)
    return target


def test_the_wheel_installs_without_moto_and_the_provider_imports(tmp_path: Path) -> None:
    run(*UV, "build", "--wheel", "--out-dir", tmp_path / "dist", source_tree(tmp_path / "src"))
    wheels = list((tmp_path / "dist").glob("airflow_ecr_layers-*.whl"))
    assert len(wheels) == 1
    venv = tmp_path / "venv"
    run(*UV, "venv", "--quiet", "--python", sys.executable, venv)
    python = venv / "bin" / "python"
    # runtime dependencies only, at the versions the lock pins (so it resolves in seconds)
    run(*UV, "pip", "install", "--quiet", "--python", python, wheels[0], "-c", ROOT / "requirements" / "dev.lock")
    out = run(python, "-c", CHECK, cwd=tmp_path)
    assert out.startswith("airflow-ecr-layers ")
    assert str(venv) in out  # the installed wheel, not the checkout
