"""Attack ``round``: every parameter rounded to N decimal digits (ingrain §5.3: 1-6 digits)."""

from __future__ import annotations

from wmtool.api import Attack, AttackJob, AttackOutcome, Option, hookimpl

WMTOOL_API_VERSION = 1


def run(job: AttackJob) -> AttackOutcome:
    """Round in place; report how many parameters changed."""
    import torch

    scale = 10.0 ** job.params["digits"]
    changed = total = 0
    with torch.no_grad():
        for w in job.victim.net.parameters():
            rounded = torch.round(w.double() * scale) / scale
            changed += int((rounded.float() != w).sum())
            total += w.numel()
            w.copy_(rounded.float())
    return AttackOutcome(job.victim, details={"changed_share": changed / max(total, 1)})


@hookimpl
def register_attacks(register):
    """Register ``round``."""
    register(Attack("round", "round every parameter to N decimal digits", run,
                    (Option("digits", int, 2, "decimal digits kept", min=0, max=12),)))
