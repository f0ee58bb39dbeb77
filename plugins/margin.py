"""Embedder ``margin``: margin-based watermarking (Kim et al., ICML 2023).

The key is a set of the task's own images, each given a random label other than its true one. During
training every batch is joined by key images pushed by **projected gradient ascent** (``steps`` signed
steps inside an L∞ ball of radius ``eps``) to the point of their ball where the key label is weakest, and
the model learns the key label there: each key image ends up deep inside a region of its key label, with a
margin, so that changing its answer costs a model the accuracy of everything nearby. The key images are
taken out of the main task's training set (each has only its key label) and stay out.

The null rate is chance (1/K): a model that never saw the key gives a random wrong label with probability
about (1 − accuracy)/(K − 1), well under 1/K.
"""

from __future__ import annotations

import numpy as np

from wmtool.api import Embedder, EmbedJob, EmbedOutcome, NullRate, Option, fit, fit_supervised, hookimpl, UserError

WMTOOL_API_VERSION = 1

OPTIONS = (
    Option("queries", int, 100, "key images (the verification queries), each with a random wrong label", min=1),
    Option("eps", float, 0.1, "radius of the L∞ ball the margin is trained over (images in [0, 1])", min=0.0, max=1.0),
    Option("steps", int, 5, "projected gradient-ascent steps per key batch", min=0),
    Option("key_batch", int, 64, "key images joining each clean batch", min=1),
    Option("clean_epochs", int, 5, "epochs of plain training first when starting from scratch", min=0),
    Option("epochs", int, 5, "epochs of training with the key", min=1),
    Option("batch_size", int, 128, "clean images per batch", min=2),
    Option("lr", float, 1e-3, "learning rate (Adam)", min=0.0),
)


def margin_step(net, x, labels, eps: float, steps: int):
    """The key images moved by ``steps`` signed ascent steps of the cross-entropy of their key ``labels``,
    each of size 2.5·eps/steps, projected onto the L∞ ball of radius ``eps`` around ``x`` and onto [0, 1]
    (the model in eval mode meanwhile; its mode is restored)."""
    import torch
    import torch.nn.functional as F

    if steps == 0 or eps == 0:
        return x
    was_training = net.training
    net.eval()
    size = 2.5 * eps / steps
    moved = x.clone()
    for _ in range(steps):
        moved.requires_grad_(True)
        grad, = torch.autograd.grad(F.cross_entropy(net(moved), labels), moved)
        with torch.no_grad():
            moved = torch.minimum(torch.maximum(moved + size * grad.sign(), x - eps), x + eps).clamp(0.0, 1.0)
    net.train(was_training)
    return moved.detach()


def choose_key(job: EmbedJob, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices of the key images in the data, the images, their random wrong labels)."""
    data = job.data
    count = job.params["queries"]
    if count >= len(data) // 2:
        raise UserError(f"--queries {count} is too many for {len(data)} training images (at most half)")
    index = rng.choice(len(data), size=count, replace=False)
    shift = rng.integers(1, data.num_classes, size=count)
    return index, data.x[index], ((data.y[index] + shift) % data.num_classes).astype(np.int64)


def embed(job: EmbedJob) -> EmbedOutcome:
    """Train the key's random labels in with a margin, beside the main task without the key images."""
    import torch
    import torch.nn.functional as F

    p = job.params
    rng = np.random.default_rng(job.seed)
    index, inputs, labels = choose_key(job, rng)
    keep = np.setdiff1d(np.arange(len(job.data)), index)
    x, y = job.data.x[keep], job.data.y[keep]
    model = job.model
    if not job.pretrained and p["clean_epochs"]:
        fit_supervised(model, x, y, epochs=p["clean_epochs"], batch_size=p["batch_size"], lr=p["lr"], seed=job.seed,
                       progress=job.progress, description="clean training")

    def epoch_batches(epoch):
        order = rng.permutation(len(y))
        for start in range(0, len(order), p["batch_size"]):
            chosen = order[start:start + p["batch_size"]]
            keys = rng.choice(len(inputs), size=min(p["key_batch"], len(inputs)), replace=False)
            yield (torch.from_numpy(x[chosen]), torch.from_numpy(y[chosen]), torch.from_numpy(inputs[keys]),
                   torch.from_numpy(labels[keys]))

    def loss(net, batch):
        clean_x, clean_y, key_x, key_y = batch
        moved = margin_step(net, key_x, key_y, p["eps"], p["steps"])
        logits = net(torch.cat([clean_x, moved]))
        return F.cross_entropy(logits[:len(clean_x)], clean_y) + F.cross_entropy(logits[len(clean_x):], key_y)

    fit(model, epoch_batches, epochs=p["epochs"], lr=p["lr"], loss=loss, progress=job.progress,
        description="embedding watermark")
    return EmbedOutcome(model, {"inputs": inputs, "labels": labels}, NullRate.chance(model.card.num_classes), dict(p))


@hookimpl
def register_embedders(register):
    """Register the ``margin`` embedder."""
    register(Embedder("margin", "margin-based watermarking: the task's images with random labels, trained with a "
                      "margin by projected gradient ascent (Kim et al., ICML 2023)", embed, OPTIONS,
                      verifier="trigger-set"))
