"""The steps behind the commands (train, embed, attack, verify, evaluate), shared by the CLI and the demo."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wmtool.data import Dataset, load_dataset, split_validation
from wmtool.errors import UserError
from wmtool.jobs import AttackJob, AttackOutcome, EmbedJob, EmbedOutcome, FingerprintJob, Predictor, VerifyJob
from wmtool.keys import Key, NullRate, Task
from wmtool.model_card import ModelCard
from wmtool.models import ModelSource, build_model, load_model, open_predictor
from wmtool.options import resolve
from wmtool.run import Run
from wmtool.stats import OwnershipResult, ownership_test
from wmtool.training import accuracy, fit_supervised

if TYPE_CHECKING:
    from wmtool.classifier import Classifier

MAX_NULL_RATE = 0.5


def data_card(data: Dataset) -> ModelCard:
    """A card of ``data``'s task (input shape, classes), with no architecture: what a model for it must fit."""
    return ModelCard(arch="", input_shape=data.input_shape, num_classes=data.num_classes, classes=data.classes)


def key_card(key: Key) -> ModelCard:
    """A card of a key's task (input shape, classes, preprocessing), with no architecture."""
    return ModelCard("", key.task.input_shape, key.task.num_classes, preprocessing=key.task.preprocessing,
                     classes=key.task.classes)


def check_task(card: ModelCard, data: Dataset, what: str) -> None:
    """Refuse data whose image shape or class count differs from what the model expects."""
    if not card.preprocessing.accepts(data.input_shape, card.input_shape):
        resized = " (it resizes images, but not their channel count)" if card.preprocessing.resizes else ""
        raise UserError(f"{what} expects inputs of shape {tuple(card.input_shape)}{resized}, {data.name} has "
                        f"{data.input_shape}")
    if data.num_classes > card.num_classes:
        raise UserError(f"{what} has {card.num_classes} classes, {data.name} has labels up to {data.num_classes - 1}")


def open_model(run: Run, path: str, source: ModelSource = ModelSource(),
               task: ModelCard | None = None) -> "Classifier":
    """Load a trainable model onto the run's device (``task`` supplies shape and classes for ``--arch``)."""
    run.seed_once()
    return load_model(path, run.registry, source, task).to(run.torch_device).eval()


def open_suspect(run: Run, path: str, source: ModelSource = ModelSource(),
                 task: ModelCard | None = None) -> Predictor:
    """Open a model for black-box queries (ONNX through onnxruntime) on the run's device (``auto``: each
    runtime takes CUDA if it has it). Queries draw nothing at random, so nothing is seeded here (and an
    ONNX model is queried without importing torch)."""
    return open_predictor(path, run.registry, source, task, device=run.device)


def new_model(run: Run, arch: str, arch_args: dict[str, Any], data: Dataset) -> "Classifier":
    """A freshly initialised model of ``arch`` (the user's choice) for ``data``'s task, on the run's device."""
    from wmtool.user_code import allow_code

    allow_code(arch)
    run.seed_once()
    device = run.torch_device
    card = data_card(data)
    return build_model(run.registry, ModelCard(arch, card.input_shape, card.num_classes, arch_args,
                                               classes=card.classes)).to(device)


def test_accuracy(model: Predictor, data_spec: str, run: Run) -> float | None:
    """Accuracy on the test split of ``data_spec`` (None when it has none that fits)."""
    try:
        test = load_dataset(data_spec, "test", seed=run.seed)
    except UserError:
        return None
    if not model.card.preprocessing.accepts(test.input_shape, model.card.input_shape):
        return None
    return accuracy(model, test.x, test.y)


@dataclass
class Trained:
    """A trained model with its validation accuracy and per-epoch losses."""

    model: Classifier
    validation_accuracy: float
    losses: list[float]
    seconds: float


def train_model(run: Run, arch: str, arch_args: dict[str, Any], data: Dataset, *, epochs: int, batch_size: int,
                lr: float, optimizer: str, validation: float) -> Trained:
    """Train a fresh model of ``arch`` on ``data``, holding out a ``validation`` fraction (by seed)."""
    start = time.perf_counter()
    train, held_out = split_validation(data, validation, run.seed) if validation > 0 else (data, None)
    model = new_model(run, arch, arch_args, data)
    losses = fit_supervised(model, train.x, train.y, epochs=epochs, batch_size=batch_size, lr=lr,
                            optimizer=optimizer, seed=run.seed, progress=run.progress, description=f"training {arch}")
    val = accuracy(model, held_out.x, held_out.y) if held_out is not None and len(held_out) else float("nan")
    return Trained(model, val, losses, time.perf_counter() - start)


