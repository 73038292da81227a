"""MkDocs hooks (``hooks:`` in mkdocs.yml): pages made from files outside ``docs/``.

- ``examples.md``: every DAG in ``example_dags/``, one section each (its docstring, then
  its source), headed by the file's stem, so a page links to ``examples.md#<stem>`` and
  the strict build checks the anchor exists;
- ``benchmarks.md``: ``benchmarks/README.md`` as it is, so the performance page can link to
  the benchmark's instructions.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "example_dags"
BENCHMARKS_README = ROOT / "benchmarks" / "README.md"


def example_dags() -> list[Path]:
    """The example DAG files, by name."""
    return sorted(path for path in EXAMPLES.glob("*.py") if not path.name.startswith("_"))


def examples_page() -> str:
    """The Markdown of ``examples.md``."""
    lines = [
        "# Example DAGs",
        "",
        "Every DAG in `example_dags/`, as it is in the repository. The system tier parses them all",
        "and runs most of them with `dag.test()` against the embedded ECR+S3 (`tests/system/`);",
        "point a DAG's params and AWS connection at your own bucket and repository to run it for real.",
        "",
    ]
    for path in example_dags():
        source = path.read_text(encoding="utf-8")
        docstring = ast.get_docstring(ast.parse(source)) or ""
        lines += [
            f"## {path.stem}",
            "",
            f"`example_dags/{path.name}`",
            "",
            docstring,
            "",
            "```python",
            source,
            "```",
            "",
        ]
    return "\n".join(lines)


def on_files(files: Files, config: Any) -> Files:
    """Add the generated pages to the build."""
    files.append(File.generated(config, "examples.md", content=examples_page()))
    files.append(File.generated(config, "benchmarks.md", abs_src_path=str(BENCHMARKS_README)))
    return files


def on_config(config: Any) -> Any:
    """Rebuild on a change to the example DAGs or the benchmark's README (``mkdocs serve``)."""
    config.watch.extend([str(EXAMPLES), str(BENCHMARKS_README)])
    return config
