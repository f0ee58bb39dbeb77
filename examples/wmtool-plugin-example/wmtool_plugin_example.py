"""An example third-party wmtool plugin, using only the documented plugin API (``wmtool.api``).

- embedder ``frontier-stitching`` (Le Merrer et al., 2019): adversarial examples near the decision
  boundary, labelled with their original class, are fine-tuned into the model;
- attack ``blur``: a Gaussian blur in front of the victim (input preprocessing);
- verifier ``true-adversaries``: counts only the keys that fooled the clean model;
- command ``wmtool frontier-keys KEY``: what a frontier-stitching key holds.

Names that compute (``fit_supervised``, ``Classifier``) are imported where they are used, so that
loading the plugin does not import torch.
"""

from __future__ import annotations

import numpy as np

from wmtool.api import (Attack, AttackOutcome, Embedder, EmbedOutcome, Evidence, NullRate, Option, UserError,
                        Verifier, hookimpl, load_key)

WMTOOL_API_VERSION = 1


def _fgsm(model, x: np.ndarray, y: np.ndarray, eps: float) -> np.ndarray:
    """One signed-gradient step that raises the model's loss on the true labels."""
    import torch
    import torch.nn.functional as F

    inputs = torch.from_numpy(x).to(model.device).requires_grad_(True)
    loss = F.cross_entropy(model(inputs), torch.from_numpy(y).to(model.device))
    (grad,) = torch.autograd.grad(loss, inputs)
    return (inputs + eps * grad.sign()).clamp(0, 1).detach().cpu().numpy()


def embed(job) -> EmbedOutcome:
    """Make true and false adversaries of the pretrained model, then fine-tune them in with their labels."""
    from wmtool.api import fit_supervised

    p, model, data = job.params, job.model, job.data
    if not job.pretrained:
        fit_supervised(model, data.x, data.y, epochs=p["epochs"], batch_size=64, lr=p["lr"], seed=job.seed,
                       progress=job.progress, description="clean training")
    rng = np.random.default_rng(job.seed)
    pick = rng.choice(len(data), size=min(4 * p["keys"], len(data)), replace=False)
    x, y = data.x[pick], data.y[pick]
    adversarial = _fgsm(model.eval(), x, y, p["eps"])
    fooled = model.predict(adversarial) != y
    true_idx, false_idx = np.flatnonzero(fooled)[:p["keys"] // 2], np.flatnonzero(~fooled)[:p["keys"] // 2]
    index = np.concatenate([true_idx, false_idx])
    keys, labels = adversarial[index], y[index]
    is_true = np.concatenate([np.ones(len(true_idx), bool), np.zeros(len(false_idx), bool)])
    clean_hits = int((model.predict(keys[is_true]) == labels[is_true]).sum())
    mixed_x = np.concatenate([data.x, np.repeat(keys, 5, axis=0)])
    mixed_y = np.concatenate([data.y, np.repeat(labels, 5)])
    fit_supervised(model, mixed_x, mixed_y, epochs=p["epochs"], batch_size=64, lr=p["lr"], seed=job.seed,
                   progress=job.progress, description="stitching the frontier")
    null = NullRate.from_reference(clean_hits, int(is_true.sum()), model.card.num_classes)
    return EmbedOutcome(model, {"inputs": keys.astype(np.float32), "labels": labels.astype(np.int64),
                                "is_true_adversary": is_true}, null, {**p, "true_adversaries": int(is_true.sum())})


def verify(job) -> Evidence:
    """Successes on the true adversaries only: a clean model gets those wrong by construction."""
    keep = job.key.array("is_true_adversary")
    inputs, labels = job.key.array("inputs")[keep], job.key.array("labels")[keep]
    if job.queries is not None:
        inputs, labels = inputs[:job.queries], labels[:job.queries]
    successes = int((np.asarray(job.suspect.predict(inputs)) == labels).sum())
    return Evidence(successes, len(labels), job.key.null.rate, {"key_entries": len(keep)})


class Blurred:
    """Builds the blurred victim lazily so that importing this plugin does not import torch."""

    @staticmethod
    def wrap(victim, sigma: float):
        import torch
        from torch import nn

        from wmtool.api import Classifier

        radius = max(1, int(round(2 * sigma)))
        grid = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel1d = torch.exp(-grid**2 / (2 * sigma**2))
        kernel1d /= kernel1d.sum()
        channels = victim.card.input_shape[0]
        kernel = (kernel1d[:, None] * kernel1d[None, :]).expand(channels, 1, -1, -1).clone()

        class Blur(nn.Module):
            def __init__(self, inner: nn.Module):
                super().__init__()
                self.inner = inner
                self.register_buffer("kernel", kernel)

            def forward(self, x):
                padded = nn.functional.pad(x, [radius] * 4, mode="replicate")
                return self.inner(nn.functional.conv2d(padded, self.kernel, groups=channels))

        return Classifier(Blur(victim.net), victim.card)


def blur(job) -> AttackOutcome:
    """Put a Gaussian blur in front of the victim (write the result as .onnx: it has no registered architecture)."""
    return AttackOutcome(Blurred.wrap(job.victim, job.params["sigma"]), details={"sigma": job.params["sigma"]})


@hookimpl
def register_embedders(register):
    """Register ``frontier-stitching``."""
    register(Embedder("frontier-stitching", "adversarial examples at the decision frontier, fine-tuned in",
                      embed, (Option("keys", int, 100, "number of key inputs (half true, half false adversaries)",
                                     min=2),
                              Option("eps", float, 0.1, "FGSM step size", min=0.0),
                              Option("epochs", int, 3, "fine-tuning epochs", min=0),
                              Option("lr", float, 1e-3, "learning rate", min=0.0)),
                      verifier="true-adversaries"))


@hookimpl
def register_attacks(register):
    """Register ``blur``."""
    register(Attack("blur", "Gaussian blur in front of the victim (input preprocessing)", blur,
                    (Option("sigma", float, 1.0, "standard deviation of the blur in pixels", min=0.1),)))


@hookimpl
def register_verifiers(register):
    """Register ``true-adversaries``."""
    register(Verifier("true-adversaries", "black-box: only the key inputs that fooled the clean model count",
                      verify))


def frontier_keys(key_path: str) -> None:
    """Show how many true and false adversaries a frontier-stitching key holds, per label."""
    import typer

    key = load_key(key_path)
    if key.scheme != "frontier-stitching":
        raise UserError(f"{key_path}: a {key.scheme} key, not a frontier-stitching one")
    is_true, labels = key.array("is_true_adversary"), key.array("labels")
    typer.echo(f"{len(labels)} key inputs: {int(is_true.sum())} true adversaries, {int((~is_true).sum())} false")
    for label in np.unique(labels):
        typer.echo(f"label {label}: {int((is_true & (labels == label)).sum())} true, "
                   f"{int((~is_true & (labels == label)).sum())} false")


@hookimpl
def register_commands(app):
    """Add ``wmtool frontier-keys``."""
    app.command("frontier-keys")(frontier_keys)