def embed_watermark(run: Run, scheme: str, given: dict[str, Any], data: Dataset, model: Classifier,
                    pretrained: bool) -> EmbedOutcome:
    """Run embedder ``scheme`` on ``model`` (``given``: its option values, validated here)."""
    embedder = run.registry.get("embedder", scheme)
    run.registry.get("verifier", embedder.verifier)
    params = resolve(embedder.options, given, f"embedder {scheme}")
    check_task(model.card, data, "the model")
    run.seed_once()
    job = EmbedJob(model, pretrained, data, params, run.registry, run.seed, run.torch_device, run.progress)
    outcome = embedder.embed(job)
    if outcome.null.method == "reference-model" and outcome.null.rate >= MAX_NULL_RATE:
        raise UserError(f"models without the watermark already give its expected answers (null rate "
                        f"{outcome.null.rate:.2f}): no ownership could be shown; choose other classes or triggers")
    return outcome


def make_key(run: Run, scheme: str, outcome: EmbedOutcome, model_sha256: str) -> Key:
    """The key for a marked model."""
    verifier = run.registry.get("embedder", scheme).verifier
    return Key(scheme, verifier, outcome.params, Task.of(outcome.model.card), outcome.null, model_sha256,
               outcome.arrays)


def independent_models(run: Run, model: Classifier, data: Dataset, paths: list[str], source: ModelSource, *,
                       count: int, arch: str | None, epochs: int) -> list[tuple[str, Predictor, str]]:
    """Models independent of ``model``, named for :func:`calibrate_key`: the files ``paths`` when any are
    given, else ``count`` models trained on ``data`` (fresh ones of ``arch``, default the model's own
    architecture, each from its own seed)."""
    if paths:
        from wmtool.models import file_sha256

        return [(path, open_suspect(run, path, source, model.card), file_sha256(path)) for path in paths]
    import torch

    from wmtool.models import fresh_model_for

    references: list[tuple[str, Predictor, str]] = []
    for index in range(count):
        seed = run.seed + 1000 + index
        torch.manual_seed(seed)
        reference = fresh_model_for(model.card, run.registry, arch, flag="--reference-arch").to(run.torch_device)
        fit_supervised(reference, data.x, data.y, epochs=epochs, batch_size=128, lr=1e-3, seed=seed,
                       progress=run.progress, description=f"independent model {index + 1}/{count}")
        references.append((f"independent model {index + 1} (seed {seed})", reference.eval(), f"trained-{seed}"))
    return references


def fingerprint_model(run: Run, method: str, given: dict[str, Any], model: Classifier, data: Dataset,
                      train: Dataset, model_sha256: str, references: list[tuple[str, Predictor, str]]) -> Key:
    """Fingerprint ``model`` with ``method`` (``given``: its options) and measure the key's null rate on
    ``references``, models known to be independent of it (at least one)."""
    fingerprinter = run.registry.get("fingerprinter", method)
    run.registry.get("verifier", fingerprinter.verifier)
    if not references:
        raise UserError("a fingerprint's null rate is measured on independent models: give at least one")
    params = resolve(fingerprinter.options, given, f"fingerprinter {method}")
    check_task(model.card, data, "the model")
    run.seed_once()
    outcome = fingerprinter.fingerprint(FingerprintJob(model, data, train, params, run.registry, run.seed,
                                                       run.torch_device, run.progress))
    key = Key(method, fingerprinter.verifier, outcome.params, Task.of(model.card),
              NullRate(1.0, "unmeasured"), model_sha256, outcome.arrays)
    calibration = calibrate_key(run, key, references)
    null = NullRate(max(calibration["rate"], 1.0 / key.task.num_classes), "independent-models",
                    calibration["observed"], calibration["trials"], calibration["confidence"])
    if null.rate >= 1:
        raise UserError("the independent models answer every fingerprint query as the model does: "
                        "this fingerprint cannot tell copies from independent models")
    return dataclasses.replace(key, null=null, calibration=calibration)


