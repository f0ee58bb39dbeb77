"""Attack ``noise``: Gaussian noise added to every weight, at a scale relative to each tensor's spread."""

from __future__ import annotations

from wmtool.api import Attack, AttackJob, AttackOutcome, Option, hookimpl

WMTOOL_API_VERSION = 1


def run(job: AttackJob) -> AttackOutcome:
    """w ← w + scale · std(w) · N(0, 1) for every parameter tensor with more than one value."""
    import torch

    generator = torch.Generator(device="cpu").manual_seed(job.seed)
    with torch.no_grad():
        for w in job.victim.net.parameters():
            if w.numel() > 1:
                noise = torch.randn(w.shape, generator=generator).to(w.device)
                w.add_(job.params["scale"] * w.std() * noise)
    return AttackOutcome(job.victim)


@hookimpl
def register_attacks(register):
    """Register ``noise``."""
    register(Attack("noise", "Gaussian noise on the weights, relative to each tensor's standard deviation", run,
                    (Option("scale", float, 0.1, "noise standard deviation as a share of the weights'", min=0.0),)))
