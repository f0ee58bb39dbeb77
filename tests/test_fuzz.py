"""Hostile and broken input: every reader ends in one clear error (UserError → one line, exit 2), never a
traceback, a hang or unbounded memory. Property-based with hypothesis; the example counts are in
docs/results.md."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SHARED
from wmtool.errors import UserError
from wmtool.keys import _checksum, key_from_json, key_to_json, load_key
from wmtool_plugins.safetensors_format import read_header

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False)
                           | st.text(max_size=20), lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


def _outcome(call) -> str:
    """'ok' or 'refused' (a UserError); anything else fails the test."""
    try:
        call()
    except UserError as error:
        assert "\n" not in str(error).strip()
        return "refused"
    return "ok"


@pytest.fixture(scope="module")
def key_doc(digits_models) -> dict:
    return json.loads(digits_models["key"].read_text())


@FUZZ
@given(raw=st.binary(max_size=2000))
def test_key_loader_random_bytes(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("k") / "key.json"
    path.write_bytes(raw)
    assert _outcome(lambda: load_key(path)) == "refused"


@FUZZ
@given(data=st.data())
def test_key_loader_mutated_fields_with_valid_checksum(key_doc, data):
    """Replace one field (top level, task, null or an array's description) and re-sign the checksum, so
    that validation past the checksum is exercised."""
    doc = json.loads(json.dumps(key_doc))
    section = data.draw(st.sampled_from(["top", "task", "null", "array"]))
    holder = {"top": doc, "task": doc["task"], "null": doc["null"],
              "array": doc["arrays"][sorted(doc["arrays"])[0]]}[section]
    field = data.draw(st.sampled_from(sorted(holder)))
    if data.draw(st.booleans()):
        holder[field] = data.draw(JSON_VALUES)
    else:
        del holder[field]
    body = {k: v for k, v in doc.items() if k != "checksum"}
    try:
        doc["checksum"] = _checksum(body)
    except (TypeError, ValueError):
        pass
    _outcome(lambda: key_from_json(doc))


@pytest.mark.parametrize("declared, actual", [((10**9,), 8), ((4,), 10**7), ((2**62, 2**62), 16)])
def test_key_array_that_would_expand_beyond_the_limit(key_doc, declared, actual):
    doc = json.loads(json.dumps(key_doc))
    payload = zlib.compress(bytes(actual), 9)  # zeros compress ~1000:1
    import base64

    doc["arrays"]["labels"] = {"dtype": "uint8", "shape": list(declared),
                               "zlib_base64": base64.b64encode(payload).decode()}
    doc["checksum"] = _checksum({k: v for k, v in doc.items() if k != "checksum"})
    with pytest.raises(UserError):
        key_from_json(doc)


def _safetensors(header: dict, data: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


@FUZZ
@given(raw=st.binary(max_size=512))
def test_safetensors_header_random_bytes(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("s") / "m.safetensors"
    path.write_bytes(raw)
    _outcome(lambda: read_header(path))


@FUZZ
@given(shape=st.lists(st.integers(-5, 2**40), max_size=4), dtype=st.sampled_from(["F32", "F16", "I64", "XX"]),
       offsets=st.lists(st.integers(-10, 2**40), min_size=0, max_size=3), extra=st.binary(max_size=64))
def test_safetensors_declared_shapes_and_offsets(tmp_path_factory, shape, dtype, offsets, extra):
    path = tmp_path_factory.mktemp("s") / "m.safetensors"
    path.write_bytes(_safetensors({"w": {"dtype": dtype, "shape": shape, "data_offsets": offsets}}, extra))
    _outcome(lambda: read_header(path))


@FUZZ
@given(cut=st.integers(0, 10**6), flip=st.integers(0, 10**6))
def test_model_files_truncated_or_flipped_end_in_one_line(cli, digits_models, tmp_path_factory, cut, flip):
    """Truncated or bit-flipped copies of a real model: exit 0 (harmless change) or 2, one line, no traceback."""
    raw = bytearray(digits_models["marked"].read_bytes())
    raw = raw[:cut % (len(raw) + 1)]
    if raw:
        raw[flip % len(raw)] ^= 0xFF
    path = tmp_path_factory.mktemp("m") / "m.safetensors"
    path.write_bytes(bytes(raw))
    result = cli("accuracy", path, "--data", "digits", expect=None)
    assert result.exit_code in (0, 2), result.exception
    if result.exit_code == 2:
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@FUZZ
@given(raw=st.binary(max_size=1024))
def test_onnx_loader_random_bytes(tmp_path_factory, raw):
    from wmtool_plugins.onnx_format import read_onnx, read_onnx_graph

    path = tmp_path_factory.mktemp("o") / "m.onnx"
    path.write_bytes(raw)
    _outcome(lambda: read_onnx(path))
    _outcome(lambda: read_onnx_graph(path))


@FUZZ
@given(cut=st.integers(0, 10**7), flip=st.integers(0, 10**7))
def test_onnx_weightless_reader_on_damaged_real_models(tmp_path_factory, cut, flip):
    """Truncated or bit-flipped copies of a real ONNX model through the weightless reader and onnxruntime:
    either it works or one clear error."""
    from wmtool.models import open_predictor
    from wmtool.plugins import get_registry

    raw = bytearray((SHARED / "models" / "mnist-8.onnx").read_bytes())
    raw = raw[:cut % (len(raw) + 1)]
    if raw:
        raw[flip % len(raw)] ^= 0xFF
    path = tmp_path_factory.mktemp("o") / "m.onnx"
    path.write_bytes(bytes(raw))
    _outcome(lambda: open_predictor(path, get_registry(), device="cpu").predict(np.zeros((1, 1, 28, 28), np.float32)))


@FUZZ
@given(n=st.integers(0, 6), shape=st.lists(st.integers(0, 9), min_size=0, max_size=4),
       labels=st.lists(st.integers(-3, 300), max_size=6), dtype=st.sampled_from(["uint8", "float32", "float64",
                                                                                  "int64", "bool"]))
def test_npz_dataset_reader(tmp_path_factory, n, shape, labels, dtype):
    from wmtool.data import load_dataset

    path = tmp_path_factory.mktemp("d") / "d.npz"
    np.savez(path, x=np.zeros((n, *shape), dtype=dtype), y=np.array(labels, dtype=np.int64))
    _outcome(lambda: load_dataset(str(path), "all"))


def _png(width: int, height: int, rows: bytes) -> bytes:
    """A greyscale PNG whose header states ``width`` × ``height`` and whose data is ``rows``, compressed."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@FUZZ
@given(side=st.integers(1, 2**16), data_rows=st.integers(0, 4))
def test_image_folder_with_bombs_and_truncated_pngs(tmp_path_factory, side, data_rows):
    """A PNG may claim up to 4 billion pixels (a decompression bomb) or hold fewer rows than it claims:
    either is refused in one line, as a readable one is read."""
    from wmtool.data import load_dataset

    folder = tmp_path_factory.mktemp("images")
    for label in ("a", "b"):
        (folder / label).mkdir()
        (folder / label / "fine.png").write_bytes(_png(8, 8, b"\x00" + bytes(8) * 1 + (b"\x00" + bytes(8)) * 7))
    (folder / "a" / "odd.png").write_bytes(_png(side, side, (b"\x00" + bytes(min(side, 64))) * data_rows))
    assert _outcome(lambda: load_dataset(str(folder), "all")) in ("ok", "refused")


def test_a_decompression_bomb_is_one_line(cli, digits_models, tmp_path):
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
    (tmp_path / "a" / "bomb.png").write_bytes(_png(50_000, 50_000, b"\x00" * 100))
    refused = cli("accuracy", digits_models["clean"], "--data", tmp_path, expect=2)
    assert refused.stderr.startswith(f"error: {tmp_path / 'a' / 'bomb.png'}: refused, too many pixels")
    assert len(refused.stderr.strip().splitlines()) == 1


def test_nan_weights_are_refused(cli, digits_models, tmp_path):
    from safetensors.torch import load_file, save_file

    from wmtool_plugins.safetensors_format import read_header

    tensors = load_file(str(digits_models["clean"]))
    name = sorted(tensors)[0]
    tensors[name][0] = float("nan")
    _, metadata = read_header(digits_models["clean"])
    path = tmp_path / "nan.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    result = cli("accuracy", path, "--data", "digits", expect=2)
    assert "NaN or infinite" in result.stderr and name in result.stderr


def test_labels_out_of_range_for_the_model(cli, digits_models, tmp_path):
    path = tmp_path / "wide.npz"
    np.savez(path, x=np.zeros((20, 8, 8), dtype=np.uint8), y=np.arange(20) % 12)
    result = cli("accuracy", digits_models["clean"], "--data", path, expect=2)
    assert "classes" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_key_to_json_round_trip(key_doc):
    key = key_from_json(key_doc)
    assert key_to_json(key)["checksum"] == key_doc["checksum"]


@pytest.mark.parametrize("shape", [[2**40, 1.6e296], [2.5, 4], [True, 3], [2**70, 2**70]])
def test_key_array_shapes_that_are_not_small_integers_are_refused(key_doc, shape):
    """Found by hypothesis in CI: a float in a declared shape overflowed the size check."""
    from wmtool.keys import decode_array

    array = dict(key_doc["arrays"]["inputs"], shape=shape)
    assert _outcome(lambda: decode_array("inputs", array)) == "refused"
