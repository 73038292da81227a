"""The layers import only downward: core/ never imports Airflow, and the runtime never imports moto."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT

PACKAGE = ROOT / "airflow_ecr_layers"
TEST_TOOLS = PACKAGE / "testing"
"""The ``[testing]`` extra: the only place moto may be imported."""


def imported_modules(path: Path, package: str | None = None) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function (relative imports resolved
    against ``package``, by default the one ``path`` is in)."""
    if package is None:
        package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                found.add(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                found.add(node.module)
    return found


def is_under(module: str, top: str) -> bool:
    return module == top or module.startswith(top + ".")


def modules(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


@pytest.mark.parametrize("path", modules(PACKAGE / "core"), ids=lambda p: p.name)
def test_core_never_imports_airflow(path: Path) -> None:
    assert not {m for m in imported_modules(path) if is_under(m, "airflow")}


# --- the core's rooms import only downward (issue 19) -----------------------------------

CORE = PACKAGE / "core"
ROOMS = ["floor", "sources", "oci", "archives", "ecr", "engine", "push", "build", "readback", "signing", "waits"]
"""The core's rooms, bottom first: each may import only the rooms before it (and itself).
``floor`` is the modules directly in ``core/`` (errors, limits), which every room stands on."""


def room_of(module: str) -> str | None:
    """The room of a ``airflow_ecr_layers.core`` module, or None for a module outside the core."""
    if not is_under(module, "airflow_ecr_layers.core"):
        return None
    parts = module.split(".")[2:]
    return parts[0] if len(parts) > 1 and (CORE / parts[0]).is_dir() else "floor"


def test_every_room_of_the_core_is_ranked_and_each_has_its_say() -> None:
    folders = sorted(p.name for p in CORE.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert sorted(ROOMS[1:]) == folders
    for room in folders:
        doc = ast.get_docstring(ast.parse((CORE / room / "__init__.py").read_text())) or ""
        assert 1 <= len(doc.strip().splitlines()) <= 2, f"{room}/__init__.py says what lives there in two lines"
    assert sorted(p.name for p in CORE.glob("*.py")) == ["__init__.py", "errors.py", "limits.py"]


@pytest.mark.parametrize("path", modules(CORE), ids=lambda p: str(p.relative_to(CORE)))
def test_no_room_of_the_core_imports_up_into_a_room_that_uses_it(path: Path) -> None:
    here = room_of(".".join(path.relative_to(ROOT).with_suffix("").parts))
    assert here is not None
    above = {
        module: room
        for module in imported_modules(path)
        if (room := room_of(module)) is not None and ROOMS.index(room) > ROOMS.index(here)
    }
    assert not above, f"{path.relative_to(CORE)} ({here}) imports rooms above it: {above}"


def test_the_room_checker_sees_an_import_up(tmp_path: Path) -> None:
    assert room_of("airflow_ecr_layers.core.errors") == "floor"
    assert room_of("airflow_ecr_layers.core.engine.transfer") == "engine"
    assert room_of("airflow_ecr_layers.hooks") is None
    sample = tmp_path / "sample.py"
    sample.write_text("from airflow_ecr_layers.core.push.artifact import push_artifact\n")
    found = {room_of(m) for m in imported_modules(sample, "airflow_ecr_layers.core.ecr")}
    assert found == {"push"} and ROOMS.index("push") > ROOMS.index("ecr")


RUNTIME = [p for p in modules(PACKAGE) if TEST_TOOLS not in p.parents]


@pytest.mark.parametrize("path", RUNTIME, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_runtime_never_imports_moto_or_the_test_tools(path: Path) -> None:
    imports = imported_modules(path)
    assert not {m for m in imports if is_under(m, "moto") or is_under(m, "airflow_ecr_layers.testing")}


def test_the_checker_sees_imports_inside_functions_and_relative_ones(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def f():\n    import moto.ecr\n    from airflow.sdk import DAG\nfrom . import limits\nfrom .errors import X\n"
    )
    found = imported_modules(sample, "airflow_ecr_layers.core")
    assert found == {"moto.ecr", "airflow.sdk", "airflow_ecr_layers.core", "airflow_ecr_layers.core.errors"}
    assert is_under("airflow.sdk", "airflow") and not is_under("airflow_ecr_layers.core", "airflow")


_BLOCK_MOTO = """
import sys

class NoMoto:
    def find_spec(self, name, path=None, target=None):
        if name == "moto" or name.startswith("moto."):
            raise ImportError(f"moto is not installed here ({name})")
        return None

sys.meta_path.insert(0, NoMoto())
import airflow_ecr_layers.operators, airflow_ecr_layers.sensors, airflow_ecr_layers.triggers
import airflow_ecr_layers.hooks, airflow_ecr_layers.assets, airflow_ecr_layers.cli
try:
    import airflow_ecr_layers.testing
except ImportError as exc:
    print("testing:", exc)
print(sorted(m for m in sys.modules if m == "moto" or m.startswith("moto.")))
"""


def test_the_provider_imports_where_moto_is_missing_and_the_test_tools_say_what_to_install() -> None:
    done = subprocess.run([sys.executable, "-c", _BLOCK_MOTO], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == "[]"
    # Airflow 3.0 logs its plugin setup to stdout on import: find our line among them
    said = [line for line in lines if line.startswith("testing:")]
    assert len(said) == 1 and "pip install 'airflow-ecr-layers[testing]'" in said[0], lines


@pytest.mark.parametrize(
    ("version", "ok"), [((5, 2, 5), True), ((5, 2, 9), True), ((5, 2, 4), False), ((5, 3, 0), False)]
)
def test_the_test_tools_refuse_a_moto_they_were_not_written_for(version: tuple[int, ...], ok: bool) -> None:
    from airflow_ecr_layers.testing import check_moto

    if ok:
        check_moto(version)
    else:
        with pytest.raises(ImportError, match=r">=5\.2\.5,<5\.3\.0"):
            check_moto(version)


# --- the CLI starts without Airflow (issue 15) ------------------------------------------

AIRFLOW_FREE = [PACKAGE / "storage.py", PACKAGE / "s3_reader.py", PACKAGE / "progress_bars.py", PACKAGE / "cli.py"]
"""What the CLI reads and writes object storage and draws bars with, without ``--conn-id``."""
AIRFLOW_ADAPTERS = {"airflow_ecr_layers.object_storage", "airflow_ecr_layers.hooks", "airflow_ecr_layers.operators"}
"""The modules that import Airflow, which the CLI may import only inside the functions that need them."""
HEAVY = ("airflow", "boto3", "botocore", "s3fs", "aiobotocore", "aiohttp", "fsspec", "tqdm", "rich")
"""What a sub-command imports when it runs, never the CLI module itself."""


def top_level_imports(path: Path) -> set[str]:
    """The modules ``path`` imports when it is imported: its module-level statements, without
    the bodies of functions and classes, and without ``if TYPE_CHECKING:`` blocks."""
    found: set[str] = set()
    pending: list[ast.stmt] = list(ast.parse(path.read_text(), str(path)).body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.If):
            if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                pending.extend(node.body)
            pending.extend(node.orelse)
        elif isinstance(node, (ast.Try, ast.With)):
            pending.extend(node.body)
    return found


@pytest.mark.parametrize("path", AIRFLOW_FREE, ids=lambda p: p.name)
def test_what_the_cli_runs_on_never_imports_airflow_itself(path: Path) -> None:
    imports = imported_modules(path)
    assert not {m for m in imports if is_under(m, "airflow")}
    if path.name != "cli.py":  # the CLI picks the Airflow adapter for --conn-id, inside a function
        assert not {m for m in imports if any(is_under(m, adapter) for adapter in AIRFLOW_ADAPTERS)}


def test_the_cli_module_imports_nothing_heavy_nor_airflow_adapters_at_import() -> None:
    imports = top_level_imports(PACKAGE / "cli.py")
    assert not {m for m in imports if any(is_under(m, top) for top in HEAVY)}
    assert not {m for m in imports if any(is_under(m, adapter) for adapter in AIRFLOW_ADAPTERS)}
    assert "airflow_ecr_layers.core.errors" in imports  # the checker sees the imports it should


def test_top_level_imports_skip_functions_and_type_checking(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import json\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import boto3\n"
        "def f():\n    import botocore\ntry:\n    import tqdm\nexcept ImportError:\n    pass\n"
    )
    assert top_level_imports(sample) == {"json", "typing", "tqdm"}


_PLAN_A_FILE = """
import json, sys
import airflow_ecr_layers.cli
at_import = sorted(m for m in sys.modules if m.split(".")[0] in {heavy})
code = airflow_ecr_layers.cli.main(["plan", "file://" + sys.argv[1]])
after_plan = sorted({{m.split(".")[0] for m in sys.modules}} & {heavy})
print(json.dumps({{"code": code, "at_import": at_import, "after_plan": after_plan}}), file=sys.stderr)
"""


def test_the_cli_starts_and_plans_a_local_file_without_airflow_boto_or_s3fs(tmp_path: Path) -> None:
    artifact = tmp_path / "artifact.bin"
    artifact.write_bytes(b"x" * 1000)
    script = _PLAN_A_FILE.format(heavy=set(HEAVY))
    done = subprocess.run(
        [sys.executable, "-c", script, str(artifact)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report == {"code": 0, "at_import": [], "after_plan": ["fsspec"]}, done.stderr
    assert json.loads(done.stdout)["size"] == 1000
