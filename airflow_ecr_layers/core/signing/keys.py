"""Signers and verifiers: the signing algorithms, named as KMS names them.

A :class:`Signer` signs a digest it is given (KMS ``Sign`` with ``MessageType="DIGEST"``);
the core computes that digest of the payload with the hash the signer's algorithm names, so
it never needs to know where the key lives. A :class:`PublicKeyVerifier` checks a signature
with the ``cryptography`` library against a public key (PEM, or the DER that KMS
``GetPublicKey`` answers).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from airflow_ecr_layers.core.errors import InvalidInputError

HASHES = {"SHA_256": "sha256", "SHA_384": "sha384", "SHA_512": "sha512"}
ECDSA_ALGORITHMS = ("ECDSA_SHA_256", "ECDSA_SHA_384", "ECDSA_SHA_512")
RSA_ALGORITHMS = (
    "RSASSA_PKCS1_V1_5_SHA_256",
    "RSASSA_PSS_SHA_256",
    "RSASSA_PKCS1_V1_5_SHA_384",
    "RSASSA_PSS_SHA_384",
    "RSASSA_PKCS1_V1_5_SHA_512",
    "RSASSA_PSS_SHA_512",
)
SIGNING_ALGORITHMS = ECDSA_ALGORITHMS + RSA_ALGORITHMS
_CURVE_ALGORITHMS = {"secp256r1": "ECDSA_SHA_256", "secp384r1": "ECDSA_SHA_384", "secp521r1": "ECDSA_SHA_512"}


def hash_name(algorithm: str) -> str:
    """The hashlib name of the hash a signing algorithm signs (``ECDSA_SHA_256`` -> ``sha256``)."""
    if algorithm not in SIGNING_ALGORITHMS:
        raise InvalidInputError(f"Unsupported signing algorithm {algorithm!r}: one of {', '.join(SIGNING_ALGORITHMS)}")
    return HASHES[algorithm[-7:]]


def payload_digest(payload: bytes, algorithm: str) -> bytes:
    """The digest of ``payload`` that a signer of ``algorithm`` signs."""
    return hashlib.new(hash_name(algorithm), payload).digest()


class Signer(Protocol):
    """Signs digests with a private key it never shows."""

    @property
    def key_id(self) -> str:
        """What names the key (a KMS key ARN, a file name): shown in results, never secret."""

    @property
    def algorithm(self) -> str:
        """The signing algorithm, as KMS names it (``ECDSA_SHA_256``...)."""

    def sign_digest(self, digest: bytes) -> bytes:
        """The signature of ``digest`` (already hashed with :func:`hash_name` of :attr:`algorithm`)."""


def _hash(algorithm: str) -> hashes.HashAlgorithm:
    return {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}[hash_name(algorithm)]


@dataclass(frozen=True)
class PublicKeyVerifier:
    """A public key and the algorithms its signatures may use.

    Without ``algorithms``, they follow from the key: an EC key's curve gives its one ECDSA
    algorithm (P-256: ``ECDSA_SHA_256``, as cosign uses); an RSA key accepts PKCS#1 v1.5 and PSS
    over SHA-256 (a PEM file does not say which padding its signer used).
    """

    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey
    algorithms: tuple[str, ...]
    name: str = "public key"

    @classmethod
    def load(
        cls, data: bytes, *, algorithms: tuple[str, ...] | None = None, name: str = "public key"
    ) -> PublicKeyVerifier:
        """From PEM (``-----BEGIN PUBLIC KEY-----``) or DER SubjectPublicKeyInfo bytes."""
        try:
            if data.lstrip().startswith(b"-----"):
                key = serialization.load_pem_public_key(data)
            else:
                key = serialization.load_der_public_key(data)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise InvalidInputError(f"{name} is not a PEM or DER public key: {exc}") from exc
        if isinstance(key, ec.EllipticCurvePublicKey):
            default: tuple[str, ...] = (_CURVE_ALGORITHMS.get(key.curve.name, ""),)
            if not default[0]:
                raise InvalidInputError(f"{name}: unsupported curve {key.curve.name}")
        elif isinstance(key, rsa.RSAPublicKey):
            default = ("RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PSS_SHA_256")
        else:
            raise InvalidInputError(f"{name}: only ECDSA and RSA keys sign cosign signatures here")
        chosen = tuple(algorithms) if algorithms else default
        for algorithm in chosen:
            hash_name(algorithm)
        return cls(key, chosen, name)

    def verify(self, payload: bytes, signature: bytes) -> bool:
        """Whether ``signature`` signs ``payload`` with this key under one of :attr:`algorithms`."""
        for algorithm in self.algorithms:
            digest = payload_digest(payload, algorithm)
            chosen = Prehashed(_hash(algorithm))
            try:
                if isinstance(self.public_key, ec.EllipticCurvePublicKey):
                    if algorithm not in ECDSA_ALGORITHMS:
                        continue
                    self.public_key.verify(signature, digest, ec.ECDSA(chosen))
                else:
                    if algorithm not in RSA_ALGORITHMS:
                        continue
                    pad: padding.AsymmetricPadding = (
                        padding.PSS(mgf=padding.MGF1(_hash(algorithm)), salt_length=padding.PSS.AUTO)
                        if "_PSS_" in algorithm
                        else padding.PKCS1v15()
                    )
                    self.public_key.verify(signature, digest, pad, chosen)
                return True
            except InvalidSignature:
                continue
        return False

    def pem(self) -> str:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")
