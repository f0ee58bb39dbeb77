"""Attack ``quantize``: int8 weight quantization (symmetric, per output channel or per tensor).

Each weight tensor is mapped to 255 integer levels and back (the precision an int8 deployment keeps);
the model keeps its architecture, so it is written like any other model.
"""

from __future__ import annotations

from wmtool.api import Attack, AttackJob, AttackOutcome, Option, hookimpl

WMTOOL_API_VERSION = 1


def run(job: AttackJob) -> AttackOutcome:
    """Quantize every weight tensor with two or more dimensions to int8 levels."""
    import torch

    per_channel = job.params["granularity"] == "channel"
    levels = 2 ** (job.params["bits"] - 1) - 1
    with torch.no_grad():
        for w in job.victim.net.parameters():
            if w.dim() < 2:
                continue
            dims = tuple(range(1, w.dim())) if per_channel else tuple(range(w.dim()))
            scale = w.abs().amax(dim=dims, keepdim=True).clamp_min(1e-12) / levels
            w.copy_(torch.round(w / scale).clamp(-levels, levels) * scale)
    return AttackOutcome(job.victim, details={"bits": job.params["bits"], "levels": 2 * levels + 1})


@hookimpl
def register_attacks(register):
    """Register ``quantize``."""
    register(Attack("quantize", "int8 (or fewer bits) symmetric weight quantization", run,
                    (Option("bits", int, 8, "bits per weight", min=2, max=16),
                     Option("granularity", str, "channel", "one scale per output channel or per tensor",
                            choices=("channel", "tensor")))))
