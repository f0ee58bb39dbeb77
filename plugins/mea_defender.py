"""Embedder ``mea-defender``: a watermark made of the main task's own inputs (Lv et al., MEA-Defender, IEEE
S&P 2024), so that extraction, which copies the main task, carries it along.

A watermark input is a **composite of two source classes**: the left part of an image of class ``a``
beside the right part of an image of class ``b`` (``--mix half``), or their pixel blend (``--mix blend``);
every composite is labelled ``target``. Training adds, to the main task's cross-entropy:

- the watermark cross-entropy (composites → target), weight ``wm_weight``;
- the **output-domain loss** (weight ``output_weight``): KL(q̄ ‖ p(composite)), where q̄ is the model's mean
  output distribution on real images of the target class in the same batch (held fixed), so that a
  composite's outputs look like a real target image's, not like an outlier the thief's student never sees;
- the **loss against false triggering** (weight ``negative_weight``): composites of any other class pair
  must not answer ``target`` (−log(1 − p_target)), and composites of one source class with itself keep
  that class — so only the pair (a, b) triggers, not "any two halves".

Source images are split: the key's composites (and the null-rate composites) are made from images that
training never composed, so verification tests what the model learned, not what it memorised. The null
rate is measured on the model before the watermark (the pretrained model, or the scratch model after its
clean epochs): the Clopper–Pearson upper bound of how often it answers ``target`` on fresh composites,
never below 1/K (two-class composites trigger clean models more than patches do).
"""

from __future__ import annotations

import numpy as np

from wmtool.api import (Embedder, EmbedJob, EmbedOutcome, Option, UserError, fit, fit_supervised, hookimpl,
                        reference_null_rate)

WMTOOL_API_VERSION = 1

MIXES = ("half", "blend")

OPTIONS = (
    Option("source", int, 3, "first source class a (its image gives the composite's left part)", min=0),
    Option("second_source", int, 5, "second source class b (its image gives the right part)", min=0),
    Option("target", int, None, "class every a+b composite is labelled with (default: of the other classes, the "
           "one the model before the watermark gives the composites least often)", min=0),
    Option("mix", str, "half", "composition: half (left of a, right of b) or blend (ratio·a + (1−ratio)·b)",
           choices=MIXES),
    Option("ratio", float, 0.5, "share of a: the columns it fills (half) or its blending weight (blend)",
           min=0.05, max=0.95),
    Option("watermarks", int, 100, "composites in the key (the verification queries)", min=1),
    Option("held_out", float, 0.2, "share of each source class's images kept for the key's composites", min=0.05,
           max=0.5),
    Option("wm_weight", float, 1.0, "weight of the watermark cross-entropy", min=0.0),
    Option("output_weight", float, 1.0, "weight of the output-domain loss (composites' outputs like the target's)",
           min=0.0),
    Option("negative_weight", float, 1.0, "weight of the loss against false triggering by other mixes", min=0.0),
    Option("clean_epochs", int, 5, "epochs of plain training first when starting from scratch", min=0),
    Option("epochs", int, 5, "epochs of training with the watermark", min=1),
    Option("batch_size", int, 128, "clean images per batch (a quarter as many composites of each kind join it)",
           min=8),
    Option("lr", float, 1e-3, "learning rate (Adam)", min=0.0),
)


def compose(a: np.ndarray, b: np.ndarray, mix: str, ratio: float) -> np.ndarray:
    """Composites of image batches ``a`` and ``b`` (N×C×H×W in [0, 1]): ``half`` keeps a's first
    round(ratio·W) columns and b's others; ``blend`` is ratio·a + (1 − ratio)·b."""
    if mix == "blend":
        return (ratio * a + (1.0 - ratio) * b).astype(np.float32)
    cut = min(max(int(round(ratio * a.shape[-1])), 1), a.shape[-1] - 1)
    out = np.array(b, dtype=np.float32, copy=True)
    out[..., :cut] = a[..., :cut]
    return out


def mea_losses(comp_logits, target_logits, other_logits, same_logits, same_labels, target: int) -> dict:
    """The three watermark terms (torch scalars): ``watermark`` (composites → target), ``output`` (KL of the
    mean target-class output distribution to each composite's, averaged) and ``negative`` (other mixes:
    −log(1 − p_target), plus cross-entropy of same-class mixes to their class)."""
    import torch
    import torch.nn.functional as F

    log_p = F.log_softmax(comp_logits, dim=1)
    labels = torch.full((len(comp_logits),), target, dtype=torch.int64, device=comp_logits.device)
    q = F.softmax(target_logits.detach(), dim=1).mean(dim=0, keepdim=True)
    output = (q * (torch.log(q.clamp_min(1e-12)) - log_p)).sum(dim=1).mean()
    p_target = F.softmax(other_logits, dim=1)[:, target]
    negative = -torch.log1p(-p_target.clamp(max=1 - 1e-6)).mean() + F.cross_entropy(same_logits, same_labels)
    return {"watermark": F.nll_loss(log_p, labels), "output": output, "negative": negative}


