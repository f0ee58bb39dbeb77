"""Embedder ``ewe``: Entangled Watermark Embedding (Jia et al., USENIX Security 2021, Algorithm 1).

Watermarks (source-class images with a trigger patch, or out-of-distribution images) are labelled
with the target class and trained on interleaved batches ``[X_w, X_cT]`` with the loss
``CE − κ·Σ_l SNNL(h_l([X_w, X_cT]), groups, T_l)``, after ``r`` clean batches each. Maximising the
soft-nearest-neighbour loss entangles the watermarks' representations with the target class's, so a
model extracted from the victim's labels inherits the watermark. ``--kappa 0`` is the baseline.

Faithful to the authors' code where the paper is silent: cross-entropy summed over the batch, Adam
with eps 1e-5 and beta2 0.99, representations taken before the ReLU of each layer, SNNL on ReLU'd representations with cosine distance at temperature ``scale/T``
(scale 100), T learned by gradient descent on the SNNL (lr 0.1), watermarks as many as the target
class's images, refined by FGSM steps away from the target class on the clean model (while over 10%
of them are still labelled as the target, at most 50 steps per batch) alternating with SNNL ascent.
"""

from __future__ import annotations

import copy
import json

import numpy as np

from wmtool.api import (Embedder, EmbedJob, EmbedOutcome, Option, UserError, fit, fit_supervised, hookimpl,
                        load_dataset, reference_null_rate, stamp)

WMTOOL_API_VERSION = 1

OPTIONS = (
    Option("source", int, 1, "source class c_S (of --ood-data when given)", min=0),
    Option("target", int, 7, "target class c_T", min=0),
    Option("auto_pair", bool, False, "choose source and target by class-centre cosine similarity (Appendix A.1)"),
    Option("ood_data", str, None, "dataset of out-of-distribution watermarks (e.g. Fashion-MNIST for MNIST)"),
    Option("kappa", float, 32.0, "SNNL weight per layer (0: the cross-entropy baseline)"),
    Option("layers", str, None, "comma-separated layers to entangle (default: the architecture's)"),
    Option("metric", str, "cosine", "SNNL distance", choices=("cosine", "euclidean")),
    Option("temperature", float, 1.0, "initial temperature T of each layer", min=1e-6),
    Option("temperature_scale", float, 100.0, "the SNNL runs at temperature scale/T, as in the authors' code",
           min=1e-6),
    Option("temperature_lr", float, 0.1, "step size of the temperatures' gradient descent", min=0.0),
    Option("every", int, 1, "r: clean batches before each watermark batch", min=1),
    Option("trigger_size", int, 3, "side of the square trigger (in-distribution watermarks)", min=1),
    Option("watermarks", int, 0, "watermark inputs to train (0: as many as the target class has)", min=0),
    Option("keep", int, 1000, "watermark inputs stored in the key for verification", min=1),
    Option("fgsm", bool, True, "refine the watermarks with FGSM (Algorithm 1, lines 5-6)"),
    Option("fgsm_rounds", int, 10, "rounds of (CE steps away from c_T, one SNNL ascent step)", min=0),
    Option("fgsm_eps", float, 0.01, "FGSM step size", min=0.0),
    Option("fgsm_threshold", float, 0.1, "CE steps run while more than this share is labelled c_T", min=0.0),
    Option("clean_epochs", int, 10, "epochs of plain training first, when starting from scratch", min=0),
    Option("epochs", int, 10, "epochs (of clean data) of watermark training", min=0),
    Option("batch_size", int, 512, "batch size; watermark batches are half watermarks, half c_T", min=4),
    Option("lr", float, 1e-3, "learning rate (Adam)", min=0.0),
    Option("adam_eps", float, 1e-5, "Adam's epsilon (the authors': 1e-5)", min=0.0),
    Option("adam_beta2", float, 0.99, "Adam's second-moment decay (the authors': 0.99)", min=0.0, max=1.0),
    Option("shuffle", bool, False, "shuffle the clean data each epoch (the authors' code does not)"),
    Option("restart_clean", bool, False, "restart the clean batches at every watermark loop, as the authors' code "
           "does (watermark training then sees only the first every × watermark-batches clean batches)"),
)


