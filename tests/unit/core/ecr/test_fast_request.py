"""The fast UploadLayerPart request: the same bytes on the wire as botocore's, signed as sent.

Requests are captured at ``before-send`` (after signing, as they would go out) and
answered by a stub, so botocore's own serialisation and ours can be compared byte
for byte; the signature is checked with an independent SigV4 implementation;
then moto's ECR takes real uploads, from several threads on one client.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config

from airflow_ecr_layers.core.ecr import fast_request
from airflow_ecr_layers.core.limits import MIN_PART_SIZE
from helpers import pattern_bytes

ENDPOINT = "http://127.0.0.1:9"
"""Never connected to: every request is answered at ``before-send``."""
REGION = "us-east-1"
ACCESS_KEY, SECRET_KEY = "AKIDTESTING", "secret/testing+key"
REPOSITORY = "team/models"
SIGV4 = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<scope>[^,]+), "
    r"SignedHeaders=(?P<signed>[^,]+), Signature=(?P<signature>[0-9a-f]{64})"
)


class _Raw:
    """Just enough of urllib3's response for botocore to read a body."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **kwargs: Any) -> Iterator[bytes]:
        yield self._body


class Captured:
    """What botocore would have put on the wire, copied (the body buffer is reused)."""

    def __init__(self, request: Any) -> None:
        self.url: str = request.url
        self.method: str = request.method
        self.headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        self.body = bytes(request.body)

    def fields(self) -> dict[str, Any]:
        return json.loads(self.body)


class StubbedEcr:
    """A boto3 ECR client whose requests are captured and answered locally."""

    def __init__(self, statuses: Iterator[int] | None = None, **config: Any) -> None:
        self.client = boto3.client(
            "ecr",
            endpoint_url=ENDPOINT,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(**config) if config else None,
        )
        self.sent: list[Captured] = []
        self._statuses = statuses
        self._lock = threading.Lock()
        self.client.meta.events.register("before-send.ecr.UploadLayerPart", self._answer)

    def _answer(self, request: Any, **kwargs: Any) -> AWSResponse:
        captured = Captured(request)
        with self._lock:
            self.sent.append(captured)
        status = next(self._statuses, 200) if self._statuses is not None else 200
        if status != 200:
            body = json.dumps({"__type": "ServerException", "message": "try again"}).encode()
        else:
            body = json.dumps({"lastByteReceived": captured.fields()["partLastByte"]}).encode()
        return AWSResponse(request.url, status, {"Content-Type": "application/x-amz-json-1.1"}, _Raw(body))

    def upload(self, blob: Any, first: int = 0, upload_id: str = "upload-1") -> Captured:
        """Send one part; the request as it went out."""
        self.client.upload_layer_part(
            repositoryName=REPOSITORY,
            uploadId=upload_id,
            partFirstByte=first,
            partLastByte=first + max(len(blob), 1) - 1,
            layerPartBlob=blob,
        )
        return self.sent[-1]


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sigv4_valid(sent: Captured, secret_key: str = SECRET_KEY) -> bool:
    """Check the Authorization header against the captured body, as a server would
    (written from the SigV4 specification, not with botocore's signer)."""
    found = SIGV4.fullmatch(sent.headers["Authorization"])
    assert found, sent.headers["Authorization"]
    date, region, service, _ = found["scope"].split("/")
    lower = {name.lower(): value for name, value in sent.headers.items()}
    lower.setdefault("host", urlsplit(sent.url).netloc)
    signed = found["signed"].split(";")
    canonical = "\n".join(
        [
            sent.method,
            urlsplit(sent.url).path or "/",
            urlsplit(sent.url).query,
            "".join(f"{name}:{' '.join(lower[name].split())}\n" for name in signed),
            found["signed"],
            hashlib.sha256(sent.body).hexdigest(),
        ]
    )
    timestamp = lower["x-amz-date"]
    to_sign = "\n".join(["AWS4-HMAC-SHA256", timestamp, found["scope"], hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret_key}".encode(), date), region), service), "aws4_request")
    return hmac.compare_digest(hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), found["signature"])


