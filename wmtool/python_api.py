"""wmtool from Python (notebooks, scripts): the CLI's steps as functions with the CLI's defaults.

``import wmtool`` exposes these names; each opens what it is given (a path or an already opened model),
runs the step, and returns plain results. Nothing here prints; errors are :class:`wmtool.errors.UserError`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

from wmtool.data import Dataset, load_dataset
from wmtool.jobs import AttackOutcome, EmbedOutcome
from wmtool.keys import Key, load_key
from wmtool.models import ModelSource
from wmtool.run import Run
from wmtool.stats import OwnershipResult
from wmtool.user_code import code_scope
from wmtool.workflows import (attack_model, data_card, embed_watermark, fingerprint_model, independent_models,
                              make_key, open_suspect, train_model, verify_suspect)
from wmtool.workflows import open_model as _open

F = TypeVar("F", bound=Callable[..., Any])

ModelLike = Any
"""A path to a model (any installed format) or a model already opened by :func:`open_model`."""


@dataclass
class Marked:
    """What :func:`embed` returns: the marked model, its key and the embedder's outcome."""

    model: Any
    key: Key
    outcome: EmbedOutcome


def _scoped(function: F) -> F:
    """Run ``function`` in its own code-trust scope: ``trust_code=True`` ends with the call, while code the
    caller named (``arch=``, ``student=``) stays allowed for the Python session."""

    @functools.wraps(function)
    def scoped(*args: Any, **kwargs: Any) -> Any:
        with code_scope(fresh=False):
            return function(*args, **kwargs)

    return scoped  # type: ignore[return-value]


def _data(data: str | Dataset, split: str, seed: int) -> Dataset:
    return data if isinstance(data, Dataset) else load_dataset(data, split, seed=seed)  # type: ignore[arg-type]


def _run(device: str, seed: int) -> Run:
    return Run(quiet=True, device=device, seed=seed)


@_scoped
def open_model(path: str | Path, *, data: str | Dataset | None = None, arch: str | None = None,
               arch_args: dict[str, Any] | None = None, device: str = "auto", seed: int = 0,
               trust_code: bool = False) -> Any:
    """A trainable model (a torch ``Classifier``) from a file or folder; ``data`` supplies the task for
    weights that name no architecture (with ``arch``). Architecture code that the file's own card names
    runs only with ``trust_code=True`` (or when ``arch`` names that code)."""
    run = _run(device, seed)
    task = data_card(_data(data, "train", seed)) if data is not None else None
    return _open(run, str(path), ModelSource(arch, dict(arch_args or {}), trust_code=trust_code), task)


@_scoped
def train(arch: str, *, data: str | Dataset = "digits", arch_args: dict[str, Any] | None = None, epochs: int = 10,
          batch_size: int = 128, lr: float = 1e-3, optimizer: str = "adam", device: str = "auto", seed: int = 0,
          save_to: str | Path | None = None, force: bool = False) -> Any:
    """A clean model of a registered architecture trained on ``data`` (the ``train`` command's defaults)."""
    from wmtool.models import save_model

    run = _run(device, seed)
    model = train_model(run, arch, dict(arch_args or {}), _data(data, "train", seed), epochs=epochs,
                        batch_size=batch_size, lr=lr, optimizer=optimizer, validation=0.0).model
    if save_to is not None:
        save_model(model, save_to, run.registry, force=force)
    return model


@_scoped
def accuracy(model: ModelLike, *, data: str | Dataset = "digits", split: str = "test", device: str = "auto",
             seed: int = 0, trust_code: bool = False) -> float:
    """The model's accuracy on a split of ``data`` (default: the test split, as the ``accuracy`` command);
    ``trust_code`` as for :func:`open_model`."""
    from wmtool.training import accuracy as score

    run = _run(device, seed)
    dataset = _data(data, split, seed)
    if isinstance(model, (str, Path)):
        model = open_suspect(run, str(model), ModelSource(trust_code=trust_code), data_card(dataset))
    return score(model, dataset.x, dataset.y)