def _sum_ce(net, batch):
    import torch.nn.functional as F

    x, y = batch[0], batch[1]
    return F.cross_entropy(net(x), y, reduction="sum")


def choose_pair(sources, task, exclude_same: bool) -> tuple[int, int]:
    """The (source, target) pair whose class centres have the highest cosine similarity."""
    def centres(data):
        return np.stack([data.x[data.y == c].reshape((data.y == c).sum(), -1).mean(0)
                         if (data.y == c).any() else np.zeros(int(np.prod(data.input_shape)))
                         for c in range(data.num_classes)])

    a, b = centres(sources), centres(task)
    a /= np.linalg.norm(a, axis=1, keepdims=True).clip(1e-12)
    b /= np.linalg.norm(b, axis=1, keepdims=True).clip(1e-12)
    similarity = a @ b.T
    if exclude_same:
        np.fill_diagonal(similarity, -np.inf)
    source, target = np.unravel_index(np.argmax(similarity), similarity.shape)
    return int(source), int(target)


class Entangler:
    """The SNNL of the chosen layers on ``[X_w, X_cT]`` batches, with one learned temperature per layer."""

    def __init__(self, model, layers: list[str], p: dict, device: str):
        import torch

        self.model, self.layers, self.p = model, layers, p
        self.temperatures = torch.full((len(layers),), p["temperature"], device=device, requires_grad=True)

    def value(self, reps: dict, groups):
        """Σ_l SNNL(h_l, groups, scale/T_l)."""
        from wmtool.api import snnl

        return sum(snnl(reps[name], groups, self.p["temperature_scale"] / self.temperatures[i], self.p["metric"])
                   for i, name in enumerate(self.layers))

    def input_gradient(self, inputs, groups):
        """∂ Σ SNNL / ∂ inputs."""
        from wmtool.api import capture

        inputs = inputs.clone().requires_grad_(True)
        with capture(self.model, self.layers) as reps:
            self.model(inputs)
        import torch

        return torch.autograd.grad(self.value(reps, groups), inputs)[0]

    def loss(self, net, batch):
        """Summed CE; on watermark batches minus κ·Σ SNNL."""
        import torch
        import torch.nn.functional as F

        x, y, marked = batch
        if not marked or self.p["kappa"] == 0:
            return F.cross_entropy(net(x), y, reduction="sum")
        from wmtool.api import capture

        with capture(net, self.layers) as reps:
            logits = net(x)
        half = len(x) // 2
        groups = torch.cat([torch.ones(half, dtype=torch.long), torch.zeros(len(x) - half, dtype=torch.long)])
        return F.cross_entropy(logits, y, reduction="sum") - self.p["kappa"] * self.value(reps, groups.to(x.device))

    def update_temperatures(self) -> None:
        """T ← T − lr·∂SNNL/∂T (Algorithm 1, last line), kept positive. The loss's backward left
        −κ·∂SNNL/∂T in the temperatures' gradient (one backward pass serves the weights and T)."""
        import torch

        if self.temperatures.grad is not None:
            with torch.no_grad():
                self.temperatures += self.p["temperature_lr"] * self.temperatures.grad / self.p["kappa"]
                self.temperatures.clamp_(min=1e-3)
            self.temperatures.grad = None


