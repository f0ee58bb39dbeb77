"""Attack ``finetune``: retrain all layers of the victim on the attacker's labelled data."""

from __future__ import annotations

from wmtool.api import Attack, AttackJob, AttackOutcome, Option, fit_supervised, hookimpl

WMTOOL_API_VERSION = 1

OPTIONS = (
    Option("epochs", int, 5, "epochs of fine-tuning", min=0),
    Option("lr", float, 1e-4, "learning rate", min=0.0),
    Option("batch_size", int, 128, "batch size", min=1),
    Option("optimizer", str, "adam", "optimizer", choices=("adam", "sgd", "adadelta")),
)


def run(job: AttackJob) -> AttackOutcome:
    """Fine-tune every parameter of the victim with cross-entropy on the attacker's labels."""
    p = job.params
    model = job.victim
    fit_supervised(model, job.data.x, job.data.y, epochs=p["epochs"], batch_size=p["batch_size"], lr=p["lr"],
                   optimizer=p["optimizer"], seed=job.seed, progress=job.progress, description="fine-tuning")
    return AttackOutcome(model)


@hookimpl
def register_attacks(register):
    """Register the ``finetune`` attack."""
    register(Attack("finetune", "fine-tune all layers on the attacker's labelled data (FTAL)", run, OPTIONS))
