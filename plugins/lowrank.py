"""Attack ``lowrank``: low-rank expansion of conv/linear layers by truncated SVD (ingrain's "expansion").

Each weight (a conv kernel seen as out × in·kh·kw) is replaced by its best rank-k approximation, with k
chosen so that the factorised layer (k·(out + in·kh·kw) multiply-adds per position) is ``speedup`` times
cheaper than the original; the product is stored back in the original shape, so the architecture is kept.
"""

from __future__ import annotations

from wmtool.api import Attack, AttackJob, AttackOutcome, Option, fit_supervised, hookimpl

WMTOOL_API_VERSION = 1


def rank_for(rows: int, cols: int, speedup: float) -> int:
    """The largest rank whose factorisation costs at most 1/speedup of the full matrix (at least 1)."""
    return max(1, int(rows * cols / (speedup * (rows + cols))))


def run(job: AttackJob) -> AttackOutcome:
    """Truncate every conv/linear weight's SVD; optionally fine-tune afterwards."""
    import torch

    p = job.params
    ranks = {}
    with torch.no_grad():
        for name, w in job.victim.net.named_parameters():
            if w.dim() < 2:
                continue
            matrix = w.reshape(w.shape[0], -1)
            k = rank_for(*matrix.shape, p["speedup"])
            if k >= min(matrix.shape):
                continue
            u, s, vh = torch.linalg.svd(matrix.double(), full_matrices=False)
            w.copy_(((u[:, :k] * s[:k]) @ vh[:k]).reshape(w.shape).to(w.dtype))
            ranks[name] = k
    if p["epochs"]:
        fit_supervised(job.victim, job.data.x, job.data.y, epochs=p["epochs"], batch_size=128, lr=p["lr"],
                       seed=job.seed, progress=job.progress, description="fine-tuning")
    return AttackOutcome(job.victim, details={"ranks": ranks})


@hookimpl
def register_attacks(register):
    """Register ``lowrank``."""
    register(Attack("lowrank", "truncated-SVD low-rank expansion of conv/linear layers at a target speed-up", run,
                    (Option("speedup", float, 2.5, "how many times cheaper each factorised layer is", min=1.0),
                     Option("epochs", int, 0, "fine-tuning epochs afterwards", min=0),
                     Option("lr", float, 1e-4, "fine-tuning learning rate", min=0.0))))
