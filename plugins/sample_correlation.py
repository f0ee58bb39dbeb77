"""Fingerprinter ``sac-m`` and verifier ``sample-correlation``: SAC-m (Guan et al., NeurIPS 2022).

The fingerprint inputs are CutMix images (a box of one held-out image pasted into another, its area
drawn uniformly). A model's sample correlation is the matrix of cosine similarities between its softmax
outputs on every two of them; SAC-m compares two models by the mean absolute difference of their
matrices. Under wmtool's one ownership test each input is a trial: a success when the suspect's row of
the matrix correlates (Pearson) with the model's at ``agreement`` or more (the paper's distance is
reported beside it). Verifying needs the suspect's output scores (black box with scores).
"""

from __future__ import annotations

import numpy as np

from wmtool.api import (Evidence, FingerprintJob, FingerprintOutcome, Fingerprinter, Option, Verifier, VerifyJob,
                        hookimpl)
from wmtool_plugins.modeldiff import scores

WMTOOL_API_VERSION = 1

OPTIONS = (
    Option("count", int, 100, "CutMix inputs", min=3),
    Option("agreement", float, 0.9, "Pearson correlation of a row at or above which an input counts as a success",
           min=-1.0, max=1.0),
)


def cutmix(first: np.ndarray, second: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each ``first`` image with a box of the matching ``second`` image pasted in (area uniform in (0, 1))."""
    mixed = first.copy()
    height, width = first.shape[-2:]
    for index in range(len(first)):
        ratio = np.sqrt(rng.uniform(0, 1))
        h, w = max(1, int(height * ratio)), max(1, int(width * ratio))
        top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
        mixed[index, ..., top:top + h, left:left + w] = second[index, ..., top:top + h, left:left + w]
    return mixed


def correlation_matrix(model, inputs: np.ndarray) -> np.ndarray:
    """Cosine similarity between the model's softmax outputs on every two inputs."""
    outputs = scores(model, inputs)
    unit = outputs / (np.linalg.norm(outputs, axis=1, keepdims=True) + 1e-12)
    return unit @ unit.T


def row_agreement(recorded: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of the two matrices, the diagonal left out."""
    n = len(recorded)
    off = ~np.eye(n, dtype=bool)
    a, b = recorded[off].reshape(n, n - 1), observed[off].reshape(n, n - 1)
    a, b = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def fingerprint(job: FingerprintJob) -> FingerprintOutcome:
    """Make ``count`` CutMix inputs and record the model's sample-correlation matrix on them."""
    rng = np.random.default_rng(job.seed)
    count = min(job.params["count"], len(job.data))
    first = job.data.x[rng.choice(len(job.data), count, replace=False)]
    second = job.data.x[rng.choice(len(job.data), count, replace=False)]
    inputs = cutmix(first, second, rng)
    return FingerprintOutcome({"inputs": inputs, "correlation": correlation_matrix(job.model, inputs).astype(np.float32)},
                              dict(job.params))


def verify(job: VerifyJob) -> Evidence:
    """Count the inputs whose row of the suspect's correlation matrix follows the model's."""
    inputs, recorded = job.key.array("inputs"), job.key.array("correlation").astype(np.float64)
    if job.queries is not None:
        inputs, recorded = inputs[:job.queries], recorded[:job.queries, :job.queries]
    observed = correlation_matrix(job.suspect, inputs)
    agreement = row_agreement(recorded, observed)
    successes = int(np.sum(agreement >= job.key.params["agreement"]))
    return Evidence(successes, len(inputs), job.key.null.rate,
                    {"sac_distance": float(np.abs(recorded - observed).mean()),
                     "mean_row_correlation": float(agreement.mean())})


@hookimpl
def register_fingerprinters(register):
    """Register the ``sac-m`` fingerprinter."""
    register(Fingerprinter("sac-m", "black-box with scores: do the suspect's outputs on CutMix inputs correlate "
                           "with each other as the model's do? (SAC-m)", fingerprint, "sample-correlation", OPTIONS,
                           access="scores", caution=(
                               "not recommended: in the MNIST audit independent models agreed on 68% of its rows "
                               "(null up to 1.00), so it missed 3 of 10 unchanged copies (ROC AUC 0.55); against a "
                               "null pooled over the references it accused 8 of 300 independent models")))


@hookimpl
def register_verifiers(register):
    """Register the ``sample-correlation`` verifier."""
    register(Verifier("sample-correlation", "black-box with scores: per input, does the suspect's row of output "
                      "correlations follow the key's?", verify))
