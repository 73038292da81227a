"""Layer titles: a push refuses exactly the titles (and the clashes of names) a pull would refuse."""

from __future__ import annotations

import json
import re

import pytest

from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.oci.layers import layers_of
from airflow_ecr_layers.core.readback.pull import plan_files
from airflow_ecr_layers.core.sources.blobs import BytesSource
from airflow_ecr_layers.core.sources.identity import SourceIdentity
from helpers import MiB

DIGEST = "sha256:" + "a" * 64
TITLES = [
    "model.bin",
    "deep/er/file.txt",
    "Model.BIN",
    "a//b.bin",
    "./a.bin",
    "a/./b.bin",
    "trailing/",
    "a\\b.bin",
    "../up.bin",
    "a/../../b",
    "/etc/passwd",
    "C:/x",
    "nul\x00byte",
]


class Named(BytesSource):
    @property
    def title(self) -> str:
        return self.name

    def identity(self) -> SourceIdentity:
        return SourceIdentity(f"s3://b/{self.name}", self.size, '"e"')

    def stored_sha256(self) -> None:
        return None


def pulled(*titles: str) -> None:
    layers = [
        {"mediaType": "application/x", "digest": DIGEST[:-1] + str(n), "size": 3, "annotations": {}}
        for n, _ in enumerate(titles)
    ]
    for layer, title in zip(layers, titles, strict=True):
        layer["annotations"] = {"org.opencontainers.image.title": title}
    plan_files(json.dumps({"schemaVersion": 2, "layers": layers}).encode())


@pytest.mark.parametrize("title", TITLES)
def test_a_push_refuses_exactly_the_titles_a_pull_refuses(title: str) -> None:
    """One check for both: a title a push accepts is one a pull writes, and the other way round."""
    try:
        pulled(title)
    except InvalidInputError as refused:
        assert "Refusing the layer title" in str(refused)
        with pytest.raises(InvalidInputError, match=re.escape(str(refused))):
            layers_of([Named(b"abc", title)], "application/x")
    else:
        assert [layer.title for layer in layers_of([Named(b"abc", title)], "application/x")] == [title]


def test_a_push_refuses_names_a_pull_would_write_over_each_other() -> None:
    with pytest.raises(InvalidInputError, match="'a' is both a file and a folder"):
        pulled("a", "a/b")
    with pytest.raises(InvalidInputError, match="'a' is both a file and a folder"):
        layers_of([Named(b"x", "a"), Named(b"y", "a/b")], "application/x")
    # one source chunked, another of the same title whole: the layer titles differ, the files do not
    with pytest.raises(InvalidInputError, match="Two files are named 'm.bin'"):
        layers_of([Named(b"x" * (6 * MiB), "m.bin"), Named(b"y", "m.bin")], "application/x", chunk_size=5 * MiB)
