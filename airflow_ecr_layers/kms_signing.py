"""AWS KMS as a cosign signer and as a verification key (on a boto3 ``kms`` client; no Airflow).

Keys are named as cosign names them: ``awskms:///alias/NAME``, ``awskms:///arn:aws:kms:...``
or ``awskms:///KEY_ID`` (a bare alias, ARN or key id is accepted too). Signing is what cosign's
own KMS signer does: ``DescribeKey`` gives the key's first signing algorithm, and ``kms:Sign``
gets the payload's digest with ``MessageType="DIGEST"``, so the payload never leaves the worker
and the private key never leaves KMS. Verification reads the public key once
(``kms:GetPublicKey``) and checks signatures locally.

:func:`load_verifier` also takes a PEM public key: a file's path, or the PEM text itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from airflow_ecr_layers.core.errors import InvalidInputError, error_class_for
from airflow_ecr_layers.core.signing.keys import SIGNING_ALGORITHMS, PublicKeyVerifier

KMS_SCHEME = "awskms://"
_RETRYABLE_KMS = {
    "ThrottlingException": "ThrottlingException",
    "KMSInternalException": "InternalFailure",
    "DependencyTimeoutException": "ServiceUnavailable",
}


def kms_key_id(key: str) -> str:
    """The KeyId a cosign KMS reference names: ``awskms:///alias/x`` -> ``alias/x``."""
    if not isinstance(key, str) or not key.strip():
        raise InvalidInputError(f"Expected a KMS key (awskms:///alias/NAME, an ARN or a key id), got {key!r}")
    key = key.strip()
    if key.startswith(KMS_SCHEME):
        host, _, key_id = key[len(KMS_SCHEME) :].partition("/")
        if host:
            raise InvalidInputError(
                f"{key!r} names a KMS endpoint ({host!r}): set the endpoint on the AWS connection and "
                "write the key as awskms:///KEY"
            )
        key = key_id
    if not key:
        raise InvalidInputError("The KMS key reference names no key")
    return key


def is_kms_key(key: str) -> bool:
    return isinstance(key, str) and key.strip().startswith(KMS_SCHEME)


def _kms_call(operation: str, key_id: str, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return call()
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        cls = error_class_for(_RETRYABLE_KMS.get(code, code), status, operation)
        raise cls(code, f"{error.get('Message', '')} (KMS key {key_id!r})", operation=f"kms {operation}") from None


class KmsSigner:
    """A :class:`~airflow_ecr_layers.core.signing.keys.Signer` on a KMS asymmetric SIGN_VERIFY key."""

    def __init__(self, client: Any, key: str, *, algorithm: str | None = None) -> None:
        self.client = client
        requested = kms_key_id(key)
        metadata = _kms_call("DescribeKey", requested, lambda: client.describe_key(KeyId=requested))["KeyMetadata"]
        if metadata.get("KeyUsage") != "SIGN_VERIFY":
            raise InvalidInputError(
                f"KMS key {requested!r} has usage {metadata.get('KeyUsage')!r}: signing needs an asymmetric "
                "SIGN_VERIFY key (ECC_NIST_P256 is what cosign uses)"
            )
        offered = [a for a in metadata.get("SigningAlgorithms") or [] if a in SIGNING_ALGORITHMS]
        if algorithm is not None and algorithm not in offered:
            raise InvalidInputError(f"KMS key {requested!r} does not sign with {algorithm} (it offers {offered})")
        if not offered:
            raise InvalidInputError(f"KMS key {requested!r} offers no signing algorithm cosign can verify")
        self._arn = str(metadata["Arn"])
        self._algorithm = algorithm or offered[0]

    @property
    def key_id(self) -> str:
        return self._arn

    @property
    def algorithm(self) -> str:
        return self._algorithm

    def sign_digest(self, digest: bytes) -> bytes:
        response = _kms_call(
            "Sign",
            self._arn,
            lambda: self.client.sign(
                KeyId=self._arn, Message=digest, MessageType="DIGEST", SigningAlgorithm=self._algorithm
            ),
        )
        return bytes(response["Signature"])


def kms_verifier(client: Any, key: str) -> PublicKeyVerifier:
    """The public key of a KMS key (``kms:GetPublicKey``), with the algorithms it signs with."""
    key_id = kms_key_id(key)
    response = _kms_call("GetPublicKey", key_id, lambda: client.get_public_key(KeyId=key_id))
    algorithms = tuple(a for a in response.get("SigningAlgorithms") or [] if a in SIGNING_ALGORITHMS)
    return PublicKeyVerifier.load(
        bytes(response["PublicKey"]), algorithms=algorithms or None, name=f"KMS key {response.get('KeyId', key_id)}"
    )


def load_verifier(key: str, kms_client: Callable[[], Any]) -> PublicKeyVerifier:
    """A verification key from ``awskms:///...`` (through ``kms_client()``), a PEM file's path or PEM text."""
    if is_kms_key(key):
        return kms_verifier(kms_client(), key)
    text = key.strip() if isinstance(key, str) else ""
    if text.startswith("-----BEGIN"):
        return PublicKeyVerifier.load(text.encode("ascii"), name="the PEM public key")
    if text and os.path.isfile(text):
        with open(text, "rb") as handle:
            return PublicKeyVerifier.load(handle.read(), name=os.path.basename(text))
    if text.startswith(("alias/", "arn:aws")):
        return kms_verifier(kms_client(), text)
    raise InvalidInputError(f"Key {key!r} is neither awskms:///KEY, a PEM public key, nor a PEM file that exists")
