"""Fingerprinter ``ipguard``: points near the model's classification boundary (Cao et al., AsiaCCS 2021).

From held-out images the model labels ``i``, gradient descent (Adam) on the input minimises
``ReLU(g_i(x) − g_j(x) + k) + ReLU(max_{t≠i,j} g_t(x) − g_i(x))`` for a random other class ``j``: the
point crosses just into ``j`` by a logit margin ``k``, with ``i`` the runner-up. The fingerprint is those
points and the labels the model gives them; a copy shares the boundary and repeats most labels, an
independent model's boundary lies elsewhere. Verified by ``trigger-set`` with top-1 labels (black box);
making the fingerprint needs the model's gradients (the owner's own model).
"""

from __future__ import annotations

import numpy as np

from wmtool.api import FingerprintJob, FingerprintOutcome, Fingerprinter, Option, hookimpl

WMTOOL_API_VERSION = 1

OPTIONS = (
    Option("count", int, 200, "fingerprint points", min=1),
    Option("margin", float, 0.5, "logit margin k by which a point crosses into its new class", min=0.0),
    Option("steps", int, 200, "Adam steps on the inputs", min=1),
    Option("lr", float, 0.01, "Adam learning rate on the inputs", min=0.0),
)


def boundary_loss(logits, source, target, margin: float):
    """IPGuard's loss per point: cross into ``target`` by ``margin`` and keep ``source`` second."""
    import torch

    rows = torch.arange(len(logits))
    g_source, g_target = logits[rows, source], logits[rows, target]
    others = logits.clone()
    others[rows, source] = -torch.inf
    others[rows, target] = -torch.inf
    return torch.relu(g_source - g_target + margin) + torch.relu(others.max(dim=1).values - g_source)


def fingerprint(job: FingerprintJob) -> FingerprintOutcome:
    """Search ``count`` boundary points from held-out images and record the model's labels there."""
    import torch

    p, model = job.params, job.model.eval()
    rng = np.random.default_rng(job.seed)
    chosen = np.sort(rng.choice(len(job.data), min(p["count"], len(job.data)), replace=False))
    start = torch.from_numpy(job.data.x[chosen]).to(model.device)
    num_classes = model.card.num_classes
    with torch.no_grad():
        source = model(start).argmax(dim=1)
    target = (source + torch.from_numpy(rng.integers(1, num_classes, len(chosen))).to(source.device)) % num_classes
    x = start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=p["lr"])
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    try:
        with job.progress.task("ipguard: boundary points", p["steps"]) as advance:
            for _ in range(p["steps"]):
                loss = boundary_loss(model(x), source, target, p["margin"]).sum()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    x.clamp_(0, 1)
                advance()
    finally:
        for parameter in model.parameters():
            parameter.requires_grad_(True)
    inputs = x.detach().cpu().numpy().astype(np.float32)
    return FingerprintOutcome({"inputs": inputs, "labels": job.model.predict(inputs).astype(np.int64)},
                              dict(job.params))


@hookimpl
def register_fingerprinters(register):
    """Register the ``ipguard`` fingerprinter."""
    register(Fingerprinter("ipguard", "black-box: does the suspect label points near the model's classification "
                           "boundary as the model does? (IPGuard)", fingerprint, "trigger-set", OPTIONS))
