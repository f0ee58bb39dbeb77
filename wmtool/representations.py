"""Hidden representations of a model's named layers, and the soft-nearest-neighbour loss over them."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import nn

from wmtool.errors import UserError

METRICS = ("cosine", "euclidean")


@contextmanager
def capture(model: nn.Module, layers: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """While active, each forward pass stores the outputs of the named submodules (of ``model.net`` for a
    :class:`~wmtool.models.Classifier`) in the yielded dictionary."""
    net = getattr(model, "net", model)
    modules = dict(net.named_modules())
    missing = [name for name in layers if name not in modules]
    if missing:
        known = ", ".join(name for name in modules if name)
        raise UserError(f"the model has no layer {missing[0]!r}; its layers: {known}")
    outputs: dict[str, torch.Tensor] = {}
    handles = [modules[name].register_forward_hook(
        lambda module, args, output, name=name: outputs.__setitem__(name, output)) for name in layers]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


class SelfGram(torch.autograd.Function):
    """``x @ x.T`` whose backward is one matrix product, ``(G + Gᵀ) @ x``, where autograd would spend two."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x @ x.T

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return (grad + grad.T) @ x


def pairwise_distances(x: torch.Tensor, metric: str = "cosine") -> torch.Tensor:
    """Pairwise distances between the rows of ``x``: ``1 − cos`` or squared Euclidean."""
    if metric not in METRICS:
        raise UserError(f"unknown distance {metric!r}; use {' or '.join(METRICS)}")
    gram = SelfGram.apply(x)  # both metrics from the Gram matrix alone: N×N work after one product
    squares = gram.diagonal()
    if metric == "cosine":
        norms = squares.clamp_min(1e-24).sqrt()
        return 1 - gram / (norms[:, None] * norms[None, :])
    return (squares[:, None] + squares[None, :] - 2 * gram).clamp_min(0)


def snnl(h: torch.Tensor, groups: torch.Tensor, temperature: torch.Tensor | float,
         metric: str = "cosine") -> torch.Tensor:
    """Soft-nearest-neighbour loss (EWE eq. 1, Frosst et al.) of representations ``h`` with group labels.

    ``-mean_i log( Σ_{j≠i, same group} e^{-d_ij/T} / Σ_{k≠i} e^{-d_ik/T} )``, computed with
    log-sum-exp. As in the EWE authors' code, a ReLU is applied to ``h`` first and each representation
    is flattened. High values mean the groups are entangled. Points alone in their group are skipped;
    with none left it raises ``ValueError`` on the CPU (on a GPU, where checking would stall every step, NaN).
    """
    x = torch.relu(h).flatten(1)
    logits = -pairwise_distances(x, metric) / temperature
    self_mask = torch.eye(len(x), dtype=torch.bool, device=x.device)
    same = (groups[:, None] == groups[None, :]) & ~self_mask
    log_all = torch.logsumexp(logits.masked_fill(self_mask, float("-inf")), dim=1)
    log_same = torch.logsumexp(logits.masked_fill(~same, float("-inf")), dim=1)
    valid = same.any(dim=1)
    if x.device.type == "cpu" and not valid.any():  # elsewhere the check would wait for the device every step
        raise ValueError("the soft-nearest-neighbour loss needs at least two points in some group")
    return -torch.where(valid, log_same - log_all, 0.0).sum() / valid.sum()
