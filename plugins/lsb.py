"""Embedder ``lsb`` (W:LSB, Song et al. 2017, ingrain §3.2.1): bits written into the least significant
mantissa bit of chosen float32 parameters after training. Verified white-box by ``bits``."""

from __future__ import annotations

import numpy as np

from wmtool.api import (Embedder, Key, EmbedJob, EmbedOutcome, Option, PENALTY_OPTIONS, bits_outcome, choose_bits,
                        clean_training, hookimpl, regenerate_bits)

WMTOOL_API_VERSION = 1

OPTIONS = (Option("bits", int, 3000, "number of bits (1,000 carriers × 3 bits, as the paper's |D_S| = 1,000)",
                  min=1),
           *[o for o in PENALTY_OPTIONS if o.name != "epochs"])


def embed(job: EmbedJob) -> EmbedOutcome:
    """Train plainly when the model is fresh, then overwrite the chosen parameters' lowest mantissa bits."""
    import torch

    clean_training(job)
    name, parameter, positions, bits = choose_bits(job, np.random.default_rng(job.seed))
    with torch.no_grad():
        flat = parameter.data.view(-1).view(torch.int32)
        index = torch.from_numpy(positions).to(flat.device)
        flat[index] = (flat[index] & ~1) | torch.from_numpy(bits.astype(np.int32)).to(flat.device)
    return bits_outcome(job, "lsb", name, parameter, {"bits": bits, "positions": positions})


def decode(weight: np.ndarray, key: Key) -> np.ndarray:
    """The lowest mantissa bit of the key's positions."""
    values = weight.reshape(-1)[key.array("positions")]
    return (np.ascontiguousarray(values, dtype=np.float32).view(np.uint32) & 1).astype(np.uint8)


@hookimpl
def register_embedders(register):
    """Register the ``lsb`` embedder."""
    register(Embedder("lsb", "W:LSB: bits in the least significant mantissa bit of parameters (white-box)",
                      embed, OPTIONS, verifier="bits", regenerate=regenerate_bits, decode=decode))
