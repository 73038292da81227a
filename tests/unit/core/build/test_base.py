"""A build on a base: the merged config, the platforms chosen, the layer limit counted with the base (pure logic)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_ecr_layers.core.build.base import (
    BASE_DIGEST,
    BASE_NAME,
    BaseImage,
    BasePlatform,
    choose_platforms,
    merged_config,
)
from airflow_ecr_layers.core.build.image import Platform, platforms_of
from airflow_ecr_layers.core.ecr.references import ImageReference
from airflow_ecr_layers.core.errors import InvalidInputError
from airflow_ecr_layers.core.limits import MAX_LAYERS
from airflow_ecr_layers.core.oci.image_plan import BlobRef
from airflow_ecr_layers.core.oci.manifest import OCI_INDEX, OCI_LAYER_TAR, OCI_MANIFEST, Descriptor
from airflow_ecr_layers.core.sources.blobs import BytesSource

REF = ImageReference("base/busybox", "1.36")
BASE = {
    "created": "2024-01-01T00:00:00Z",
    "architecture": "amd64",
    "os": "linux",
    "config": {"Env": ["PATH=/bin"], "Entrypoint": ["/bin/sh"], "Cmd": ["sleep"], "WorkingDir": "/w", "User": "1"},
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "1" * 64]},
    "history": [{"created_by": "ADD base"}, {"created_by": "CMD", "empty_layer": True}],
}


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


def test_the_base_config_is_kept_and_ours_appended_in_its_key_order() -> None:
    mine = [{"created_by": "airflow-ecr-layers build", "comment": "3 files"}]
    merged = json.loads(merged_config(BASE, [digest(7)], mine, labels={"team": "ml"}))
    assert list(merged) == list(BASE)
    assert merged["config"] == {**BASE["config"], "Labels": {"team": "ml"}}
    assert merged["rootfs"]["diff_ids"] == ["sha256:" + "1" * 64, digest(7)]
    assert merged["history"] == [*BASE["history"], *mine]
    assert merged["created"] == "2024-01-01T00:00:00Z"  # the base's, without an epoch of ours
    assert json.loads(merged_config(BASE, [], [], created="2025-01-01T00:00:00Z"))["created"] == "2025-01-01T00:00:00Z"
    assert merged_config(BASE, [digest(7)], mine) == merged_config(dict(BASE), [digest(7)], mine)  # same bytes


def entry(platform: str, n: int, **extra: Any) -> dict[str, Any]:
    os_name, arch, *variant = platform.split("/")
    body = {"os": os_name, "architecture": arch, **({"variant": variant[0]} if variant else {})}
    return {"mediaType": OCI_MANIFEST, "digest": digest(n), "size": 1, "platform": body, **extra}


ENTRIES = [
    entry("linux/amd64", 1),
    entry("linux/arm64/v8", 2),
    entry("linux/arm/v7", 3),
    entry("linux/arm/v6", 4),
    entry("unknown/unknown", 5, annotations={"vnd.docker.reference.type": "attestation-manifest"}),
]


@pytest.mark.parametrize(
    ("named", "chosen"),
    [
        ([], [1, 2, 3, 4]),  # every runnable platform, not the attestation
        (["linux/arm64"], [2]),  # no variant named: any
        (["linux/arm/v6", "linux/amd64"], [4, 1]),  # in the order named
        (["linux/amd64,linux/amd64"], [1]),
    ],
)
def test_the_platforms_named_pick_entries_of_the_index(named: list[str], chosen: list[int]) -> None:
    picked = choose_platforms(ENTRIES, platforms_of(named), REF)
    assert [int(e["digest"].split(":")[1], 16) for e in picked] == chosen


@pytest.mark.parametrize(
    ("named", "message"),
    [
        (
            "linux/s390x",
            r"has no platform linux/s390x \(it has linux/amd64, linux/arm64/v8, linux/arm/v7, linux/arm/v6\)",
        ),
        ("linux/arm", r"several linux/arm variants \(linux/arm/v7, linux/arm/v6\): name the variant"),
        ("linux/arm64/v9", "has no platform linux/arm64/v9"),
    ],
)
def test_a_platform_the_index_lacks_or_names_twice_is_refused(named: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        choose_platforms(ENTRIES, platforms_of(named), REF)


def base_image(layers: int, platforms: int = 1) -> BaseImage:
    images = [
        BasePlatform(
            {"os": "linux", "architecture": f"arch{p}"},
            digest(100 + p),
            [Descriptor(OCI_LAYER_TAR, digest(n), 10) for n in range(layers)],
            [],
            {**BASE, "rootfs": {"type": "layers", "diff_ids": [digest(n) for n in range(layers)]}},
        )
        for p in range(platforms)
    ]
    return BaseImage("base/busybox:1.36", digest(99), OCI_INDEX if platforms > 1 else OCI_MANIFEST, images)


def test_the_layer_limit_counts_the_base_layers() -> None:
    base_image(MAX_LAYERS - 20).check_layer_limit(20)
    with pytest.raises(
        InvalidInputError, match=rf"has {MAX_LAYERS - 20} layers and the build 21: {MAX_LAYERS + 1} in all"
    ):
        base_image(MAX_LAYERS - 20).check_layer_limit(21)


def test_an_index_base_gives_an_index_whose_platforms_share_our_layers() -> None:
    ours = [BlobRef(digest(500 + n), 20, OCI_LAYER_TAR, BytesSource(b"x" * 20)) for n in range(3)]
    composed = base_image(2, platforms=2).compose(
        ours, [b.digest for b in ours], [{"comment": "ours"}] * 3, annotations={"a": "b"}
    )
    *children, index = composed.plan.manifests
    assert index.media_type == OCI_INDEX and len(children) == 2 and composed.platforms == ["linux/arch0", "linux/arch1"]
    body = json.loads(index.data)
    assert body["annotations"] == {"a": "b", BASE_DIGEST: digest(99), BASE_NAME: "base/busybox:1.36"}
    for child, p in zip(children, range(2), strict=True):
        manifest = json.loads(child.data)
        assert [layer["digest"] for layer in manifest["layers"]] == [digest(0), digest(1), *(b.digest for b in ours)]
        assert manifest["annotations"][BASE_DIGEST] == digest(100 + p)
    assert sum(1 for b in composed.plan.blobs if b in {o.digest for o in ours}) == 3  # each of ours once


def test_one_platform_is_a_plain_platform() -> None:
    assert platforms_of([Platform.parse("linux/amd64"), "linux/arm64"]) == [
        Platform("linux", "amd64"),
        Platform("linux", "arm64"),
    ]
    assert platforms_of(None) == [] and platforms_of("") == []
