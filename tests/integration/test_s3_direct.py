"""The direct S3 read path against the embedded S3 over real HTTP: where its client comes from
(the Airflow connection's credentials, endpoint and proxies; the default chain without Airflow),
what every GET carries besides the range (requester-pays, SSE-C, as s3fs sends them), which
filesystems it leaves to s3fs, and that no message carries a signature.

The reads themselves (ranges, broken bodies, If-Match) are tested on both paths in
``test_s3_reader.py``."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
import s3fs
from botocore import UNSIGNED

from airflow_ecr_layers import s3_reader
from airflow_ecr_layers.core.errors import TransferError
from airflow_ecr_layers.object_storage import open_source
from airflow_ecr_layers.s3_reader import DirectS3, S3DirectReader, S3RangeReader, redact
from airflow_ecr_layers.storage import FsPath, ObjectStorageSource, PlainStorage
from airflow_ecr_layers.storage import open_source as plain_open_source
from airflow_ecr_layers.testing.server import EmbeddedAws
from helpers import pattern_bytes
from proxies import CuttingProxy

KiB = 1024
SIZE = 96 * KiB + 5
SSE_KEY = bytes(range(32))


def _read_all(source: ObjectStorageSource) -> tuple[type, bytes]:
    with source.open_at(0, 64 * KiB) as handle:
        return type(handle), handle.read()


@pytest.fixture
def proxy(aws: EmbeddedAws) -> Iterator[CuttingProxy]:
    """A proxy to moto that forwards every request untouched and remembers its headers."""
    with CuttingProxy(aws.endpoint_url, keep=0, cuts=0) as started:
        yield started


@pytest.fixture
def connection(monkeypatch: pytest.MonkeyPatch, aws: EmbeddedAws) -> Callable[..., str]:
    """``make(login, password, **extra)``: the id of a fresh Airflow AWS connection to moto."""

    def make(login: str = "testing", password: str = "testing", **extra: Any) -> str:
        conn_id = f"s3_direct_{uuid.uuid4().hex[:12]}"  # a new id: Airflow caches a filesystem per id
        extra = {"endpoint_url": aws.endpoint_url, "region_name": aws.region, **extra}
        conn = {"conn_type": "aws", "login": login, "password": password, "extra": extra}
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return conn_id

    return make


# --- where the client comes from ----------------------------------------------------------


def test_an_airflow_connection_reads_with_its_own_credentials(
    put_object: Any, proxy: CuttingProxy, connection: Callable[..., str]
) -> None:
    """Its GETs are signed with the connection's key, not the default chain's (``testing``)."""
    data = pattern_bytes(SIZE, seed=21)
    url = put_object("model.bin", data)
    conn_id = connection("AKIACONNECTIONKEY01", "connection-secret", endpoint_url=proxy.endpoint_url)
    assert _read_all(open_source(url, conn_id)) == (S3DirectReader, data)
    gets = proxy.ranged_gets()
    assert gets and all("Credential=AKIACONNECTIONKEY01/" in g.headers["authorization"] for g in gets)
    assert all("/us-east-1/s3/aws4_request" in g.headers["authorization"] for g in gets)  # its region


def test_the_connection_s_proxies_carry_the_reads(
    put_object: Any, proxy: CuttingProxy, connection: Callable[..., str]
) -> None:
    data = pattern_bytes(SIZE, seed=22)
    url = put_object("proxied.bin", data)
    conn_id = connection(config_kwargs={"proxies": {"http": proxy.endpoint_url}})
    assert _read_all(open_source(url, conn_id)) == (S3DirectReader, data)
    gets = proxy.ranged_gets()
    assert gets and all(g.target.startswith("http://") for g in gets)  # asked of the proxy, in absolute form
    assert all("if-match" in g.headers and "authorization" in g.headers for g in gets)


def test_the_s3_proxy_uri_of_the_connection_carries_the_reads(
    put_object: Any, proxy: CuttingProxy, connection: Callable[..., str]
) -> None:
    """The amazon provider's own setting for s3fs (``service_config.s3.proxy-uri``) holds here too."""
    data = pattern_bytes(SIZE, seed=23)
    url = put_object("proxy-uri.bin", data)
    conn_id = connection(service_config={"s3": {"proxy-uri": proxy.endpoint_url}})
    assert _read_all(open_source(url, conn_id)) == (S3DirectReader, data)
    assert proxy.ranged_gets()


def test_without_airflow_the_default_chain_and_its_endpoint_are_read_directly(
    put_object: Any, aws: EmbeddedAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint_url)
    data = pattern_bytes(SIZE, seed=24)
    url = put_object("plain.bin", data)
    source = plain_open_source(url, PlainStorage())
    assert source.path.direct is not None
    assert _read_all(source) == (S3DirectReader, data)
    expanded = PlainStorage()(url).parent / "plain.bin"  # paths made from a path keep its client
    assert expanded.direct is not None and expanded == FsPath(expanded.fs, "artifacts/plain.bin", "s3")


# --- what every GET carries -----------------------------------------------------------------


