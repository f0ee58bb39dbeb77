"""Models as safetensors files: build, save (atomically, with a model card) and load, never pickle."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from wmtool.atomic import write_atomic
from wmtool.errors import UserError
from wmtool.model_card import METADATA_KEY, ModelCard
from wmtool.options import json_object, resolve
from wmtool.preprocessing import Preprocessing
from wmtool.registry import Registry

PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin"}
MAX_HEADER_BYTES = 100 * 2**20


class Classifier(nn.Module):
    """A network plus its card: takes canonical images (floats in [0, 1], NCHW) and returns logits."""

    def __init__(self, net: nn.Module, card: ModelCard):
        super().__init__()
        self.net = net
        self.card = card

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for canonical images, after the card's preprocessing."""
        return self.net(self.card.preprocessing.apply(x))

    @property
    def device(self) -> torch.device:
        """The device the parameters live on."""
        return next(self.parameters()).device

    @torch.no_grad()
    def predict_logits(self, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """Logits for a numpy batch of canonical images, computed in evaluation mode."""
        was_training = self.training
        self.eval()
        outputs = []
        for start in range(0, len(x), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(x[start:start + batch_size], dtype=np.float32))
            outputs.append(self(chunk.to(self.device)).float().cpu().numpy())
        self.train(was_training)
        if not outputs:
            return np.zeros((0, self.card.num_classes), dtype=np.float32)
        return np.concatenate(outputs)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted class indices for a numpy batch of canonical images."""
        return self.predict_logits(x).argmax(axis=1)


def build_model(registry: Registry, card: ModelCard) -> Classifier:
    """A freshly initialised model of the card's architecture (seed torch first for reproducibility): a
    registered name, or code (``file.py:Factory``, ``module:Factory``, ``timm:NAME``; see user_code)."""
    from wmtool.user_code import build_from_code, is_code_spec

    if is_code_spec(card.arch):
        net, spec, digest = build_from_code(card.arch, dict(card.arch_args), card.code_sha256)
        return Classifier(net, dataclasses.replace(card, arch=spec, code_sha256=digest))
    architecture = registry.get("architecture", card.arch)
    args = resolve(architecture.options, card.arch_args, f"architecture {card.arch}")
    net = architecture.build(card.input_shape, card.num_classes, **args)
    return Classifier(net, dataclasses.replace(card, arch_args=args))


def fresh_model_for(card: ModelCard, registry: Registry, arch: str | None = None,
                    arch_args: str | dict[str, Any] | None = None) -> Classifier:
    """A freshly initialised model for the task of ``card``: architecture ``arch`` (default the card's own)
    with ``arch_args`` (a dict or a JSON object string); seed torch first for reproducibility."""
    if isinstance(arch_args, str):
        arch_args = json_object(arch_args, "the architecture arguments")
    name = arch or card.arch
    if name == "onnx" and not arch:
        raise UserError("the victim is an ONNX graph: name the new model's architecture (e.g. --student ewe-cnn)")
    arguments = arch_args if arch or arch_args else card.arch_args
    return build_model(registry, ModelCard(name, card.input_shape, card.num_classes, dict(arguments or {}),
                                           classes=card.classes))


def file_sha256(path: str | Path) -> str:
    """The sha256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_model(model: Classifier, path: str | Path, *, force: bool = True) -> str:
    """Write the model atomically as safetensors (tensors + card) or ONNX, by the suffix; return its sha256."""
    path = Path(path)
    if path.suffix == ".onnx":
        from wmtool.onnx_io import to_onnx_bytes

        data = to_onnx_bytes(model)
    elif path.suffix == ".safetensors":
        from safetensors.torch import save

        tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in model.net.state_dict().items()}
        _check_rebuildable(model.card, tensors, path)
        data = save(tensors, metadata={METADATA_KEY: json.dumps(model.card.to_json())})
    else:
        raise UserError(f"{path}: output models are written as .safetensors or .onnx files")
    write_atomic(path, data, force=force)
    return hashlib.sha256(data).hexdigest()


def _check_rebuildable(card: ModelCard, tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse to write a safetensors file that its own card could not load back."""
    from wmtool.plugins import get_registry

    try:
        expected = _build_without_storage(get_registry(), card).net.state_dict()
    except UserError:
        expected = {}
    if {k: tuple(v.shape) for k, v in expected.items()} != {k: tuple(v.shape) for k, v in tensors.items()}:
        raise UserError(f"{path}: this model's layers are not architecture {card.arch}'s, so a safetensors file "
                        "could not be loaded back; write it as .onnx instead")


def check_readable(path: str | Path) -> Path:
    """The path as a Path if it is an existing file; a clear error otherwise (and for pickle files)."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise UserError(
            f"{path}: wmtool never loads pickle checkpoints (they can run arbitrary code); "
            "convert it to safetensors first (safetensors.torch.save_file(model.state_dict(), 'model.safetensors'))"
        )
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if not path.is_file():
        raise UserError(f"{path}: not a file")
    return path


def read_header(path: str | Path) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The tensor table (name → dtype, shape) and the metadata of a safetensors file, read without the data."""
    path = check_readable(path)
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


def read_card(path: str | Path) -> ModelCard | None:
    """The wmtool card stored in a safetensors file, or None when the file has none."""
    _, metadata = read_header(path)
    raw = metadata.get(METADATA_KEY)
    return ModelCard.from_json(raw, str(path)) if raw is not None else None


def load_model(path: str | Path, registry: Registry, *, arch: str | None = None,
               arch_args: dict[str, Any] | None = None, task: ModelCard | None = None,
               preprocessing: Preprocessing | None = None) -> Classifier:
    """Load a model as a trainable torch module: safetensors, or ONNX converted to torch ops.

    A safetensors file's own card decides the architecture; ``arch`` (with ``arch_args``) names one
    for a file that has none, taking input shape, classes and preprocessing from ``task`` (a
    dataset's or key's). ``preprocessing`` (the user's flags) overrides the stored one.
    """
    path = check_readable(path)
    if path.suffix.lower() == ".onnx":
        from wmtool.onnx_io import card_of, read_onnx
        from wmtool.onnx_torch import OnnxModule, graph_without_weights

        proto = read_onnx(path)
        card = card_of(proto, path, preprocessing=preprocessing, task=task)
        card = dataclasses.replace(card, arch="onnx", arch_args={"graph": graph_without_weights(proto)})
        return Classifier(OnnxModule(proto), card)
    card = read_card(path)
    if card is None and arch is None:
        from wmtool.user_code import spec_from_config

        arch, arch_args = spec_from_config(path) or (None, arch_args)
    if card is None or arch is not None:
        if arch is None:
            known = ", ".join(registry.names("architecture"))
            raise UserError(f"{path}: the file names no architecture; pass --arch NAME (known: {known}), "
                            "--arch path/to/file.py:Factory or --arch package.module:Factory")
        if task is None:
            raise UserError(f"{path}: with --arch, the task (input shape, classes) must come from --data")
        card = dataclasses.replace(task, arch=arch, arch_args=dict(arch_args or {}), code_sha256=None)
    model = _build_without_storage(registry, card)
    tensors = _read_tensors(path)
    _check_state(model.net, tensors, path, card.arch)
    model.net.load_state_dict(_cast_like(model.net.state_dict(), tensors), strict=True, assign=True)
    if any(t.is_meta for t in [*model.net.parameters(), *model.net.buffers()]):  # buffers outside the file
        model = build_model(registry, card)
        model.net.load_state_dict(tensors, strict=True)
    if preprocessing is not None:
        model.card = dataclasses.replace(model.card, preprocessing=preprocessing)
    return model


def open_predictor(path: str | Path, registry: Registry, *, device: str, arch: str | None = None,
                   arch_args: dict[str, Any] | None = None, task: ModelCard | None = None,
                   preprocessing: Preprocessing | None = None) -> Any:
    """A model to query black-box: ONNX through onnxruntime, safetensors as a torch module in eval mode.

    ``device`` is the user's choice (auto, cpu or cuda): with ``auto`` each runtime takes CUDA when it has it,
    so an ONNX model runs on onnxruntime's CPU provider beside a CUDA torch when onnxruntime-gpu is absent."""
    from wmtool.training import resolve_device

    path = check_readable(path)
    if path.suffix.lower() == ".onnx":
        from wmtool.onnx_io import OnnxPredictor, card_of, read_onnx_graph

        proto, serialized = read_onnx_graph(path)
        return OnnxPredictor(path, proto, card_of(proto, path, preprocessing=preprocessing, task=task), device,
                             serialized=serialized)
    model = load_model(path, registry, arch=arch, arch_args=arch_args, task=task, preprocessing=preprocessing)
    return model.to(resolve_device(device)).eval()


def _build_without_storage(registry: Registry, card: ModelCard) -> Classifier:
    """The card's architecture built on the meta device (shapes and dtypes, no memory), so loading a large
    file costs its size once; architectures that cannot be built there are built normally."""
    try:
        with torch.device("meta"):
            return build_model(registry, card)
    except UserError:
        raise
    except Exception:  # an architecture that computes with its weights at construction time
        return build_model(registry, card)


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, read once from its memory map."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError) as exc:
        raise UserError(f"{path}: unreadable safetensors file ({exc})") from None


def _cast_like(expected: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The file's tensors in the dtypes the architecture declares (a float16 file into a float32 model)."""
    return {name: tensor if tensor.dtype == expected[name].dtype else tensor.to(expected[name].dtype)
            for name, tensor in tensors.items()}


def _all_finite(tensor: torch.Tensor, block: int = 2**20) -> bool:
    """Whether a floating-point tensor holds no NaN or infinity, checked in blocks (bounded extra memory)."""
    flat = tensor.reshape(-1)
    return all(bool(torch.isfinite(flat[i:i + block]).all()) for i in range(0, flat.numel(), block))


def _check_state(net: nn.Module, tensors: dict[str, torch.Tensor], path: Path, arch: str) -> None:
    """Name every missing, unexpected or mis-shaped tensor, and any NaN or infinity, in one error."""
    expected = net.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    mismatched = sorted(
        f"{name} {tuple(tensors[name].shape)} vs {tuple(expected[name].shape)}"
        for name in set(expected) & set(tensors) if tensors[name].shape != expected[name].shape
    )
    problems = []
    if missing:
        problems.append("missing " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected " + ", ".join(unexpected))
    if mismatched:
        problems.append("shape mismatch " + ", ".join(mismatched))
    if problems:
        raise UserError(f"{path}: tensors do not fit architecture {arch}: " + "; ".join(problems))
    broken = sorted(name for name, tensor in tensors.items() if tensor.is_floating_point() and not _all_finite(tensor))
    if broken:
        raise UserError(f"{path}: tensors hold NaN or infinite values: {', '.join(broken)}")
