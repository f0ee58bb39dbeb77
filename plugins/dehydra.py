"""Attack ``dehydra``: watermark removal by model inversion and unlearning, after Neural Dehydration (Lu et
al., CCS 2024), implemented from the paper's description.

1. **Invert** every class: a batch of images, started from noise, is optimised so that the victim gives
   them that class (cross-entropy, plus total-variation and L2 priors that keep them image-like). A
   watermarked model's target class is reached through its watermark's features as well as the class's.
2. **Find the target class**: each class's recovered images are blended into the attacker's clean images
   of the other classes (``blend`` of the recovered image, the rest clean); the class to which such blends
   flip most often, far above the others (median-absolute-deviation anomaly index above ``threshold``, as
   Neural Cleanse), is the watermark's target. ``--target`` names it instead when known.
3. **Unlearn**: fine-tune on the recovered images of every other class with their class (keeping the task,
   with no data needed), the blends of the target's recovered images with their clean images' labels
   (unlearning the watermark's shortcut), and ``data_share`` of the attacker's labelled data (0: data-free).
"""

from __future__ import annotations

import numpy as np

from wmtool.api import Attack, AttackJob, AttackOutcome, Option, UserError, fit_supervised, hookimpl

WMTOOL_API_VERSION = 1

OPTIONS = (
    Option("per_class", int, 32, "images recovered per class", min=1),
    Option("steps", int, 200, "inversion steps per class", min=1),
    Option("tv", float, 0.05, "weight of the total-variation prior", min=0.0),
    Option("l2", float, 0.01, "weight of the L2 prior", min=0.0),
    Option("blend", float, 0.3, "share of a recovered image in a blend with a clean one", min=0.05, max=1.0),
    Option("threshold", float, 2.0, "anomaly index above which the most flipped-to class is the target", min=0.0),
    Option("target", int, None, "the watermark's target class, when known (skips detection)", min=0),
    Option("data_share", float, 0.02, "share of the attacker's labelled data used while unlearning (0: none)",
           min=0.0, max=1.0),
    Option("epochs", int, 5, "unlearning epochs", min=1),
    Option("lr", float, 1e-4, "unlearning learning rate (Adam)", min=0.0),
    Option("batch_size", int, 64, "unlearning batch size", min=1),
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
    victim.eval()
    for _ in range(p["steps"]):
        images = torch.sigmoid(logits)
        loss = F.cross_entropy(victim(images), labels) + p["tv"] * total_variation(images) \
            + p["l2"] * images.pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return torch.sigmoid(logits).detach().cpu().numpy().astype(np.float32)


def blends(recovered: np.ndarray, clean: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Each clean image mixed with a random recovered one: share·recovered + (1 − share)·clean."""
    chosen = recovered[rng.integers(0, len(recovered), size=len(clean))]
    return (share * chosen + (1.0 - share) * clean).astype(np.float32)


def flip_rates(victim, recovered: dict[int, np.ndarray], x: np.ndarray, y: np.ndarray, share: float,
               rng: np.random.Generator) -> np.ndarray:
    """Per class c: the share of blends of c's recovered images into clean images of other classes that the
    victim then labels c."""
    rates = np.zeros(len(recovered))
    for label, images in recovered.items():
        others = x[y != label][:500]
        if len(others):
            rates[label] = float(np.mean(victim.predict(blends(images, others, share, rng)) == label))
    return rates


def anomaly(rates: np.ndarray) -> np.ndarray:
    """(rate − median) / (1.4826 · MAD) per class: how far above the others each flip rate lies."""
    median = np.median(rates)
    mad = 1.4826 * np.median(np.abs(rates - median)) + 1e-9
    return (rates - median) / mad


def run(job: AttackJob) -> AttackOutcome:
    """Invert every class, find the watermark's target, and unlearn it."""
    p, victim, data = job.params, job.victim, job.data
    rng = np.random.default_rng(job.seed)
    classes = victim.card.num_classes
    if p["target"] is not None and not 0 <= p["target"] < classes:
        raise UserError(f"--target {p['target']} is not one of the model's {classes} classes")
    recovered = {c: invert(victim, c, p["per_class"], p, job.seed + c) for c in range(classes)}
    rates = flip_rates(victim, recovered, data.x, data.y, p["blend"], rng)
    scores = anomaly(rates)
    target = p["target"] if p["target"] is not None else int(np.argmax(scores))
    detected = p["target"] is not None or bool(scores[target] > p["threshold"])
    kept_classes = [c for c in range(classes) if not (detected and c == target)]
    parts_x = [recovered[c] for c in kept_classes]
    parts_y = [np.full(p["per_class"], c, dtype=np.int64) for c in kept_classes]
    if detected:
        others = data.x[data.y != target][:max(p["per_class"] * 4, 1)]
        parts_x.append(blends(recovered[target], others, p["blend"], rng))
        parts_y.append(data.y[data.y != target][:len(others)].astype(np.int64))
    kept = int(round(p["data_share"] * len(data)))
    if kept:
        chosen = rng.choice(len(data), size=kept, replace=False)
        parts_x.append(data.x[chosen])
        parts_y.append(data.y[chosen].astype(np.int64))
    fit_supervised(victim, np.concatenate(parts_x), np.concatenate(parts_y), epochs=p["epochs"],
                   batch_size=p["batch_size"], lr=p["lr"], seed=job.seed, progress=job.progress,
                   description="unlearning")
    victim.eval()
    return AttackOutcome(victim, queries=0, details={"target": target, "detected": detected,
                                                     "flip_rates": [round(float(r), 4) for r in rates],
                                                     "anomaly": round(float(scores[target]), 3),
                                                     "clean_images_used": kept})


@hookimpl
def register_attacks(register):
    """Register ``dehydra``."""
    register(Attack("dehydra", "Neural Dehydration: invert every class, find the watermark's target class, "
                    "unlearn it with little or no data (CCS 2024)", run, OPTIONS, white_box=True))
