"""Avro codec for driftline events: single-object encoding and schema resolution.

Every message on a driftline topic is ``C3 01`` + the 8-byte little-endian
CRC-64-AVRO fingerprint of the writer schema + the Avro body (the Avro spec's
single-object encoding). A reader therefore knows the writer schema without a
registry server: it looks the fingerprint up among the schemas it knows, and
Avro schema resolution turns an event written with an older schema into the
current shape. Where a Confluent-compatible registry is configured,
:mod:`schemas.registry` provides the same interface over the Confluent wire
format.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from schemas.batchread import BatchReader, plain_records
from schemas.compiled import BodyReader
from schemas.errors import DecodeError, EncodeError
from schemas.plainscan import Joined
from schemas.rows import Rows


def parse_record_schema(raw: Any, **options: Any) -> dict[str, Any]:
    """fastavro's ``parse_schema`` for a record schema (every driftline event is one), typed as such."""
    parsed = parse_schema(raw, **options)
    if not isinstance(parsed, dict) or "name" not in parsed:
        raise EncodeError(f"expected a named Avro record schema, got {str(parsed)[:80]}")
    return parsed


def read_record(stream: io.BytesIO, writer: Any, reader: Any) -> dict[str, Any]:
    """fastavro's ``schemaless_reader`` for a record body (a non-record value is a decode error)."""
    record = schemaless_reader(stream, writer, reader)
    if not isinstance(record, dict):
        raise DecodeError(f"expected an Avro record, got {type(record).__name__}")
    return record

MAGIC = b"\xc3\x01"
HEADER_LEN = 10
SCHEMA_DIR = Path(__file__).resolve().parent
# schemas/history/*.avsc: earlier versions of the current schemas, expanded and self-contained, so
# events they wrote (stats, profiles already on the topics) still decode after an upgrade.


@dataclass(frozen=True)
class WriterSchema:
    """A schema some writer used, identified by its fingerprint."""

    name: str
    parsed: dict[str, Any]
    fingerprint: bytes

    @property
    def model_first(self) -> bool:
        """True when the body starts with the ``model`` string (every event schema does)."""
        fields = self.parsed.get("fields") or [{}]
        return fields[0].get("name") == "model" and fields[0].get("type") == "string"


def crc64_fingerprint(parsed: dict[str, Any]) -> bytes:
    """CRC-64-AVRO of the Parsing Canonical Form, little-endian (as single-object encoding wants)."""
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


def _load_schema_files(directory: Path) -> dict[str, dict[str, Any]]:
    """Parse every ``*.avsc`` in ``directory``, resolving named types across files.

    Files may reference types defined in other files (``driftline.Columns``),
    so parsing repeats until every file resolves; a file that never does is an
    error naming the missing type.
    """
    pending = {p: json.loads(p.read_text()) for p in sorted(directory.glob("*.avsc"))}
    named: dict[str, Any] = {}
    parsed_by_name: dict[str, dict[str, Any]] = {}
    defines: dict[str, set[str]] = {}  # the named types each schema defines itself
    while pending:
        progress = False
        last_error: Exception | None = None
        for path, raw in list(pending.items()):
            attempt = dict(named)
            try:
                parsed = parse_record_schema(raw, named_schemas=attempt)
            except Exception as exc:  # fastavro raises UnknownType or SchemaParseException
                last_error = exc
                continue
            defines[parsed["name"]] = set(attempt) - set(named)
            named.update(attempt)
            parsed_by_name[parsed["name"]] = parsed
            del pending[path]
            progress = True
        if not progress:
            names = ", ".join(p.name for p in pending)
            raise EncodeError(f"cannot resolve Avro schemas {names}: {last_error}")
    # Expanded copies are self-contained, so fingerprints and resolution do not
    # depend on which other files happened to be loaded first.
    return {
        name: parse_record_schema(
            _expand(parsed, {k: v for k, v in named.items() if k not in defines[name]}), _force=True)
        for name, parsed in parsed_by_name.items()
    }


def _expand(parsed: dict[str, Any], named: dict[str, Any]) -> dict[str, Any]:
    """A self-contained copy: each named type from another file inlined at its first use.

    fastavro's ``expand_schema`` inlines *every* use, which breaks a schema
    that uses one of its types twice (a redefinition); later uses stay names.
    """
    expanded = _inline(parsed, named, set())
    if not isinstance(expanded, dict):
        raise EncodeError(f"schema {parsed.get('name')} did not expand to a record")
    return expanded


