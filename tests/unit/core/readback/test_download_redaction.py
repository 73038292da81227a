"""What an HTTP client's errors say about a presigned URL, and what is left of it once redacted."""

from __future__ import annotations

import urllib3

from airflow_ecr_layers.core.readback.download import describe, redact_text, redacted

URL = (
    "https://prod-us-east-1-starport-layer-bucket.s3.us-east-1.amazonaws.com/1a2b/123456789012/sha256:abc"
    "?X-Amz-Security-Token=IQoJb3JpZ2luX2Vj&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20260101T000000Z"
    "&X-Amz-SignedHeaders=host&X-Amz-Expires=3600&X-Amz-Credential=ASIAEXAMPLE%2F20260101%2Fus-east-1%2Fs3"
    "%2Faws4_request&X-Amz-Signature=5f5f5f"
)
PATH = URL.split("amazonaws.com", 1)[1]


def clean(text: str) -> bool:
    return "X-Amz-" not in text and "Signature=" not in text and "IQoJ" not in text


def test_a_max_retries_error_is_described_by_its_reason_without_the_url() -> None:
    pool = urllib3.HTTPSConnectionPool("prod-us-east-1-starport-layer-bucket.s3.us-east-1.amazonaws.com")
    reason = urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset by peer"))
    error = urllib3.exceptions.MaxRetryError(pool, PATH, reason)
    assert not clean(str(error))  # urllib3 quotes the URL, query string and all
    assert describe(error) == "ProtocolError: ('Connection aborted.', ConnectionResetError(104, 'reset by peer'))"


def test_any_query_string_left_in_a_text_is_cut() -> None:
    for text in (f"failed on {URL} (then gave up)", f"with url: {PATH}", f"GET '{URL}'", f"<{URL}>"):
        assert clean(redact_text(text)), text
    assert redact_text(f"with url: {PATH} (Caused by X)") == (
        "with url: /1a2b/123456789012/sha256:abc?<redacted> (Caused by X)"
    )
    assert redact_text("stray X-Amz-Signature=5f5f and Signature=abc") == "stray <redacted> and <redacted>"
    assert redact_text("nothing to cut? no.") == "nothing to cut? no."
    assert redacted(URL) == URL.split("?", 1)[0]
