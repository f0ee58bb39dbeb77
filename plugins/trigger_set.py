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
    accuracy, chance = successes / max(len(labels), 1), 1.0 / job.key.task.num_classes
    return Evidence(successes, len(labels), job.key.null.rate,
                    {"accuracy": accuracy, "normalised": max((accuracy - chance) / (1 - chance), 0.0)})


@hookimpl
def register_verifiers(register):
    """Register the ``trigger-set`` verifier."""
    register(Verifier("trigger-set", "black-box: query the key's watermark inputs and count the expected labels",
                      verify))
