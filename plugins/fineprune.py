"""Attack ``fineprune``: fine-pruning (Liu et al.; EWE §5.3). The units of one layer least often active on
the attacker's data are pruned (their weights and bias zeroed), then the rest is fine-tuned on data
labelled by the victim (or by the attacker's own labels), with the pruned units held at zero."""

from __future__ import annotations

import numpy as np

from wmtool.api import Attack, AttackJob, AttackOutcome, Option, UserError, fit_supervised, hookimpl

WMTOOL_API_VERSION = 1

OPTIONS = (
    Option("rate", float, 0.5, "share of the layer's units (channels or neurons) pruned", min=0.0, max=1.0),
    Option("layer", str, None, "layer to prune (default: the last convolution, else the last hidden linear)"),
    Option("labels", str, "victim", "fine-tune on the victim's labels or the attacker's", choices=("victim", "true")),
    Option("epochs", int, 5, "fine-tuning epochs", min=0),
    Option("lr", float, 1e-4, "learning rate", min=0.0),
    Option("batch_size", int, 128, "batch size", min=1),
)


def default_layer(net) -> str:
    """The last convolution, or failing that the last linear layer before the output."""
    from torch import nn

    convs = [name for name, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    linears = [name for name, m in net.named_modules() if isinstance(m, nn.Linear)]
    if convs:
        return convs[-1]
    if len(linears) >= 2:
        return linears[-2]
    raise UserError("fineprune: no convolution or hidden linear layer found; name one with --layer")


def activation_frequency(model, layer: str, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """How often each unit of ``layer`` is active (> 0 after ReLU; channels averaged over positions)."""
    import torch

    from wmtool.api import capture

    counts, seen = None, 0
    model.eval()
    with torch.no_grad(), capture(model, [layer]) as reps:
        for start in range(0, len(x), batch):
            model(torch.from_numpy(x[start:start + batch]).to(model.device))
            out = reps[layer] > 0
            active = out.float().mean(dim=tuple(range(2, out.dim()))) if out.dim() > 2 else out.float()
            counts = active.sum(0) if counts is None else counts + active.sum(0)
            seen += len(out)
    return (counts / seen).cpu().numpy()


def run(job: AttackJob) -> AttackOutcome:
    """Prune the least active units, then fine-tune with them held at zero."""
    import torch

    p, model = job.params, job.victim
    layer = p["layer"] or default_layer(model.net)
    module = dict(model.net.named_modules()).get(layer)
    if module is None or getattr(module, "weight", None) is None:
        raise UserError(f"fineprune: the model has no weighted layer {layer!r}")
    labels = model.predict(job.data.x) if p["labels"] == "victim" else job.data.y
    frequency = activation_frequency(model, layer, job.data.x)
    pruned = np.argsort(frequency, kind="stable")[:int(p["rate"] * len(frequency))]
    index = torch.as_tensor(pruned, device=module.weight.device, dtype=torch.long)

    def hold() -> None:
        with torch.no_grad():
            module.weight[index] = 0
            if module.bias is not None:
                module.bias[index] = 0

    hold()
    if p["epochs"]:
        fit_supervised(model, job.data.x, labels, epochs=p["epochs"], batch_size=p["batch_size"], lr=p["lr"],
                       seed=job.seed, after_step=hold, progress=job.progress, description="fine-tuning")
    return AttackOutcome(model, queries=len(job.data) if p["labels"] == "victim" else 0,
                         details={"layer": layer, "pruned_units": pruned.tolist(), "units": len(frequency)})


@hookimpl
def register_attacks(register):
    """Register ``fineprune``."""
    register(Attack("fineprune", "prune the units least active on clean data, then fine-tune", run, OPTIONS))
