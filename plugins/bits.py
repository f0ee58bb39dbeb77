"""Verifier ``bits``: white-box extraction of a bit string from the suspect's parameters (W:* schemes).

Reads the key's tensor from the suspect (safetensors parameters or ONNX initializers, by name or by a
shape only it has), decodes the bits with the key's scheme's own ``decode``, and weighs the matching bits
against chance (1/2) with the core's test. Reports raw and normalised (ingrain §5.4) bit accuracy.

Chance is an exact null here, so the test alone would claim 1% of unrelated models at α = 0.01 (one did
in benchmarks/false_claims.py: 52.2% of 3,000 bits, p = 0.008). A claim therefore also needs a bit
accuracy of at least ``min_accuracy`` (0.55: unrelated models sit at 0.5 ± 0.01 over 3,000 bits; a
marked model kept 0.64 even after pruning).
"""

from __future__ import annotations

import numpy as np

from wmtool.api import (Evidence, Option, UserError, Verifier, VerifyJob, align, find_tensor, hookimpl, parameter_arrays,
                        unit_activations)

WMTOOL_API_VERSION = 1


def carrier(job: VerifyJob) -> tuple[np.ndarray, dict]:
    """The key's tensor read from the suspect: as it stands, or — when the key has anchors and the suspect
    runs in torch — with its units first aligned to the marked model's (undoing permutations, rescalings
    through ReLUs and dummy units; wmtool.alignment)."""
    params = job.key.params
    arrays = parameter_arrays(job.suspect)
    anchored = "anchor_in" in job.key.arrays and params.get("seed") is not None  # probes come from the seed
    found = unit_activations(job.suspect, params["tensor"], params["seed"]) \
        if anchored and params["tensor"] in arrays else None
    aligned = None if found is None else align(arrays[params["tensor"]].astype(np.float32), *found,
                                               job.key.array("anchor_in"), job.key.array("anchor_out"))
    if aligned is not None:
        return aligned[0], {"aligned": True, **aligned[1]}
    return find_tensor(arrays, params["tensor"], tuple(params["shape"])), {"aligned": False}


def verify(job: VerifyJob) -> Evidence:
    """Count the suspect's parameter bits that match the key's."""
    weight, alignment = carrier(job)
    expected = job.key.array("bits")
    if job.scheme is None or job.scheme.decode is None:
        raise UserError(f"the key's scheme {job.key.scheme!r} is not installed here, or reads no bits back")
    found = np.asarray(job.scheme.decode(weight, job.key), dtype=np.uint8)
    if job.queries is not None:
        expected, found = expected[:job.queries], found[:job.queries]
    matches = int(np.sum(found == expected))
    accuracy = matches / len(expected)
    return Evidence(matches, len(expected), 0.5, {"bit_accuracy": accuracy,
                                                   "normalised": max((accuracy - 0.5) / 0.5, 0.0), **alignment},
                    min_success_rate=job.params["min_accuracy"])


@hookimpl
def register_verifiers(register):
    """Register the ``bits`` verifier."""
    register(Verifier("bits", "white-box: decode the key's bits from the suspect's parameters", verify,
                      (Option("min_accuracy", float, 0.55, "no claim below this bit accuracy", min=0.5, max=1.0),)))
