"""Attack ``dehydra``: watermark removal by model inversion and unlearning, after Neural Dehydration (Lu et
al., CCS 2024), implemented from the paper's description.

1. **Source images** for every class: ``data_share`` of the attacker's labelled data; a class without
   any is **inverted** from noise (a batch optimised so that the victim gives it that class, with
   total-variation and L2 priors that keep it image-like) — with ``data_share 0`` every class is, and the
   attack needs no data.
2. **Invert every class pair** (s, c): the smallest mask and pattern that carry s's source images into c
   (cross-entropy to c plus ``mask_weight`` · the mask's L1 norm). A trigger-set watermark is a shortcut
   from its source images into its target, so its pair needs an anomalously small mask; pairs whose mask
   lies far below the others' (median-absolute-deviation anomaly index above ``threshold``) are the
   watermark's. Pairs, not classes, because a watermark stamped on one source class (the backdoor, EWE)
   moves only that class — a class-wide trigger search (Neural Cleanse) misses it.
3. **Unlearn** by self-distillation: fine-tune so that the source images keep the victim's present outputs and,
   for every flagged pair, s's images carrying the recovered trigger get the outputs the victim gives them
   without it (the watermark's shortcut is unlearned; the task is not pushed anywhere new).
"""

from __future__ import annotations

import numpy as np

from wmtool.api import Attack, AttackJob, AttackOutcome, Option, UserError, fit_supervised, hookimpl

WMTOOL_API_VERSION = 1

OPTIONS = (
    Option("data_share", float, 0.02, "share of the attacker's labelled data used (0: data-free, every class "
           "inverted from noise)", min=0.0, max=1.0),
    Option("per_class", int, 32, "images inverted from noise for a class the data share lacks", min=1),
    Option("steps", int, 200, "inversion steps for those images", min=1),
    Option("tv", float, 0.05, "weight of the total-variation prior of the noise inversion", min=0.0),
    Option("l2", float, 0.01, "weight of the L2 prior of the noise inversion", min=0.0),
    Option("per_pair", int, 16, "source images each class pair's trigger is inverted on", min=1),
    Option("pair_steps", int, 400, "trigger inversion steps (all pairs of a source class at once)", min=1),
    Option("mask_weight", float, 0.01, "weight of the mask's L1 norm in the trigger inversion", min=0.0),
    Option("threshold", float, 1.5, "anomaly index (how far a pair's mask lies below the others') above which a "
           "pair is unlearned", min=0.0),
    Option("target", int, None, "the watermark's target class, when known: only pairs into it are flagged, and at "
           "least the one with the smallest mask", min=0),
    Option("epochs", int, 5, "unlearning epochs", min=1),
    Option("lr", float, 1e-3, "unlearning learning rate (Adam)", min=0.0),
    Option("batch_size", int, 32, "unlearning batch size", min=1),
)


