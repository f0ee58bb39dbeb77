"""What plugins register (embedders, attacks, verifiers, architectures) and the registry holding them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal

from wmtool.errors import UserError
from wmtool.options import Option

if TYPE_CHECKING:
    from wmtool.keys import Key
    from wmtool.jobs import AttackJob, EmbedJob, EmbedOutcome, Evidence, VerifyJob

Kind = Literal["embedder", "attack", "verifier", "architecture"]


@dataclass(frozen=True)
class Embedder:
    """A watermarking scheme: trains a watermark into a model and returns what verifying it needs."""

    name: str
    summary: str
    embed: Callable[["EmbedJob"], "EmbedOutcome"]
    options: tuple[Option, ...] = ()
    verifier: str = "trigger-set"
    regenerate: Callable[["Key"], dict[str, Any]] | None = None
    """For schemes whose watermark is drawn from a seed: the key's arrays as that seed generates them,
    so that ``verify`` can refuse a key whose watermark was swapped after the fact."""


@dataclass(frozen=True)
class Attack:
    """A watermark-removal attack: takes a victim model and returns the attacked model."""

    name: str
    summary: str
    run: Callable[["AttackJob"], Any]
    options: tuple[Option, ...] = ()
    white_box: bool = True


@dataclass(frozen=True)
class Verifier:
    """Gathers the evidence (watermark successes out of trials) that the ownership test weighs."""

    name: str
    summary: str
    verify: Callable[["VerifyJob"], "Evidence"]
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
        default_factory=lambda: {"embedder": {}, "attack": {}, "verifier": {}, "architecture": {}}
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

    def get(self, kind: Kind, name: str) -> Any:
        """The registered object of ``kind`` called ``name``, or a :class:`UserError` listing the known ones."""
        entry = self.entries[kind].get(name)
        if entry is None:
            known = ", ".join(self.names(kind)) or "none installed"
            raise UserError(f"unknown {kind} {name!r}; known: {known}")
        return entry.item
