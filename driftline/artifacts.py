"""Signed model records: pack, sign, verify, and only then load.

An artifact is a pickled model, compressed. Unpickling runs code, so a
loader must never unpickle bytes it cannot authenticate: anyone with write
access to the models topic could otherwise run code on every serving node.
And a node trusts more than the artifact: the feature spec orders the
columns it feeds the model, the task decides how it answers. So the
signature covers the **whole record** except the signature itself, in a
canonical encoding (sorted-key JSON; the artifact through its SHA-256, which
is compared with the bytes before anything is decompressed). Changing a
record's spec, task, metrics, parent or run id breaks its signature.

Keys: ``signing_key`` is an HMAC-SHA256 secret (published under the
configured name ``signing_key_id``, which reveals nothing about it), or
``signing_key_file`` an Ed25519 private key (PEM; its key id is the public
key's hash). Verifiers use ``verify_key`` / ``verify_key_file``, defaulting
to what the signing settings imply, so serving nodes can hold only the
public key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
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
MAGIC = b"driftline-model-v2\0"
# Fields added to ModelRecord after models were signed: absent (None) they are left out of the signed
# bytes, so a record signed before the field existed still verifies when decoded with its default.
ADDED_OPTIONAL_FIELDS = frozenset({"calibration"})
UNSIGNED_FIELDS = frozenset({"signature", "artifact"})  # the artifact is signed through artifact_sha256


class ArtifactError(DriftlineError):
    """An artifact that must not be loaded: bad signature, wrong hash, unknown algorithm."""


def _read_key_file(path: str, setting: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise ConfigError(f"{setting} {path}: {exc.strerror or exc}") from None


def _canonical(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def signed_bytes(record: dict[str, Any]) -> bytes:
    """The canonical bytes a signature covers: every field but the signature (and the artifact, by hash)."""
    body = {k: v for k, v in record.items()
            if k not in UNSIGNED_FIELDS and not (k in ADDED_OPTIONAL_FIELDS and v is None)}
    return MAGIC + json.dumps(_canonical(body), sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                              allow_nan=True).encode()


def _ed25519_key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]


def _signing(settings: Settings) -> tuple[str, str, Any]:
    if settings.signing_key_file:
        pem = _read_key_file(settings.signing_key_file, "signing_key_file")
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except ValueError:
            raise ConfigError(f"signing_key_file {settings.signing_key_file} is not a PEM private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"signing_key_file {settings.signing_key_file} is not an Ed25519 private key")
        return "ed25519", _ed25519_key_id(key.public_key()), key
    if settings.signing_key:
        return "hmac-sha256", f"hmac:{settings.signing_key_id}", settings.signing_key.encode()
    raise ConfigError("no signing key: set DRIFTLINE_SIGNING_KEY (an HMAC secret) or DRIFTLINE_SIGNING_KEY_FILE "
                      "(an Ed25519 private key) so published models can be verified")


def sign(record: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """``record`` with ``signature_alg``, ``key_id`` and ``signature`` filled in (over the whole record)."""
    alg, key_id, key = _signing(settings)
    unsigned = {**record, "signature_alg": alg, "key_id": key_id, "signature": b""}
    message = signed_bytes(unsigned)
    signature = key.sign(message) if alg == "ed25519" else hmac.new(key, message, hashlib.sha256).digest()
    return {**unsigned, "signature": signature}


def _verifier(settings: Settings, alg: str) -> Any:
    if alg == "ed25519":
        source, setting = settings.verify_key_file or settings.signing_key_file, "verify_key_file"
        if not source:
            raise ArtifactError("an Ed25519-signed model needs DRIFTLINE_VERIFY_KEY_FILE (its public key) to verify")
        pem = _read_key_file(source, setting)
        try:
            key = (serialization.load_pem_private_key(pem, password=None).public_key() if b"PRIVATE KEY" in pem
                   else serialization.load_pem_public_key(pem))
        except ValueError:
            raise ArtifactError(f"{setting} {source} is not a PEM key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ArtifactError(f"{setting} {source} is not an Ed25519 key")
        return key
    if alg == "hmac-sha256":
        secret = settings.verify_key or settings.signing_key
        if not secret:
            raise ArtifactError("an HMAC-signed model needs DRIFTLINE_VERIFY_KEY (or DRIFTLINE_SIGNING_KEY) to "
                                "verify: refusing to load a model that cannot be authenticated")
        return secret.encode()
    raise ArtifactError(f"unknown signature algorithm {alg!r}")


def verify(record: dict[str, Any], settings: Settings) -> None:
    """Raise ArtifactError unless the record's signature (over the whole record) and artifact hash are good."""
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


def metadata(record: dict[str, Any]) -> dict[str, Any]:
    """A ModelRecord without its artifact, and the artifact's size as ``artifact_bytes``: what followers of
    the models topic keep of every version (an artifact is megabytes; a service that kept every version's
    grew by one with each retraining). Without the key, nothing can verify or load it by mistake."""
    kept = {k: v for k, v in record.items() if k != "artifact"}
    kept["artifact_bytes"] = len(record["artifact"])
    return kept


def load(record: dict[str, Any], settings: Settings) -> Any:
    """The model inside a ModelRecord, after its signature verified."""
    verify(record, settings)
    if record["flavor"] != FLAVOR:
        raise ArtifactError(f"unknown artifact flavor {record['flavor']!r}")
    if record["compression"] != "zlib":
        raise ArtifactError(f"unknown compression {record['compression']!r}")
    return pickle.loads(zlib.decompress(record["artifact"]))  # authenticated above