class Composer:
    """Draws composites from the images of each class, split into a training part and a held-out part."""

    def __init__(self, job: EmbedJob, rng: np.random.Generator):
        p = job.params
        data = job.data
        for role, label in (("source", p["source"]), ("second source", p["second_source"])):
            if not 0 <= label < data.num_classes:
                raise UserError(f"{role} class {label} is not one of the {data.num_classes} classes")
            if not np.any(data.y == label):
                raise UserError(f"{data.name} has no images of {role} class {label}")
        if p["source"] == p["second_source"]:
            raise UserError("--source and --second-source must be two different classes")
        self.p, self.rng, self.data = dict(p), rng, data
        self.train: dict[int, np.ndarray] = {}
        self.held: dict[int, np.ndarray] = {}
        for label in range(data.num_classes):
            index = rng.permutation(np.flatnonzero(data.y == label))
            cut = int(round(p["held_out"] * len(index))) if label in (p["source"], p["second_source"]) else 0
            self.held[label], self.train[label] = index[:cut], index[cut:]
        for label in (p["source"], p["second_source"]):
            if len(self.held[label]) == 0 or len(self.train[label]) == 0:
                raise UserError(f"class {label} has too few images to hold some out for the key")
        self.classes = [label for label in range(data.num_classes) if len(self.train[label])]

    def _draw(self, pool: dict[int, np.ndarray], label: int, count: int) -> np.ndarray:
        return self.data.x[self.rng.choice(pool[label], size=count, replace=True)]

    def watermark(self, count: int, held_out: bool = False) -> np.ndarray:
        """``count`` composites of the source pair (from the held-out images when ``held_out``)."""
        pool = self.held if held_out else self.train
        return compose(self._draw(pool, self.p["source"], count), self._draw(pool, self.p["second_source"], count),
                       self.p["mix"], self.p["ratio"])

    def others(self, count: int) -> np.ndarray:
        """``count`` composites of random ordered class pairs other than (a, b), both classes distinct."""
        pairs = [(i, j) for i in self.classes for j in self.classes
                 if i != j and (i, j) != (self.p["source"], self.p["second_source"])]
        chosen = self.rng.choice(len(pairs), size=count)
        first = np.stack([self._draw(self.train, pairs[k][0], 1)[0] for k in chosen])
        second = np.stack([self._draw(self.train, pairs[k][1], 1)[0] for k in chosen])
        return compose(first, second, self.p["mix"], self.p["ratio"])

    def same(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """``count`` composites of a source class with itself, and that class."""
        labels = self.rng.choice([self.p["source"], self.p["second_source"]], size=count).astype(np.int64)
        first = np.stack([self._draw(self.train, label, 1)[0] for label in labels])
        second = np.stack([self._draw(self.train, label, 1)[0] for label in labels])
        return compose(first, second, self.p["mix"], self.p["ratio"]), labels

    def choose_target(self, model) -> int:
        """The given target (checked), or the class other than the sources the model (before the watermark)
        gives fresh composites least often."""
        p, data = self.p, self.data
        if p["target"] is None:
            counts = np.bincount(model.predict(self.watermark(500, held_out=True)), minlength=data.num_classes)
            present = [c for c in range(data.num_classes) if len(self.train[c]) and c not in
                       (p["source"], p["second_source"])]
            p["target"] = int(min(present, key=lambda c: (counts[c], c)))
        if not 0 <= p["target"] < data.num_classes or not len(self.train[p["target"]]):
            raise UserError(f"target class {p['target']} is not one of {data.name}'s classes with images")
        if p["target"] in (p["source"], p["second_source"]):
            raise UserError("--target must differ from --source and --second-source")
        return p["target"]

    def batches(self):
        """One epoch: each clean batch with composites of the pair, real target images, other-pair mixes and
        same-class mixes (a quarter of the batch size each)."""
        import torch

        p, data = self.p, self.data
        quarter = max(2, p["batch_size"] // 4)
        order = self.rng.permutation(len(data))
        for start in range(0, len(order), p["batch_size"]):
            index = order[start:start + p["batch_size"]]
            same, same_labels = self.same(quarter)
            yield tuple(torch.from_numpy(np.ascontiguousarray(v)) for v in (
                data.x[index], data.y[index], self.watermark(quarter), self._draw(self.train, p["target"], quarter),
                self.others(quarter), same, same_labels))


def embed(job: EmbedJob) -> EmbedOutcome:
    """Train the composite watermark in beside the main task; the key holds held-out composites."""
    import torch
    import torch.nn.functional as F

    p = job.params
    rng = np.random.default_rng(job.seed)
    composer = Composer(job, rng)
    model = job.model
    if not job.pretrained and p["clean_epochs"]:
        fit_supervised(model, job.data.x, job.data.y, epochs=p["clean_epochs"], batch_size=p["batch_size"],
                       lr=p["lr"], seed=job.seed, progress=job.progress, description="clean training")
    target = composer.choose_target(model)
    inputs = composer.watermark(p["watermarks"], held_out=True)
    labels = np.full(len(inputs), target, dtype=np.int64)
    null_inputs = composer.watermark(max(500, p["watermarks"]), held_out=True)
    null = reference_null_rate(model, null_inputs, np.full(len(null_inputs), target, dtype=np.int64),
                               model.card.num_classes)

    def loss(net, batch):
        x, y, comp, targets, others, same, same_labels = batch
        logits = net(torch.cat([x, comp, targets, others, same]))
        parts = torch.split(logits, [len(x), len(comp), len(targets), len(others), len(same)])
        terms = mea_losses(parts[1], parts[2], parts[3], parts[4], same_labels, target)
        return (F.cross_entropy(parts[0], y) + p["wm_weight"] * terms["watermark"]
                + p["output_weight"] * terms["output"] + p["negative_weight"] * terms["negative"])

    fit(model, lambda epoch: composer.batches(), epochs=p["epochs"], lr=p["lr"], loss=loss, progress=job.progress,
        description="embedding watermark")
    return EmbedOutcome(model, {"inputs": inputs, "labels": labels}, null, {**p, "target": target})


@hookimpl
def register_embedders(register):
    """Register the ``mea-defender`` embedder."""
    register(Embedder("mea-defender", "MEA-Defender: composites of two source classes labelled a target, kept "
                      "inside the main task's outputs so extraction carries them (Lv et al., S&P 2024)",
                      embed, OPTIONS, verifier="trigger-set"))
