"""Put large pseudo-random objects into (moto's) S3 without holding them in memory."""

from __future__ import annotations

import hashlib
from typing import Any

PIECE = 8 * 1024 * 1024


def seed_object(s3: Any, bucket: str, key: str, size: int, *, salt: str = "") -> str:
    """Write ``size`` deterministic pseudo-random bytes to ``s3://bucket/key`` with a
    multipart upload of 8 MiB pieces; return their ``sha256:`` digest."""
    digest = hashlib.sha256()
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)
    parts, offset, number = [], 0, 1
    while offset < size:
        piece = hashlib.shake_256(f"{salt}{number}".encode()).digest(min(PIECE, size - offset))
        digest.update(piece)
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=number, Body=piece)
        parts.append({"ETag": etag["ETag"], "PartNumber": number})
        offset, number = offset + len(piece), number + 1
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts})
    return "sha256:" + digest.hexdigest()
