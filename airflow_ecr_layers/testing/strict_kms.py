"""Make moto's KMS sign and verify ``MessageType="DIGEST"`` messages as the real service does.

moto 5.2.5 ignores ``MessageType``: given a digest, it hashes it again and signs that, so a
signature from it does not verify over the original message anywhere else. Real KMS signs the
digest as given (and refuses a digest whose length is not the algorithm's hash's).
:func:`install` patches :class:`moto.kms.responses.KmsResponse` in-process: ``RAW`` stays
moto's own; ``DIGEST`` signs and verifies the digest prehashed.

This module must not import Airflow.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from moto.kms.exceptions import ValidationException
from moto.kms.models import Key
from moto.kms.responses import KmsResponse

__all__ = ["install", "is_installed", "uninstall"]

_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "SHA_256": hashes.SHA256,
    "SHA_384": hashes.SHA384,
    "SHA_512": hashes.SHA512,
}


def _prehashed(algorithm: str, digest: bytes) -> Prehashed:
    chosen = _HASHES[algorithm[-7:]]()
    if len(digest) != chosen.digest_size:
        raise ValidationException(f"Digest is invalid length for algorithm {algorithm}.")
    return Prehashed(chosen)


def _padding(algorithm: str) -> padding.AsymmetricPadding:
    if "_PSS_" in algorithm:
        chosen = _HASHES[algorithm[-7:]]()
        return padding.PSS(mgf=padding.MGF1(chosen), salt_length=chosen.digest_size)  # KMS: salt = hash length
    return padding.PKCS1v15()


def _digest_key(response: KmsResponse) -> tuple[Key, bytes, str]:
    """The key, the digest and the algorithm of a DIGEST-mode request, checked as KMS checks them."""
    key_id = response._get_param("KeyId")
    response._validate_key_id(key_id)
    key = response.kms_backend.describe_key(key_id)
    algorithm = response._get_param("SigningAlgorithm")
    if key.key_usage != "SIGN_VERIFY":
        raise ValidationException(f"Key '{key.arn}' is not a SIGN_VERIFY key")
    if algorithm not in key.signing_algorithms:
        raise ValidationException(
            f"1 validation error detected: Value '{algorithm}' at 'SigningAlgorithm' failed to satisfy "
            f"constraint: Member must satisfy enum value set: {key.signing_algorithms}"
        )
    message = response._get_param("Message")
    return key, message.encode("utf-8") if isinstance(message, str) else bytes(message), algorithm


def _sign(self: KmsResponse) -> str:
    if (self._get_param("MessageType") or "RAW") != "DIGEST":
        return str(_ORIGINALS["sign"](self))
    key, digest, algorithm = _digest_key(self)
    private = getattr(key.private_key, "private_key", None)  # the cryptography key under moto's wrapper
    chosen = _prehashed(algorithm, digest)
    if isinstance(private, ec.EllipticCurvePrivateKey):
        signature = private.sign(digest, ec.ECDSA(chosen))
    elif isinstance(private, rsa.RSAPrivateKey):
        signature = private.sign(digest, _padding(algorithm), chosen)
    else:
        raise ValidationException(f"Key '{key.arn}' cannot sign with {algorithm}")
    return json.dumps(
        {"KeyId": key.arn, "Signature": base64.b64encode(signature).decode("ascii"), "SigningAlgorithm": algorithm}
    )


def _verify(self: KmsResponse) -> str:
    if (self._get_param("MessageType") or "RAW") != "DIGEST":
        return str(_ORIGINALS["verify"](self))
    key, digest, algorithm = _digest_key(self)
    signature = self._get_param("Signature")
    if isinstance(signature, str):
        signature = base64.b64decode(signature.encode("utf-8"))
    public = getattr(key.private_key, "private_key").public_key()  # noqa: B009 (mypy: moto types it abstract)
    chosen = _prehashed(algorithm, digest)
    try:
        if isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(signature, digest, ec.ECDSA(chosen))
        else:
            public.verify(signature, digest, _padding(algorithm), chosen)
        valid = True
    except InvalidSignature:
        valid = False
    return json.dumps({"KeyId": key.arn, "SignatureValid": valid, "SigningAlgorithm": algorithm})


_REPLACEMENTS: dict[str, Callable[..., Any]] = {"sign": _sign, "verify": _verify}
_ORIGINALS: dict[str, Callable[..., Any]] = {name: KmsResponse.__dict__[name] for name in _REPLACEMENTS}
_lock = threading.Lock()


def install() -> None:
    """Patch ``KmsResponse`` (idempotent, process-wide, survives a moto reset)."""
    with _lock:
        for name, replacement in _REPLACEMENTS.items():
            setattr(KmsResponse, name, replacement)


def uninstall() -> None:
    with _lock:
        for name, original in _ORIGINALS.items():
            setattr(KmsResponse, name, original)


def is_installed() -> bool:
    return all(KmsResponse.__dict__.get(name) is fn for name, fn in _REPLACEMENTS.items())