def test_requester_pays_and_sse_c_go_with_every_get_as_s3fs_sends_them(
    s3: Any, bucket: str, proxy: CuttingProxy
) -> None:
    sse = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": SSE_KEY}
    data = pattern_bytes(SIZE, seed=25)
    s3.put_object(Bucket=bucket, Key="sealed.bin", Body=data, **sse)
    fs = s3fs.S3FileSystem(
        endpoint_url=proxy.endpoint_url,
        key="testing",
        secret="testing",
        requester_pays=True,
        s3_additional_kwargs={**sse, "ACL": "private"},  # ACL: a PutObject argument, never sent with a GET
        skip_instance_cache=True,
    )
    direct = DirectS3(fs, boto3.Session)
    path = FsPath(fs, f"{bucket}/sealed.bin", "s3", direct)
    info = {"size": SIZE, "ETag": s3.head_object(Bucket=bucket, Key="sealed.bin", **sse)["ETag"]}
    assert _read_all(ObjectStorageSource(path, info=info)) == (S3DirectReader, data)
    direct_headers = [g.headers for g in proxy.ranged_gets()]

    proxy.seen.clear()
    through_s3fs = ObjectStorageSource(FsPath(fs, path.path, "s3"), info=info)  # no direct client: s3fs reads it
    assert _read_all(through_s3fs) == (S3RangeReader, data)
    s3fs_headers = [g.headers for g in proxy.ranged_gets()]

    digest = base64.b64encode(hashlib.md5(SSE_KEY).digest()).decode()  # noqa: S324 - SSE-C's own check
    for headers in direct_headers + s3fs_headers:
        assert headers["x-amz-request-payer"] == "requester"
        assert headers["x-amz-server-side-encryption-customer-algorithm"] == "AES256"
        assert headers["x-amz-server-side-encryption-customer-key-md5"] == digest
        assert "x-amz-acl" not in headers
    assert {name for name in direct_headers[0] if name.startswith("x-amz-s")} == {
        name for name in s3fs_headers[0] if name.startswith("x-amz-s")
    }


def test_an_anonymous_filesystem_reads_unsigned(s3: Any, bucket: str, proxy: CuttingProxy) -> None:
    data = pattern_bytes(SIZE, seed=26)
    s3.put_object(Bucket=bucket, Key="public.bin", Body=data, ACL="public-read")
    url = f"s3://{bucket}/public.bin"
    fs = s3fs.S3FileSystem(anon=True, endpoint_url=proxy.endpoint_url, skip_instance_cache=True)
    path = FsPath(fs, url.removeprefix("s3://"), "s3", DirectS3(fs, boto3.Session))
    assert _read_all(ObjectStorageSource(path, info={"size": SIZE})) == (S3DirectReader, data)
    assert [("authorization" in g.headers) for g in proxy.ranged_gets()] == [False]


# --- what stays with s3fs -------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        {"config_kwargs": {"signature_version": UNSIGNED}},  # a signer of its own, as Airflow registers one
        {"config_kwargs": {"connector_args": {"keepalive_timeout": 4.0}}},  # aiohttp options: no place in botocore
        {"session_vars": {}},
    ],
    ids=["own-signer", "aiohttp-options", "session-options"],
)
def test_a_filesystem_set_up_beyond_the_direct_client_is_read_through_s3fs(
    put_object: Any, aws: EmbeddedAws, settings: dict[str, Any]
) -> None:
    data = pattern_bytes(SIZE, seed=27)
    url = put_object("own-ways.bin", data)
    fs = s3fs.S3FileSystem(endpoint_url=aws.endpoint_url, skip_instance_cache=True, **settings)
    direct = DirectS3(fs, boto3.Session)
    assert direct.uncovered() is not None
    assert direct.client() is None
    if "signature_version" in settings.get("config_kwargs", {}):
        return  # moto would take the unsigned GET, but a real signer is not there to sign it
    path = FsPath(fs, url.removeprefix("s3://"), "s3", direct)
    assert _read_all(ObjectStorageSource(path, info={"size": SIZE})) == (S3RangeReader, data)


# --- the body read straight into the buffer; messages ------------------------------------------


def test_a_plain_body_is_read_from_the_socket_not_through_a_copy(
    put_object: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def copying(body: Any) -> Any:
        raise AssertionError("the body was read through urllib3's copy")

    monkeypatch.setattr(s3_reader, "_copying_readinto", copying)
    data = pattern_bytes(SIZE, seed=28)
    assert _read_all(open_source(put_object("zero-copy.bin", data), "aws_default")) == (S3DirectReader, data)


def test_a_request_that_never_gets_an_answer_is_a_transfer_error_without_credentials(
    put_object: Any, connection: Callable[..., str]
) -> None:
    url = put_object("unreachable.bin", pattern_bytes(SIZE, seed=29))
    source = open_source(url, "aws_default")
    dead = s3fs.S3FileSystem(
        endpoint_url="http://127.0.0.1:9",  # discard: nothing listens
        key="AKIDEXAMPLE",
        secret="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        config_kwargs={"retries": {"total_max_attempts": 1}, "connect_timeout": 2},
        skip_instance_cache=True,
    )
    path = FsPath(dead, source.path.path, "s3", DirectS3(dead, boto3.Session))
    with pytest.raises(TransferError) as caught:
        _read_all(ObjectStorageSource(path, info=dict(source.info)))
    message = str(caught.value)
    assert url in message and "GetObject of bytes 0-" in message
    assert "wJalrXUtnFEMI" not in message and "Signature" not in message


def test_signed_query_strings_are_cut_from_messages() -> None:
    text = (
        "could not read https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIDEXAMPLE%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLE&X-Amz-Signature=deadbeef0123 (timed out); "
        "old style: https://b.s3.amazonaws.com/k?AWSAccessKeyId=AKIDEXAMPLE&Signature=c2lnbmVk&Expires=1"
    )
    cut = redact(text)
    for secret in ("AKIDEXAMPLE", "FwoGZXIvYXdzEXAMPLE", "deadbeef0123", "c2lnbmVk"):
        assert secret not in cut
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in cut and "(timed out)" in cut and "Expires=1" in cut