def _inline(node: Any, named: dict[str, Any], seen: set[str]) -> Any:
    if isinstance(node, str):
        if node in named and node not in seen:
            return _inline(named[node], named, seen)
        return node
    if isinstance(node, list):
        return [_inline(item, named, seen) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: v for k, v in node.items() if not k.startswith("__")}  # fastavro's bookkeeping keys
    if out.get("type") in ("record", "error", "enum", "fixed") and "name" in out:
        seen.add(out["name"])
    for key in ("fields", "items", "values"):
        if key in out:
            out[key] = _inline(out[key], named, seen)
    if "fields" not in out and out.get("type") not in ("record", "error", "enum", "fixed"):
        out["type"] = _inline(out.get("type"), named, seen)  # a field or a wrapped type
    elif "fields" in out:
        out["fields"] = [{**f, "type": _inline(f["type"], named, seen)} if isinstance(f, dict) else f
                         for f in out["fields"]]
    return out


class Codec:
    """Encode and decode driftline events by schema name.

    >>> codec = Codec.default()
    >>> data = codec.encode("driftline.Deployment", {"model": "churn", "version": "2",
    ...     "created_at": 0, "action": "deploy"})
    >>> data[:2] == MAGIC, codec.decode(data, "driftline.Deployment")["version"]
    (True, '2')
    """

    def __init__(self, schemas: dict[str, dict[str, Any]]) -> None:
        self._current = dict(schemas)
        self._by_fingerprint: dict[bytes, WriterSchema] = {}
        self._fingerprint_of: dict[str, bytes] = {}
        for name, parsed in schemas.items():
            fp = crc64_fingerprint(parsed)
            self._by_fingerprint[fp] = WriterSchema(name, parsed, fp)
            self._fingerprint_of[name] = fp
        self._bodies = BodyReader()
        self._batch = BatchReader(self._bodies)
        self._compiled = {"driftline.Prediction": self._bodies.prediction,
                          "driftline.Features": self._bodies.features}

    @classmethod
    def default(cls) -> Codec:
        """The codec over the schemas shipped in this folder (cached per process)."""
        global _DEFAULT
        if _DEFAULT is None:
            _DEFAULT = cls(_load_schema_files(SCHEMA_DIR))
            for path in sorted((SCHEMA_DIR / "history").glob("*.avsc")):
                _DEFAULT.register_writer(json.loads(path.read_text()))
        return _DEFAULT

    @property
    def names(self) -> list[str]:
        return sorted(self._current)

    def schema(self, name: str) -> dict[str, Any]:
        try:
            return self._current[name]
        except KeyError:
            raise EncodeError(f"unknown schema {name!r}; known: {', '.join(self.names)}") from None

    def fingerprint_of(self, name: str) -> bytes:
        self.schema(name)
        return self._fingerprint_of[name]

    def header(self, name: str) -> bytes:
        """The bytes every ``name`` event this codec writes starts with (writers that build bodies themselves)."""
        return MAGIC + self.fingerprint_of(name)

    def register_writer(self, raw_schema: dict[str, Any] | str) -> WriterSchema:
        """Teach the codec an older (or other) writer schema so its events decode.

        The schema's full name must match a current schema: events are resolved
        into the current shape (Avro schema resolution: added fields take their
        defaults, removed fields are skipped).
        """
        if isinstance(raw_schema, str):
            raw_schema = json.loads(raw_schema)
        parsed = parse_record_schema(raw_schema, _force=True)
        name = parsed["name"]
        self.schema(name)
        writer = WriterSchema(name, parsed, crc64_fingerprint(parsed))
        self._by_fingerprint.setdefault(writer.fingerprint, writer)
        return writer

    def encode(self, name: str, record: dict[str, Any]) -> bytes:
        """Single-object encoding of ``record`` under the current schema ``name``."""
        schema = self.schema(name)
        buffer = io.BytesIO()
        buffer.write(MAGIC)
        buffer.write(self._fingerprint_of[name])
        try:
            schemaless_writer(buffer, schema, record)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise EncodeError(f"cannot encode {name}: {exc}") from exc
        return buffer.getvalue()

    def writer_of(self, data: bytes) -> WriterSchema:
        """The writer schema named by a message's header, or a DecodeError saying why not."""
        if len(data) < HEADER_LEN or data[:2] != MAGIC:
            head = bytes(data[:4]).hex(" ") or "empty"
            raise DecodeError(
                f"not an Avro single-object encoded event: expected header c3 01, got {head}"
            )
        fp = data[2:HEADER_LEN]
        if not isinstance(fp, bytes):
            fp = bytes(fp)
        writer = self._by_fingerprint.get(fp)
        if writer is None:
            raise DecodeError(
                f"unknown writer schema fingerprint {fp.hex()}: the producer used a schema "
                "this reader was not given (register it with Codec.register_writer)"
            )
        return writer

    def peek_model(self, data: bytes, expect: str) -> str | None:
        """The ``model`` of an ``expect`` event without decoding the rest (None if it cannot be read so).

        Routing by model needs only the first field; decoding a whole 20-feature
        event for it costs ten times more. A body broken further on is found by
        whoever decodes the event.
        """
        try:
            writer = self.writer_of(data)
        except DecodeError:
            return None
        if writer.name != expect or not writer.model_first:
            return None
        position, shift, value = HEADER_LEN, 0, 0
        while True:  # Avro long: zig-zag varint
            if position >= len(data) or shift > 63:
                return None
            byte = data[position]
            position += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        length = (value >> 1) ^ -(value & 1)
        if length < 0 or position + length > len(data):
            return None
        try:
            return bytes(data[position:position + length]).decode()
        except UnicodeDecodeError:
            return None

    def writer_name(self, data: bytes) -> str:
        return self.writer_of(data).name

    def compiled_body(self, name: str, data: bytes, start: int) -> dict[str, Any] | None:
        """The body at ``start``, written with the current schema ``name``, by the compiled reader.

        None when there is none for ``name`` or the body is not its plain
        shape: the caller decodes with fastavro (which also names what is wrong).
        """
        read = self._compiled.get(name)
        if read is None:
            return None
        return read(data if isinstance(data, bytes) else bytes(data), start)

    def decode_batch(self, values: Sequence[bytes]) -> list[tuple[str, dict[str, Any]] | None]:
        """The plain one-row Prediction and Features events among ``values``, decoded together.

        Each item is (schema name, record) as :meth:`decode_named` gives it, or
        None for a value to decode alone with :meth:`decode_named` (another
        kind or shape, or broken: that call names what is wrong). A worker's
        polled batch is mostly such events (:mod:`schemas.batchread`).
        """
        out: list[tuple[str, dict[str, Any]] | None] = [None] * len(values)
        for name, found, rows in self.decode_rows(values):
            for i, record in zip(found, plain_records(rows), strict=True):
                out[i] = (name, record)
        return out

    def decode_rows(self, values: Sequence[bytes]) -> list[tuple[str, list[int], Rows]]:
        """The plain one-row Prediction and Features events among ``values`` as columns.

        Per kind and shape found: (schema name, the indices of its events in
        ``values``, ascending, their :class:`~schemas.rows.Rows`). A value in
        none is to be decoded alone (:meth:`decode_named`), as with
        :meth:`decode_batch`. The batch is read as one buffer
        (:mod:`schemas.plainscan`): no Python per event but its request id;
        bodies longer than any plain one of a known layout (batch events) are
        not copied into it.
        """
        joined = Joined(values, limit=HEADER_LEN + self._batch.max_plain_bytes())
        out = []
        for name, prediction in (("driftline.Prediction", True), ("driftline.Features", False)):
            mine = joined.headed(MAGIC + self._fingerprint_of[name])
            if mine.size:
                out += [(name, found.tolist(), rows) for found, rows in self._batch.read_rows(joined, mine, HEADER_LEN,
                                                                                              prediction)]
        return out

    def decode(self, data: bytes, expect: str | None = None) -> dict[str, Any]:
        """Decode one message into the current shape of its schema.

        ``expect`` names the schema the caller wants; a message of another
        kind is a DecodeError rather than a record of surprising shape.
        """
        return self.decode_named(data, expect)[1]

    def decode_named(self, data: bytes, expect: str | None = None) -> tuple[str, dict[str, Any]]:
        """:meth:`decode`, with the schema's name: readers of mixed topics need both, header read once."""
        writer = self.writer_of(data)
        if expect is not None and writer.name != expect:
            raise DecodeError(f"expected a {expect} event, got {writer.name}")
        reader = self._current[writer.name]
        if writer.parsed is reader:
            compiled = self.compiled_body(writer.name, data, HEADER_LEN)
            if compiled is not None:
                return writer.name, compiled
        stream = io.BytesIO(data)
        stream.seek(HEADER_LEN)
        try:
            if writer.parsed is reader:
                record = read_record(stream, reader, None)
            else:
                record = read_record(stream, writer.parsed, reader)
        except Exception as exc:  # fastavro raises EOFError, UnicodeDecodeError, SchemaResolutionError…
            raise DecodeError(f"invalid {writer.name} body: {type(exc).__name__}: {exc}") from exc
        if stream.tell() != len(data):
            raise DecodeError(
                f"invalid {writer.name} body: {len(data) - stream.tell()} trailing bytes"
            )
        return writer.name, record


_DEFAULT: Codec | None = None
