"""Fingerprinter ``mistakes``: the model's own errors (QuRD's baseline, AAAI 2025).

The fingerprint is a set of held-out images the model labels wrongly, with the wrong label it gives. A
copy repeats the victim's mistakes; an independent model errs on some of the same hard images, but less
often with the same wrong label — how often is the null rate, measured on independent models. Verified
by ``trigger-set`` with top-1 labels only (black box).
"""

from __future__ import annotations

import numpy as np

from wmtool.api import FingerprintJob, FingerprintOutcome, Fingerprinter, Option, UserError, hookimpl

WMTOOL_API_VERSION = 1

MIN_MISTAKES = 5

OPTIONS = (
    Option("count", int, 200, "at most this many mistakes are recorded (chosen at random by --seed)", min=1),
)


def fingerprint(job: FingerprintJob) -> FingerprintOutcome:
    """Record up to ``count`` held-out images the model gets wrong, labelled as the model labels them."""
    predictions = np.asarray(job.model.predict(job.data.x))
    wrong = np.flatnonzero(predictions != job.data.y)
    if len(wrong) < MIN_MISTAKES:
        raise UserError(f"the model gets only {len(wrong)} of {len(job.data)} images of {job.data.name} wrong; "
                        f"the mistakes fingerprint needs at least {MIN_MISTAKES}: give more held-out data")
    chosen = np.sort(np.random.default_rng(job.seed).permutation(wrong)[:job.params["count"]])
    return FingerprintOutcome({"inputs": job.data.x[chosen], "labels": predictions[chosen].astype(np.int64),
                               "true_labels": job.data.y[chosen].astype(np.int64)}, dict(job.params))


@hookimpl
def register_fingerprinters(register):
    """Register the ``mistakes`` fingerprinter."""
    register(Fingerprinter("mistakes", "black-box: does the suspect repeat the model's own mistakes, with the same "
                           "wrong labels? (QuRD's baseline)", fingerprint, "trigger-set", OPTIONS))
