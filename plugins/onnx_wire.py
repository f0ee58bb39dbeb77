"""An ONNX file's graph without its weights, read from a memory map by walking the protobuf wire format.

``onnx.load`` copies every weight into Python (and parsing holds the file's bytes too), so a 500 MB model
costs over 1 GB before anything runs. Here each initializer's ``raw_data`` is skipped by its length and
replaced by an *external data* reference (offset and length) into the same file, so the parsed model holds
names, shapes and dtypes only, and onnxruntime reads the weights itself, once. Only the wire format's
framing is handled here (keys, varints, lengths, fixed widths); everything else is parsed by ``onnx``.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from pathlib import Path

MODEL_GRAPH, GRAPH_INITIALIZER = 7, 5  # ModelProto.graph, GraphProto.initializer
TENSOR_RAW_DATA, TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION = 9, 13, 14
EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
INLINE_LIMIT = 2**16  # smaller tensors (shapes, constants onnxruntime must read at load time) stay inline


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise WireError("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _fields(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, field start, value start, value end) of each field in ``buf[start:end]``; the value of
    a length-delimited field is its payload, of the others its encoded bytes."""
    pos = start
    while pos < end:
        key, value_start = _varint(buf, pos, end)
        number, kind = key >> 3, key & 7
        if kind == 0:
            _, value_end = _varint(buf, value_start, end)
        elif kind == 1:
            value_end = value_start + 8
        elif kind == 5:
            value_end = value_start + 4
        elif kind == 2:
            length, value_start = _varint(buf, value_start, end)
            value_end = value_start + length
        else:
            raise WireError(f"unsupported wire type {kind}")
        if number == 0 or value_end > end:
            raise WireError("field runs past the end of its message")
        yield number, pos, value_start, value_end
        pos = value_end


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | 2) + _encode_varint(len(payload)) + payload


def _entry(key: str, value: str) -> bytes:
    return _length_delimited(TENSOR_EXTERNAL_DATA, _length_delimited(1, key.encode()) + _length_delimited(2, value.encode()))


def _tensor(buf: memoryview, start: int, end: int, location: str) -> bytes:
    """An initializer without its raw data, pointing at that data's place in the file instead (small ones
    are copied as they are)."""
    out, raw = bytearray(), None
    for number, field_start, value_start, value_end in _fields(buf, start, end):
        if number == TENSOR_RAW_DATA and value_end - value_start >= INLINE_LIMIT:
            raw = (value_start, value_end - value_start)
        else:
            out += buf[field_start:value_end]
    if raw is not None:
        out += _entry("location", location) + _entry("offset", str(raw[0])) + _entry("length", str(raw[1]))
        out += _encode_varint(TENSOR_DATA_LOCATION << 3) + _encode_varint(EXTERNAL)
    return bytes(out)


def _graph(buf: memoryview, start: int, end: int, location: str) -> bytes:
    out = bytearray()
    for number, field_start, value_start, value_end in _fields(buf, start, end):
        if number == GRAPH_INITIALIZER:
            out += _length_delimited(number, _tensor(buf, value_start, value_end, location))
        else:
            out += buf[field_start:value_end]
    return bytes(out)


def weightless_bytes(path: Path) -> bytes:
    """The serialized ModelProto of ``path`` with every raw-data initializer turned into an external
    reference to its bytes in ``path`` itself (location: the file's name)."""
    with open(path, "rb") as handle:
        if path.stat().st_size == 0:
            raise WireError("empty file")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            buf = memoryview(mapped)
            try:
                out = bytearray()
                for number, field_start, value_start, value_end in _fields(buf, 0, len(buf)):
                    if number == MODEL_GRAPH:
                        out += _length_delimited(number, _graph(buf, value_start, value_end, path.name))
                    else:
                        out += buf[field_start:value_end]
                return bytes(out)
            finally:
                buf.release()
