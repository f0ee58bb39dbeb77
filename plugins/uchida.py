"""Embedder ``uchida`` (W:STA, Uchida et al. 2017, ingrain eq. 6): the regulariser
``E_R = −Σ_j S_j log y_j + (1 − S_j) log(1 − y_j)``, ``y = σ(X·w̄)``, where w̄ is the chosen weight
averaged over its output units (Uchida's mean over filters) and X is a secret n × M Gaussian
projection stored in the key (compressed). Verified white-box by ``bits`` (bit j = [X·w̄ > 0]_j)."""

from __future__ import annotations

import numpy as np

from wmtool.api import (Embedder, Key, EmbedJob, EmbedOutcome, Option, PENALTY_OPTIONS, UserError, bits_outcome,
                        choose_bits, hookimpl, train_with_penalty)

WMTOOL_API_VERSION = 1

OPTIONS = (Option("bits", int, 256, "number of bits (the paper and Uchida et al.: 256)", min=1),
           Option("strength", float, 0.01, "λ of the regulariser (Uchida et al.: 0.01)", min=0.0),
           *PENALTY_OPTIONS)


def embed(job: EmbedJob) -> EmbedOutcome:
    """Train with the embedding regulariser on the chosen weight's mean over output units."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(job.seed)
    name, parameter, _, bits = choose_bits(job, rng, positions=False)
    if parameter.ndim < 2:
        raise UserError(f"uchida needs a weight matrix or kernel, {name} has shape {tuple(parameter.shape)}")
    projection = rng.standard_normal((len(bits), parameter[0].numel())).astype(np.float32)
    x = torch.from_numpy(projection).to(job.device)
    target = torch.from_numpy(bits.astype(np.float32)).to(job.device)
    strength = job.params["strength"]

    def penalty(w):
        return strength * F.binary_cross_entropy_with_logits(x @ w.reshape(len(w), -1).mean(0), target,
                                                             reduction="sum")

    train_with_penalty(job, parameter, penalty, "embedding (Uchida)")
    return bits_outcome(job, "uchida", name, parameter, {"bits": bits, "projection": projection})


def decode(weight: np.ndarray, key: Key) -> np.ndarray:
    """The signs of the key's projection of the weight's mean over output units."""
    mean = weight.reshape(len(weight), -1).mean(0)
    return (key.array("projection") @ mean > 0).astype(np.uint8)


def regenerate(key: Key) -> dict[str, np.ndarray]:
    """The key's bits and projection as its seed generates them (the order of :func:`embed`)."""
    p = key.params
    if p.get("seed") is None:
        return {}
    rng = np.random.default_rng(p["seed"])
    bits = rng.integers(0, 2, p["bits"]).astype(np.uint8)
    width = int(np.prod([int(v) for v in p["shape"]][1:]))
    return {"bits": bits, "projection": rng.standard_normal((len(bits), width)).astype(np.float32)}


@hookimpl
def register_embedders(register):
    """Register the ``uchida`` embedder."""
    register(Embedder("uchida", "W:STA: Uchida's regulariser on a secret projection of mean weights (white-box)",
                      embed, OPTIONS, verifier="bits", regenerate=regenerate, decode=decode))
