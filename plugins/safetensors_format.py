"""Model format ``safetensors``: one ``.safetensors`` file of tensors, wmtool's card in its metadata.

A file written elsewhere holds only tensors: ``--arch`` names its architecture (or a ``config.json``
beside it names a timm or transformers one), and the task comes from the data or key at hand. The
header is read and checked before any tensor, so a corrupt or truncated file is refused in one line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import struct
from pathlib import Path
from typing import Any

from wmtool.api import (
    METADATA_KEY,
    ModelCard,
    ModelFormat,
    ModelSource,
    UserError,
    hookimpl,
    load_weights,
    spec_from_config,
    state_shapes,
)

WMTOOL_API_VERSION = 1

MAX_HEADER_BYTES = 100 * 2**20


def read_header(path: str | Path) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The tensor table (name → dtype, shape) and the metadata of a safetensors file, read without the data."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise UserError(f"{path}: not a safetensors file (too short)")
        (length,) = struct.unpack("<Q", prefix)
        if length > min(size - 8, MAX_HEADER_BYTES):
            raise UserError(f"{path}: not a safetensors file, or truncated (header of {length} bytes)")
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise UserError(f"{path}: not a safetensors file (unreadable header)") from None
    if not isinstance(header, dict):
        raise UserError(f"{path}: not a safetensors file (header is not an object)")
    metadata = header.pop("__metadata__", None) or {}
    tensors: dict[str, dict[str, Any]] = {}
    end = 0
    for name, info in header.items():
        try:
            begin, stop = info["data_offsets"]
            tensors[name] = {"dtype": str(info["dtype"]), "shape": [int(v) for v in info["shape"]]}
            end = max(end, int(stop))
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{path}: malformed safetensors entry for tensor {name!r}") from None
    if 8 + length + end > size:
        raise UserError(f"{path}: truncated safetensors file ({size} bytes, needs {8 + length + end})")
    return tensors, {str(k): str(v) for k, v in metadata.items()}


def add_metadata(path: Path, entries: dict[str, str]) -> None:
    """Add ``entries`` to a safetensors file's metadata in place: the header is rewritten and the tensor
    bytes copied in blocks (no tensor is loaded), then the new file replaces the old one."""
    read_header(path)  # checked first
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
        header["__metadata__"] = {**(header.get("__metadata__") or {}), **entries}
        encoded = json.dumps(header, separators=(",", ":")).encode()
        encoded += b" " * (-len(encoded) % 8)
        rewritten = path.with_name(f".{path.name}.metadata")
        with open(rewritten, "wb") as out:
            out.write(struct.pack("<Q", len(encoded)) + encoded)
            shutil.copyfileobj(handle, out, 2**24)
    os.replace(rewritten, path)


def read_card(path: str | Path) -> ModelCard | None:
    """The wmtool card stored in a safetensors file, or None when the file has none."""
    _, metadata = read_header(path)
    raw = metadata.get(METADATA_KEY)
    return ModelCard.from_json(raw, str(path)) if raw is not None else None


def read_tensors(path: Path) -> dict[str, Any]:
    """Every tensor of a safetensors file, read once from its memory map."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError) as exc:
        raise UserError(f"{path}: unreadable safetensors file ({exc})") from None


def load(path: Path, registry: Any, source: ModelSource, task: ModelCard | None) -> Any:
    """The file's tensors in the architecture its card names (or ``source.arch`` names)."""
    card = read_card(path)
    arch, arch_args = source.arch, source.arch_args
    if card is None and arch is None:
        arch, arch_args = spec_from_config(path) or (None, arch_args)
    if card is None or arch is not None:
        if arch is None:
            known = ", ".join(registry.names("architecture"))
            raise UserError(f"{path}: the file names no architecture; pass --arch NAME (known: {known}), "
                            "--arch path/to/file.py:Factory or --arch package.module:Factory")
        task = task or card  # the data's or key's task, else the file's own
        if task is None:
            raise UserError(f"{path}: with --arch, the task (input shape, classes) must come from --data")
        card = dataclasses.replace(task, arch=arch, arch_args=dict(arch_args or {}), code_sha256=None)
    return load_weights(registry, card, read_tensors(path), path)


def save(model: Any, path: Path, registry: Any) -> bytes:
    """The model's tensors and card as safetensors bytes; refused when its card could not load them back."""
    from safetensors.torch import save as serialize

    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in model.net.state_dict().items()}
    if state_shapes(registry, model.card) != {k: tuple(v.shape) for k, v in tensors.items()}:
        raise UserError(f"{path}: this model's layers are not architecture {model.card.arch}'s, so a safetensors "
                        "file could not be loaded back; write it as .onnx instead")
    return serialize(tensors, metadata={METADATA_KEY: json.dumps(model.card.to_json())})


def describe(path: Path) -> dict[str, Any]:
    """The tensor table and card, read from the header alone."""
    tensors, _ = read_header(path)
    card = read_card(path)
    notes = [] if card else ["no wmtool metadata: name the architecture on the commands: --arch NAME (see "
                             "`wmtool plugins`), --arch path/to/file.py:Factory or --arch package.module:Factory, "
                             "with --arch-args '{\"num_classes\": 10}' for its arguments"]
    if card is not None and ":" in card.arch and not card.arch.startswith(("timm:", "transformers:")):
        notes.append(f"the card names architecture code {card.arch}: commands run it only with --arch {card.arch} "
                     "or --trust-code (docs/security.md)")
    return {"format": "safetensors", "tensors": tensors, "card": card.to_json() if card else None, "notes": notes}


@hookimpl
def register_model_formats(register):
    """Register the ``safetensors`` format."""
    register(ModelFormat("safetensors", "a .safetensors file: tensors plus wmtool's card (never pickle)",
                         (".safetensors",), load, describe, save))
