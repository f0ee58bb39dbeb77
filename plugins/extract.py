"""Attack ``extract``: model extraction by retraining (EWE §4.3.3).

A fresh model (the victim's architecture, or ``--student``) is trained on the victim's predicted
labels over the attacker's data; the victim is only queried, never opened (black box).
"""

from __future__ import annotations

import numpy as np

from wmtool.api import Attack, AttackJob, AttackOutcome, Option, fit_supervised, fresh_model_for, hookimpl

WMTOOL_API_VERSION = 1

OPTIONS = (
    Option("student", str, None, "architecture of the extracted model (default: the victim's)"),
    Option("student_args", str, None, "JSON object of the student architecture's arguments"),
    Option("labels", str, "hard", "train on the victim's hard labels or its probabilities",
           choices=("hard", "soft")),
    Option("epochs", int, 20, "training epochs", min=0),
    Option("batch_size", int, 512, "batch size", min=1),
    Option("lr", float, 1e-3, "learning rate (Adam)", min=0.0),
    Option("adam_eps", float, 1e-5, "Adam's epsilon (EWE authors': 1e-5)", min=0.0),
    Option("adam_beta2", float, 0.99, "Adam's second-moment decay (EWE authors': 0.99)", min=0.0, max=1.0),
    Option("shuffle", bool, True, "shuffle the data each epoch"),
)


def soft_cross_entropy(net, batch):
    """Cross-entropy against the victim's probability vectors."""
    import torch

    x, probabilities = batch
    return -(probabilities * torch.log_softmax(net(x), dim=1)).sum(dim=1).mean()


def victim_outputs(victim, x: np.ndarray, labels: str) -> np.ndarray:
    """The victim's answers to the attacker's queries: class indices, or probabilities."""
    if labels == "hard":
        return np.asarray(victim.predict(x), dtype=np.int64)
    logits = np.asarray(victim.predict_logits(x), dtype=np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits)
    return (probabilities / probabilities.sum(axis=1, keepdims=True)).astype(np.float32)


def run(job: AttackJob) -> AttackOutcome:
    """Label the attacker's data with the victim, then train a fresh student on those labels."""
    import torch

    p, victim = job.params, job.victim
    answers = victim_outputs(victim, job.data.x, p["labels"])
    torch.manual_seed(job.seed)
    student = fresh_model_for(victim.card, job.registry, p["student"], p["student_args"]).to(job.device)
    arch = student.card.arch
    fit_supervised(student, job.data.x, answers, epochs=p["epochs"], batch_size=p["batch_size"], lr=p["lr"],
                   seed=job.seed, optimizer_options={"eps": p["adam_eps"], "betas": (0.9, p["adam_beta2"])}, shuffle=p["shuffle"],
                   loss=soft_cross_entropy if p["labels"] == "soft" else _mean_ce, progress=job.progress,
                   description=f"extracting into {arch}")
    agreement = float(np.mean(student.predict(job.data.x) == (answers if answers.ndim == 1 else answers.argmax(1))))
    return AttackOutcome(student, queries=len(job.data), details={"student": arch, "agreement": agreement})


def _mean_ce(net, batch):
    import torch.nn.functional as F

    x, y = batch
    return F.cross_entropy(net(x), y)


@hookimpl
def register_attacks(register):
    """Register the ``extract`` attack."""
    register(Attack("extract", "model extraction: train a fresh model on the victim's labels (black-box)", run,
                    OPTIONS, white_box=False))