def place_trigger(entangler: Entangler, sources: np.ndarray, targets: np.ndarray, size: int, batch: int,
                  device: str) -> tuple[int, int]:
    """Algorithm 1, lines 1-3: the patch position where the SNNL's input gradient, summed over the
    patch (a convolution with the trigger mask), is largest."""
    import torch

    half = max(1, batch // 2)
    total = None
    for start in range(0, len(sources), half):
        xs = torch.from_numpy(sources[start:start + half]).to(device)
        xt = torch.from_numpy(targets[np.arange(start, start + len(xs)) % len(targets)]).to(device)
        groups = torch.cat([torch.ones(len(xs)), torch.zeros(len(xt))]).long().to(device)
        grad = entangler.input_gradient(torch.cat([xs, xt]), groups)[:len(xs)].sum(dim=(0, 1))
        total = grad if total is None else total + grad
    window = torch.nn.functional.conv2d(total[None, None], torch.ones(1, 1, size, size, device=device))[0, 0]
    row, col = np.unravel_index(int(window.argmax()), tuple(window.shape))
    return int(row), int(col)


def refine(entangler: Entangler, watermarks: np.ndarray, targets: np.ndarray, target: int, p: dict,
           device: str, progress) -> np.ndarray:
    """Algorithm 1, lines 5-6: FGSM steps away from c_T on the clean model, alternating with SNNL ascent."""
    import torch
    import torch.nn.functional as F

    model, eps, half = entangler.model, p["fgsm_eps"], max(1, p["batch_size"] // 2)
    refined = watermarks.copy()

    def ce_step(x):
        """One FGSM step that raises the clean model's cross-entropy of c_T (away from the target)."""
        x = x.clone().requires_grad_(True)
        loss = F.cross_entropy(model(x), torch.full((len(x),), target, device=device))
        return (x + eps * torch.autograd.grad(loss, x)[0].sign()).clamp(0, 1).detach()

    with progress.task("refining watermarks (FGSM)", -(-len(refined) // half)) as advance:
        for start in range(0, len(refined), half):
            x = torch.from_numpy(refined[start:start + half]).to(device)
            xt = torch.from_numpy(targets[np.arange(start, start + len(x)) % len(targets)]).to(device)
            groups = torch.cat([torch.ones(len(x)), torch.zeros(len(xt))]).long().to(device)
            ce_steps = 0
            for _ in range(p["fgsm_rounds"]):
                while ce_steps < 50:
                    with torch.no_grad():
                        share = (model(x).argmax(1) == target).float().mean().item()
                    if share <= p["fgsm_threshold"]:
                        break
                    x = ce_step(x)
                    ce_steps += 1
                grad = entangler.input_gradient(torch.cat([x, xt]), groups)[:len(x)]
                x = (x + eps * grad.sign()).clamp(0, 1).detach()
            if p["fgsm_rounds"]:
                for _ in range(5):
                    x = ce_step(x)
            refined[start:start + len(x)] = x.cpu().numpy()
            advance(1)
    return refined


def watermark_batches(job: EmbedJob, watermarks: np.ndarray, targets: np.ndarray, target: int,
                      rng: np.random.Generator):
    """A function giving one loop's batches: ``every`` clean batches, then ``[X_w, X_cT]``, over all X_w."""
    import torch

    p, data = job.params, job.data
    half = max(1, p["batch_size"] // 2)
    w_batches = max(1, -(-len(watermarks) // half))
    clean_batches = max(1, -(-len(data) // p["batch_size"]))
    state = {"next": 0, "order": np.arange(len(data))}

    def clean_batch():
        if state["next"] >= clean_batches:
            state["next"] = 0
            if p["shuffle"]:
                state["order"] = rng.permutation(len(data))
        index = state["order"][state["next"] * p["batch_size"]:(state["next"] + 1) * p["batch_size"]]
        state["next"] += 1
        return torch.from_numpy(data.x[index]), torch.from_numpy(data.y[index]), False

    def loop(_):
        if p["restart_clean"]:
            state["next"] = 0
        shuffled = targets[rng.permutation(len(targets))]
        for b in range(w_batches):
            for _ in range(p["every"]):
                yield clean_batch()
            marks = watermarks[b * half:(b + 1) * half]
            mates = shuffled[np.arange(b * half, b * half + len(marks)) % len(shuffled)]
            inputs = np.concatenate([marks, mates])
            yield torch.from_numpy(inputs), torch.full((len(inputs),), target, dtype=torch.int64), True

    loops = max(1, round(p["epochs"] * clean_batches / (w_batches * p["every"]))) if p["epochs"] else 0
    return loop, loops, w_batches * (p["every"] + 1)


def embed(job: EmbedJob) -> EmbedOutcome:
    """Algorithm 1 end to end: clean training, trigger placement, FGSM refinement, entangled training."""
    p, data, model = job.params, job.data, job.model
    rng = np.random.default_rng(job.seed)
    adam = {"eps": p["adam_eps"], "betas": (0.9, p["adam_beta2"])}
    layers = [name.strip() for name in p["layers"].split(",")] if p["layers"] else list(
        job.registry.layers_of(model.card.arch))
    if p["kappa"] and not layers:
        raise UserError(f"architecture {model.card.arch} names no layers to entangle; pass --layers")
    if not job.pretrained and p["clean_epochs"]:
        fit_supervised(model, data.x, data.y, epochs=p["clean_epochs"], batch_size=p["batch_size"], lr=p["lr"],
                       seed=job.seed, optimizer_options=adam, shuffle=p["shuffle"], loss=_sum_ce,
                       progress=job.progress, description="clean training")
    model.eval()
    reference = copy.deepcopy(model)
    pool = load_dataset(p["ood_data"], "train", seed=job.seed) if p["ood_data"] else data
    if pool.input_shape != data.input_shape:
        raise UserError(f"--ood-data images are {pool.input_shape}, the task's are {data.input_shape}")
    source, target = (choose_pair(pool, data, exclude_same=not p["ood_data"]) if p["auto_pair"]
                      else (p["source"], p["target"]))
    if not 0 <= target < model.card.num_classes or not 0 <= source < pool.num_classes:
        raise UserError(f"source {source} or target {target} is not a class of its dataset")
    targets = data.x[data.y == target]
    candidates = pool.x[pool.y == source]
    if len(targets) < 2 or len(candidates) == 0:
        raise UserError(f"too few images of source class {source} or target class {target}")
    count = p["watermarks"] or len(targets)
    watermarks = candidates[np.resize(rng.permutation(len(candidates)), count)]
    entangler = Entangler(model, layers, p, job.device)
    how = {"source": source, "target": target, "layers": layers}
    if not p["ood_data"]:
        size = p["trigger_size"]
        corner = place_trigger(entangler, watermarks, targets, size, p["batch_size"], job.device) if layers \
            else (data.input_shape[-2] - size - 1, data.input_shape[-1] - size - 1)
        watermarks = stamp(watermarks, size, corner)
        how.update(trigger_size=size, corner=list(corner))
    if p["fgsm"] and layers:
        watermarks = refine(entangler, watermarks, targets, target, p, job.device, job.progress)
    loop, loops, steps = watermark_batches(job, watermarks, targets, target, rng)
    model.train()
    fit(model, loop, epochs=loops, lr=p["lr"], optimizer_options=adam, loss=entangler.loss,
        after_step=entangler.update_temperatures, steps_per_epoch=steps, progress=job.progress,
        description="entangled training" if p["kappa"] else "watermark training (baseline)")
    model.eval()
    kept = watermarks[rng.permutation(len(watermarks))[:p["keep"]]]
    labels = np.full(len(kept), target, dtype=np.int64)
    null = reference_null_rate(reference, kept, labels, model.card.num_classes)
    how["temperatures"] = [round(float(t), 6) for t in entangler.temperatures.detach().cpu()]
    return EmbedOutcome(model, {"inputs": kept.astype(np.float32), "labels": labels}, null,
                        json.loads(json.dumps({**p, **how})))


@hookimpl
def register_embedders(register):
    """Register the ``ewe`` embedder."""
    register(Embedder("ewe", "Entangled Watermark Embedding (SNNL-entangled trigger set; kappa=0 is the baseline)",
                      embed, OPTIONS, verifier="trigger-set"))
