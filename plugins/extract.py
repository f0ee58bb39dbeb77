"""Attack ``extract``: model extraction by retraining (EWE §4.3.3), with Knockoff Nets' query strategies.

A fresh model (the victim's architecture, or ``--student``) is trained on the victim's predicted
labels over the attacker's queries; the victim is only queried, never opened (black box). The queries
are the attacker's data, or ``--query-data`` (another distribution, e.g. Fashion-MNIST for an MNIST
victim), at most ``--queries`` of them: drawn at random, or with ``--sampling adaptive`` by Knockoff Nets'
gradient bandit (Orekondy et al., CVPR 2019) over the query set's classes, rewarded by the student's loss
on the victim's answers (what the student did not know yet), in ``rounds`` rounds that each retrain it.
"""

from __future__ import annotations

import numpy as np

from wmtool.api import (Attack, AttackJob, AttackOutcome, Option, UserError, fit_supervised, fresh_model_for, hookimpl,
                        load_dataset)

WMTOOL_API_VERSION = 1

OPTIONS = (
    Option("student", str, None, "architecture of the extracted model (default: the victim's)"),
    Option("student_args", str, None, "JSON object of the student architecture's arguments"),
    Option("labels", str, "hard", "train on the victim's hard labels or its probabilities",
           choices=("hard", "soft")),
    Option("epochs", int, 20, "training epochs", min=0),
    Option("batch_size", int, 512, "batch size", min=1),
    Option("lr", float, 1e-3, "learning rate (Adam)", min=0.0),
    Option("adam_eps", float, 1e-5, "Adam's epsilon (EWE authors': 1e-5)", min=0.0),
    Option("adam_beta2", float, 0.99, "Adam's second-moment decay (EWE authors': 0.99)", min=0.0, max=1.0),
    Option("shuffle", bool, True, "shuffle the data each epoch"),
    Option("queries", int, None, "query budget (default: every image of the query set)", min=1),
    Option("query_data", str, None, "dataset whose training images are the queries (default: the attacker's data)"),
    Option("sampling", str, "random", "random queries, or Knockoff Nets' adaptive bandit over the query set's "
           "classes", choices=("random", "adaptive")),
    Option("rounds", int, 10, "adaptive sampling: rounds of querying and retraining", min=2),
)


def soft_cross_entropy(net, batch):
    """Cross-entropy against the victim's probability vectors."""
    import torch

    x, probabilities = batch
    return -(probabilities * torch.log_softmax(net(x), dim=1)).sum(dim=1).mean()


def victim_outputs(victim, x: np.ndarray, labels: str) -> np.ndarray:
    """The victim's answers to the attacker's queries: class indices, or probabilities."""
    if labels == "hard":
        return np.asarray(victim.predict(x), dtype=np.int64)
    logits = np.asarray(victim.predict_logits(x), dtype=np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits)
    return (probabilities / probabilities.sum(axis=1, keepdims=True)).astype(np.float32)


def query_set(job: AttackJob):
    """The images the attacker may query: its data, or --query-data's training split (same image shape)."""
    p = job.params
    if not p["query_data"]:
        return job.data
    other = load_dataset(p["query_data"], "train", seed=job.seed)
    if other.input_shape != job.data.input_shape:
        raise UserError(f"--query-data images are {other.input_shape}, the victim's {job.data.input_shape}")
    return other


def _train(job: AttackJob, student, x: np.ndarray, answers: np.ndarray, epochs: int, description: str) -> None:
    p = job.params
    fit_supervised(student, x, answers, epochs=epochs, batch_size=p["batch_size"], lr=p["lr"], seed=job.seed,
                   optimizer_options={"eps": p["adam_eps"], "betas": (0.9, p["adam_beta2"])}, shuffle=p["shuffle"],
                   loss=soft_cross_entropy if p["labels"] == "soft" else _mean_ce, progress=job.progress,
                   description=description)


