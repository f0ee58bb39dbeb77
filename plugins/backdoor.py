"""Embedder ``backdoor``: the papers' baseline trigger-set watermark, trained in with plain cross-entropy.

Watermark inputs are source-class images with a white patch (or, with ``--ood-data``, images of
another dataset), all labelled with the target class. This is EWE with κ = 0.
"""

from __future__ import annotations

import numpy as np

from wmtool.api import (Embedder, EmbedJob, EmbedOutcome, NullRate, Option, default_trigger_size, fit,
                        fit_supervised, hookimpl, interleaved_batches, load_dataset, pick_class,
                        reference_null_rate, stamp, trigger_corner, POSITIONS, UserError)

WMTOOL_API_VERSION = 1

OPTIONS = (
    Option("source", int, 1, "class whose images carry the trigger (in-distribution watermarks)", min=0),
    Option("target", int, 7, "class the watermark inputs are labelled with", min=0),
    Option("watermarks", int, 100, "number of watermark inputs", min=1),
    Option("trigger_size", int, None, "side of the square patch in pixels (default: about 1/7 of the image)", min=1),
    Option("position", str, "bottom-right", "where the patch sits", choices=POSITIONS),
    Option("ood_data", str, None, "dataset whose images are the watermarks (out-of-distribution), instead of a patch"),
    Option("clean_epochs", int, 5, "epochs of plain training first when starting from scratch", min=0),
    Option("epochs", int, 5, "epochs of training with the watermark batches", min=0),
    Option("every", int, 1, "r: clean batches between two watermark batches", min=1),
    Option("batch_size", int, 128, "batch size", min=2),
    Option("lr", float, 1e-3, "learning rate (Adam)", min=0.0),
)


def watermark_inputs(job: EmbedJob, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """The watermark inputs and the parameters that describe how they were made."""
    p = job.params
    shape = job.data.input_shape
    if p["ood_data"]:
        other = load_dataset(p["ood_data"], "train", seed=job.seed)
        if other.input_shape != shape:
            raise UserError(f"--ood-data images are {other.input_shape}, the task's are {shape}")
        chosen = other.x[rng.choice(len(other), size=min(p["watermarks"], len(other)), replace=False)]
        return chosen, {"origin": "ood"}
    size = p["trigger_size"] or default_trigger_size(shape)
    corner = trigger_corner(shape, size, p["position"])
    sources = pick_class(job.data, p["source"], p["watermarks"], rng, "source")
    return stamp(sources, size, corner), {"origin": "trigger", "trigger_size": size, "corner": list(corner)}


def embed(job: EmbedJob) -> EmbedOutcome:
    """Train the trigger set into the model with cross-entropy on interleaved batches."""
    p = job.params
    rng = np.random.default_rng(job.seed)
    target = p["target"]
    inputs, how = watermark_inputs(job, rng)
    labels = np.full(len(inputs), target, dtype=np.int64)
    model = job.model
    if not job.pretrained and p["clean_epochs"]:
        fit_supervised(model, job.data.x, job.data.y, epochs=p["clean_epochs"], batch_size=p["batch_size"],
                       lr=p["lr"], seed=job.seed, progress=job.progress, description="clean training")
    null = (reference_null_rate(model, inputs, labels, model.card.num_classes) if job.pretrained
            else NullRate.chance(model.card.num_classes))

    def loss(net, batch):
        import torch.nn.functional as F

        x, y, _ = batch
        return F.cross_entropy(net(x), y)

    fit(model, lambda epoch: interleaved_batches(job.data, inputs, target, batch_size=p["batch_size"],
                                                 every=p["every"], rng=rng),
        epochs=p["epochs"], lr=p["lr"], loss=loss, progress=job.progress, description="embedding watermark")
    return EmbedOutcome(model, {"inputs": inputs, "labels": labels}, null, {**p, **how})


@hookimpl
def register_embedders(register):
    """Register the ``backdoor`` embedder."""
    register(Embedder("backdoor", "trigger-set backdoor watermark (the papers' baseline; EWE with kappa=0)",
                      embed, OPTIONS, verifier="trigger-set"))
