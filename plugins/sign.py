"""Embedder ``sign`` (W:SGN, Song et al. 2017, ingrain eq. 4): the penalty
``λ/n · Σ max(0, −w_i·S_i)`` drives the signs of chosen parameters to the bit string S ∈ {−1, 1}ⁿ.
Verified white-box by ``bits``."""

from __future__ import annotations

import numpy as np

from wmtool.api import (Embedder, Key, EmbedJob, EmbedOutcome, Option, PENALTY_OPTIONS, bits_outcome, choose_bits,
                        hookimpl, regenerate_bits, train_with_penalty)

WMTOOL_API_VERSION = 1

OPTIONS = (Option("bits", int, 3000, "number of bits", min=1),
           Option("strength", float, 10.0, "λ_S of eq. 4", min=0.0),
           *PENALTY_OPTIONS)


def embed(job: EmbedJob) -> EmbedOutcome:
    """Train with the sign penalty on the chosen positions."""
    import torch

    name, parameter, positions, bits = choose_bits(job, np.random.default_rng(job.seed))
    index = torch.from_numpy(positions).to(job.device)
    signs = torch.from_numpy(2.0 * bits - 1).float().to(job.device)
    strength = job.params["strength"] / len(bits)
    train_with_penalty(job, parameter, lambda w: strength * torch.relu(-w.view(-1)[index] * signs).sum(),
                       "embedding signs")
    return bits_outcome(job, "sign", name, parameter, {"bits": bits, "positions": positions})


def decode(weight: np.ndarray, key: Key) -> np.ndarray:
    """The sign of the key's positions (1: positive)."""
    return (weight.reshape(-1)[key.array("positions")] > 0).astype(np.uint8)


@hookimpl
def register_embedders(register):
    """Register the ``sign`` embedder."""
    register(Embedder("sign", "W:SGN: parameter signs forced to a bit string by a penalty (white-box)",
                      embed, OPTIONS, verifier="bits", regenerate=regenerate_bits, decode=decode))
