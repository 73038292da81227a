"""Downloads from the embedded ECR, over real HTTP: GetDownloadUrlForLayer and the blob
server behind its URLs, ListImageReferrers, other accounts and regions."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from airflow_ecr_layers.testing import blob_server, strict_ecr
from airflow_ecr_layers.testing.blob_store import blob_store
from airflow_ecr_layers.testing.server import EmbeddedAws
from helpers import ROOT, MiB, pattern_bytes, sha256

REPO = "team/models"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_BLOB = b"{}"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
SBOM = "application/vnd.example.sbom.v1+json"
SIGNATURE_CONFIG = "application/vnd.example.signature.config.v1+json"

LAYER = pattern_bytes(3 * MiB + 12_345, seed=7)
"""Longer than three of the blob server's chunks, so ranges cross chunk boundaries."""


# --- Pushing, with a plain botocore client -------------------------------------------


def ecr_client(
    aws: EmbeddedAws, region: str | None = None, credentials: tuple[str, str] = ("testing", "testing")
) -> Any:
    key_id, secret = credentials
    return boto3.client(
        "ecr",
        endpoint_url=aws.endpoint_url,
        region_name=region or aws.region,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )


def push_blob(ecr: Any, repository: str, data: bytes) -> str:
    """Initiate, one part, complete; return the digest."""
    upload_id = ecr.initiate_layer_upload(repositoryName=repository)["uploadId"]
    ecr.upload_layer_part(
        repositoryName=repository,
        uploadId=upload_id,
        partFirstByte=0,
        partLastByte=len(data) - 1,
        layerPartBlob=data,
    )
    done = ecr.complete_layer_upload(repositoryName=repository, uploadId=upload_id, layerDigests=[sha256(data)])
    digest: str = done["layerDigest"]
    assert digest == sha256(data)
    return digest


def descriptor(media_type: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data)}


def push_image(
    ecr: Any,
    repository: str,
    layers: list[bytes],
    tag: str | None = None,
    config: tuple[str, bytes] = (OCI_EMPTY, EMPTY_BLOB),
    **fields: Any,
) -> tuple[str, str]:
    """Upload the config and layers (those not yet in the repository), then put a manifest
    over them with any extra top-level ``fields``; return its text and digest."""
    present = {
        layer["layerDigest"]
        for layer in ecr.batch_check_layer_availability(
            repositoryName=repository, layerDigests=[sha256(b) for b in [config[1], *layers]]
        )["layers"]
    }
    for blob in dict.fromkeys([config[1], *layers]):
        if sha256(blob) not in present:
            push_blob(ecr, repository, blob)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        **{k: v for k, v in fields.items() if k == "artifactType"},
        "config": descriptor(config[0], config[1]),
        "layers": [descriptor(LAYER_TYPE, b) for b in layers],
        **{k: v for k, v in fields.items() if k != "artifactType"},
    }
    text = json.dumps(manifest, separators=(",", ":"))
    extra = {"imageTag": tag} if tag else {}
    ecr.put_image(repositoryName=repository, imageManifest=text, imageManifestMediaType=OCI_MANIFEST, **extra)
    return text, sha256(text.encode())


def download_url(ecr: Any, digest: str, repository: str = REPO) -> str:
    answer = ecr.get_download_url_for_layer(repositoryName=repository, layerDigest=digest)
    assert answer["layerDigest"] == digest
    url: str = answer["downloadUrl"]
    return url


# --- Fetching, with the standard library -----------------------------------------------


