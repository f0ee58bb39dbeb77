"""Embedders ``ingrain`` (P:ING, Yang et al. 2019, Algorithms 1-2) and ``capacity`` (P:CAP, Song et al.
2017: the same carrier set trained in, no ingrain loss — ingrain with λ = 0).

A seeded watermark-carrier set D_S (random-walk images by default) with random labels Y_S is the
watermark. ``ingrain`` first trains an ingrainer G (the classifier's architecture) to overfit D_S, then
trains the classifier on shuffled D ∪ D_S, each mini-batch weighted as Algorithm 2:
``(Σ_D [CE(F(x), y) + λ·CE(softmax(F(x)/T), G(x))] + Σ_{D_S} CE(F(x_s), y_s)) / (a + b)``.
Verified black-box with D_S by ``trigger-set`` against chance (the labels are uniform and secret).
"""

from __future__ import annotations

import numpy as np

from wmtool.api import (CARRIERS, Embedder, EmbedJob, EmbedOutcome, NullRate, Option, carrier_images, fit,
                        fit_supervised, fresh_model_for, hookimpl)

WMTOOL_API_VERSION = 1

COMMON = (
    Option("carriers", int, 1000, "size of the watermark-carrier set |D_S|", min=1),
    Option("carrier", str, "random-walk", "how carriers are drawn", choices=CARRIERS),
    Option("epochs", int, 20, "epochs of classifier training on D ∪ D_S (the paper: 500)", min=0),
    Option("batch_size", int, 128, "batch size", min=2),
    Option("optimizer", str, "adam", "optimizer (the paper's MNIST MLP: adadelta, lr 0.1; adadelta runs with "
           "the paper's rho 0.95, eps 1e-8)", choices=("adam", "adadelta", "sgd")),
    Option("lr", float, 1e-3, "learning rate", min=0.0),
)
INGRAIN = (
    Option("strength", float, 2.0, "ingrain coefficient λ", min=0.0),
    Option("temperature", float, 10.0, "classifier temperature T in the ingrain loss", min=1e-3),
    Option("ingrainer_epochs", int, 200, "epochs of ingrainer training on D_S (the paper: 1,000)", min=0),
    Option("ingrainer_optimizer", str, None, "the ingrainer's optimizer (default: the classifier's)",
           choices=("adam", "adadelta", "sgd")),
    Option("ingrainer_lr", float, None, "the ingrainer's learning rate (default: the classifier's)", min=0.0),
    *COMMON,
)


PAPER_ADADELTA = {"rho": 0.95, "eps": 1e-8}


def optimizer_options(name: str) -> dict:
    """The optimizer's constructor options: the paper's ρ and ε for Adadelta, the defaults otherwise."""
    return PAPER_ADADELTA if name == "adadelta" else {}


def carrier_set(kind: str, count: int, input_shape: tuple[int, ...], num_classes: int,
                seed: int) -> tuple[np.ndarray, np.ndarray]:
    """D_S and Y_S, drawn from ``seed``."""
    rng = np.random.default_rng([seed, 7])
    inputs = carrier_images(kind, count, tuple(input_shape), rng)
    return inputs, rng.integers(0, num_classes, count).astype(np.int64)


def job_carriers(job: EmbedJob) -> tuple[np.ndarray, np.ndarray]:
    """The carrier set of an embedding job, drawn from the job's seed."""
    card = job.model.card
    return carrier_set(job.params["carrier"], job.params["carriers"], card.input_shape, card.num_classes, job.seed)


def regenerate(key) -> dict[str, np.ndarray]:
    """The key's carriers and labels as its seed generates them."""
    p = key.params
    if p.get("seed") is None:
        return {}
    inputs, labels = carrier_set(p["carrier"], p["carriers"], key.task.input_shape, key.task.num_classes, p["seed"])
    return {"inputs": inputs, "labels": labels}