def total_variation(x):
    """Mean absolute difference of neighbouring pixels (per image, summed over the batch's mean)."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def invert(victim, label: int, count: int, p: dict, seed: int) -> np.ndarray:
    """``count`` images the victim gives ``label``, recovered from noise (pixels through a sigmoid)."""
    import torch
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(seed)
    device = victim.device
    logits = (0.5 * torch.randn((count, *victim.card.input_shape), generator=generator)).to(device)
    logits.requires_grad_(True)
    optimizer = torch.optim.Adam([logits], lr=0.1)
    labels = torch.full((count,), label, device=device)
    for _ in range(p["steps"]):
        images = torch.sigmoid(logits)
        loss = F.cross_entropy(victim(images), labels) + p["tv"] * total_variation(images) \
            + p["l2"] * images.pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return torch.sigmoid(logits).detach().cpu().numpy().astype(np.float32)


def stamp(images, mask, pattern):
    """Images carrying a trigger: (1 − mask)·image + mask·pattern (arrays or tensors that broadcast)."""
    return (1 - mask) * images + mask * pattern


def invert_pairs(victim, images: np.ndarray, source: int, classes: int, p: dict, seed: int):
    """For every class c ≠ ``source``: the smallest mask (one channel) and pattern that send ``images`` (of
    class ``source``) to c. Returns masks (K×1×H×W, the source's own row zero), patterns (K×C×H×W)."""
    import torch
    import torch.nn.functional as F

    device = victim.device
    generator = torch.Generator().manual_seed(seed)
    targets = [c for c in range(classes) if c != source]
    shape = images.shape[1:]
    x = torch.from_numpy(images).to(device).unsqueeze(0)
    mask_logit = torch.full((len(targets), 1, 1, *shape[1:]), -3.0, device=device, requires_grad=True)
    pattern_logit = (0.1 * torch.randn((len(targets), 1, *shape), generator=generator)).to(device)
    pattern_logit.requires_grad_(True)
    optimizer = torch.optim.Adam([mask_logit, pattern_logit], lr=0.1)
    labels = torch.tensor(targets, device=device).repeat_interleave(len(images))
    for _ in range(p["pair_steps"]):
        mask = torch.sigmoid(mask_logit)
        logits = victim(stamp(x, mask, torch.sigmoid(pattern_logit)).flatten(0, 1))
        fit_term = F.cross_entropy(logits, labels, reduction="none").view(len(targets), -1).mean(dim=1)
        loss = (fit_term + p["mask_weight"] * mask.flatten(1).sum(dim=1)).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    masks = np.zeros((classes, 1, *shape[1:]), dtype=np.float32)
    patterns = np.zeros((classes, *shape), dtype=np.float32)
    masks[targets] = torch.sigmoid(mask_logit).detach().cpu().numpy()[:, 0]
    patterns[targets] = torch.sigmoid(pattern_logit).detach().cpu().numpy()[:, 0]
    return masks, patterns


def anomaly(sizes: np.ndarray) -> np.ndarray:
    """(median − size) / (1.4826 · MAD) per entry: how far below the others each mask size lies."""
    median = np.median(sizes)
    mad = 1.4826 * np.median(np.abs(sizes - median)) + 1e-9
    return (median - sizes) / mad


def flagged_pairs(scores: np.ndarray, threshold: float, target: int | None) -> list[tuple[int, int]]:
    """The (source, target) pairs to unlearn: anomaly above ``threshold`` (into ``target`` only, when given,
    and then at least the most anomalous pair into it). ``scores`` is K×K with NaN on the diagonal."""
    allowed = np.isfinite(scores)
    if target is not None:
        allowed[:, np.arange(scores.shape[1]) != target] = False
    pairs = [(int(s), int(c)) for s, c in zip(*np.nonzero(allowed & (np.nan_to_num(scores, nan=-np.inf) > threshold)))]
    if target is not None and not pairs:
        column = np.where(allowed[:, target], scores[:, target], -np.inf)
        pairs = [(int(np.argmax(column)), target)]
    return sorted(pairs, key=lambda pair: -scores[pair])


def self_distil(victim, x: np.ndarray, reference: np.ndarray, p: dict, job: AttackJob) -> None:
    """Fine-tune ``victim`` so that its output on each image of ``x`` is its present output on the same row of
    ``reference`` (the image without a trigger): soft cross-entropy, so the task is kept as it is."""
    import torch

    targets = torch.softmax(torch.from_numpy(victim.predict_logits(reference)), dim=1).numpy()

    def loss(net, batch):
        images, wanted = batch
        return -(wanted * torch.log_softmax(net(images), dim=1)).sum(dim=1).mean()

    fit_supervised(victim, x, targets, epochs=p["epochs"], batch_size=p["batch_size"], lr=p["lr"], seed=job.seed,
                   loss=loss, progress=job.progress, description="unlearning")


def source_images(job: AttackJob, rng: np.random.Generator) -> dict[int, np.ndarray]:
    """Per class: its images in the data share, or images inverted from noise when the share has none."""
    p, victim, data = job.params, job.victim, job.data
    kept = int(round(p["data_share"] * len(data)))
    chosen = rng.choice(len(data), size=kept, replace=False) if kept else np.zeros(0, dtype=np.int64)
    x, y = data.x[chosen], data.y[chosen]
    classes = victim.card.num_classes
    missing = [label for label in range(classes) if not np.any(y == label)]
    out = {label: x[y == label] for label in range(classes) if label not in missing}
    with job.progress.task("dehydra: inverting classes from noise", len(missing)) as advance:
        for label in missing:
            out[label] = invert(victim, label, p["per_class"], p, job.seed + label)
            advance()
    return dict(sorted(out.items()))


def run(job: AttackJob) -> AttackOutcome:
    """Invert every class pair's trigger, flag the anomalously small ones and unlearn them."""
    p, victim, data = job.params, job.victim, job.data
    rng = np.random.default_rng(job.seed)
    classes = victim.card.num_classes
    if p["target"] is not None and not 0 <= p["target"] < classes:
        raise UserError(f"--target {p['target']} is not one of the model's {classes} classes")
    victim.eval()
    trainable = [parameter.requires_grad for parameter in victim.parameters()]
    victim.requires_grad_(False)  # only the inputs are optimised while inverting
    sources = source_images(job, rng)
    chosen, masks, patterns, sizes = {}, {}, {}, np.full((classes, classes), np.nan)
    with job.progress.task("dehydra: inverting class-pair triggers", classes) as advance:
        for source in range(classes):
            images = sources[source]
            chosen[source] = images[rng.choice(len(images), size=p["per_pair"], replace=len(images) < p["per_pair"])]
            masks[source], patterns[source] = invert_pairs(victim, chosen[source], source, classes, p,
                                                           job.seed + source)
            for c in range(classes):
                if c != source:
                    sizes[source, c] = float(masks[source][c].sum())
            advance()
    for parameter, flag in zip(victim.parameters(), trainable):
        parameter.requires_grad_(flag)
    off_diagonal = np.isfinite(sizes)
    scores = np.full_like(sizes, np.nan)
    scores[off_diagonal] = anomaly(sizes[off_diagonal])
    pairs = flagged_pairs(scores, p["threshold"], p["target"])
    clean = list(sources.values())
    repeats = max(1, -(-len(pairs) * p["per_pair"] // sum(map(len, clean))))  # never fewer clean than stamped
    stamped = [stamp(chosen[s], masks[s][c], patterns[s][c]).astype(np.float32) for s, c in pairs]
    self_distil(victim, np.concatenate(clean * repeats + stamped),
                np.concatenate(clean * repeats + [chosen[s] for s, _ in pairs]), p, job)
    victim.eval()
    best = np.unravel_index(np.nanargmax(scores), scores.shape)
    return AttackOutcome(victim, queries=0, details={
        "pairs": [{"source": s, "target": c, "mask": round(float(sizes[s, c]), 2),
                   "anomaly": round(float(scores[s, c]), 3)} for s, c in pairs],
        "detected": bool(pairs), "target": pairs[0][1] if pairs else int(best[1]),
        "most_anomalous": {"source": int(best[0]), "target": int(best[1]),
                           "anomaly": round(float(scores[best]), 3)},
        "clean_images_used": int(round(p["data_share"] * len(data)))})


@hookimpl
def register_attacks(register):
    """Register ``dehydra``."""
    register(Attack("dehydra", "Neural Dehydration: invert class-pair triggers, flag the watermark's, unlearn "
                    "them with little or no data (CCS 2024)", run, OPTIONS, white_box=True))
