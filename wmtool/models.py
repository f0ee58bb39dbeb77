"""What every model format shares: the source options, building a registered architecture, loading
weights into it with one clear error, and opening, querying and writing a model through its format.

The formats themselves (safetensors files, ONNX files, ...) are plugins (``register_model_formats``);
nothing here knows a file suffix but the pickle ones it refuses.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wmtool.atomic import refuse_existing, write_atomic, write_folder_atomic
from wmtool.errors import UserError
from wmtool.model_card import ModelCard
from wmtool.options import json_object, resolve
from wmtool.preprocessing import Preprocessing
from wmtool.registry import Registry

if TYPE_CHECKING:
    from wmtool.classifier import Classifier

PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin"}


@dataclass(frozen=True)
class ModelSource:
    """How the user says to open a model: ``--arch`` (with ``--arch-args``) for weights that name no
    architecture, preprocessing flags that override what the model states, and ``--trust-code`` to run
    the architecture code a model's own card names (off: only code the user names runs)."""

    arch: str | None = None
    arch_args: dict[str, Any] = field(default_factory=dict)
    preprocessing: Preprocessing | None = None
    trust_code: bool = False

    def allow(self) -> None:
        """Allow, for this run, the code the user named (``arch``) or, with ``trust_code``, any."""
        from wmtool.user_code import allow_code

        allow_code(self.arch, everything=self.trust_code)


def build_model(registry: Registry, card: ModelCard) -> "Classifier":
    """A freshly initialised model of the card's architecture (seed torch first for reproducibility): a
    registered name, or code (``file.py:Factory``, ``module:Factory``, ``timm:NAME``; see user_code)."""
    from wmtool.classifier import Classifier
    from wmtool.user_code import build_from_code, is_code_spec

    if is_code_spec(card.arch):
        net, spec, digest = build_from_code(card.arch, dict(card.arch_args), card.code_sha256)
        return Classifier(net, dataclasses.replace(card, arch=spec, code_sha256=digest))
    architecture = registry.get("architecture", card.arch)
    args = resolve(architecture.options, card.arch_args, f"architecture {card.arch}")
    extra = {"registry": registry} if architecture.needs_registry else {}
    net = architecture.build(card.input_shape, card.num_classes, **args, **extra)
    return Classifier(net, dataclasses.replace(card, arch_args=args))


def fresh_model_for(card: ModelCard, registry: Registry, arch: str | None = None,
                    arch_args: str | dict[str, Any] | None = None, *, flag: str = "--student") -> "Classifier":
    """A freshly initialised model for the task of ``card``: architecture ``arch`` (default the card's own)
    with ``arch_args`` (a dict or a JSON object string); seed torch first for reproducibility. ``flag`` is
    the option that names another architecture, for the error when the card's has no fresh form.
    ``arch`` is the user's choice (an option they gave) and is allowed to run as code; never pass a name
    read from a model file or a key."""
    from wmtool.user_code import allow_code

    if isinstance(arch_args, str):
        arch_args = json_object(arch_args, "the architecture arguments")
    allow_code(arch)  # named by the user (an option of theirs); the card's own is not
    name = arch or card.arch
    if not arch and name in registry.names("architecture") and registry.get("architecture", name).from_file:
        raise UserError(f"the model's architecture ({name}) is read from its file and has no fresh form: name the "
                        f"new model's architecture (e.g. {flag} ewe-cnn)")
    arguments = arch_args if arch or arch_args else card.arch_args
    return build_model(registry, ModelCard(name, card.input_shape, card.num_classes, dict(arguments or {}),
                                           classes=card.classes))


def file_sha256(path: str | Path) -> str:
    """The sha256 hex digest of a file's bytes (of a folder: of its files' names and digests, in order)."""
    path = Path(path)
    if path.is_dir():
        digest = hashlib.sha256()
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"{item.relative_to(path).as_posix()}\0{file_sha256(item)}\n".encode())
        return digest.hexdigest()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_readable(path: str | Path) -> Path:
    """The path as a Path if it exists; a clear error otherwise (and for pickle files)."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise UserError(
            f"{path}: wmtool never loads pickle checkpoints (they can run arbitrary code); "
            "convert it to safetensors first (safetensors.torch.save_file(model.state_dict(), 'model.safetensors'))"
        )
    if not path.exists():
        raise UserError(f"{path}: no such file")
    return path


def describe_model(path: str | Path, registry: Registry) -> dict[str, Any]:
    """What ``inspect`` shows of a model: its format's description."""
    path = check_readable(path)
    return registry.format_for(path).describe(path)