def attack_model(run: Run, name: str, given: dict[str, Any], victim: Predictor, data: Dataset
                 ) -> tuple[AttackOutcome, dict[str, Any], float]:
    """Run attack ``name`` on ``victim`` with the attacker's ``data``: the outcome, the options used, wall seconds."""
    attack = run.registry.get("attack", name)
    params = resolve(attack.options, given, f"attack {name}")
    check_task(victim.card, data, "the victim")
    run.seed_once()
    start = time.perf_counter()
    outcome = attack.run(AttackJob(victim, data, params, run.registry, run.seed, run.torch_device, run.progress))
    return outcome, params, time.perf_counter() - start


def scheme_of(run: Run, key: Key) -> Any:
    """The key's embedder when it is installed here, else None."""
    return run.registry.get("embedder", key.scheme) if key.scheme in run.registry.names("embedder") else None


def check_regenerates(run: Run, key: Key) -> None:
    """Refuse a key whose seeded watermark is not what its seed generates (swapped after the fact)."""
    import numpy as np

    scheme = scheme_of(run, key)
    if scheme is None or scheme.regenerate is None:
        return
    for name, expected in scheme.regenerate(key).items():
        if name not in key.arrays or not np.array_equal(key.arrays[name], expected):
            raise UserError(f"the key's {name!r} is not what its seed generates: a swapped or forged watermark "
                            "proves nothing; refusing")


def check_suspect(key: Key, suspect: Predictor, what: str) -> None:
    """Refuse a model whose input shape or class count differs from the key's task."""
    if tuple(suspect.card.input_shape) != tuple(key.task.input_shape):
        raise UserError(f"{what} takes inputs of shape {tuple(suspect.card.input_shape)}, "
                        f"the key's task has {tuple(key.task.input_shape)}")
    if suspect.card.num_classes != key.task.num_classes:
        raise UserError(f"{what} has {suspect.card.num_classes} classes, the key's task has {key.task.num_classes}")


def calibrate_key(run: Run, key: Key, references: list[tuple[str, Predictor, str]],
                  confidence: float = 0.99) -> dict[str, Any]:
    """Measure the key's null rate on reference models known not to carry its watermark: each model's
    successes on the key's verifier and their Clopper–Pearson upper bound; the rate kept is the largest
    model's bound, because models, not queries, are what varies under the null (the pooled bound of all
    queries is reported beside it)."""
    from wmtool.stats import clopper_pearson_upper

    models, successes, trials = [], 0, 0
    verifier = run.registry.get("verifier", key.verifier)
    for path, suspect, sha256 in references:
        if sha256 == key.model_sha256:
            raise UserError(f"{path} is the marked model itself, not a reference model")
        check_suspect(key, suspect, path)
        evidence = verifier.verify(VerifyJob(key, suspect, resolve(verifier.options, {}, key.verifier), None,
                                             scheme_of(run, key)))
        models.append({"path": path, "sha256": sha256, "successes": evidence.successes, "trials": evidence.trials,
                       "rate": clopper_pearson_upper(evidence.successes, evidence.trials, confidence)})
        successes, trials = successes + evidence.successes, trials + evidence.trials
    rate = max((model["rate"] for model in models), default=1.0)
    return {"rate": rate, "pooled_rate": clopper_pearson_upper(successes, trials, confidence),
            "observed": successes / trials if trials else None, "successes": successes,
            "trials": trials, "confidence": confidence, "models": models}


def verify_suspect(run: Run, key: Key, suspect: Predictor, *, alpha: float, test: str,
                   queries: int | None, given: dict[str, Any] | None = None) -> tuple[OwnershipResult, dict]:
    """Gather the key's verifier's evidence from ``suspect`` and run the ownership test on it."""
    check_suspect(key, suspect, "the suspect")
    if queries is not None and queries < 1:
        raise UserError(f"--queries must be positive, got {queries}")
    check_regenerates(run, key)
    verifier = run.registry.get("verifier", key.verifier)
    params = resolve(verifier.options, given or {}, f"verifier {key.verifier}")
    evidence = verifier.verify(VerifyJob(key, suspect, params, queries, scheme_of(run, key)))
    null_rate = max(evidence.null_rate, key.null_rate())
    result = ownership_test(evidence.successes, evidence.trials, null_rate, alpha=alpha, test=test)
    if evidence.min_success_rate is not None and result.success_rate < evidence.min_success_rate:
        result = dataclasses.replace(result, claimed=False)
    return result, evidence.details
