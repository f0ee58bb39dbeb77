"""Verifier ``bits``: white-box extraction of a bit string from the suspect's parameters (W:* schemes).

Reads the key's tensor from the suspect (safetensors parameters or ONNX initializers, by name or by a
shape only it has), decodes the bits the way the key's scheme wrote them, and weighs the matching bits
against chance (1/2) with the core's test. Reports raw and normalised (ingrain §5.4) bit accuracy.

Chance is an exact null here, so the test alone would claim 1% of unrelated models at α = 0.01 (one did
in benchmarks/false_claims.py: 52.2% of 3,000 bits, p = 0.008). A claim therefore also needs a bit
accuracy of at least ``min_accuracy`` (0.55: unrelated models sit at 0.5 ± 0.01 over 3,000 bits; a
marked model kept 0.64 even after pruning).
"""

from __future__ import annotations

import numpy as np

from wmtool.api import Evidence, Option, UserError, Verifier, VerifyJob, find_tensor, hookimpl, parameter_arrays

WMTOOL_API_VERSION = 1


def decode(decoder: str, weight: np.ndarray, job: VerifyJob) -> np.ndarray:
    """The bits a weight tensor carries, by the scheme's decoder."""
    if decoder == "uchida":
        mean = weight.reshape(len(weight), -1).mean(0)
        return (job.key.array("projection") @ mean > 0).astype(np.uint8)
    values = weight.reshape(-1)[job.key.array("positions")]
    if decoder == "lsb":
        return (np.ascontiguousarray(values, dtype=np.float32).view(np.uint32) & 1).astype(np.uint8)
    if decoder == "sign":
        return (values > 0).astype(np.uint8)
    if decoder == "correlation":
        return (values > values.mean()).astype(np.uint8)
    raise UserError(f"the key's bit decoder {decoder!r} is unknown to this wmtool")


def verify(job: VerifyJob) -> Evidence:
    """Count the suspect's parameter bits that match the key's."""
    params = job.key.params
    weight = find_tensor(parameter_arrays(job.suspect), params["tensor"], tuple(params["shape"]))
    expected = job.key.array("bits")
    found = decode(params["decoder"], weight, job)
    if job.queries is not None:
        expected, found = expected[:job.queries], found[:job.queries]
    matches = int(np.sum(found == expected))
    accuracy = matches / len(expected)
    return Evidence(matches, len(expected), 0.5, {"bit_accuracy": accuracy,
                                                   "normalised": max((accuracy - 0.5) / 0.5, 0.0)},
                    min_success_rate=job.params["min_accuracy"])


@hookimpl
def register_verifiers(register):
    """Register the ``bits`` verifier."""
    register(Verifier("bits", "white-box: decode the key's bits from the suspect's parameters", verify,
                      (Option("min_accuracy", float, 0.55, "no claim below this bit accuracy", min=0.5, max=1.0),)))