def _both_ways(blob: Any, first: int = 0) -> tuple[Captured, Captured]:
    """The same part sent by botocore alone, then through the fast request."""
    stub = StubbedEcr()
    stock = stub.upload(blob, first)
    fast_request.install(stub.client)
    return stock, stub.upload(blob, first)


@pytest.fixture(params=sorted(fast_request.encoders()))
def encoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each base64 writer this machine has (OpenSSL's, and binascii's everywhere)."""
    monkeypatch.setattr(fast_request, "_ENCODE_INTO", fast_request.encoders()[request.param])
    return str(request.param)


# -- the request, byte for byte ----------------------------------------------------------
@pytest.mark.parametrize(
    "size",
    [0, 1, 2, 3, 4, 1000, 768 * 1024 + 1, MIN_PART_SIZE + 1, (3 << 22) + 2],
    ids=["empty", "1", "2", "3", "4", "1000", "binascii-chunk+1", "5MiB+1", "openssl-chunk+2"],
)
@pytest.mark.parametrize("kind", [bytes, bytearray])
def test_body_is_botocores_byte_for_byte(size: int, kind: type, encoder: str) -> None:
    data = pattern_bytes(size, seed=size)
    stock, fast = _both_ways(kind(data), first=11_304_960)
    assert fast.body == stock.body
    fields = fast.fields()
    assert fields == stock.fields()
    assert base64.b64decode(fields["layerPartBlob"], validate=True) == data
    assert fields["partFirstByte"] == 11_304_960 and fields["uploadId"] == "upload-1"
    for sent in (stock, fast):
        assert int(sent.headers["Content-Length"]) == len(sent.body)
        assert sent.headers["X-Amz-Target"] == "AmazonEC2ContainerRegistry_V20150921.UploadLayerPart"
    assert {k for k in fast.headers} == {k for k in stock.headers}


def test_signature_is_over_the_spliced_body() -> None:
    data = pattern_bytes(MIN_PART_SIZE + 7)
    stock, fast = _both_ways(data)
    assert sigv4_valid(stock), "the checker must accept botocore's own request"
    assert sigv4_valid(fast)
    assert b'"layerPartBlob": "' + base64.b64encode(data) + b'"' in fast.body
    inside_blob = fast.body.index(b'"layerPartBlob": "') + 100
    flipped = b"B" if fast.body[inside_blob : inside_blob + 1] == b"A" else b"A"
    tampered = Captured.__new__(Captured)
    tampered.__dict__.update(fast.__dict__, body=fast.body[:inside_blob] + flipped + fast.body[inside_blob + 1 :])
    assert not sigv4_valid(tampered), "the checker must notice a body that differs from the signed one"


def test_a_retried_request_is_spliced_and_signed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.endpoint

    monkeypatch.setattr(botocore.endpoint, "time", type("NoSleep", (), {"sleep": staticmethod(lambda s: None)}))
    stub = StubbedEcr(statuses=iter([500, 500, 200]), retries={"mode": "standard", "total_max_attempts": 3})
    fast_request.install(stub.client)
    data = pattern_bytes(100_000, seed=7)
    stub.upload(data)
    assert len(stub.sent) == 3
    expected = _both_ways(data)[0].body
    for attempt in stub.sent:
        assert attempt.body == expected
        assert sigv4_valid(attempt)


def test_install_is_idempotent_and_uninstall_restores_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    splices: list[int] = []
    real_splice = fast_request.splice_blob

    def counting_splice(*args: Any, **kwargs: Any) -> bytearray:
        splices.append(1)
        return real_splice(*args, **kwargs)

    monkeypatch.setattr(fast_request, "splice_blob", counting_splice)
    stub = StubbedEcr()
    data = pattern_bytes(4096)
    stock = stub.upload(data)
    fast_request.install(stub.client)
    fast_request.install(stub.client)
    assert stub.upload(data).body == stock.body
    assert len(splices) == 1
    fast_request.uninstall(stub.client)
    fast_request.uninstall(stub.client)
    assert stub.upload(data).body == stock.body
    assert len(splices) == 1
    fast_request.install(stub.client)
    stub.upload(data)
    assert len(splices) == 2


def test_install_refuses_a_client_of_another_service() -> None:
    s3 = boto3.client("s3", endpoint_url=ENDPOINT, region_name=REGION)
    with pytest.raises(ValueError, match="ECR client"):
        fast_request.install(s3)


def test_a_str_blob_is_left_to_botocore() -> None:
    stock, fast = _both_ways("text \u00e9")
    assert fast.body == stock.body


def test_a_file_object_fails_as_it_does_with_botocore() -> None:
    stub = StubbedEcr()
    with pytest.raises(TypeError) as stock_error:
        stub.upload(io.BytesIO(b"data"))
    fast_request.install(stub.client)
    with pytest.raises(TypeError) as fast_error:
        stub.upload(io.BytesIO(b"data"))
    assert str(fast_error.value) == str(stock_error.value)


@pytest.mark.parametrize("body", [b'{"a": "x"}', b'{"a": "TOKEN", "b": "TOKEN"}'], ids=["missing", "twice"])
def test_a_body_without_exactly_one_placeholder_is_refused(body: bytes) -> None:
    with pytest.raises(fast_request.FastUploadError, match="placeholder"):
        fast_request.splice_blob(body, b'"TOKEN"', b"data")


def test_threads_sharing_one_client_each_send_their_own_blob() -> None:
    stub = StubbedEcr(max_pool_connections=8)
    fast_request.install(stub.client)
    blobs = {f"t{t}-c{c}": pattern_bytes(65_536 + 3 * t + c, seed=10 * t + c) for t in range(6) for c in range(8)}
    start = threading.Barrier(6)

    def send(thread: int) -> None:
        start.wait()
        for call in range(8):
            upload_id = f"t{thread}-c{call}"
            stub.upload(blobs[upload_id], upload_id=upload_id)

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(send, range(6)))
    assert len(stub.sent) == len(blobs)
    for sent in stub.sent:
        fields = sent.fields()
        assert base64.b64decode(fields["layerPartBlob"]) == blobs[fields["uploadId"]]
        assert sigv4_valid(sent)


def test_a_thread_reuses_its_body_buffer_and_can_release_it() -> None:
    fast_request.release_buffer()
    blob = pattern_bytes(3003)
    first = fast_request.splice_blob(b'{"b": "T"}', b'"T"', blob[:3000])
    second = fast_request.splice_blob(b'{"b": "T", "c": 1}', b'"T"', blob)
    assert second is first and bytes(second) == b'{"b": "' + base64.b64encode(blob) + b'", "c": 1}'
    small = fast_request.splice_blob(b'{"b": "T"}', b'"T"', b"abc")  # a last part: its own buffer
    assert small is not first and bytes(small) == b'{"b": "YWJj"}'
    assert fast_request.splice_blob(b'{"b": "T"}', b'"T"', blob[:3000]) is first
    fast_request.release_buffer()
    assert fast_request.splice_blob(b'{"b": "T"}', b'"T"', blob[:3000]) is not first


def test_a_buffer_still_viewed_elsewhere_is_not_reused() -> None:
    fast_request.release_buffer()
    blob = pattern_bytes(3003)
    first = fast_request.splice_blob(b'{"b": "T"}', b'"T"', blob[:3000])
    kept = bytes(first)
    view = memoryview(first)  # someone kept a view: resizing it in place would fail
    second = fast_request.splice_blob(b'{"b": "T", "c": 1}', b'"T"', blob)
    assert second is not first and bytes(view) == kept
    assert bytes(second) == b'{"b": "' + base64.b64encode(blob) + b'", "c": 1}'
    view.release()
    assert fast_request.splice_blob(b'{"b": "T"}', b'"T"', blob[:3000]) is second


# -- choosing the encoder at import ------------------------------------------------------
def _faulty(fault: str) -> fast_request.EncodeInto:
    """A base64 writer with one kind of fault (binascii's output, then spoiled)."""

    def encode_into(out: bytearray, position: int, blob: Any) -> int:
        if fault == "raises":
            raise OSError("base64_encode is gone")
        text = bytearray(base64.b64encode(bytes(blob)))
        if fault == "wrong-bytes":
            text[len(text) // 2] = ord("A") if text[len(text) // 2] != ord("A") else ord("B")
        elif fault == "padding-of-two-left-over" and len(blob) % 3 == 2:
            text[-1] = ord("A")
        start = 0 if fault == "ignores-position" else position
        out[start : start + len(text)] = text
        end = start + len(text)
        if fault == "writes-past-its-terminator":
            out[end : end + 3] = b"\0\0\0"
        if fault == "wrong-end":
            end -= 1
        return end

    return encode_into


FAULTS = [
    "raises",
    "wrong-bytes",
    "padding-of-two-left-over",
    "ignores-position",
    "writes-past-its-terminator",
    "wrong-end",
]


@pytest.mark.parametrize("fault", FAULTS)
def test_an_encoder_that_disagrees_with_binascii_is_passed_over(
    fault: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(fast_request, "_libbase64_encoder", lambda: _faulty(fault))
    candidates = fast_request.encoders()
    assert next(iter(candidates)) == "libbase64"
    with caplog.at_level("WARNING"):
        name, chosen = fast_request.choose_encoder(candidates)
    assert name == list(candidates)[1]  # the next one in the order of preference
    assert chosen is candidates[name]
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "libbase64" in caplog.text
    monkeypatch.setattr(fast_request, "_ENCODE_INTO", chosen)
    data = pattern_bytes(MIN_PART_SIZE + 2, seed=5)
    stock, fast = _both_ways(data, first=7)
    assert fast.body == stock.body
    assert fast.fields()["layerPartBlob"].encode() == base64.b64encode(data)


def test_no_encoder_agreeing_leaves_binascii(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        name, chosen = fast_request.choose_encoder({"first": _faulty("raises"), "second": _faulty("wrong-bytes")})
    assert name == "binascii"
    assert len(caplog.records) == 2 and "first" in caplog.records[0].getMessage()
    assert "second" in caplog.records[1].getMessage()
    blob = pattern_bytes(3001, seed=2)
    out = bytearray(10 + len(base64.b64encode(blob)))
    assert chosen(out, 10, blob) == len(out) and out[10:] == base64.b64encode(blob)


def test_every_encoder_here_passes_the_check_and_the_first_is_used(caplog: pytest.LogCaptureFixture) -> None:
    candidates = fast_request.encoders()
    with caplog.at_level("WARNING"):
        for name, encoder in candidates.items():
            assert fast_request.choose_encoder({name: encoder}) == (name, encoder)
    assert not caplog.records
    assert next(iter(candidates)) == fast_request._ENCODER_NAME


_IMPORT_WITH_A_WRONG_LIBBASE64 = r"""
import base64, ctypes

class WrongEncode:
    "libbase64's base64_encode as a future pybase64 might export it: one character off."
    argtypes = restype = None

    def __call__(self, source, size, out, written, flags):
        text = bytearray(base64.b64encode(ctypes.string_at(source, size)))
        text[len(text) // 2] = ord("A") if text[len(text) // 2] != ord("A") else ord("B")
        ctypes.memmove(out, bytes(text), len(text))
        written._obj.value = len(text)

class CDLL(ctypes.CDLL):
    def __getattr__(self, name):
        return WrongEncode() if name == "base64_encode" else super().__getattr__(name)

ctypes.CDLL = CDLL
from airflow_ecr_layers.core.ecr import fast_request

blob = bytes(range(256)) * 40 + b"xy"
body = fast_request.splice_blob(b'{"b": "T", "c": 1}', b'"T"', blob)
print("same" if bytes(body) == b'{"b": "' + base64.b64encode(blob) + b'", "c": 1}' else "different")
"""


def test_import_passes_over_a_libbase64_that_encodes_wrong() -> None:
    done = subprocess.run([sys.executable, "-c", _IMPORT_WITH_A_WRONG_LIBBASE64], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "same", done.stderr
    assert "libbase64" in done.stderr  # the warning names the encoder passed over
