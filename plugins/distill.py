"""Attack ``distill``: Hinton distillation of the victim into a student (ingrain §3.3, §5.3).

The student learns the victim's temperature-softened outputs on the attacker's data (black box: the
victim's logits are computed once, in batches), optionally mixed with the attacker's hard labels:
``loss = T²·KL(p_T(victim) ‖ p_T(student)) + hard_weight·CE(student, y)``.
"""

from __future__ import annotations

import numpy as np

from wmtool.api import Attack, AttackJob, AttackOutcome, Option, fit_supervised, fresh_model_for, hookimpl

WMTOOL_API_VERSION = 1

OPTIONS = (
    Option("student", str, None, "student architecture (default: the victim's), e.g. mlp"),
    Option("student_args", str, None, "JSON object of the student's arguments, e.g. '{\"width\": 800}'"),
    Option("temperature", float, 5.0, "distillation temperature T", min=1e-3),
    Option("hard_weight", float, 0.0, "weight of the cross-entropy on the attacker's true labels", min=0.0),
    Option("epochs", int, 20, "training epochs", min=0),
    Option("batch_size", int, 128, "batch size", min=1),
    Option("lr", float, 1e-3, "learning rate (Adam)", min=0.0),
)


def run(job: AttackJob) -> AttackOutcome:
    """Query the victim once for logits, then train the student on them."""
    import torch

    p = job.params
    teacher = np.asarray(job.victim.predict_logits(job.data.x), dtype=np.float32)
    torch.manual_seed(job.seed)
    student = fresh_model_for(job.victim.card, job.registry, p["student"], p["student_args"]).to(job.device)
    temperature, hard_weight = p["temperature"], p["hard_weight"]
    targets = np.concatenate([teacher, job.data.y[:, None].astype(np.float32)], axis=1)

    def loss(net, batch):
        x, packed = batch
        logits, labels = packed[:, :-1], packed[:, -1].long()
        out = net(x)
        soft = torch.nn.functional.kl_div(torch.log_softmax(out / temperature, dim=1),
                                          torch.log_softmax(logits / temperature, dim=1), log_target=True,
                                          reduction="batchmean") * temperature**2
        return soft + hard_weight * torch.nn.functional.cross_entropy(out, labels) if hard_weight else soft

    fit_supervised(student, job.data.x, targets, epochs=p["epochs"], batch_size=p["batch_size"], lr=p["lr"],
                   seed=job.seed, loss=loss, progress=job.progress, description=f"distilling into {student.card.arch}")
    agreement = float(np.mean(student.predict(job.data.x) == teacher.argmax(1)))
    return AttackOutcome(student, queries=len(job.data), details={"student": student.card.arch,
                                                                   "agreement": agreement})


@hookimpl
def register_attacks(register):
    """Register ``distill``."""
    register(Attack("distill", "Hinton distillation into a student on the attacker's data (black-box)", run,
                    OPTIONS, white_box=False))