def ingrainer_outputs(job: EmbedJob, inputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Algorithm 1: an ingrainer overfit on D_S; returns its softmax outputs on the training data."""
    import torch

    p = job.params
    optimizer = p["ingrainer_optimizer"] or p["optimizer"]
    lr = p["lr"] if p["ingrainer_lr"] is None else p["ingrainer_lr"]
    torch.manual_seed(job.seed + 1)
    ingrainer = fresh_model_for(job.model.card, job.registry).to(job.device)
    fit_supervised(ingrainer, inputs, labels, epochs=p["ingrainer_epochs"], batch_size=p["batch_size"], lr=lr,
                   optimizer=optimizer, optimizer_options=optimizer_options(optimizer), seed=job.seed,
                   progress=job.progress, description="training ingrainer")
    logits = ingrainer.predict_logits(job.data.x)
    return torch.softmax(torch.from_numpy(logits), dim=1).numpy()


def algorithm2(job: EmbedJob, inputs: np.ndarray, labels: np.ndarray, soft: np.ndarray | None,
               strength: float, temperature: float) -> None:
    """Train the classifier on shuffled D ∪ D_S with Algorithm 2's batch weighting."""
    import torch
    import torch.nn.functional as F

    p, data = job.params, job.data
    classes = job.model.card.num_classes
    x = np.concatenate([data.x, inputs])
    y = np.concatenate([data.y, labels])
    targets = np.zeros((len(x), classes + 1), dtype=np.float32)  # G's outputs, then a carrier flag
    if soft is not None:
        targets[:len(data.x), :classes] = soft
    targets[len(data.x):, classes] = 1.0
    rng = np.random.default_rng(job.seed)

    def epoch_batches(_):
        order = rng.permutation(len(x))
        for start in range(0, len(order), p["batch_size"]):
            index = order[start:start + p["batch_size"]]
            yield torch.from_numpy(x[index]), torch.from_numpy(y[index]), torch.from_numpy(targets[index])

    def loss(net, batch):
        xb, yb, tb = batch
        logits = net(xb)
        total = F.cross_entropy(logits, yb, reduction="sum")
        task = tb[:, classes] == 0
        if strength and soft is not None and task.any():
            log_p = F.log_softmax(logits[task] / temperature, dim=1)
            total = total + strength * -(tb[task, :classes] * log_p).sum()
        return total / len(xb)

    fit(job.model, epoch_batches, epochs=p["epochs"], lr=p["lr"], optimizer=p["optimizer"],
        optimizer_options=optimizer_options(p["optimizer"]), loss=loss,
        steps_per_epoch=-(-len(x) // p["batch_size"]), progress=job.progress,
        description="ingraining" if strength else "training with carriers")


def embed_ingrain(job: EmbedJob) -> EmbedOutcome:
    """P:ING: ingrainer, then Algorithm 2 with λ and T."""
    p = job.params
    inputs, labels = job_carriers(job)
    soft = ingrainer_outputs(job, inputs, labels) if p["strength"] else None
    algorithm2(job, inputs, labels, soft, p["strength"], p["temperature"])
    return EmbedOutcome(job.model, {"inputs": inputs, "labels": labels},
                        NullRate.chance(job.model.card.num_classes), {**p, "seed": job.seed})


def embed_capacity(job: EmbedJob) -> EmbedOutcome:
    """P:CAP: Algorithm 2 with λ = 0 (the carrier set mixed into training)."""
    inputs, labels = job_carriers(job)
    algorithm2(job, inputs, labels, None, 0.0, 1.0)
    return EmbedOutcome(job.model, {"inputs": inputs, "labels": labels},
                        NullRate.chance(job.model.card.num_classes), {**job.params, "seed": job.seed})


@hookimpl
def register_embedders(register):
    """Register ``ingrain`` and ``capacity``."""
    register(Embedder("ingrain", "P:ING: carrier set plus an ingrainer's outputs on the training data (black-box)",
                      embed_ingrain, INGRAIN, verifier="trigger-set", regenerate=regenerate))
    register(Embedder("capacity", "P:CAP: a random carrier set mixed into training (ingrain with lambda 0)",
                      embed_capacity, COMMON, verifier="trigger-set", regenerate=regenerate))