@_scoped
def embed(model: ModelLike, scheme: str, *, data: str | Dataset = "digits", device: str = "auto", seed: int = 0,
          save_to: str | Path | None = None, key_to: str | Path | None = None, force: bool = False,
          trust_code: bool = False, **options: Any) -> Marked:
    """Watermark ``model`` with ``scheme`` (its options as keyword arguments, e.g. ``epochs=3``). With
    ``save_to`` the marked model is written (and its key to ``key_to``, default ``save_to`` + .key.json);
    the key then records the written file's sha256."""
    from wmtool.keys import save_key
    from wmtool.models import save_model

    run = _run(device, seed)
    dataset = _data(data, "train", seed)
    opened = open_model(model, data=dataset, device=device, seed=seed, trust_code=trust_code) \
        if isinstance(model, (str, Path)) else model
    outcome = embed_watermark(run, scheme, options, dataset, opened, pretrained=True)
    sha = "0" * 64
    if save_to is not None:
        sha = save_model(outcome.model, save_to, run.registry, force=force)
    key = make_key(run, scheme, outcome, sha)
    if save_to is not None:
        save_key(key, key_to or Path(save_to).with_name(Path(save_to).stem + ".key.json"), force=force)
    return Marked(outcome.model, key, outcome)


@_scoped
def fingerprint(model: str | Path, method: str = "mistakes", *, data: str | Dataset = "digits", split: str = "test",
                train: str | Dataset | None = None, references: list[str | Path] | None = None,
                reference_count: int = 2, reference_arch: str | None = None, reference_epochs: int = 10,
                device: str = "auto", seed: int = 0, save_to: str | Path | None = None, force: bool = False,
                trust_code: bool = False, **options: Any) -> Key:
    """A fingerprint key of the model file ``model`` (the ``fingerprint`` command's defaults): inputs from
    the ``split`` of ``data``, the null rate measured on ``references`` (model files independent of it) or,
    without them, on ``reference_count`` models trained on ``train`` (default: the train split of ``data``)."""
    from wmtool.keys import save_key
    from wmtool.models import file_sha256

    run = _run(device, seed)
    held_out, train_data = _data(data, split, seed), _data(train if train is not None else data, "train", seed)
    source = ModelSource(trust_code=trust_code)
    opened = _open(run, str(model), source, data_card(train_data))
    independent = independent_models(run, opened, train_data, [str(path) for path in references or []],
                                     source, count=reference_count, arch=reference_arch,
                                     epochs=reference_epochs)
    key = fingerprint_model(run, method, options, opened, held_out, train_data, file_sha256(model), independent)
    if save_to is not None:
        save_key(key, save_to, force=force)
    return key


@_scoped
def attack(victim: ModelLike, name: str, *, data: str | Dataset = "digits", device: str = "auto", seed: int = 0,
           save_to: str | Path | None = None, force: bool = False, trust_code: bool = False,
           **options: Any) -> AttackOutcome:
    """Run attack ``name`` on ``victim`` with the attacker's ``data`` (its options as keyword arguments)."""
    from wmtool.models import save_model

    run = _run(device, seed)
    dataset = _data(data, "train", seed)
    if isinstance(victim, (str, Path)):
        white_box = run.registry.get("attack", name).white_box
        victim = (_open if white_box else open_suspect)(run, str(victim), ModelSource(trust_code=trust_code),
                                                        data_card(dataset))
    outcome, _, _ = attack_model(run, name, options, victim, dataset)
    if save_to is not None:
        save_model(outcome.model, save_to, run.registry, force=force)
    return outcome


@_scoped
def verify(suspect: ModelLike, key: Key | str | Path, *, alpha: float = 0.01, test: str = "binomial",
           queries: int | None = None, device: str = "auto", seed: int = 0, trust_code: bool = False,
           **options: Any) -> OwnershipResult:
    """The ownership test of ``suspect`` against ``key`` (the key's verifier's options as keyword
    arguments, e.g. ``min_accuracy=0.6``)."""
    from wmtool.workflows import key_card

    run = _run(device, seed)
    owner_key = key if isinstance(key, Key) else load_key(key)
    if isinstance(suspect, (str, Path)):
        suspect = open_suspect(run, str(suspect), ModelSource(trust_code=trust_code), key_card(owner_key))
    result, _ = verify_suspect(run, owner_key, suspect, alpha=alpha, test=test, queries=queries, given=options)
    return result


@_scoped
def evaluate(spec: str | Path | dict[str, Any], *, out: str | Path = "wmtool-evaluate", jobs: int = 1,
             device: str = "auto", backend: str = "local") -> dict[str, Any]:
    """Run a sweep (a TOML spec file, or its dictionary) into the store ``out`` — resuming whatever it
    holds — and return its matrix (see docs/evaluate.md)."""
    from wmtool.engine import run_sweep
    from wmtool.report import matrix
    from wmtool.store import Store
    from wmtool.sweep import plan, read_spec, spec_from

    registry = _run(device, 0).registry
    parsed = spec_from(spec, registry) if isinstance(spec, dict) else read_spec(spec, registry)
    store = Store(out)
    run_sweep(plan(parsed, registry), store, jobs=jobs, device=device, backend=backend)
    return matrix(store.verify_rows())
