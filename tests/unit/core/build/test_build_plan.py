"""A build's plan, config and manifest: exact bytes, placement, refusals before writing (pure logic)."""

from __future__ import annotations

import json

import pytest

from airflow_ecr_layers.core.build.image import (
    CREATED_BY,
    Platform,
    SourceFile,
    build_epoch,
    files_of,
    image_config,
    plan_build,
)
from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.sources.blobs import BytesSource

DIFF_IDS = ["sha256:" + "a" * 64, "sha256:" + "b" * 64]


def test_the_config_names_the_layers_as_diff_ids_in_a_fixed_order() -> None:
    config = image_config(DIFF_IDS, Platform.parse("linux/arm64/v8"), history=["3 files", "1 files"])
    assert config == (
        b'{"architecture":"arm64","variant":"v8","os":"linux","config":{},'
        b'"rootfs":{"type":"layers","diff_ids":["sha256:' + b"a" * 64 + b'","sha256:' + b"b" * 64 + b'"]},'
        b'"history":[{"created_by":"airflow-ecr-layers build","comment":"3 files"},'
        b'{"created_by":"airflow-ecr-layers build","comment":"1 files"}]}'
    )


def test_created_comes_from_the_epoch_and_labels_go_into_the_config() -> None:
    platform = Platform.parse("linux/amd64")
    body = json.loads(image_config(DIFF_IDS[:1], platform, created=1_700_000_000, labels={"a": "b"}, history=["x"]))
    assert body["created"] == "2023-11-14T22:13:20Z"
    assert body["history"] == [{"created": "2023-11-14T22:13:20Z", "created_by": CREATED_BY, "comment": "x"}]
    assert body["config"] == {"Labels": {"a": "b"}}
    assert "variant" not in body


def test_source_date_epoch_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    assert build_epoch() is None
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert build_epoch() == 1_700_000_000
    assert build_epoch(5) == 5
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(InvalidInputError, match="SOURCE_DATE_EPOCH"):
        build_epoch()


@pytest.mark.parametrize("text", ["linux", "linux/amd64/v1/x", "Linux/AMD64", "linux/", 7])
def test_bad_platforms_are_refused(text: object) -> None:
    with pytest.raises(InvalidInputError, match="platform"):
        Platform.parse(text)


def test_files_land_under_the_path_and_the_plan_is_sized_without_reading() -> None:
    files = [SourceFile("a.txt", BytesSource(b"a")), SourceFile("sub/b.txt", BytesSource(b""), executable=True)]
    plan = plan_build(files, path="/models/")
    assert plan.path == "/models" and plan.files == 2
    (layer,) = plan.layers
    assert layer.paths == ["models/", "models/a.txt", "models/sub/", "models/sub/b.txt"]
    assert plan_build(files).layers[0].paths == ["a.txt", "sub/", "sub/b.txt"]


@pytest.mark.parametrize(
    ("files", "path", "message"),
    [
        ([], "/", "no files"),
        ([SourceFile("a", BytesSource(b"1"))], "models", "not absolute"),
        ([SourceFile("a", BytesSource(b"1"))], "/models/../etc", r"'\.\.'"),
        ([SourceFile("../a", BytesSource(b"1"))], "/models", r"outside /models"),
        ([SourceFile("a", BytesSource(b"1")), SourceFile("./a", BytesSource(b"2"))], "/", "two sources"),
        ([SourceFile("a", BytesSource(b"1")), SourceFile("a/b", BytesSource(b"2"))], "/", "file and a folder"),
    ],
)
def test_what_cannot_be_built_is_refused_before_anything_is_written(
    files: list[SourceFile], path: str, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        plan_build(files, path=path)


def test_executable_globs_mark_files_by_their_name() -> None:
    class Titled(BytesSource):
        @property
        def title(self) -> str:
            return self.name

    sources = [Titled(b"", "bin/run"), Titled(b"", "lib/x.so"), Titled(b"", "start.sh"), Titled(b"", "sub/go.sh")]
    marked = {f.name: f.executable for f in files_of(sources, ["bin/*", "*.sh"])}
    assert marked == {"bin/run": True, "lib/x.so": False, "start.sh": True, "sub/go.sh": True}
    assert not any(f.executable for f in files_of(sources))
