"""What the strict MkDocs build does not see: the README's links, its first lines, and the example DAGs.

``mkdocs build --strict`` (run by scripts/test.sh) fails on a broken link or anchor between the
pages under docs/ and on a page left out of nav. The README is not part of the site, so its
links are checked here, as GitHub resolves them; so is the rule that every example DAG is
named in the README and linked from a docs page.
"""

from __future__ import annotations

import importlib.util
import re
import unicodedata
from pathlib import Path
from types import ModuleType

import pytest

from helpers import ROOT

README = ROOT / "README.md"
DOCS = ROOT / "docs"


def load_hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mkdocs_hooks", ROOT / "scripts" / "mkdocs_hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HOOKS = load_hooks()
EXAMPLES: list[Path] = HOOKS.example_dags()

FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def prose(markdown: str) -> str:
    """The Markdown without fenced code blocks and code spans (where a ``#`` or ``[x](y)`` is code)."""
    return CODE_SPAN.sub("", FENCE.sub("", markdown))


def anchors(markdown: str) -> set[str]:
    """The ids a page's headings get, as GitHub makes them and as MkDocs's toc does."""
    found = set()
    for heading in HEADING.findall(FENCE.sub("", markdown)):
        text = unicodedata.normalize("NFKD", heading.replace("`", "")).strip().lower()
        found.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))  # GitHub
        found.add(re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", text).strip()))  # Python-Markdown's toc
    return found


def broken_links(page: Path) -> list[str]:
    """The relative links of a Markdown file whose target file or heading does not exist."""
    broken = []
    for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not ours to check
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no file {path}")
            continue
        if anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text(encoding="utf-8")):
            broken.append(f"{target}: {path or page.name} has no heading #{anchor}")
    return broken


def test_the_readme_starts_with_the_two_commands() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    first_block = lines[lines.index("```bash") + 1 : lines.index("```")]
    assert lines[0] == "# airflow-ecr-layers"
    assert lines.index("```bash") == 2, "the commands come right after the title"
    assert [line.split("#")[0].strip() for line in first_block] == ["bash scripts/demo.sh", "bash scripts/test.sh"]


def test_every_relative_link_of_the_readme_resolves() -> None:
    assert LINK.search(README.read_text(encoding="utf-8")), "the README links to the docs"
    assert broken_links(README) == []


def test_the_readme_links_to_every_page_of_the_site() -> None:
    linked = {target.partition("#")[0] for target in LINK.findall(prose(README.read_text(encoding="utf-8")))}
    pages = {path.relative_to(ROOT).as_posix() for path in DOCS.rglob("*.md")}
    assert sorted(pages - linked - {"docs/index.md"}) == []


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.stem)
def test_every_example_dag_is_named_in_the_readme_and_linked_from_the_docs(example: Path) -> None:
    assert f"example_dags/{example.name}" in README.read_text(encoding="utf-8")
    linking = [
        page.relative_to(DOCS).as_posix()
        for page in DOCS.rglob("*.md")
        if f"examples.md#{example.stem})" in page.read_text(encoding="utf-8")
    ]
    assert linking, f"no page under docs/ links to examples.md#{example.stem}"


def test_the_examples_page_has_a_section_per_example_dag_with_its_source() -> None:
    page = HOOKS.examples_page()
    assert {f"{path.stem}" for path in EXAMPLES} <= anchors(page)
    for path in EXAMPLES:
        assert path.read_text(encoding="utf-8") in page


def test_the_link_check_finds_what_is_broken(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other\n\n## A `code` heading\n\n```\n# not a heading\n```\n")
    page.write_text(
        "[ok](other.md#a-code-heading) [gone](missing.md) [bad anchor](other.md#not-a-heading) "
        "[web](https://example.com/x) `[in code](nowhere.md)` [self](#nothing-here)\n"
    )
    assert broken_links(page) == [
        "missing.md: no file missing.md",
        "other.md#not-a-heading: other.md has no heading #not-a-heading",
        "#nothing-here: page.md has no heading #nothing-here",
    ]
