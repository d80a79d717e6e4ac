"""Signed model artifacts: pack, sign, verify, and only then load.

An artifact is a pickled model, compressed. Unpickling runs code, so a
loader must never unpickle bytes it cannot authenticate: anyone with write
access to the models topic could otherwise run code on every serving node.
The signature covers the model, version, flavor, compression and the
artifact's SHA-256, and is checked (constant time for HMAC) before the
SHA-256 of the bytes is compared and before anything is decompressed.

Keys: ``signing_key`` is an HMAC-SHA256 secret, or the path of an Ed25519
private key (PEM). Verifiers use ``verify_key`` (the HMAC secret, or an
Ed25519 public key PEM), defaulting to what ``signing_key`` implies.
"""

from __future__ import annotations

import hashlib
import hmac
import pickle
import zlib
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from driftline.errors import ConfigError, DriftlineError
from driftline.settings import Settings

FLAVOR = "river-pickle"
MAGIC = b"driftline-model-v1"


class ArtifactError(DriftlineError):
    """An artifact that must not be loaded: bad signature, wrong hash, unknown algorithm."""


def _key_file(value: str) -> bytes | None:
    path = Path(value)
    if value and len(value) < 4096 and path.is_file():
        return path.read_bytes()
    return None


def signed_bytes(record: dict[str, Any]) -> bytes:
    parts = [MAGIC, record["model"].encode(), record["version"].encode(), record["flavor"].encode(),
             record["compression"].encode(), record["artifact_sha256"].encode()]
    return b"\0".join(parts)


def _signing(settings: Settings) -> tuple[str, str, Any]:
    if not settings.signing_key:
        raise ConfigError("no signing key: set DRIFTLINE_SIGNING_KEY (an HMAC secret or an Ed25519 key file) "
                          "so published models can be verified")
    pem = _key_file(settings.signing_key)
    if pem is not None and b"PRIVATE KEY" in pem:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{settings.signing_key} is not an Ed25519 private key")
        public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return "ed25519", hashlib.sha256(public).hexdigest()[:16], key
    secret = settings.signing_key.encode()
    return "hmac-sha256", hashlib.sha256(b"key-id" + secret).hexdigest()[:16], secret


def sign(record: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """``record`` with ``signature_alg``, ``key_id`` and ``signature`` filled in."""
    alg, key_id, key = _signing(settings)
    message = signed_bytes(record)
    signature = key.sign(message) if alg == "ed25519" else hmac.new(key, message, hashlib.sha256).digest()
    return {**record, "signature_alg": alg, "key_id": key_id, "signature": signature}


def _verifier(settings: Settings, alg: str) -> Any:
    source = settings.verify_key or settings.signing_key
    if not source:
        raise ArtifactError("no verify key configured (DRIFTLINE_VERIFY_KEY or DRIFTLINE_SIGNING_KEY): "
                            "refusing to load an artifact that cannot be authenticated")
    pem = _key_file(source)
    if alg == "ed25519":
        if pem is None:
            raise ArtifactError("an Ed25519-signed artifact needs an Ed25519 key file to verify with")
        key = (serialization.load_pem_private_key(pem, password=None).public_key() if b"PRIVATE KEY" in pem
               else serialization.load_pem_public_key(pem))
        if not isinstance(key, Ed25519PublicKey):
            raise ArtifactError(f"{source} is not an Ed25519 key")
        return key
    if alg == "hmac-sha256":
        if pem is not None:
            raise ArtifactError("an HMAC-signed artifact needs the HMAC secret, not a key file")
        return source.encode()
    raise ArtifactError(f"unknown signature algorithm {alg!r}")


def verify(record: dict[str, Any], settings: Settings) -> None:
    """Raise ArtifactError unless the record's signature and artifact hash are good."""
    alg = record.get("signature_alg", "")
    key = _verifier(settings, alg)
    message = signed_bytes(record)
    if alg == "ed25519":
        try:
            key.verify(record["signature"], message)
        except InvalidSignature:
            raise ArtifactError(f"{record['model']} v{record['version']}: the signature does not verify") from None
    elif not hmac.compare_digest(hmac.new(key, message, hashlib.sha256).digest(), record["signature"]):
        raise ArtifactError(f"{record['model']} v{record['version']}: the signature does not verify")
    if hashlib.sha256(record["artifact"]).hexdigest() != record["artifact_sha256"]:
        raise ArtifactError(f"{record['model']} v{record['version']}: the artifact does not match its SHA-256")


def pack(model: Any) -> tuple[bytes, str]:
    """(compressed artifact, its SHA-256 hex)."""
    artifact = zlib.compress(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL), 6)
    return artifact, hashlib.sha256(artifact).hexdigest()


def load(record: dict[str, Any], settings: Settings) -> Any:
    """The model inside a ModelRecord, after its signature verified."""
    verify(record, settings)
    if record["flavor"] != FLAVOR:
        raise ArtifactError(f"unknown artifact flavor {record['flavor']!r}")
    if record["compression"] != "zlib":
        raise ArtifactError(f"unknown compression {record['compression']!r}")
    return pickle.loads(zlib.decompress(record["artifact"]))  # authenticated above
