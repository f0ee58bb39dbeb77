"""Key files: the owner's secret record of a watermark or fingerprint (versioned JSON, arrays inline and
compressed).

Schema (version 1), all fields required unless marked optional::

    format        "wmtool-key"
    version       1
    tool_version  wmtool version that wrote it
    created       ISO 8601 time (UTC)
    scheme        embedder or fingerprinter name;   verifier: verifier name;   params: its options
    task          {input_shape, num_classes, preprocessing, classes (optional)}
    arrays        name -> {dtype, shape, zlib_base64}: e.g. inputs (canonical images), labels
    null          {rate, method ("chance" | "reference-model" | "independent-models"), observed, trials,
                  confidence}
    model_sha256  sha256 of the marked (or fingerprinted) model file
    checksum      sha256 of all the fields above, canonically serialised (detects edits and corruption)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from wmtool import __version__
from wmtool.atomic import write_atomic
from wmtool.errors import UserError
from wmtool.model_card import ModelCard
from wmtool.preprocessing import Preprocessing
from wmtool.stats import clopper_pearson_upper

KEY_FORMAT = "wmtool-key"
KEY_VERSION = 1
ALLOWED_DTYPES = ("uint8", "int64", "int32", "float16", "float32", "float64", "bool")
MAX_ARRAY_BYTES = 512 * 2**20
MAX_KEY_BYTES = 1024 * 2**20
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Task:
    """What a model must accept and return for the key to apply: input shape, classes, preprocessing."""

    input_shape: tuple[int, ...]
    num_classes: int
    preprocessing: Preprocessing = Preprocessing()
    classes: tuple[str, ...] | None = None

    @classmethod
    def of(cls, card: ModelCard) -> "Task":
        """The task a model card describes."""
        return cls(card.input_shape, card.num_classes, card.preprocessing, card.classes)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {"input_shape": list(self.input_shape), "num_classes": self.num_classes,
                "preprocessing": self.preprocessing.to_json(),
                "classes": list(self.classes) if self.classes is not None else None}


@dataclass(frozen=True)
class NullRate:
    """The rate at which models without the watermark still answer the watermark queries "correctly"."""

    rate: float
    method: str
    observed: float | None = None
    trials: int | None = None
    confidence: float | None = None

    @classmethod
    def chance(cls, num_classes: int) -> "NullRate":
        """Random guessing among ``num_classes`` classes: 1/K, the EWE paper's conservative choice."""
        return cls(1.0 / num_classes, "chance")

    @classmethod
    def from_reference(cls, successes: int, trials: int, num_classes: int,
                       confidence: float = 0.99) -> "NullRate":
        """From a non-watermarked reference model's score on the watermark queries.

        The rate is the Clopper–Pearson upper bound of its observed rate at ``confidence``, and
        never below chance (1/K), so a lucky reference model cannot make claims easier.
        """
        upper = clopper_pearson_upper(successes, trials, confidence)
        return cls(max(upper, 1.0 / num_classes), "reference-model",
                   successes / trials if trials else None, trials, confidence)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {"rate": self.rate, "method": self.method, "observed": self.observed, "trials": self.trials,
                "confidence": self.confidence}


@dataclass
class Key:
    """A loaded or new key."""

    scheme: str
    verifier: str
    params: dict[str, Any]
    task: Task
    null: NullRate
    model_sha256: str
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    tool_version: str = __version__
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    calibration: dict[str, Any] | None = None
    """Set by ``wmtool calibrate``: the null rate measured on reference models known not to carry the
    watermark (``rate``: its Clopper–Pearson upper bound), with the models' sha256."""

    def null_rate(self) -> float:
        """The null rate the ownership test uses: the larger of the default and the calibrated one."""
        return max(self.null.rate, float(self.calibration["rate"])) if self.calibration else self.null.rate

    def array(self, name: str) -> np.ndarray:
        """A named array of the key, or a :class:`UserError` when the key lacks it."""
        if name not in self.arrays:
            raise UserError(f"the key holds no array {name!r} (it has: {', '.join(sorted(self.arrays)) or 'none'})")
        return self.arrays[name]


def encode_array(array: np.ndarray) -> dict[str, Any]:
    """An array as {dtype, shape, zlib_base64}."""
    array = np.ascontiguousarray(array)
    if array.dtype.name not in ALLOWED_DTYPES:
        raise ValueError(f"key arrays must have one of the dtypes {ALLOWED_DTYPES}, not {array.dtype}")
    data = base64.b64encode(zlib.compress(array.tobytes(), 9)).decode("ascii")
    return {"dtype": array.dtype.name, "shape": list(array.shape), "zlib_base64": data}