def load_model(path: str | Path, registry: Registry, source: ModelSource = ModelSource(),
               task: ModelCard | None = None) -> "Classifier":
    """A model as a trainable torch module, opened by its format.

    The file's own card decides the architecture; ``source.arch`` names one for weights that state none,
    taking input shape, classes and preprocessing from ``task`` (a dataset's or key's). The user's
    preprocessing flags override the stored ones.
    """
    from wmtool.user_code import UntrustedCode

    path = check_readable(path)
    source.allow()
    try:
        model = registry.format_for(path).load(path, registry, source, task)
    except UntrustedCode as refusal:
        raise UntrustedCode(f"{path}: {refusal}") from None
    if source.preprocessing is not None:
        model.card = dataclasses.replace(model.card, preprocessing=source.preprocessing)
    return model


def open_predictor(path: str | Path, registry: Registry, source: ModelSource = ModelSource(),
                   task: ModelCard | None = None, *, device: str = "auto") -> Any:
    """A model to query black-box: the format's own predictor (ONNX: onnxruntime) if it has one, else the
    torch module in evaluation mode on ``device`` (auto, cpu or cuda)."""
    path = check_readable(path)
    model_format = registry.format_for(path)
    if model_format.predictor is not None:
        source.allow()
        return model_format.predictor(path, registry, source, task, device)
    from wmtool.training import resolve_device

    return load_model(path, registry, source, task).to(resolve_device(device)).eval()


def check_output(path: str | Path, registry: Registry, force: bool) -> Path:
    """Before any work: refuse an existing output without ``force``, and a suffix no format writes."""
    path = Path(path)
    refuse_existing([path], force)
    registry.writer_for(path)
    return path


def save_model(model: "Classifier", path: str | Path, registry: Registry, *, force: bool = False) -> str:
    """Write the model atomically in the format its suffix names (a path without one: a folder of the
    model's kind); return the written file's sha256 (a folder's: see :func:`file_sha256`)."""
    path = Path(path)
    model_format = registry.writer_for(path, model.card)
    if model_format.folder_of is not None:
        write_folder_atomic(path, lambda folder: model_format.save(model, folder, registry), force=force)
        return file_sha256(path)
    data = model_format.save(model, path, registry)
    write_atomic(path, data, force=force)
    return hashlib.sha256(data).hexdigest()


def build_without_storage(registry: Registry, card: ModelCard) -> "Classifier":
    """The card's architecture built on the meta device (shapes and dtypes, no memory), so loading a large
    file costs its size once; architectures that cannot be built there are built normally."""
    import torch

    try:
        with torch.device("meta"):
            return build_model(registry, card)
    except UserError:
        raise
    except Exception:  # an architecture that computes with its weights at construction time
        return build_model(registry, card)


def load_weights(registry: Registry, card: ModelCard, tensors: dict[str, Any], path: Path) -> "Classifier":
    """The card's architecture holding ``tensors`` (a state dict), every misfit named in one error."""
    model = build_without_storage(registry, card)
    check_state(model.net, tensors, path, card.arch)
    expected = model.net.state_dict()
    cast = {name: tensor if tensor.dtype == expected[name].dtype else tensor.to(expected[name].dtype)
            for name, tensor in tensors.items()}
    model.net.load_state_dict(cast, strict=True, assign=True)
    if any(t.is_meta for t in [*model.net.parameters(), *model.net.buffers()]):  # buffers outside the file
        model = build_model(registry, card)
        model.net.load_state_dict(tensors, strict=True)
    return model


def state_shapes(registry: Registry, card: ModelCard) -> dict[str, tuple[int, ...]]:
    """The tensor names and shapes the card's architecture has (empty when it cannot be built)."""
    try:
        return {k: tuple(v.shape) for k, v in build_without_storage(registry, card).net.state_dict().items()}
    except UserError:
        return {}


def _all_finite(tensor: Any, block: int = 2**20) -> bool:
    """Whether a floating-point tensor holds no NaN or infinity, checked in blocks (bounded extra memory)."""
    import torch

    flat = tensor.reshape(-1)
    return all(bool(torch.isfinite(flat[i:i + block]).all()) for i in range(0, flat.numel(), block))


def check_state(net: Any, tensors: dict[str, Any], path: Path, arch: str) -> None:
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
