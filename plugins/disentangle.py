"""Attack ``disentangle``: EWE's adaptive extraction (EWE §6.2, "Disentangling Data").

The adversary knows EWE's parameters (the trigger of an in-distribution watermark, read here from the
owner's key, or the out-of-distribution dataset) but not the source and target classes. It guesses a
pair, builds watermark data as EWE would, and extracts the victim into a fresh model while *minimising*
the soft-nearest-neighbour loss between the guessed watermarks and the attacker's images of the guessed
target class (EWE with κ < 0): every ``every`` clean batches labelled by the victim comes one batch
``[X_w, X_cT]`` whose loss is the cross-entropy of its X_cT half plus ``strength``·Σ_l SNNL. The
watermarks themselves are never given the target label.
"""

from __future__ import annotations

import numpy as np

from wmtool.api import Attack, AttackJob, AttackOutcome, Dataset, Option, UserError, fit, fresh_model_for, hookimpl, \
    interleaved_batches, load_dataset, stamp

WMTOOL_API_VERSION = 1

OPTIONS = (
    Option("key", str, None, "the owner's key, read for its trigger (size and corner) only: the paper's "
           "adversary knows EWE's parameters"),
    Option("ood_data", str, None, "out-of-distribution dataset the watermarks would come from (instead of --key)"),
    Option("source", int, -1, "guessed source class (-1: a seeded random guess)", min=-1),
    Option("target", int, -1, "guessed target class (-1: a seeded random guess)", min=-1),
    Option("strength", float, 1.0, "weight of the SNNL that is minimised, against the mean cross-entropy (EWE's "
           "-κ with its summed cross-entropy: κ = 32 at batch 32)", min=0.0),
    Option("layers", str, None, "comma-separated layers to disentangle (default: the architecture's)"),
    Option("temperature", float, 0.1, "SNNL temperature on cosine distances", min=1e-6),
    Option("every", int, 1, "clean batches before each disentangling batch", min=1),
    Option("student", str, None, "architecture of the extracted model (default: the victim's)"),
    Option("student_args", str, None, "JSON object of the student architecture's arguments"),
    Option("epochs", int, 20, "epochs over the attacker's data", min=0),
    Option("batch_size", int, 128, "batch size", min=4),
    Option("lr", float, 1e-3, "learning rate (Adam)", min=0.0),
)


def guessed_pair(p: dict, classes: int, rng: np.random.Generator, distinct: bool) -> tuple[int, int]:
    """The (source, target) the adversary tries: given, or drawn at random (distinct for in-distribution)."""
    target = p["target"] if p["target"] >= 0 else int(rng.integers(classes))
    if p["source"] >= 0:
        return p["source"], target
    others = [c for c in range(classes) if c != target or not distinct]
    return int(rng.choice(others)), target


def guessed_watermarks(p: dict, data: Dataset, labels: np.ndarray, rng: np.random.Generator):
    """The guessed pair and watermark inputs: OOD images of the source class, or the key's trigger stamped on
    the attacker's images the victim labels as the source class."""
    if p["ood_data"]:
        pool = load_dataset(p["ood_data"], "train")
        if pool.input_shape != data.input_shape:
            raise UserError(f"--ood-data images are {pool.input_shape}, the victim's {data.input_shape}")
        source, target = guessed_pair(p, pool.num_classes, rng, distinct=False)
        return source, target, pool.x[pool.y == source]
    if not p["key"]:
        raise UserError("disentangle: give --key (its trigger) or --ood-data (the watermarks' dataset)")
    from wmtool.api import load_key

    params = load_key(p["key"]).params
    if "corner" not in params or "trigger_size" not in params:
        raise UserError(f"{p['key']}: not a key of a trigger watermark (no trigger corner and size)")
    source, target = guessed_pair(p, data.num_classes, rng, distinct=True)
    return source, target, stamp(data.x[labels == source], int(params["trigger_size"]), tuple(params["corner"]))


def run(job: AttackJob) -> AttackOutcome:
    """Label the attacker's data with the victim, then extract with the guessed watermarks disentangled."""
    import torch
    import torch.nn.functional as F

    p, victim = job.params, job.victim
    rng = np.random.default_rng(job.seed)
    labels = np.asarray(victim.predict(job.data.x), dtype=np.int64)
    task = Dataset(job.data.x, labels, victim.card.num_classes, "the victim's labels")
    source, target, watermarks = guessed_watermarks(p, task, labels, rng)
    if len(watermarks) == 0 or not (labels == target).any():
        raise UserError(f"disentangle: no images for the guessed source {source} or target {target}")
    torch.manual_seed(job.seed)
    student = fresh_model_for(victim.card, job.registry, p["student"], p["student_args"]).to(job.device)
    layers = [name.strip() for name in p["layers"].split(",")] if p["layers"] else \
        list(job.registry.layers_of(student.card.arch))
    if p["strength"] and not layers:
        raise UserError(f"architecture {student.card.arch} names no layers to disentangle; pass --layers")

    from wmtool.api import capture, snnl

    def loss(net, batch):
        x, y, marked = batch
        if not marked:
            return F.cross_entropy(net(x), y)
        half = len(x) // 2
        with capture(net, layers) as reps:
            logits = net(x)
        groups = torch.cat([torch.ones(half, dtype=torch.long), torch.zeros(len(x) - half, dtype=torch.long)])
        entangled = sum(snnl(reps[name], groups.to(x.device), p["temperature"]) for name in layers)
        return F.cross_entropy(logits[half:], y[half:]) + p["strength"] * entangled

    steps = -(-len(task) // p["batch_size"])
    fit(student, lambda _: interleaved_batches(task, watermarks, target, batch_size=p["batch_size"], every=p["every"],
                                               rng=rng),
        epochs=p["epochs"], lr=p["lr"], loss=loss, steps_per_epoch=steps + steps // p["every"],
        progress=job.progress, description=f"extracting, disentangling {source}→{target}")
    student.eval()
    agreement = float(np.mean(student.predict(job.data.x) == labels))
    return AttackOutcome(student, queries=len(job.data), details={
        "source": source, "target": target, "watermarks": "ood" if p["ood_data"] else "trigger", "layers": layers,
        "agreement": agreement})


@hookimpl
def register_attacks(register):
    """Register ``disentangle``."""
    register(Attack("disentangle", "EWE's adaptive extraction: guessed watermarks disentangled from a guessed "
                    "target class by minimising SNNL (black-box)", run, OPTIONS, white_box=False))