def decode_array(name: str, data: Any) -> np.ndarray:
    """The array :func:`encode_array` encoded; refuses bad dtypes, shapes and sizes before inflating."""
    try:
        dtype = np.dtype(data["dtype"])
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in data["shape"]):
            raise ValueError(f"shape {data['shape']!r} is not a list of integers")
        shape = tuple(data["shape"])
        payload = base64.b64decode(data["zlib_base64"], validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise UserError(f"key array {name!r} is malformed ({exc})") from None
    if dtype.name not in ALLOWED_DTYPES or any(v < 0 for v in shape):
        raise UserError(f"key array {name!r} has a bad dtype or shape ({dtype}, {shape})")
    expected = math.prod(shape) * dtype.itemsize  # exact: Python integers do not overflow
    if expected > MAX_ARRAY_BYTES:
        raise UserError(f"key array {name!r} declares {expected} bytes, over the limit of {MAX_ARRAY_BYTES}")
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(payload, expected + 1)
    except zlib.error as exc:
        raise UserError(f"key array {name!r} is corrupt ({exc})") from None
    if len(raw) != expected or inflater.unconsumed_tail:
        raise UserError(f"key array {name!r} holds a different amount of data than its shape {shape} declares")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def _checksum(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def commitment(key: Key) -> str:
    """The sha256 an owner publishes before releasing a model: the canonical JSON of the key's claim
    (scheme, verifier, parameters, task, the raw bytes' digests of its arrays and the marked model's hash),
    leaving out what may change later without changing the claim (the null rate, the creation time)."""
    claim = {
        "scheme": key.scheme, "verifier": key.verifier, "params": key.params, "task": key.task.to_json(),
        "arrays": {name: [array.dtype.name, list(array.shape),
                          hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()]
                   for name, array in sorted(key.arrays.items())},
        "model_sha256": key.model_sha256,
    }
    return _checksum(claim)


def key_to_json(key: Key) -> dict[str, Any]:
    """The JSON document of a key, checksum included."""
    body = {
        "format": KEY_FORMAT, "version": KEY_VERSION, "tool_version": key.tool_version, "created": key.created,
        "scheme": key.scheme, "verifier": key.verifier, "params": key.params, "task": key.task.to_json(),
        "arrays": {name: encode_array(array) for name, array in key.arrays.items()},
        "null": key.null.to_json(), "model_sha256": key.model_sha256,
        **({"calibration": key.calibration} if key.calibration else {}),
    }
    return {**body, "checksum": _checksum(body)}


def save_key(key: Key, path: str | Path, *, force: bool = False) -> Path:
    """Write the key atomically, readable by its owner only."""
    data = json.dumps(key_to_json(key), indent=1, allow_nan=False).encode()
    return write_atomic(path, data, private=True, force=force)


def load_key(path: str | Path) -> Key:
    """Read and validate a key file; anything wrong raises one :class:`UserError`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such key file")
    if path.stat().st_size > MAX_KEY_BYTES:
        raise UserError(f"{path}: too large for a key file")
    try:
        doc = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a key file (invalid JSON: {exc})") from None
    return key_from_json(doc, str(path))


def _calibration(doc: Any, source: str) -> dict[str, Any] | None:
    if doc is None:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("rate"), (int, float)) or not 0 <= doc["rate"] <= 1:
        raise UserError(f"{source}: malformed calibration (needs a rate in [0, 1])")
    return dict(doc)


def key_from_json(doc: Any, source: str = "key") -> Key:
    """Validate a key document and build the :class:`Key`."""
    if not isinstance(doc, dict) or doc.get("format") != KEY_FORMAT:
        raise UserError(f"{source}: not a wmtool key file")
    if doc.get("version") != KEY_VERSION:
        raise UserError(f"{source}: key version {doc.get('version')!r} is not supported (this wmtool reads {KEY_VERSION})")
    body = {name: value for name, value in doc.items() if name != "checksum"}
    try:
        matches = doc.get("checksum") == _checksum(body)
    except (TypeError, ValueError):
        matches = False
    if not matches:
        raise UserError(f"{source}: key checksum does not match its contents (the file was edited or corrupted)")
    try:
        task_doc, null_doc = doc["task"], doc["null"]
        task = Task(tuple(int(v) for v in task_doc["input_shape"]), int(task_doc["num_classes"]),
                    Preprocessing.from_json(task_doc.get("preprocessing") or {}),
                    tuple(task_doc["classes"]) if task_doc.get("classes") is not None else None)
        null = NullRate(float(null_doc["rate"]), str(null_doc["method"]), null_doc.get("observed"),
                        null_doc.get("trials"), null_doc.get("confidence"))
        key = Key(scheme=str(doc["scheme"]), verifier=str(doc["verifier"]), params=dict(doc["params"]),
                  task=task, null=null, model_sha256=str(doc["model_sha256"]),
                  arrays={str(name): decode_array(name, data) for name, data in dict(doc["arrays"]).items()},
                  tool_version=str(doc["tool_version"]), created=str(doc["created"]),
                  calibration=_calibration(doc.get("calibration"), source))
    except UserError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{source}: malformed key file ({type(exc).__name__}: {exc})") from None
    if not _HEX64.match(key.model_sha256):
        raise UserError(f"{source}: model_sha256 is not a sha256 hex digest")
    if not 0 <= key.null.rate < 1 or key.task.num_classes < 2:
        raise UserError(f"{source}: null rate or class count out of range")
    _check_arrays(key, source)
    return key


def _check_arrays(key: Key, source: str) -> None:
    """Refuse watermark arrays that no model could be queried with: NaN or infinite values, inputs whose
    shape does not fit the key's task, labels outside its classes."""
    for name, array in key.arrays.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise UserError(f"{source}: key array {name!r} holds NaN or infinite values")
    inputs, labels = key.arrays.get("inputs"), key.arrays.get("labels")
    task = key.task
    if inputs is not None and (inputs.ndim != 1 + len(task.input_shape)
                               or not task.preprocessing.accepts(inputs.shape[1:], task.input_shape)):
        raise UserError(f"{source}: key inputs of shape {tuple(inputs.shape[1:])} do not fit its task's input shape "
                        f"{tuple(task.input_shape)}")
    if labels is not None and labels.size and (labels.dtype.kind not in "iu" or labels.min() < 0
                                               or labels.max() >= task.num_classes):
        raise UserError(f"{source}: key labels are not classes 0 to {task.num_classes - 1} of its task")
    if inputs is not None and labels is not None and len(inputs) != len(labels):
        raise UserError(f"{source}: the key holds {len(inputs)} inputs but {len(labels)} labels")
