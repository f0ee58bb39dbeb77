"""Verifier ``trigger-set``: black-box queries of the key's watermark inputs, scored against its labels."""

from __future__ import annotations

import numpy as np

from wmtool.api import Evidence, Verifier, VerifyJob, hookimpl

WMTOOL_API_VERSION = 1


def verify(job: VerifyJob) -> Evidence:
    """Count how many watermark inputs the suspect labels as the key says."""
    inputs, labels = job.key.array("inputs"), job.key.array("labels")
    if job.queries is not None:
        inputs, labels = inputs[:job.queries], labels[:job.queries]
    predictions = np.asarray(job.suspect.predict(inputs))
    successes = int(np.sum(predictions == labels))
    return Evidence(successes, len(labels), job.key.null.rate)


@hookimpl
def register_verifiers(register):
    """Register the ``trigger-set`` verifier."""
    register(Verifier("trigger-set", "black-box: query the key's watermark inputs and count the expected labels",
                      verify))
