"""Attack ``finetune``: retrain the victim on the attacker's labelled data.

Modes (Adi et al.'s family): ``ftal`` fine-tunes all layers, ``ftll`` only the last layer,
``rtll`` re-initialises the last layer and trains only it, ``rtal`` re-initialises the last layer and
trains all layers.
"""

from __future__ import annotations

from wmtool.api import Attack, AttackJob, AttackOutcome, Option, UserError, fit_supervised, hookimpl

WMTOOL_API_VERSION = 1

OPTIONS = (
    Option("mode", str, "ftal", "which layers train, and whether the last is re-initialised first",
           choices=("ftal", "ftll", "rtll", "rtal")),
    Option("epochs", int, 5, "epochs of fine-tuning", min=0),
    Option("lr", float, 1e-4, "learning rate", min=0.0),
    Option("batch_size", int, 128, "batch size", min=1),
    Option("optimizer", str, "adam", "optimizer", choices=("adam", "sgd", "adadelta")),
)


def last_layer(net):
    """The last submodule holding a weight (the classifier head)."""
    layers = [(name, module) for name, module in net.named_modules()
              if hasattr(module, "reset_parameters") and getattr(module, "weight", None) is not None]
    if not layers:
        raise UserError("finetune: the model has no layer with a weight to retrain (an imported ONNX graph "
                        "supports mode ftal only)")
    return layers[-1]


def run(job: AttackJob) -> AttackOutcome:
    """Fine-tune with cross-entropy on the attacker's labels, in the chosen mode."""
    p, model = job.params, job.victim
    name, trainable = None, None
    if p["mode"] != "ftal":
        name, head = last_layer(model.net)
        if p["mode"] in ("rtll", "rtal"):
            head.reset_parameters()
        if p["mode"] in ("ftll", "rtll"):
            trainable = head
    fit_supervised(model, job.data.x, job.data.y, epochs=p["epochs"], batch_size=p["batch_size"], lr=p["lr"],
                   optimizer=p["optimizer"], seed=job.seed, trainable=trainable, progress=job.progress,
                   description=f"fine-tuning ({p['mode']})")
    return AttackOutcome(model, details={"mode": p["mode"], "last_layer": name})


@hookimpl
def register_attacks(register):
    """Register the ``finetune`` attack."""
    register(Attack("finetune", "fine-tune on the attacker's labelled data (FTAL, FTLL, RTLL, RTAL)", run, OPTIONS))