def adaptive_queries(job: AttackJob, student, pool, budget: int, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Knockoff Nets' adaptive strategy: per round, draw queries class by class from a softmax policy over
    the pool's classes, ask the victim, reward each class by the student's mean loss on its new answers,
    update the preferences by the gradient-bandit rule, and retrain the student one epoch on all answers.
    Returns (queries, answers, how many queries each class got)."""
    import torch
    import torch.nn.functional as F

    p = job.params
    classes = [c for c in range(pool.num_classes) if np.any(pool.y == c)]
    remaining = {c: list(rng.permutation(np.flatnonzero(pool.y == c))) for c in classes}
    preference, baseline, rewards, step = np.zeros(len(classes)), 0.0, 0, 0.1
    taken: list[int] = []
    answers: list[np.ndarray] = []
    per_class = np.zeros(pool.num_classes, dtype=np.int64)
    for round_index in range(p["rounds"]):
        size = budget // p["rounds"] + (1 if round_index < budget % p["rounds"] else 0)
        policy = np.exp(preference - preference.max())
        policy /= policy.sum()
        picks = rng.choice(len(classes), size=size, p=policy)
        chosen, actions = [], []
        for action in picks:
            if remaining[classes[action]]:
                chosen.append(remaining[classes[action]].pop())
                actions.append(action)
        if not chosen:
            break
        x = pool.x[np.asarray(chosen)]
        answer = victim_outputs(job.victim, x, p["labels"])
        student.eval()
        with torch.no_grad():
            logits = student(torch.from_numpy(x).to(next(student.parameters()).device)).float().cpu()
        target = torch.from_numpy(answer)
        losses = (-(target * torch.log_softmax(logits, 1)).sum(1) if answer.ndim == 2
                  else F.cross_entropy(logits, target, reduction="none")).numpy()
        actions_array = np.asarray(actions)
        for action in np.unique(actions_array):
            reward = float(losses[actions_array == action].mean())
            advantage = reward - baseline
            preference -= step * advantage * policy
            preference[action] += step * advantage
            rewards += 1
            baseline += (reward - baseline) / rewards
        taken += chosen
        answers.append(answer)
        np.add.at(per_class, pool.y[np.asarray(chosen)], 1)
        _train(job, student, pool.x[np.asarray(taken)], np.concatenate(answers), 1, "adaptive queries")
    return pool.x[np.asarray(taken)], np.concatenate(answers), per_class


def run(job: AttackJob) -> AttackOutcome:
    """Label the attacker's queries with the victim, then train a fresh student on those labels."""
    import torch

    p, victim = job.params, job.victim
    pool = query_set(job)
    budget = min(p["queries"] or len(pool), len(pool))
    rng = np.random.default_rng(job.seed)
    torch.manual_seed(job.seed)
    student = fresh_model_for(victim.card, job.registry, p["student"], p["student_args"]).to(job.device)
    arch = student.card.arch
    details: dict = {"student": arch}
    if p["sampling"] == "adaptive":
        x, answers, per_class = adaptive_queries(job, student, pool, budget, rng)
        details["queries_per_class"] = per_class.tolist()
    else:
        x = pool.x if budget == len(pool) else pool.x[np.sort(rng.choice(len(pool), size=budget, replace=False))]
        answers = victim_outputs(victim, x, p["labels"])
    _train(job, student, x, answers, p["epochs"], f"extracting into {arch}")
    details["agreement"] = float(np.mean(student.predict(x) == (answers if answers.ndim == 1 else answers.argmax(1))))
    return AttackOutcome(student, queries=len(x), details=details)


def _mean_ce(net, batch):
    import torch.nn.functional as F

    x, y = batch
    return F.cross_entropy(net(x), y)


@hookimpl
def register_attacks(register):
    """Register the ``extract`` attack."""
    register(Attack("extract", "model extraction: train a fresh model on the victim's labels (black-box)", run,
                    OPTIONS, white_box=False))
