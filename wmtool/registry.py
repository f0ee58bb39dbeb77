"""What plugins register (embedders, fingerprinters, attacks, verifiers, architectures, model formats) and the registry
holding them. Jobs and outcomes are typed loosely here (``Any``): :mod:`wmtool.jobs` describes them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from wmtool.errors import UserError
from wmtool.options import Option

Kind = Literal["embedder", "fingerprinter", "attack", "verifier", "architecture", "format"]
KINDS: tuple[Kind, ...] = ("embedder", "fingerprinter", "attack", "verifier", "architecture", "format")


@dataclass(frozen=True)
class Embedder:
    """A watermarking scheme: trains a watermark into a model and returns what verifying it needs."""

    name: str
    summary: str
    embed: Callable[[Any], Any]
    """``embed(job: EmbedJob) -> EmbedOutcome``."""
    options: tuple[Option, ...] = ()
    verifier: str = "trigger-set"
    regenerate: Callable[[Any], dict[str, Any]] | None = None
    """For schemes whose watermark is drawn from a seed: ``regenerate(key)`` gives the key's arrays as that
    seed generates them, so that ``verify`` can refuse a key whose watermark was swapped after the fact."""
    decode: Callable[[Any, Any], Any] | None = None
    """For white-box schemes verified by ``bits``: ``decode(weight, key)`` reads the bits the scheme wrote
    from the carrier tensor (a numpy array) as a uint8 array."""


@dataclass(frozen=True)
class Fingerprinter:
    """A fingerprinting method: records how a model behaves on chosen inputs, leaving the model unchanged.

    Its key is verified like a watermark key (by ``verifier``), against a null rate measured on models
    trained independently of the fingerprinted one. ``access`` says what verifying needs of a suspect
    (``labels``: its top-1 answers; ``scores``: its output scores); ``caution``, when set, is a finding of
    the audit that users must read first (e.g. that the method accuses independent models), shown by
    ``wmtool plugins`` and in the method's help.
    """

    name: str
    summary: str
    fingerprint: Callable[[Any], Any]
    """``fingerprint(job: FingerprintJob) -> FingerprintOutcome``."""
    verifier: str
    options: tuple[Option, ...] = ()
    access: Literal["labels", "scores"] = "labels"
    caution: str | None = None


@dataclass(frozen=True)
class Attack:
    """A watermark-removal attack: takes a victim model and returns the attacked model."""

    name: str
    summary: str
    run: Callable[[Any], Any]
    """``run(job: AttackJob) -> AttackOutcome``."""
    options: tuple[Option, ...] = ()
    white_box: bool = True


@dataclass(frozen=True)
class Verifier:
    """Gathers the evidence (watermark successes out of trials) that the ownership test weighs."""

    name: str
    summary: str
    verify: Callable[[Any], Any]
    """``verify(job: VerifyJob) -> Evidence``."""
    options: tuple[Option, ...] = ()


@dataclass(frozen=True)
class Architecture:
    """A model architecture, built from the task's input shape, its class count and keyword options.

    ``layers`` names the submodules whose outputs are the hidden representations that
    representation-based schemes (EWE's soft-nearest-neighbour loss) use by default.
    """

    name: str
    summary: str
    build: Callable[..., Any]
    options: tuple[Option, ...] = ()
    layers: tuple[str, ...] = ()
    from_file: bool = False
    """Built from a model file only (e.g. an imported ONNX graph): never a fresh model of its own."""
    needs_registry: bool = False
    """``build`` also takes ``registry=`` (an architecture that wraps another registered one)."""


@dataclass(frozen=True)
class ModelFormat:
    """A kind of model file or folder: which paths it opens, how it opens them and how it writes a model.

    ``load(path, registry, source, task)`` returns a trainable :class:`~wmtool.models.Classifier`;
    ``predictor(path, registry, source, task, device)`` a model for black-box queries (default: the
    loaded Classifier in evaluation mode); ``describe(path)`` what ``inspect`` shows (``format``,
    ``tensors``, ``card`` and optional human ``notes``); ``save(model, path, registry)`` the bytes of the
    written file. ``source`` holds the user's --arch, --arch-args and preprocessing flags; ``task`` the
    input shape and classes of the data or key at hand.
    """

    name: str
    summary: str
    suffixes: tuple[str, ...]
    load: Callable[..., Any]
    describe: Callable[[Path], dict[str, Any]]
    save: Callable[..., bytes] | None = None
    predictor: Callable[..., Any] | None = None
    recognises: Callable[[Path], bool] | None = None
    """Whether the format opens ``path`` (default: a file with one of ``suffixes``)."""
    folder_of: str | None = None
    """For a folder format: the architecture whose models it writes (``-o DIR`` picks the format of the
    model's architecture); its ``save(model, folder, registry)`` then fills ``folder`` instead of
    returning bytes."""
    options: tuple[Option, ...] = ()

    def opens(self, path: Path) -> bool:
        """Whether this format opens the existing ``path``."""
        if self.recognises is not None:
            return self.recognises(path)
        return path.is_file() and path.suffix.lower() in self.suffixes


def is_folder_output(path: Path) -> bool:
    """Whether ``-o path`` names a folder: an existing one, or a name without a suffix."""
    return path.is_dir() or path.suffix == ""


@dataclass
class Entry:
    """One registered plugin object with the distribution that registered it."""

    kind: Kind
    item: Any
    distribution: str
    version: str


@dataclass
class Registry:
    """All registered plugin objects by kind and name, plus the problems met while loading them."""

    entries: dict[Kind, dict[str, Entry]] = field(
        default_factory=lambda: {kind: {} for kind in KINDS}
    )
    problems: list[str] = field(default_factory=list)

    def add(self, kind: Kind, item: Any, distribution: str, version: str) -> None:
        """Add ``item``; a name already taken is recorded as a problem and the first one is kept."""
        taken = self.entries[kind].get(item.name)
        if taken is not None:
            self.problems.append(
                f"{distribution}: {kind} {item.name!r} is already registered by {taken.distribution}; ignored"
            )
            return
        self.entries[kind][item.name] = Entry(kind, item, distribution, version)

    def names(self, kind: Kind) -> list[str]:
        """The registered names of one kind, sorted."""
        return sorted(self.entries[kind])

    def layers_of(self, arch: str) -> tuple[str, ...]:
        """The default layers to watermark of a registered architecture; none for code (``file.py:Factory``)."""
        from wmtool.user_code import is_code_spec

        return () if is_code_spec(arch) else tuple(self.get("architecture", arch).layers)

    def items(self, kind: Kind) -> list[Any]:
        """The registered objects of one kind, sorted by name."""
        return [self.entries[kind][name].item for name in self.names(kind)]

    def format_for(self, path: Path) -> Any:
        """The model format that opens the existing ``path``, or one error naming the formats there are."""
        for model_format in self.items("format"):
            if model_format.opens(path):
                return model_format
        raise UserError(f"{path}: not a model wmtool can open; it opens {self.formats_text()}")

    def writer_for(self, path: Path, card: Any = None) -> Any:
        """The model format that writes ``path``: by its suffix, or for a path with none (a folder) the
        folder format that writes ``card``'s model (any folder format when ``card`` is None); one error
        otherwise."""
        if is_folder_output(path):
            folders = [f for f in self.items("format") if f.save is not None and f.folder_of is not None]
            for model_format in folders:
                if card is None or model_format.folder_of == card.arch:
                    return model_format
            kinds = ", ".join(f.name for f in folders) or "none installed"
            raise UserError(f"{path}: no folder format writes this model (architecture "
                            f"{getattr(card, 'arch', '?')}; folder formats: {kinds}); give -o a file name instead, "
                            f"as {self.formats_text(writers=True)}")
        for model_format in self.items("format"):
            if model_format.save is not None and path.suffix.lower() in model_format.suffixes:
                return model_format
        raise UserError(f"{path}: output models are written as {self.formats_text(writers=True)}")

    def formats_text(self, writers: bool = False) -> str:
        """The formats as ``name (.suffix)`` for messages."""
        shown = [f"{f.name} ({', '.join(f.suffixes) or 'a folder'})" for f in self.items("format")
                 if not writers or (f.save is not None and f.folder_of is None)]
        return ", ".join(shown) or "no format (none installed)"

    def get(self, kind: Kind, name: str) -> Any:
        """The registered object of ``kind`` called ``name``, or a :class:`UserError` listing the known ones."""
        entry = self.entries[kind].get(name)
        if entry is None:
            known = ", ".join(self.names(kind)) or "none installed"
            raise UserError(f"unknown {kind} {name!r}; known: {known}")
        return entry.item
