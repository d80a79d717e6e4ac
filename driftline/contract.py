"""Which wire format this deployment speaks: single-object encoding, or a Schema Registry.

Every producer and consumer gets its codec here, so switching a deployment to
a Confluent-compatible registry is one setting (``schema_registry_url``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Protocol

from driftline.settings import Settings
from schemas import Codec
from schemas.registry import RegistryCodec
from schemas.rows import Rows


class EventCodec(Protocol):
    def encode(self, name: str, record: dict) -> bytes: ...
    def header(self, name: str) -> bytes: ...
    def decode(self, data: bytes, expect: str | None = None) -> dict: ...
    def decode_named(self, data: bytes, expect: str | None = None) -> tuple[str, dict]: ...
    def decode_batch(self, values: Sequence[bytes]) -> list[tuple[str, dict] | None]: ...
    def decode_rows(self, values: Sequence[bytes]) -> list[tuple[str, list[int], Rows]]: ...
    def peek_model(self, data: bytes, expect: str) -> str | None: ...
    def writer_name(self, data: bytes) -> str: ...


@cache
def _registry_codec(url: str, retry_seconds: float, client: tuple[tuple[str, str], ...]) -> RegistryCodec:
    return RegistryCodec.from_url(url, retry_seconds=retry_seconds, **dict(client))


def registry_client_config(settings: Settings) -> dict[str, str]:
    """The Schema Registry client's auth and TLS keys from settings (only those set)."""
    keys = {"basic.auth.user.info": settings.schema_registry_basic_auth,
            "ssl.ca.location": settings.schema_registry_ca_location,
            "ssl.certificate.location": settings.schema_registry_cert_location,
            "ssl.key.location": settings.schema_registry_key_location}
    return {k: v for k, v in keys.items() if v}


def codec_for(settings: Settings) -> EventCodec:
    if settings.schema_registry_url:
        return _registry_codec(settings.schema_registry_url, settings.schema_registry_retry_seconds,
                               tuple(sorted(registry_client_config(settings).items())))
    return Codec.default()
