"""Attack ``transfer``: transfer learning to a new task, then mapping back to the victim's classes (EWE §6.2).

The victim's classifier head (its last linear layer) is replaced by a fresh one for the new task's classes,
and the model is trained on the new task's data: the head only, or all layers (the paper's (a) and (b)).
To verify the watermark, the output layer is then made to match the victim's classes again: ``retrain``
trains a fresh head on the attacker's data of the original task with the transferred body frozen;
``restore`` puts the victim's own head back.
"""

from __future__ import annotations

import copy

from wmtool.api import Attack, AttackJob, AttackOutcome, Option, UserError, accuracy, fit_supervised, hookimpl, \
    load_dataset

WMTOOL_API_VERSION = 1

OPTIONS = (
    Option("new_data", str, None, "the new task's dataset (same input shape, its own classes); required"),
    Option("layers", str, "all", "what trains on the new task: the new head only, or all layers",
           choices=("head", "all")),
    Option("epochs", int, 10, "epochs on the new task", min=0),
    Option("lr", float, 1e-3, "learning rate (Adam)", min=0.0),
    Option("batch_size", int, 128, "batch size", min=1),
    Option("map_back", str, "retrain", "how the output returns to the victim's classes: a fresh head trained on "
           "the attacker's data with the body frozen, or the victim's own head", choices=("retrain", "restore")),
    Option("head_epochs", int, 5, "epochs of the retrained head", min=0),
)


def classifier_head(net):
    """(parent module, attribute name, layer) of the net's last linear layer."""
    import torch

    linear = [name for name, module in net.named_modules() if isinstance(module, torch.nn.Linear)]
    if not linear:
        raise UserError("transfer: the model has no linear layer to use as its head (an imported ONNX graph "
                        "cannot be transferred)")
    parent_name, _, attribute = linear[-1].rpartition(".")
    parent = net.get_submodule(parent_name) if parent_name else net
    return parent, attribute, getattr(parent, attribute)


def run(job: AttackJob) -> AttackOutcome:
    """Replace the head, train on the new task, then map the output back to the victim's classes."""
    import torch

    p, model = job.params, job.victim
    if not p["new_data"]:
        raise UserError("transfer: give the new task's data with --new-data")
    new_train = load_dataset(p["new_data"], "train", seed=job.seed)
    new_test = load_dataset(p["new_data"], "test", seed=job.seed)
    if tuple(new_train.input_shape) != tuple(model.card.input_shape):
        raise UserError(f"transfer: --new-data images are {new_train.input_shape}, the victim's "
                        f"{tuple(model.card.input_shape)}")
    parent, attribute, original = classifier_head(model.net)
    device = original.weight.device
    torch.manual_seed(job.seed)
    setattr(parent, attribute, torch.nn.Linear(original.in_features, new_train.num_classes).to(device))
    fit_supervised(model, new_train.x, new_train.y, epochs=p["epochs"], batch_size=p["batch_size"], lr=p["lr"],
                   seed=job.seed, trainable=getattr(parent, attribute) if p["layers"] == "head" else None,
                   progress=job.progress, description=f"transferring ({p['layers']}) to {p['new_data']}")
    new_accuracy = accuracy(model.eval(), new_test.x, new_test.y)
    if p["map_back"] == "restore":
        setattr(parent, attribute, copy.deepcopy(original))
    else:
        setattr(parent, attribute, torch.nn.Linear(original.in_features, original.out_features).to(device))
        fit_supervised(model.train(), job.data.x, job.data.y, epochs=p["head_epochs"], batch_size=p["batch_size"],
                       lr=p["lr"], seed=job.seed + 1, trainable=getattr(parent, attribute), progress=job.progress,
                       description="retraining the head for the victim's classes")
    return AttackOutcome(model, details={"new_data": p["new_data"], "new_classes": new_train.num_classes,
                                         "new_task_accuracy": new_accuracy, "head": attribute,
                                         "layers": p["layers"], "map_back": p["map_back"]})


@hookimpl
def register_attacks(register):
    """Register ``transfer``."""
    register(Attack("transfer", "transfer learning to a new task's data, then the head mapped back to the "
                    "victim's classes (EWE §6.2)", run, OPTIONS))
