"""The same codec over a Confluent-compatible Schema Registry (Confluent wire format).

Where ``schema_registry_url`` is configured, events are ``00`` + a 4-byte
big-endian schema id + the Avro body, the format Confluent's serializers,
ksqlDB and Kafka Connect read. Subjects follow RecordNameStrategy (the
record's full name, e.g. ``driftline.Prediction``), so one subject serves
every topic that carries the type. Messages in single-object encoding still
decode, so a deployment can switch formats without draining its topics.
"""

from __future__ import annotations

import io
import json
import logging
import struct
import time
from collections.abc import Sequence
from typing import Any

from fastavro import schemaless_writer

from schemas.codec import MAGIC, Codec, crc64_fingerprint, parse_record_schema, read_record
from schemas.errors import DecodeError, EncodeError, RegistryUnavailable
from schemas.rows import Rows

CONFLUENT_MAGIC = 0
log = logging.getLogger(__name__)


class RegistryCodec:
    """Encode/decode driftline events in the Confluent wire format.

    ``client`` is a ``confluent_kafka.schema_registry.SchemaRegistryClient``
    (or anything with its ``register_schema``/``get_schema`` methods).
    """

    def __init__(self, client: Any, codec: Codec | None = None, *, retry_seconds: float = 120.0) -> None:
        self.client = client
        self.codec = codec or Codec.default()
        self.retry_seconds = retry_seconds
        self._ids: dict[str, int] = {}
        self._writers: dict[int, tuple[str, dict[str, Any]]] = {}
        self._current_ids: dict[int, bool] = {}  # schema id -> is it the current schema of its name

    @classmethod
    def from_url(cls, url: str, *, retry_seconds: float = 120.0, **config: Any) -> RegistryCodec:
        """A codec over the registry at ``url``; ``config`` takes the client's auth and TLS keys
        (``basic.auth.user.info``, ``ssl.ca.location``, ``ssl.certificate.location``, ``ssl.key.location``)."""
        from confluent_kafka.schema_registry import SchemaRegistryClient

        return cls(SchemaRegistryClient({"url": url, **config}), retry_seconds=retry_seconds)

    def _ask(self, what: str, call: Any) -> Any:
        """Call the registry, riding out an outage with capped exponential backoff.

        A 404 is the answer (the caller decides what it means); 401/403 is our
        configuration, raised at once; anything else (refused connection,
        timeout, 5xx) is retried for ``retry_seconds`` and then raised as
        :class:`RegistryUnavailable` — never as a verdict on the event.
        """
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        deadline = time.monotonic() + self.retry_seconds
        delay = 0.2
        while True:
            try:
                return call()
            except SchemaRegistryError as exc:
                if exc.http_status_code == 404:
                    raise
                if exc.http_status_code in (401, 403):
                    raise RegistryUnavailable(f"the schema registry refused {what}: {exc.error_message} "
                                              "(check schema_registry_basic_auth)") from None
                failure: Exception = exc
            except Exception as exc:  # connection refused, timeouts, TLS failures
                failure = exc
            if time.monotonic() + delay > deadline:
                raise RegistryUnavailable(f"the schema registry did not answer {what} for "
                                          f"{self.retry_seconds:g} s: {failure}") from None
            log.warning("schema registry unavailable (%s); retrying %s in %.1f s", failure, what, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)

    @property
    def names(self) -> list[str]:
        return self.codec.names

    def schema_id(self, name: str) -> int:
        """Register (idempotently) and cache the id of the current schema ``name``."""
        if name not in self._ids:
            from confluent_kafka.schema_registry import Schema

            schema = self.codec.schema(name)
            text = json.dumps(_plain(schema))
            self._ids[name] = self._ask(f"registering {name}",
                                        lambda: self.client.register_schema(name, Schema(text, "AVRO")))
            self._writers[self._ids[name]] = (name, schema)
        return self._ids[name]

    def header(self, name: str) -> bytes:
        """The Confluent wire-format prefix of every ``name`` event this codec writes."""
        return struct.pack(">bI", CONFLUENT_MAGIC, self.schema_id(name))

    def encode(self, name: str, record: dict[str, Any]) -> bytes:
        schema_id = self.schema_id(name)
        buffer = io.BytesIO()
        buffer.write(struct.pack(">bI", CONFLUENT_MAGIC, schema_id))
        try:
            schemaless_writer(buffer, self.codec.schema(name), record)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise EncodeError(f"cannot encode {name}: {exc}") from exc
        return buffer.getvalue()

    def _writer(self, schema_id: int) -> tuple[str, dict[str, Any]]:
        if schema_id not in self._writers:
            from confluent_kafka.schema_registry.error import SchemaRegistryError

            try:
                registered = self._ask(f"schema id {schema_id}", lambda: self.client.get_schema(schema_id))
            except SchemaRegistryError as exc:  # only a 404 gets here: the event names a schema nobody has
                raise DecodeError(f"schema id {schema_id} is not in the registry: {exc}") from None
            parsed = parse_record_schema(json.loads(registered.schema_str), _force=True)
            name = parsed["name"]
            if name not in self.codec.names:
                raise DecodeError(f"schema id {schema_id} is {name}, not a driftline event")
            self._writers[schema_id] = (name, parsed)
        return self._writers[schema_id]

    def _is_current(self, schema_id: int, name: str, writer: dict[str, Any]) -> bool:
        if schema_id not in self._current_ids:
            self._current_ids[schema_id] = crc64_fingerprint(writer) == self.codec.fingerprint_of(name)
        return self._current_ids[schema_id]

    def writer_name(self, data: bytes) -> str:
        if data[:2] == MAGIC:
            return self.codec.writer_of(data).name
        if len(data) < 5 or data[0] != CONFLUENT_MAGIC:
            head = bytes(data[:4]).hex(" ") or "empty"
            raise DecodeError(f"neither Confluent wire format nor single-object encoding: {head}")
        return self._writer(struct.unpack(">I", data[1:5])[0])[0]

    def decode(self, data: bytes, expect: str | None = None) -> dict[str, Any]:
        return self.decode_named(data, expect)[1]

    def peek_model(self, data: bytes, expect: str) -> str | None:
        """As :meth:`Codec.peek_model` for single-object events; None (decode instead) for registry ones."""
        return self.codec.peek_model(data, expect) if data[:2] == MAGIC else None

    def decode_batch(self, values: Sequence[bytes]) -> list[tuple[str, dict[str, Any]] | None]:
        """:meth:`Codec.decode_batch` for the single-object events among ``values``; registry-framed ones
        (a 5-byte header) are left to :meth:`decode_named`, one by one."""
        return self.codec.decode_batch(values)

    def decode_rows(self, values: Sequence[bytes]) -> list[tuple[str, list[int], Rows]]:
        """:meth:`Codec.decode_rows` for the single-object events among ``values`` (registry-framed ones
        are decoded alone)."""
        return self.codec.decode_rows(values)

    def decode_named(self, data: bytes, expect: str | None = None) -> tuple[str, dict[str, Any]]:
        if data[:2] == MAGIC:
            return self.codec.decode_named(data, expect)
        name = self.writer_name(data)
        if expect is not None and name != expect:
            raise DecodeError(f"expected a {expect} event, got {name}")
        schema_id = struct.unpack(">I", data[1:5])[0]
        _, writer = self._writer(schema_id)
        if self._is_current(schema_id, name, writer):  # the compiled reader knows the current schemas
            compiled = self.codec.compiled_body(name, data, 5)
            if compiled is not None:
                return name, compiled
        stream = io.BytesIO(data)
        stream.seek(5)
        try:
            record = read_record(stream, writer, self.codec.schema(name))
        except Exception as exc:
            raise DecodeError(f"invalid {name} body: {type(exc).__name__}: {exc}") from exc
        if stream.tell() != len(data):
            raise DecodeError(f"invalid {name} body: {len(data) - stream.tell()} trailing bytes")
        return name, record


def _plain(schema: Any) -> Any:
    """A parsed fastavro schema without fastavro's private keys (``__fastavro_parsed``...)."""
    if isinstance(schema, dict):
        return {k: _plain(v) for k, v in schema.items() if not k.startswith("__")}
    if isinstance(schema, list):
        return [_plain(v) for v in schema]
    return schema