def fetch(url: str, method: str = "GET", byte_range: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one request (error statuses included)."""
    request = urllib.request.Request(url, method=method, headers={"Range": byte_range} if byte_range else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()


def s3_error_code(body: bytes) -> str:
    text = body.decode()
    return text.split("<Code>", 1)[1].split("</Code>", 1)[0]


def error_code(excinfo: pytest.ExceptionInfo[ClientError]) -> str:
    return str(excinfo.value.response["Error"]["Code"])


@pytest.fixture
def ecr(clean_aws: EmbeddedAws) -> Any:
    client = ecr_client(clean_aws)
    client.create_repository(repositoryName=REPO)
    return client


@pytest.fixture
def layer_url(ecr: Any) -> str:
    """A download URL of LAYER, pushed in an image of REPO."""
    push_image(ecr, REPO, [LAYER], tag="v1")
    return download_url(ecr, sha256(LAYER))


@pytest.fixture
def url_lifetime(clean_aws: EmbeddedAws) -> Iterator[Callable[[float], None]]:
    def set_lifetime(seconds: float) -> None:
        clean_aws.url_lifetime = seconds

    yield set_lifetime
    clean_aws.url_lifetime = blob_server.DEFAULT_URL_LIFETIME


# --- GetDownloadUrlForLayer and the blob server ------------------------------------------


def test_a_pushed_layer_downloads_whole_from_its_url(aws: EmbeddedAws, layer_url: str) -> None:
    assert layer_url.startswith(f"{aws.blob_url}/blobs/{sha256(LAYER)}?")
    status, headers, body = fetch(layer_url)
    assert status == 200
    assert body == LAYER and sha256(body) == sha256(LAYER)
    assert headers["Content-Length"] == str(len(LAYER))
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["ETag"] == f'"{sha256(LAYER)}"'
    assert "Content-Range" not in headers
    # The URL can be used again (until it expires), and the config blob downloads too.
    assert fetch(layer_url)[2] == LAYER
    ecr = ecr_client(aws)
    assert fetch(download_url(ecr, sha256(EMPTY_BLOB)))[2] == EMPTY_BLOB


def test_a_layer_pushed_in_parts_downloads_as_one_blob(ecr: Any) -> None:
    data = pattern_bytes(5 * MiB + 777, seed=3)
    upload_id = ecr.initiate_layer_upload(repositoryName=REPO)["uploadId"]
    for first, last in ((0, 5 * MiB - 1), (5 * MiB, len(data) - 1)):
        ecr.upload_layer_part(
            repositoryName=REPO,
            uploadId=upload_id,
            partFirstByte=first,
            partLastByte=last,
            layerPartBlob=data[first : last + 1],
        )
    ecr.complete_layer_upload(repositoryName=REPO, uploadId=upload_id, layerDigests=[sha256(data)])
    push_image(ecr, REPO, [data], tag="v1")
    body = fetch(download_url(ecr, sha256(data)))[2]
    assert sha256(body) == sha256(data)
    assert (
        fetch(download_url(ecr, sha256(data)), byte_range=f"bytes={5 * MiB - 2}-{5 * MiB + 1}")[2]
        == data[5 * MiB - 2 : 5 * MiB + 2]
    )


def test_one_keep_alive_connection_serves_several_requests(layer_url: str) -> None:
    parts = urlsplit(layer_url)
    target = f"{parts.path}?{parts.query}"
    connection = http.client.HTTPConnection(parts.netloc, timeout=30)
    try:
        answers = []
        for method, headers in (
            ("HEAD", {}),
            ("GET", {"Range": "bytes=0-9"}),
            ("GET", {"Range": f"bytes={len(LAYER)}-"}),  # a 416 keeps the connection too
            ("GET", {}),
        ):
            connection.request(method, target, headers=headers)
            response = connection.getresponse()
            answers.append((response.status, len(response.read())))
        assert answers[0] == (200, 0)
        assert answers[1] == (206, 10)
        assert answers[2][0] == 416
        assert answers[3] == (200, len(LAYER))
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-99", 0, 99),  # the first bytes
        (f"bytes={MiB - 10}-{2 * MiB + 9}", MiB - 10, 2 * MiB + 9),  # the middle, across two chunk edges
        (f"bytes={len(LAYER) - 1000}-", len(LAYER) - 1000, len(LAYER) - 1),  # open-ended
        ("bytes=-5", len(LAYER) - 5, len(LAYER) - 1),  # the last five
        (f"bytes=10-{len(LAYER) + 50}", 10, len(LAYER) - 1),  # an end past the blob is clamped
        ("bytes=7-7", 7, 7),
    ],
)
def test_a_single_range_is_a_206_with_just_those_bytes(layer_url: str, header: str, first: int, last: int) -> None:
    status, headers, body = fetch(layer_url, byte_range=header)
    assert status == 206
    assert body == LAYER[first : last + 1]
    assert headers["Content-Length"] == str(last - first + 1)
    assert headers["Content-Range"] == f"bytes {first}-{last}/{len(LAYER)}"
    assert headers["ETag"] == f'"{sha256(LAYER)}"'


def test_ranges_put_back_together_are_the_blob(layer_url: str) -> None:
    step = 1_000_003
    pieces = [fetch(layer_url, byte_range=f"bytes={a}-{a + step - 1}")[2] for a in range(0, len(LAYER), step)]
    assert sha256(b"".join(pieces)) == sha256(LAYER)


@pytest.mark.parametrize("header", [f"bytes={len(LAYER)}-", f"bytes={len(LAYER) + 5}-{len(LAYER) + 10}", "bytes=-0"])
def test_a_range_past_the_end_is_416(layer_url: str, header: str) -> None:
    status, headers, body = fetch(layer_url, byte_range=header)
    assert status == 416
    assert headers["Content-Range"] == f"bytes */{len(LAYER)}"
    assert s3_error_code(body) == "InvalidRange"


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "bytes=9-3", "lines=0-3", "bytes=-"])
def test_a_malformed_or_multiple_range_is_ignored(layer_url: str, header: str) -> None:
    status, _, body = fetch(layer_url, byte_range=header)
    assert (status, len(body)) == (200, len(LAYER))


def test_head_answers_the_headers_without_a_body(layer_url: str) -> None:
    status, headers, body = fetch(layer_url, method="HEAD")
    assert (status, body) == (200, b"")
    assert headers["Content-Length"] == str(len(LAYER))
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["ETag"] == f'"{sha256(LAYER)}"'
    status, headers, body = fetch(layer_url, method="HEAD", byte_range="bytes=100-")
    assert (status, body) == (206, b"")
    assert headers["Content-Range"] == f"bytes 100-{len(LAYER) - 1}/{len(LAYER)}"


def test_a_layer_no_image_references_is_inaccessible(ecr: Any) -> None:
    loose = push_blob(ecr, REPO, b"a layer no manifest names")
    with pytest.raises(ClientError) as excinfo:
        ecr.get_download_url_for_layer(repositoryName=REPO, layerDigest=loose)
    assert error_code(excinfo) == "LayerInaccessibleException"
    assert strict_ecr.STATS.repository(REPO).get_download_url_for_layer_calls == 1  # refused calls count too


def test_a_layer_becomes_inaccessible_when_its_image_is_deleted(ecr: Any) -> None:
    _, digest = push_image(ecr, REPO, [LAYER], tag="v1")
    download_url(ecr, sha256(LAYER))
    ecr.batch_delete_image(repositoryName=REPO, imageIds=[{"imageDigest": digest}])
    with pytest.raises(ClientError) as excinfo:
        ecr.get_download_url_for_layer(repositoryName=REPO, layerDigest=sha256(LAYER))
    assert error_code(excinfo) == "LayerInaccessibleException"


def test_an_index_references_manifests_not_their_layers(ecr: Any) -> None:
    text, digest = push_image(ecr, REPO, [LAYER])
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest, "size": len(text)}],
        }
    )
    ecr.put_image(repositoryName=REPO, imageManifest=index, imageTag="multi")
    download_url(ecr, sha256(LAYER))  # referenced by the manifest
    ecr.batch_delete_image(repositoryName=REPO, imageIds=[{"imageDigest": digest}])
    assert [i["imageTag"] for i in ecr.list_images(repositoryName=REPO)["imageIds"]] == ["multi"]
    with pytest.raises(ClientError) as excinfo:  # the index alone does not make the layer accessible
        ecr.get_download_url_for_layer(repositoryName=REPO, layerDigest=sha256(LAYER))
    assert error_code(excinfo) == "LayerInaccessibleException"


def test_a_digest_not_in_the_repository_is_layers_not_found(ecr: Any) -> None:
    push_image(ecr, REPO, [LAYER], tag="v1")
    ecr.create_repository(repositoryName="team/other")
    elsewhere = push_blob(ecr, "team/other", b"only in the other repository")
    for digest in (sha256(b"never pushed"), elsewhere):
        with pytest.raises(ClientError) as excinfo:
            ecr.get_download_url_for_layer(repositoryName=REPO, layerDigest=digest)
        assert error_code(excinfo) == "LayersNotFoundException"
        assert digest in excinfo.value.response["Error"]["Message"]


def test_a_missing_repository_is_repository_not_found(ecr: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        ecr.get_download_url_for_layer(repositoryName="no/such-repository", layerDigest=sha256(LAYER))
    assert error_code(excinfo) == "RepositoryNotFoundException"


def test_an_expired_url_is_403(
    aws: EmbeddedAws, ecr: Any, url_lifetime: Callable[[float], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    push_image(ecr, REPO, [LAYER], tag="v1")
    url_lifetime(0)  # minted already expired
    status, _, body = fetch(download_url(ecr, sha256(LAYER)))
    assert (status, s3_error_code(body)) == (403, "AccessDenied")
    assert b"expired" in body

    url_lifetime(3)
    clock = [time.time()]  # the blob server's clock, moved by hand: no race with a loaded machine
    monkeypatch.setattr(blob_server, "time", SimpleNamespace(time=lambda: clock[0]))
    url = download_url(ecr, sha256(LAYER))
    assert fetch(url)[0] == 200
    expires = int(parse_qs(urlsplit(url).query)["expires"][0])
    clock[0] = expires - 0.001
    assert fetch(url)[0] == 200
    clock[0] = expires
    assert fetch(url)[0] == 403
    assert fetch(url, method="HEAD")[0] == 403


def test_a_url_with_a_wrong_signature_or_tampered_expiry_is_403(layer_url: str) -> None:
    parts = urlsplit(layer_url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    flipped = query["sig"][:-1] + ("0" if query["sig"][-1] != "0" else "1")
    later = int(query["expires"]) + 3600
    for url in (
        f"{base}?expires={query['expires']}&sig={flipped}",
        f"{base}?expires={later}&sig={query['sig']}",
        f"{base}?expires={query['expires']}",
        base,
    ):
        status, _, body = fetch(url)
        assert status == 403
        assert s3_error_code(body) in {"SignatureDoesNotMatch", "AccessDenied"}
    # A URL of one blob does not open another.
    other = sha256(b"another blob")
    assert fetch(f"{parts.scheme}://{parts.netloc}/blobs/{other}?{parts.query}")[0] == 403


def test_an_unknown_digest_with_a_good_signature_is_404(aws: EmbeddedAws, layer_url: str) -> None:
    status, _, body = fetch(blob_server.presign(sha256(b"nowhere in the store")))
    assert (status, s3_error_code(body)) == (404, "NoSuchKey")
    assert fetch(f"{aws.blob_url}/elsewhere")[0] == 404


def test_the_same_digest_in_two_repositories_is_one_stored_file_served_to_both(ecr: Any) -> None:
    ecr.create_repository(repositoryName="team/copy")
    push_image(ecr, REPO, [LAYER], tag="v1")
    push_image(ecr, "team/copy", [LAYER], tag="v1")
    store = blob_store()
    assert store.has(sha256(LAYER)) and store.size(sha256(LAYER)) == len(LAYER)
    assert sorted(p.name for p in store.root.iterdir()) == sorted(
        d.split(":", 1)[1] for d in {sha256(LAYER), sha256(EMPTY_BLOB)}
    )  # one file per digest, no leftover temporary names
    for repository in (REPO, "team/copy"):
        assert fetch(download_url(ecr, sha256(LAYER), repository))[2] == LAYER
    # Both repositories completed the layer, and BatchCheckLayerAvailability still reports its size.
    check = ecr.batch_check_layer_availability(repositoryName="team/copy", layerDigests=[sha256(LAYER)])
    assert check["layers"][0]["layerSize"] == len(LAYER)


def test_counters_see_calls_and_bytes_and_reset_clears_them(aws: EmbeddedAws, ecr: Any) -> None:
    push_image(ecr, REPO, [LAYER], tag="v1")
    url = download_url(ecr, sha256(LAYER))
    download_url(ecr, sha256(LAYER))
    fetch(url)
    fetch(url, byte_range="bytes=0-9")
    fetch(url, method="HEAD")  # no body: not counted
    fetch(url, byte_range=f"bytes={len(LAYER)}-")  # 416: not counted
    reads = blob_server.BLOB_READS
    assert reads.bytes_of(sha256(LAYER)) == len(LAYER) + 10
    assert reads.requests_of(sha256(LAYER)) == 2
    assert reads.snapshot() == {sha256(LAYER): len(LAYER) + 10}
    assert strict_ecr.STATS.repository(REPO).get_download_url_for_layer_calls == 2
    aws.url_lifetime = 0

    aws.reset()
    assert reads.total_bytes() == reads.total_requests() == 0
    assert strict_ecr.STATS.repository(REPO) == strict_ecr.RepositoryStats()
    assert aws.url_lifetime == blob_server.DEFAULT_URL_LIFETIME
    # moto forgot every layer, so the store dropped their bytes; the old URL finds nothing.
    assert not blob_store().has(sha256(LAYER))
    assert fetch(url)[0] == 404


# --- ListImageReferrers ----------------------------------------------------------------------


@pytest.fixture
def subject_and_referrers(ecr: Any) -> dict[str, Any]:
    """An image, an SBOM and a signature that refer to it, and an unrelated image."""
    subject_text, subject = push_image(ecr, REPO, [LAYER], tag="v1")
    about = {"mediaType": OCI_MANIFEST, "digest": subject, "size": len(subject_text)}
    sbom_text, sbom = push_image(
        ecr, REPO, [b'{"sbom": true}'], artifactType=SBOM, subject=about, annotations={"org.example.kind": "sbom"}
    )
    signature_text, signature = push_image(
        ecr, REPO, [b"signature bytes"], config=(SIGNATURE_CONFIG, b'{"sig": 1}'), subject=about
    )
    push_image(ecr, REPO, [b"unrelated"], tag="other")
    return {
        "subject": subject,
        "sbom": (sbom, len(sbom_text.encode())),
        "signature": (signature, len(signature_text.encode())),
    }


def test_referrers_are_the_images_whose_subject_is_the_image(ecr: Any, subject_and_referrers: dict[str, Any]) -> None:
    answer = ecr.list_image_referrers(repositoryName=REPO, subjectId={"imageDigest": subject_and_referrers["subject"]})
    sbom, sbom_size = subject_and_referrers["sbom"]
    signature, signature_size = subject_and_referrers["signature"]
    assert answer["referrers"] == [
        {
            "digest": sbom,
            "mediaType": OCI_MANIFEST,
            "artifactType": SBOM,
            "size": sbom_size,
            "annotations": {"org.example.kind": "sbom"},
            "artifactStatus": "ACTIVE",
        },
        {  # no artifactType: the config's media type stands for it
            "digest": signature,
            "mediaType": OCI_MANIFEST,
            "artifactType": SIGNATURE_CONFIG,
            "size": signature_size,
            "artifactStatus": "ACTIVE",
        },
    ]
    assert "nextToken" not in answer
    assert strict_ecr.STATS.repository(REPO).list_image_referrers_calls == 1
    unreferred = ecr.list_image_referrers(repositoryName=REPO, subjectId={"imageDigest": sbom})
    assert unreferred["referrers"] == []


def test_referrers_filter_by_artifact_type_and_status(ecr: Any, subject_and_referrers: dict[str, Any]) -> None:
    subject = {"imageDigest": subject_and_referrers["subject"]}

    def listed(**kwargs: Any) -> list[str]:
        referrers = ecr.list_image_referrers(repositoryName=REPO, subjectId=subject, **kwargs)["referrers"]
        return [r["digest"] for r in referrers]

    sbom, signature = subject_and_referrers["sbom"][0], subject_and_referrers["signature"][0]
    assert listed(filter={"artifactTypes": [SBOM]}) == [sbom]
    assert listed(filter={"artifactTypes": [SIGNATURE_CONFIG, "application/other"]}) == [signature]
    assert listed(filter={"artifactTypes": ["application/other"]}) == []
    assert listed(filter={"artifactStatus": "ANY"}) == [sbom, signature]
    assert listed(filter={"artifactStatus": "ARCHIVED"}) == []


def test_referrers_page_with_max_results(ecr: Any, subject_and_referrers: dict[str, Any]) -> None:
    subject = {"imageDigest": subject_and_referrers["subject"]}
    first = ecr.list_image_referrers(repositoryName=REPO, subjectId=subject, maxResults=1)
    assert [r["digest"] for r in first["referrers"]] == [subject_and_referrers["sbom"][0]]
    second = ecr.list_image_referrers(
        repositoryName=REPO, subjectId=subject, maxResults=1, nextToken=first["nextToken"]
    )
    assert [r["digest"] for r in second["referrers"]] == [subject_and_referrers["signature"][0]]
    assert "nextToken" not in second
    with pytest.raises(ClientError) as excinfo:
        ecr.list_image_referrers(repositoryName=REPO, subjectId=subject, maxResults=51)
    assert error_code(excinfo) == "InvalidParameterException"
    with pytest.raises(ClientError) as excinfo:
        ecr.list_image_referrers(repositoryName=REPO, subjectId=subject, nextToken="not-a-token")
    assert error_code(excinfo) == "InvalidParameterException"


def test_referrers_of_a_missing_repository_is_repository_not_found(ecr: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        ecr.list_image_referrers(repositoryName="no/such-repository", subjectId={"imageDigest": sha256(b"x")})
    assert error_code(excinfo) == "RepositoryNotFoundException"


# --- Accounts and regions ------------------------------------------------------------------------


def test_credentials_for_another_account_see_that_accounts_registry(aws: EmbeddedAws, ecr: Any) -> None:
    credentials = aws.credentials_for("210987654321")
    assert aws.credentials_for("210987654321") == credentials  # cached
    other = ecr_client(aws, credentials=credentials)
    assert other.describe_registry()["registryId"] == "210987654321"
    assert ecr.describe_registry()["registryId"] == "123456789012"
    assert other.describe_repositories()["repositories"] == []  # the default account's REPO is not there

    created = other.create_repository(repositoryName=REPO)["repository"]
    assert created["registryId"] == "210987654321"
    assert created["repositoryUri"].startswith("210987654321.dkr.ecr.")
    push_image(other, REPO, [b"the other account's layer"], tag="v1")
    assert fetch(download_url(other, sha256(b"the other account's layer")))[2] == b"the other account's layer"
    with pytest.raises(ClientError) as excinfo:  # the default account's REPO holds no such layer
        ecr.get_download_url_for_layer(repositoryName=REPO, layerDigest=sha256(b"the other account's layer"))
    assert error_code(excinfo) == "LayersNotFoundException"


def test_another_accounts_registry_id_is_not_reachable_with_the_callers_key(aws: EmbeddedAws, ecr: Any) -> None:
    other = ecr_client(aws, credentials=aws.credentials_for("210987654321"))
    other.create_repository(repositoryName="shared/models")
    push_image(other, "shared/models", [LAYER], tag="v1")
    with pytest.raises(ClientError) as excinfo:  # no repository policies here: use that account's key
        ecr.get_download_url_for_layer(
            registryId="210987654321", repositoryName="shared/models", layerDigest=sha256(LAYER)
        )
    assert error_code(excinfo) == "RepositoryNotFoundException"
    url = other.get_download_url_for_layer(
        registryId="210987654321", repositoryName="shared/models", layerDigest=sha256(LAYER)
    )["downloadUrl"]
    assert fetch(url, byte_range="bytes=0-15")[2] == LAYER[:16]


def test_credentials_for_survive_a_reset(aws: EmbeddedAws, ecr: Any) -> None:
    before = aws.credentials_for("210987654321")
    aws.reset()  # moto drops IAM, the key with it
    after = aws.credentials_for("210987654321")
    assert after != before
    assert ecr_client(aws, credentials=after).describe_registry()["registryId"] == "210987654321"
    with pytest.raises(ValueError):
        aws.credentials_for("not-an-account")


def test_two_regions_of_one_server_are_separate(aws: EmbeddedAws, ecr: Any) -> None:
    europe = ecr_client(aws, region="eu-west-1")
    assert europe.describe_repositories()["repositories"] == []
    europe.create_repository(repositoryName=REPO)
    push_image(europe, REPO, [b"a european layer"], tag="v1")
    with pytest.raises(ClientError) as excinfo:
        ecr.get_download_url_for_layer(repositoryName=REPO, layerDigest=sha256(b"a european layer"))
    assert error_code(excinfo) == "LayersNotFoundException"
    assert ecr.list_images(repositoryName=REPO)["imageIds"] == []
    assert fetch(download_url(europe, sha256(b"a european layer")))[2] == b"a european layer"
    # The same layer in both regions: one stored file, served to each.
    push_image(ecr, REPO, [b"a european layer"], tag="v1")
    assert fetch(download_url(ecr, sha256(b"a european layer")))[2] == b"a european layer"


# --- Installation and the standalone server -----------------------------------------------------------


def test_uninstall_restores_moto_responses_and_install_puts_them_back(ecr: Any) -> None:
    from moto.ecr.responses import ECRResponse

    try:
        strict_ecr.uninstall()
        assert "list_image_referrers" not in ECRResponse.__dict__
        assert not strict_ecr.is_installed()
    finally:
        strict_ecr.install()
    assert strict_ecr.is_installed()
    push_image(ecr, REPO, [LAYER], tag="v1")
    assert fetch(download_url(ecr, sha256(LAYER)), byte_range="bytes=0-3")[2] == LAYER[:4]


def test_standalone_server_serves_download_urls() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_ecr_layers.testing.server"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline().strip()
        assert first_line.startswith("ENDPOINT http://127.0.0.1:")
        client = boto3.client(
            "ecr",
            endpoint_url=first_line.split(" ", 1)[1],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        client.create_repository(repositoryName=REPO)
        data = os.urandom(100_000)
        push_image(client, REPO, [data], tag="v1")
        url = download_url(client, sha256(data))
        status, _, body = fetch(url)
        assert status == 200 and hashlib.sha256(body).hexdigest() == sha256(data).split(":", 1)[1]
        assert fetch(url, byte_range="bytes=99990-")[2] == data[99_990:]
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
