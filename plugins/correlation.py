"""Embedder ``correlation`` (W:COR, Song et al. 2017, ingrain eq. 5): the term
``−λ_c · corr(w, S)`` makes chosen parameters correlate with the secret S = 2·bits − 1.

Eq. 5 takes the absolute correlation; we maximise the signed one, so that decoding
(``w_i > mean(w)`` ⇔ bit 1) needs no guess of the sign, which would double the false-claim rate.
Verified white-box by ``bits``."""

from __future__ import annotations

import numpy as np

from wmtool.api import (Embedder, Key, EmbedJob, EmbedOutcome, Option, PENALTY_OPTIONS, bits_outcome, choose_bits,
                        hookimpl, regenerate_bits, train_with_penalty)

WMTOOL_API_VERSION = 1

OPTIONS = (Option("bits", int, 3000, "number of bits", min=2),
           Option("strength", float, 1.0, "λ_c of eq. 5", min=0.0),
           *PENALTY_OPTIONS)


def embed(job: EmbedJob) -> EmbedOutcome:
    """Train with the correlation term on the chosen positions."""
    import torch

    name, parameter, positions, bits = choose_bits(job, np.random.default_rng(job.seed))
    index = torch.from_numpy(positions).to(job.device)
    secret = torch.from_numpy(2.0 * bits - 1).float().to(job.device)
    secret = (secret - secret.mean()) / secret.norm()
    strength = job.params["strength"]

    def penalty(w):
        v = w.view(-1)[index]
        v = v - v.mean()
        return -strength * (v * secret).sum() / v.norm().clamp_min(1e-12)

    train_with_penalty(job, parameter, penalty, "embedding correlation")
    return bits_outcome(job, "correlation", name, parameter, {"bits": bits, "positions": positions})


def decode(weight: np.ndarray, key: Key) -> np.ndarray:
    """Whether each of the key's positions lies above their mean."""
    values = weight.reshape(-1)[key.array("positions")]
    return (values > values.mean()).astype(np.uint8)


@hookimpl
def register_embedders(register):
    """Register the ``correlation`` embedder."""
    register(Embedder("correlation", "W:COR: parameters correlated with a secret bit string (white-box)",
                      embed, OPTIONS, verifier="bits", regenerate=regenerate_bits, decode=decode))
