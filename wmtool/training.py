"""The one training loop every command and plugin uses, with seeding, devices and evaluation."""

from __future__ import annotations

import random
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from wmtool.errors import UserError
from wmtool.progress import SILENT, Progress

if TYPE_CHECKING:
    import torch
    from torch import nn

Batch = Any
OPTIMIZERS = ("adam", "sgd", "adadelta")


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA), and ask cuDNN for deterministic convolutions so that a
    seed gives the same model on a GPU too."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def resolve_device(name: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; ``cuda`` without a GPU is a :class:`UserError`."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available (torch was built without CUDA or sees no GPU)")
    if name not in ("cpu", "cuda"):
        raise UserError(f"--device must be auto, cpu or cuda, got {name!r}")
    return name


def make_optimizer(name: str, params: Iterable[Any], lr: float, **options: Any) -> torch.optim.Optimizer:
    """An optimizer by name: ``adam``, ``sgd`` (momentum 0.9 unless given) or ``adadelta``; ``options``
    go to its constructor (e.g. ``eps``)."""
    import torch

    if name == "adam":
        return torch.optim.Adam(params, lr=lr, **options)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, **{"momentum": 0.9, **options})
    if name == "adadelta":
        return torch.optim.Adadelta(params, lr=lr, **options)
    raise UserError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, rng: np.random.Generator | None) -> Iterator[
        tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches of (inputs, labels) as CPU tensors, shuffled by ``rng`` (in order when None)."""
    import torch

    order = rng.permutation(len(y)) if rng is not None else np.arange(len(y))
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        yield torch.from_numpy(np.ascontiguousarray(x[index])), torch.from_numpy(np.ascontiguousarray(y[index]))


def cross_entropy(model: nn.Module, batch: Sequence[torch.Tensor]) -> torch.Tensor:
    """The default loss: mean cross-entropy of ``model`` on an (inputs, labels) batch."""
    from torch import nn

    inputs, labels = batch
    return nn.functional.cross_entropy(model(inputs), labels)


def to_device(batch: Batch, device: torch.device | str) -> Batch:
    """Move every tensor of a (possibly nested) tuple or list batch to ``device``."""
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(item, device) for item in batch)
    return batch


@contextmanager
def only_trainable(model: nn.Module, trainable: nn.Module | None) -> Iterator[list[nn.Parameter]]:
    """Within the block only ``trainable``'s parameters (None: all of ``model``'s) require gradients;
    yields them. The others are frozen, and restored afterwards whatever happens."""
    chosen = list((trainable if trainable is not None else model).parameters())
    kept = {id(w) for w in chosen}
    frozen = [w for w in model.parameters() if w.requires_grad and id(w) not in kept]
    for w in frozen:
        w.requires_grad_(False)
    try:
        yield chosen
    finally:
        for w in frozen:
            w.requires_grad_(True)


def fit(model: nn.Module, epoch_batches: Callable[[int], Iterable[Batch]], *, epochs: int, lr: float,
        optimizer: str = "adam", optimizer_options: dict[str, Any] | None = None,
        loss: Callable[[nn.Module, Batch], torch.Tensor] = cross_entropy,
        after_step: Callable[[], None] | None = None, steps_per_epoch: int | None = None,
        trainable: nn.Module | None = None, progress: Progress = SILENT,
        description: str = "training") -> list[float]:
    """Train ``model`` in place and return the mean loss of each epoch.

    ``epoch_batches(epoch)`` yields the batches of one epoch (CPU tensors, moved to the model's
    device here); ``loss(model, batch)`` turns one into a scalar. ``trainable`` (a submodule, e.g. the
    last layer) limits the update to its parameters; the rest of the model stays as it is.
    """
    import torch

    if epochs < 0 or lr <= 0:
        raise UserError(f"epochs must be ≥ 0 and the learning rate positive (got {epochs}, {lr})")
    device = next(model.parameters()).device
    history = []
    total = epochs * steps_per_epoch if steps_per_epoch else epochs
    with only_trainable(model, trainable) as parameters, progress.task(description, total) as advance:
        opt = make_optimizer(optimizer, parameters, lr, **(optimizer_options or {}))
        for epoch in range(epochs):
            model.train()
            losses = []
            for batch in epoch_batches(epoch):
                opt.zero_grad(set_to_none=True)
                value = loss(model, to_device(batch, device))
                if not torch.isfinite(value):
                    raise UserError(f"{description}: the loss became {value.item()}; try a smaller --lr")
                value.backward()
                opt.step()
                if after_step is not None:
                    after_step()
                losses.append(value.item())
                if steps_per_epoch:
                    advance(1)
            if not steps_per_epoch:
                advance(1)
            history.append(float(np.mean(losses)) if losses else float("nan"))
    model.eval()
    return history


def fit_supervised(model: nn.Module, x: np.ndarray, y: np.ndarray, *, epochs: int, batch_size: int, lr: float,
                   seed: int, optimizer: str = "adam", optimizer_options: dict[str, Any] | None = None,
                   shuffle: bool = True, loss: Callable[[nn.Module, Batch], torch.Tensor] = cross_entropy,
                   after_step: Callable[[], None] | None = None, trainable: nn.Module | None = None,
                   progress: Progress = SILENT, description: str = "training") -> list[float]:
    """Train ``model`` (or only its submodule ``trainable``) on (x, y) (labels, or per-class probabilities
    for a suitable ``loss``), shuffled each epoch by ``seed`` unless ``shuffle`` is False."""
    rng = np.random.default_rng(seed) if shuffle else None
    return fit(model, lambda epoch: batches(x, y, batch_size, rng), epochs=epochs, lr=lr, optimizer=optimizer,
               optimizer_options=optimizer_options, loss=loss, after_step=after_step,
               steps_per_epoch=-(-len(y) // batch_size), trainable=trainable, progress=progress,
               description=description)


def accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    """The fraction of ``x`` that ``model.predict`` labels as ``y`` (NaN for no samples)."""
    if len(y) == 0:
        return float("nan")
    return float(np.mean(model.predict(x) == y))
