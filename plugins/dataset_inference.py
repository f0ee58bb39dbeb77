"""Fingerprinter ``dataset-inference`` and verifier ``margin-contrast``: dataset inference (Maini et al.,
ICLR 2021), black-box form.

A model trained on the owner's private data (or stolen from a model that was) lies farther from its
decision boundary on those private points than on public ones. The fingerprint holds ``count`` private
training points and as many public (held-out) ones; a model's margin at a point is measured by Maini's
*blind walk*: steps of size ``step`` (L2) along random directions until the model's own label changes,
averaged over ``directions`` directions (drawn from the key's seed). Maini et al. feed such margins to a
regression and a t-test; under wmtool's one ownership test each private point is a trial: a success when
the suspect's margin there exceeds its median margin on the public points (a median test). Independent models trained on the
same distribution also have larger margins on data like their own — the false-claim risk later work
showed — so the null is measured on independent models, as for every fingerprint. Verifying needs the
suspect's top-1 labels only.
"""

from __future__ import annotations

import numpy as np

from wmtool.api import (Evidence, FingerprintJob, FingerprintOutcome, Fingerprinter, Option, Verifier, VerifyJob,
                        hookimpl)

WMTOOL_API_VERSION = 1

OPTIONS = (
    Option("count", int, 100, "private points, and as many public ones", min=1),
    Option("directions", int, 3, "random walk directions per point", min=1),
    Option("step", float, 0.5, "L2 length of one walk step", min=0.0),
    Option("max_steps", int, 40, "walk length after which a point counts as this far", min=1),
)


def walk_directions(seed: int, count: int, shape: tuple[int, ...]) -> np.ndarray:
    """``count`` Gaussian directions of unit L2 norm, drawn from ``seed``."""
    directions = np.random.default_rng(seed).standard_normal((count, *shape)).astype(np.float32)
    norms = np.linalg.norm(directions.reshape(count, -1), axis=1)
    return directions / norms.reshape(count, *([1] * len(shape)))


def blind_walk(model, points: np.ndarray, directions: np.ndarray, step: float, max_steps: int) -> np.ndarray:
    """Mean number of steps along each direction until ``model``'s label of each point changes."""
    labels = np.asarray(model.predict(points))
    margins = np.zeros(len(points))
    for direction in directions:
        steps = np.full(len(points), max_steps + 1, dtype=np.float64)
        walking = np.ones(len(points), dtype=bool)
        for k in range(1, max_steps + 1):
            if not walking.any():
                break
            moved = np.clip(points[walking] + k * step * direction, 0, 1).astype(np.float32)
            changed = np.asarray(model.predict(moved)) != labels[walking]
            index = np.flatnonzero(walking)[changed]
            steps[index] = k
            walking[index] = False
        margins += steps
    return margins / len(directions)


def fingerprint(job: FingerprintJob) -> FingerprintOutcome:
    """Draw ``count`` private training points and as many public held-out ones."""
    rng = np.random.default_rng(job.seed)
    count = min(job.params["count"], len(job.train), len(job.data))
    private = job.train.x[rng.choice(len(job.train), count, replace=False)]
    public = job.data.x[rng.choice(len(job.data), count, replace=False)]
    return FingerprintOutcome({"inputs": private, "inputs_public": public},
                              {**job.params, "walk_seed": int(job.seed)})


def verify(job: VerifyJob) -> Evidence:
    """Count the private points where the suspect's margin exceeds its median margin on the public ones."""
    private, public, p = job.key.array("inputs"), job.key.array("inputs_public"), job.key.params
    if job.queries is not None:
        private, public = private[:job.queries], public[:job.queries]
    directions = walk_directions(int(p["walk_seed"]), int(p["directions"]), private.shape[1:])
    on_private = blind_walk(job.suspect, private, directions, float(p["step"]), int(p["max_steps"]))
    on_public = blind_walk(job.suspect, public, directions, float(p["step"]), int(p["max_steps"]))
    return Evidence(int(np.sum(on_private > np.median(on_public))), len(private), job.key.null.rate,
                    {"mean_margin_private": float(on_private.mean()), "mean_margin_public": float(on_public.mean())})


@hookimpl
def register_fingerprinters(register):
    """Register the ``dataset-inference`` fingerprinter."""
    register(Fingerprinter("dataset-inference", "black-box: is the suspect farther from its boundary on the owner's "
                           "private training points than on public ones? (dataset inference, blind walk)",
                           fingerprint, "margin-contrast", OPTIONS, caution=(
                               "it tests use of the owner's data, not copying of the model (independent models "
                               "trained on the same data are its positives); in the MNIST audit, on models that "
                               "do not overfit, it claimed no copy (ROC AUC 0.51)")))


@hookimpl
def register_verifiers(register):
    """Register the ``margin-contrast`` verifier."""
    register(Verifier("margin-contrast", "black-box: per private point, is the suspect's blind-walk margin "
                      "above its median on public points?", verify))
