"""Attack ``prune``: magnitude pruning of conv/linear weights at a rate, optionally followed by fine-tuning
with the pruned weights held at zero (ingrain §5.3: rates 0.1-0.6, then fine-tuning)."""

from __future__ import annotations

from wmtool.api import Attack, AttackJob, AttackOutcome, Option, fit_supervised, hookimpl

WMTOOL_API_VERSION = 1

OPTIONS = (
    Option("rate", float, 0.4, "share of weights set to zero", min=0.0, max=1.0),
    Option("scope", str, "layer", "rank magnitudes per layer or across all layers", choices=("layer", "global")),
    Option("epochs", int, 0, "fine-tuning epochs after pruning (masks kept)", min=0),
    Option("lr", float, 1e-4, "fine-tuning learning rate", min=0.0),
    Option("batch_size", int, 128, "fine-tuning batch size", min=1),
)


def masks_for(weights: dict, rate: float, scope: str) -> dict:
    """Boolean keep-masks that zero the ``rate`` smallest-magnitude weights, per layer or globally."""
    import torch

    if scope == "global":
        everything = torch.cat([w.detach().abs().flatten() for w in weights.values()])
        count = int(rate * everything.numel())
        threshold = everything.kthvalue(count).values if count else everything.min() - 1
        return {name: w.detach().abs() > threshold for name, w in weights.items()}
    masks = {}
    for name, w in weights.items():
        count = int(rate * w.numel())
        threshold = w.detach().abs().flatten().kthvalue(count).values if count else w.detach().abs().min() - 1
        masks[name] = w.detach().abs() > threshold
    return masks


def run(job: AttackJob) -> AttackOutcome:
    """Zero the smallest weights; fine-tune the rest if asked."""
    import torch

    p, model = job.params, job.victim
    weights = {name: w for name, w in model.net.named_parameters() if w.dim() >= 2}
    masks = masks_for(weights, p["rate"], p["scope"])

    def apply_masks() -> None:
        with torch.no_grad():
            for name, w in weights.items():
                w.mul_(masks[name])

    apply_masks()
    if p["epochs"]:
        fit_supervised(model, job.data.x, job.data.y, epochs=p["epochs"], batch_size=p["batch_size"], lr=p["lr"],
                       seed=job.seed, after_step=apply_masks, progress=job.progress, description="fine-tuning")
    zeroed = sum(int((w == 0).sum()) for w in weights.values()) / sum(w.numel() for w in weights.values())
    return AttackOutcome(model, details={"zeroed_share": zeroed})


@hookimpl
def register_attacks(register):
    """Register ``prune``."""
    register(Attack("prune", "magnitude pruning at a rate, optionally followed by fine-tuning", run, OPTIONS))
