"""The local folder a pull writes into: nothing is ever written through a symlink in it.

``ObjectStorageSink.check`` refuses such a folder before a pull reads anything (the integration
tests in tests/integration/test_pull_copy.py drive that); these tests put the symlink there
after the check, as something racing the pull would, and see the writer refuse it too (a
symlink on the file's own name is replaced by the rename, never written through).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.storage import PlainStorage, open_sink


@pytest.fixture
def places(tmp_path: Path) -> tuple[Path, Path]:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    return out, elsewhere


def test_a_folder_that_became_a_symlink_is_not_written_through(places: tuple[Path, Path]) -> None:
    out, elsewhere = places
    sink = open_sink(f"file://{out}/", PlainStorage())
    (out / "sub").symlink_to(elsewhere)  # as if put there after the check
    with pytest.raises(InvalidInputError, match="sub.*not a plain folder"):
        sink.open("sub/model.bin", 5)
    assert list(elsewhere.iterdir()) == []


def test_a_file_name_that_became_a_symlink_is_replaced_not_written_through(places: tuple[Path, Path]) -> None:
    out, elsewhere = places
    (elsewhere / "theirs.bin").write_bytes(b"theirs")
    writer = open_sink(f"file://{out}/", PlainStorage()).open("model.bin", 5)
    writer.write(memoryview(b"model"))
    (out / "model.bin").symlink_to(elsewhere / "theirs.bin")
    assert writer.commit() == f"file://{out}/model.bin"
    assert not (out / "model.bin").is_symlink() and (out / "model.bin").read_bytes() == b"model"
    assert (elsewhere / "theirs.bin").read_bytes() == b"theirs"
    assert sorted(p.name for p in out.iterdir()) == ["model.bin"]  # no temporary file left


def test_an_aborted_file_leaves_nothing(places: tuple[Path, Path]) -> None:
    out, _ = places
    writer = open_sink(f"file://{out}/", PlainStorage()).open("a/b/model.bin", 5)
    writer.write(memoryview(b"mod"))
    writer.abort()
    assert [p for p in out.rglob("*") if p.is_file()] == []


def test_a_file_where_a_folder_is_needed_and_a_folder_where_a_file_goes_are_refused(
    places: tuple[Path, Path],
) -> None:
    out, _ = places
    (out / "a").write_bytes(b"a file")
    (out / "b").mkdir()
    sink = open_sink(f"file://{out}/", PlainStorage())
    with pytest.raises(InvalidInputError, match="is a file, where it needs a folder"):
        sink.check(["ok.bin", "a/x.bin"])
    with pytest.raises(InvalidInputError, match="'b'.*is a folder"):
        sink.check(["b"])
