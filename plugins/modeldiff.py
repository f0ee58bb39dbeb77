"""Fingerprinter ``modeldiff`` and verifier ``decision-distance``: ModelDiff (Li et al., ISSTA 2021).

Input pairs ``(x, x')`` are made from held-out images: ``x'`` moves ``x`` within an L∞ ball of radius
``eps`` by projected gradient ascent on the distance between the model's outputs on the two. A model's
decision distance vector (DDV) holds, per pair, the cosine distance of its softmax outputs on ``x`` and
``x'``; ModelDiff compares two models by the cosine similarity of their DDVs. Under wmtool's one
ownership test each pair is a trial: a success when the suspect's distance falls on the same side of its
DDV's median as the model's does (the similarity is reported beside it). Verifying needs the suspect's
output scores (black box with scores); making the fingerprint needs the model's gradients.
"""

from __future__ import annotations

import numpy as np

from wmtool.api import (Evidence, FingerprintJob, FingerprintOutcome, Fingerprinter, Option, UserError, Verifier,
                        VerifyJob, hookimpl)

WMTOOL_API_VERSION = 1

OPTIONS = (
    Option("count", int, 200, "input pairs", min=2),
    Option("eps", float, 0.1, "L∞ radius of the perturbation that makes x' from x", min=0.0),
    Option("steps", int, 10, "gradient-ascent steps per pair", min=1),
)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of float logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def scores(model, x: np.ndarray) -> np.ndarray:
    """The model's softmax outputs on ``x``; a clear error for a suspect that answers only labels."""
    if not hasattr(model, "predict_logits"):
        raise UserError("this fingerprint needs the suspect's output scores, and the suspect gives labels only")
    return softmax(np.asarray(model.predict_logits(x), dtype=np.float64))


def decision_distances(model, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The DDV: cosine distance between the model's outputs on each pair."""
    a, b = scores(model, first), scores(model, second)
    cosine = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    return 1.0 - cosine


def fingerprint(job: FingerprintJob) -> FingerprintOutcome:
    """Make ``count`` pairs whose outputs the model tells apart, and record its DDV on them."""
    import torch

    p, model = job.params, job.model.eval()
    rng = np.random.default_rng(job.seed)
    chosen = np.sort(rng.choice(len(job.data), min(p["count"], len(job.data)), replace=False))
    x = torch.from_numpy(job.data.x[chosen]).to(model.device)
    with torch.no_grad():
        reference = torch.softmax(model(x), dim=1)
    noise = torch.from_numpy(rng.uniform(-p["eps"], p["eps"], x.shape).astype(np.float32)).to(x.device)
    moved = (x + noise).clamp(0, 1)
    step = 2.5 * p["eps"] / p["steps"]
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    try:
        for _ in range(p["steps"]):
            moved.requires_grad_(True)
            distance = (torch.softmax(model(moved), dim=1) - reference).pow(2).sum()
            (gradient,) = torch.autograd.grad(distance, moved)
            with torch.no_grad():
                moved = torch.minimum(torch.maximum(moved + step * gradient.sign(), x - p["eps"]), x + p["eps"])
                moved = moved.clamp(0, 1)
    finally:
        for parameter in model.parameters():
            parameter.requires_grad_(True)
    first, second = job.data.x[chosen], moved.detach().cpu().numpy().astype(np.float32)
    ddv = decision_distances(job.model, first, second)
    return FingerprintOutcome({"inputs": first, "inputs_paired": second, "ddv": ddv.astype(np.float32)},
                              dict(job.params))


def verify(job: VerifyJob) -> Evidence:
    """Count the pairs whose decision distance the suspect puts on the model's side of the median."""
    first, second, recorded = job.key.array("inputs"), job.key.array("inputs_paired"), job.key.array("ddv")
    if job.queries is not None:
        first, second, recorded = first[:job.queries], second[:job.queries], recorded[:job.queries]
    observed = decision_distances(job.suspect, first, second)
    agree = (observed > np.median(observed)) == (recorded > np.median(recorded))
    similarity = float(np.dot(observed, recorded) / (np.linalg.norm(observed) * np.linalg.norm(recorded) + 1e-12))
    return Evidence(int(agree.sum()), len(agree), job.key.null.rate, {"ddv_cosine_similarity": similarity})


@hookimpl
def register_fingerprinters(register):
    """Register the ``modeldiff`` fingerprinter."""
    register(Fingerprinter("modeldiff", "black-box with scores: does the suspect's decision distance vector on "
                           "input pairs follow the model's? (ModelDiff)", fingerprint, "decision-distance", OPTIONS,
                           access="scores"))


@hookimpl
def register_verifiers(register):
    """Register the ``decision-distance`` verifier."""
    register(Verifier("decision-distance", "black-box with scores: per input pair, is the suspect's output distance "
                      "on the key's side of the median?", verify))
