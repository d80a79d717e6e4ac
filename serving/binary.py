"""The protocol's binary tensor data extension: raw tensors after the JSON header.

Stock v2 clients (tritonclient, KServe's) send inputs and ask for outputs in
this form by default, so a node that only read JSON ``data`` would fail them
unmodified. A binary body is a JSON header of ``Inference-Header-Content-Length``
bytes followed by each binary input's bytes, in input order; such an input
carries ``parameters.binary_data_size`` instead of ``data``. Numbers are
little-endian in the datatype's width; ``BYTES`` elements are a 4-byte
little-endian length then the bytes; ``BOOL`` is one byte per element.

Outputs come back the same way when the request asks for it (request
``parameters.binary_data_output`` or an output's ``parameters.binary_data``).
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson

from serving.protocol import ProtocolError

HEADER = "inference-header-content-length"

NUMPY_TYPES: dict[str, str] = {
    "FP64": "<f8", "FP32": "<f4", "FP16": "<f2",
    "INT64": "<i8", "INT32": "<i4", "INT16": "<i2", "INT8": "i1",
    "UINT64": "<u8", "UINT32": "<u4", "UINT16": "<u2", "UINT8": "u1", "BOOL": "?",
}
_LENGTH = struct.Struct("<I")


def split_body(body: bytes, header_length: str) -> dict[str, Any]:
    """The JSON header with each binary input's bytes decoded into its ``data``."""
    if not header_length.isdigit() or int(header_length) > len(body):
        raise ProtocolError(f"{HEADER} is {header_length!r} but the body has {len(body)} bytes")
    size = int(header_length)
    try:
        header = orjson.loads(body[:size])
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"the inference header is not JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise ProtocolError("the inference header must be a JSON object with an 'inputs' list")
    offset = size
    for tensor in header["inputs"]:
        parameters = tensor.get("parameters") if isinstance(tensor, dict) else None
        length = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if length is None:
            continue
        if not isinstance(length, int) or length < 0 or offset + length > len(body):
            raise ProtocolError(f"input {tensor.get('name')!r}: binary_data_size {length!r} runs past the body")
        tensor["data"] = decode_tensor(body[offset:offset + length], tensor.get("datatype"), tensor.get("name"))
        offset += length
    if offset != len(body):
        raise ProtocolError(f"the body has {len(body) - offset} bytes after the last binary input")
    return header


def decode_tensor(raw: bytes, datatype: Any, name: Any) -> list:
    if datatype == "BYTES":
        texts: list[str] = []
        offset = 0
        while offset < len(raw):
            if offset + 4 > len(raw):
                raise ProtocolError(f"input {name!r}: a BYTES element's length is cut off")
            (length,) = _LENGTH.unpack_from(raw, offset)
            offset += 4
            if offset + length > len(raw):
                raise ProtocolError(f"input {name!r}: a BYTES element runs past its tensor")
            texts.append(raw[offset:offset + length].decode("utf-8", errors="replace"))
            offset += length
        return texts
    dtype = NUMPY_TYPES.get(datatype)
    if dtype is None:
        raise ProtocolError(f"input {name!r}: datatype {datatype!r} is not a protocol datatype")
    width = np.dtype(dtype).itemsize
    if len(raw) % width:
        raise ProtocolError(f"input {name!r}: {len(raw)} bytes is not a whole number of {datatype} values")
    values = np.frombuffer(raw, dtype=dtype)
    if datatype == "BOOL":
        return values.tolist()
    numbers = values.astype(np.float64)
    missing = np.isnan(numbers)
    if not missing.any():
        return numbers.tolist()
    with_nulls = numbers.astype(object)
    with_nulls[missing] = None  # NaN is the binary form of a missing value, as null is in JSON
    return with_nulls.tolist()


def encode_tensor(tensor: dict[str, Any]) -> bytes:
    data = tensor["data"]
    if tensor["datatype"] == "BYTES":
        parts = []
        for value in data:
            encoded = str(value).encode()
            parts.append(_LENGTH.pack(len(encoded)))
            parts.append(encoded)
        return b"".join(parts)
    # numpy reads None as NaN for float types: the binary form of a null
    return np.array(data, dtype=NUMPY_TYPES[tensor["datatype"]]).tobytes()


def wants_binary(body: dict[str, Any]) -> set[str] | bool:
    """Which outputs the request wants as binary: True for all, else a set of names."""
    parameters = body.get("parameters")
    if isinstance(parameters, dict) and parameters.get("binary_data_output") is True:
        return True
    return {o["name"] for o in body.get("outputs") or []
            if isinstance(o, dict) and isinstance(o.get("parameters"), dict)
            and o["parameters"].get("binary_data") is True}


def binary_response(answer: dict[str, Any], binary: set[str] | bool) -> tuple[bytes, int]:
    """The response as a JSON header plus raw outputs; returns the body and the header's length."""
    blobs = []
    for tensor in answer["outputs"]:
        if binary is True or (isinstance(binary, set) and tensor["name"] in binary):
            raw = encode_tensor(tensor)
            del tensor["data"]
            tensor["parameters"] = {**tensor.get("parameters", {}), "binary_data_size": len(raw)}
            blobs.append(raw)
    header = orjson.dumps(answer)
    return header + b"".join(blobs), len(header)
