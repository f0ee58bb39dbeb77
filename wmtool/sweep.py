"""A robustness sweep: its spec (TOML, or the ``evaluate`` command's flags) and the cells it plans.

A spec names the model (a file or folder, or an architecture trained from scratch), the owner's, the
attacker's and the test data, schemes and attacks with option grids (a list value is a grid axis),
chains of attacks, seeds, how many reference (clean) models to train for the false-claim column, and
``alpha``. Every mistake is found before any training and names its field.

The plan is a list of cells — train, embed, attack, verify — each keyed by the hash of what determines
it (kind, options, the keys of the cells it reads, wmtool's version and the plugin's): a marked model is
embedded once and shared by every attack on it, and a finished cell is never computed again.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wmtool import __version__
from wmtool.errors import UserError
from wmtool.options import resolve
from wmtool.registry import Registry

SOURCE_FIELDS = ("arch", "arch_args", "input_range", "mean", "std", "layout")
"""How to open a model file that states too little (as the command line's source options)."""
MAX_SEEDS = 1000
MAX_MODELS_PER_SEED = 100
"""Bounds on a spec's counts, so that a typo cannot plan millions of cells."""
TOP_LEVEL = {"model", "data", "schemes", "attacks", "chains", "seeds", "references", "reference_models", "alpha"}


@dataclass(frozen=True)
class Variant:
    """One scheme or attack (``name``: the plugin; ``entry``: the spec's name for it) with one point of its
    option grid; ``axis`` names the option that varies."""

    name: str
    options: dict[str, Any]
    axis: str | None = None
    entry: str = ""

    @property
    def label(self) -> str:
        """``prune``, ``baseline`` or ``prune rate=0.2``."""
        base = self.entry or self.name
        return base if self.axis is None else f"{base} {self.axis}={self.options[self.axis]}"


@dataclass
class Spec:
    """A validated sweep."""

    model: dict[str, Any]
    owner: str
    attacker: str
    test: str
    schemes: list[Variant]
    attacks: list[list[Variant]]
    """Each entry one column: a single attack, or a chain of them applied in order."""
    seeds: list[int]
    references: int = 2
    alpha: float = 0.01
    reference_models: list[dict[str, Any]] = field(default_factory=list)
    """Clean models of other architectures for the false-claim column: ``arch``, ``arch_args``, ``epochs``
    and ``count`` (per seed) each."""
    owner_share: float = 1.0
    """The share of the owner's training split the owner trains and embeds on (drawn by each seed, as
    ``wmtool demo`` keeps 70% of digits for the owner); the attacker keeps its whole split."""


@dataclass(frozen=True)
class Cell:
    """One step of a sweep: what it computes (``kind``, ``params``), from which cells (``deps``)."""

    key: str
    kind: str
    params: dict[str, Any]
    deps: tuple[str, ...] = ()
    row: dict[str, Any] = field(default_factory=dict, compare=False)
    """For verify cells: the matrix coordinates (scheme, attack, seed, role) the result fills."""


def read_spec(path: str | Path, registry: Registry) -> Spec:
    """A sweep spec from a TOML file."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such spec file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None
    return spec_from(raw, registry, str(path))


def _seeds(raw: Any, where: str) -> list[int]:
    """Seeds as a list of integers, or ``"0-4"``."""
    if isinstance(raw, str) and "-" in raw:
        low, _, high = raw.partition("-")
        try:
            first, last = int(low), int(high)
        except ValueError:
            raise UserError(f"{where}: seeds {raw!r} is not a range like 0-4") from None
        seeds = range(first, last + 1)
    elif isinstance(raw, int):
        seeds = range(raw, raw + 1)
    elif isinstance(raw, list) and raw and all(isinstance(v, int) for v in raw):
        seeds = raw
    else:
        raise UserError(f"{where}: seeds must be integers, a list of them or a range like \"0-4\", got {raw!r}")
    if not 1 <= len(seeds) <= MAX_SEEDS:
        raise UserError(f"{where}: seeds {raw!r} names {len(seeds):,} seeds; a sweep takes 1 to {MAX_SEEDS:,}")
    return list(seeds)


def _variants(kind: str, entry: str, raw: Any, registry: Registry, where: str) -> list[Variant]:
    """Every point of one spec entry's option grid, each validated by its plugin's declared options (the
    plugin is the entry's name, or its ``plugin`` field)."""
    if not isinstance(raw, dict):
        raise UserError(f"{where}: [{kind}.{entry}] must be a table of options")
    name = str(raw.get("plugin", entry))
    plugin = registry.get("embedder" if kind == "schemes" else "attack", name)
    axes = [key for key, value in raw.items() if isinstance(value, list)]
    if len(axes) > 1:
        raise UserError(f"{where}: [{kind}.{entry}] varies {', '.join(axes)}: one grid axis per entry (list another "
                        "entry under a new name with `plugin = ...` for a second)")
    fixed = {key: value for key, value in raw.items() if key not in axes and key != "plugin"}
    points = [{**fixed, axes[0]: value} for value in raw[axes[0]]] if axes else [fixed]
    variants = []
    for point in points:
        options = resolve(plugin.options, point, f"{where}: [{kind}.{entry}]")
        variants.append(Variant(plugin.name, {k: options[k] for k in point}, axes[0] if axes else None, entry))
    return variants


def _check_source(fields: dict[str, Any], where: str) -> None:
    """Refuse source fields that state no valid preprocessing (e.g. mean = "grey")."""
    from wmtool.preprocessing import Preprocessing

    try:
        Preprocessing.stated(*(fields.get(k) for k in ("input_range", "mean", "std", "layout")))
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None


def spec_from(raw: dict[str, Any], registry: Registry, where: str = "spec") -> Spec:
    """Validate a spec's dictionary (from TOML or flags); every problem names its field."""
    unknown = sorted(set(raw) - TOP_LEVEL)
    if unknown:
        raise UserError(f"{where}: unknown field(s) {', '.join(unknown)}; a spec has {', '.join(sorted(TOP_LEVEL))}")
    model = raw.get("model") or {}
    if not isinstance(model, dict) or not ({"path", "arch"} & set(model)):
        raise UserError(f"{where}: [model] needs path = \"model file or folder\" or arch = \"name\" (trained from "
                        "scratch)")
    if "arch" in model and "path" not in model:
        registry.get("architecture", model["arch"])
    if "path" in model:
        _check_source(model, f"{where}: [model]")
    if model.get("embed_into", "trained") not in ("trained", "scratch"):
        raise UserError(f"{where}: [model] embed_into must be \"trained\" (schemes mark the trained victim) or "
                        f"\"scratch\" (schemes train their marked model from scratch), got {model['embed_into']!r}")
    if model.get("embed_into") == "scratch" and "arch" not in model:
        raise UserError(f"{where}: [model] embed_into = \"scratch\" needs arch")
    data = raw.get("data") or {}
    if not isinstance(data, dict) or "owner" not in data:
        raise UserError(f"{where}: [data] needs owner = \"dataset\" (attacker and test default to it)")
    schemes_raw, attacks_raw = raw.get("schemes") or {}, raw.get("attacks") or {}
    if not schemes_raw:
        raise UserError(f"{where}: [schemes] names no scheme")
    schemes = [v for name, options in schemes_raw.items() for v in _variants("schemes", name, options, registry, where)]
    attacks = [[v] for name, options in attacks_raw.items() for v in _variants("attacks", name, options, registry, where)]
    for index, chain in enumerate(raw.get("chains") or []):
        steps = chain.get("steps") if isinstance(chain, dict) else None
        if not isinstance(steps, list) or len(steps) < 2:
            raise UserError(f"{where}: chains[{index}] needs steps = [\"attack\", \"attack\", ...] (two or more)")
        options = chain.get("options") or {}
        attacks.append([_variants("attacks", str(step), options.get(str(step), {}), registry, where)[0]
                        for step in steps])
    alpha = float(raw.get("alpha", 0.01))
    if not 0 < alpha < 1:
        raise UserError(f"{where}: alpha must lie strictly between 0 and 1, got {alpha}")
    references = raw.get("references", 2)
    if not isinstance(references, int) or not 0 <= references <= MAX_MODELS_PER_SEED:
        raise UserError(f"{where}: references must be an integer from 0 to {MAX_MODELS_PER_SEED}, got {references!r}")
    if references and "arch" not in model:
        raise UserError(f"{where}: references (clean models for the false-claim column) need [model] arch")
    others = raw.get("reference_models") or []
    if not isinstance(others, list):
        raise UserError(f"{where}: reference_models must be a list of tables ([[reference_models]])")
    for index, other in enumerate(others):
        if isinstance(other, dict) and "path" in other:
            if set(other) - {"path", *SOURCE_FIELDS}:
                raise UserError(f"{where}: reference_models[{index}] with path takes {', '.join(SOURCE_FIELDS)}")
            if not Path(str(other["path"])).exists():
                raise UserError(f"{where}: reference_models[{index}].path = {other['path']!r}: no such model")
            _check_source(other, f"{where}: reference_models[{index}]")
            continue
        if not isinstance(other, dict) or "arch" not in other or set(other) - {"arch", "arch_args", "epochs", "count"}:
            raise UserError(f"{where}: reference_models[{index}] takes arch (required), arch_args, epochs and count, "
                            "or path (a clean model file or folder) with its source fields")
        registry.get("architecture", str(other["arch"]))
        if not isinstance(other.get("count", 1), int) or not 1 <= other.get("count", 1) <= MAX_MODELS_PER_SEED:
            raise UserError(f"{where}: reference_models[{index}].count must be an integer from 1 to "
                            f"{MAX_MODELS_PER_SEED}")
    owner = str(data["owner"])
    share = data.get("owner_share", 1.0)
    if not isinstance(share, (int, float)) or not 0 < share <= 1:
        raise UserError(f"{where}: [data] owner_share must lie in (0, 1], got {share!r}")
    for field_name in ("owner", "attacker", "test"):
        source = str(data.get(field_name, owner))
        if source != "digits" and not Path(source).exists():
            raise UserError(f"{where}: [data] {field_name} = {source!r}: no such dataset (digits, an IDX folder, a .npz "
                            "or an image folder)")
    return Spec(model, owner, str(data.get("attacker", owner)), str(data.get("test", owner)), schemes, attacks,
                _seeds(raw.get("seeds", [0]), where), references, alpha, reference_models=list(others),
                owner_share=float(share))


def _key(kind: str, params: dict[str, Any], deps: tuple[str, ...], plugin_version: str = "") -> str:
    body = json.dumps({"kind": kind, "params": params, "deps": deps, "wmtool": __version__,
                       "plugin": plugin_version}, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:24]


def _version(registry: Registry, kind: str, name: str) -> str:
    entry = registry.entries[kind].get(name)
    return f"{entry.distribution} {entry.version}" if entry else ""


def plan(spec: Spec, registry: Registry) -> list[Cell]:
    """Every cell of the sweep, each after the cells it reads."""
    cells: dict[str, Cell] = {}

    def add(kind: str, params: dict[str, Any], deps: tuple[str, ...] = (), version: str = "",
            row: dict[str, Any] | None = None) -> str:
        key = _key(kind, params, deps, version)
        cells.setdefault(key, Cell(key, kind, params, deps, row or {}))
        return key

    model = spec.model
    owner = {"data": spec.owner, **({"share": spec.owner_share} if spec.owner_share < 1 else {})}
    for seed in spec.seeds:
        if "path" in model:
            base = add("open", {"path": str(Path(model["path"]).resolve()),
                                "source": {k: model[k] for k in SOURCE_FIELDS if k in model}})
        elif model.get("embed_into") == "scratch":
            base = ""  # no clean victim: every scheme trains its own marked model
        else:
            base = add("train", {"arch": model["arch"], "arch_args": model.get("arch_args", {}),
                                 "epochs": int(model.get("epochs", 10)), **owner, "seed": seed},
                       version=_version(registry, "architecture", model["arch"]))
        references = [add("train", {"arch": model["arch"], "arch_args": model.get("arch_args", {}),
                                    "epochs": int(model.get("epochs", 10)), **owner,
                                    "seed": 10_000 + 100 * seed + index},
                          version=_version(registry, "architecture", model["arch"]))
                      for index in range(spec.references)]
        for other in spec.reference_models:
            if "path" in other:
                references.append(add("open", {"path": str(Path(other["path"]).resolve()),
                                               "source": {k: v for k, v in other.items() if k != "path"}}))
                continue
            for index in range(int(other.get("count", 1))):
                references.append(add("train", {
                    "arch": other["arch"], "arch_args": other.get("arch_args", {}),
                    "epochs": int(other.get("epochs", model.get("epochs", 10))), **owner,
                    "seed": 20_000 + 100 * seed + index}, version=_version(registry, "architecture", other["arch"])))
        scratch = model.get("embed_into") == "scratch"
        for scheme in spec.schemes:
            source = {"arch": model["arch"], "arch_args": model.get("arch_args", {})} if scratch else {}
            marked = add("embed", {"scheme": scheme.name, "options": scheme.options, **owner, "seed": seed,
                                   **source}, () if scratch else (base,), _version(registry, "embedder", scheme.name))
            coordinates = {"scheme": scheme.label, "seed": seed}
            add("verify", {"data": spec.test, "alpha": spec.alpha}, (marked, marked),
                row={**coordinates, "attack": "none", "role": "marked"})
            for index, reference in enumerate(references):
                add("verify", {"data": spec.test, "alpha": spec.alpha}, (marked, reference),
                    row={**coordinates, "attack": "none", "role": f"reference {index}"})
            for chain in spec.attacks:
                victim = marked
                for step in chain:
                    victim = add("attack", {"attack": step.name, "options": step.options, "data": spec.attacker,
                                            "seed": seed}, (victim,), _version(registry, "attack", step.name))
                add("verify", {"data": spec.test, "alpha": spec.alpha}, (marked, victim),
                    row={**coordinates, "attack": " → ".join(step.label for step in chain), "role": "attacked"})
    return list(cells.values())

