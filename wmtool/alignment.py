"""Undoing structural obfuscation: a network whose hidden units were permuted and rescaled through ReLUs
(and padded with dummy units) computes the same function with other parameters, which defeats weights-based
watermarks read at fixed positions. A W:* key therefore records **anchors**: the marked model's activations
of the input and output units of the watermarked layer on seeded noise probes. At verification the suspect's
units are matched to the anchors by the cosine similarity of their activations (a linear assignment, so
extra units are left out), their scales are read off the matched activations, and the watermarked tensor is
rebuilt in the marked model's unit order and scale before its bits are decoded.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np

from wmtool.errors import UserError

PROBES = 64
"""Noise probes per key: 64 activations per unit."""


def probes(input_shape: tuple[int, ...], seed: int) -> np.ndarray:
    """The seeded uniform-noise probe images (canonical, in [0, 1])."""
    return np.random.default_rng(seed).random((PROBES, *input_shape), dtype=np.float32)


@contextmanager
def _layer_io(net: Any, module_name: str) -> Iterator[dict[str, Any]]:
    """Capture the input and output of ``module_name`` during the forward passes inside the block."""
    modules = dict(net.named_modules())
    if module_name not in modules:
        raise UserError(f"the suspect has no layer {module_name!r} to align")
    seen: dict[str, Any] = {}

    def hook(module: Any, args: Any, output: Any) -> None:
        seen["in"], seen["out"] = args[0].detach(), output.detach()

    handle = modules[module_name].register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def _per_unit(activation: Any) -> np.ndarray:
    """probes × units: channels of a conv activation averaged over space, features of a linear one."""
    array = activation.float().cpu().numpy()
    if array.ndim > 2:
        array = array.mean(axis=tuple(range(2, array.ndim))) if array.ndim == 4 else array.mean(axis=1)
    return array


def unit_activations(model: Any, tensor: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, outputs) of the layer holding ``tensor`` (a file name, e.g. ``hidden.1.weight``) on the
    probes, each probes × units, for a torch model (a :class:`~wmtool.classifier.Classifier`)."""
    import torch

    if not hasattr(model, "net"):
        raise UserError("aligning units runs the suspect in torch; this suspect's format is black-box here")
    x = torch.from_numpy(probes(tuple(model.card.input_shape), seed)).to(model.device)
    model.eval()
    with torch.no_grad(), _layer_io(model.net, tensor.rsplit(".", 1)[0]) as seen:
        model(x)
    return _per_unit(seen["in"]), _per_unit(seen["out"])


def anchors(model: Any, tensor: str, seed: int) -> dict[str, np.ndarray]:
    """The key arrays ``anchor_in`` and ``anchor_out`` (float16) of the marked ``model``."""
    inputs, outputs = unit_activations(model, tensor, seed)
    return {"anchor_in": inputs.astype(np.float16), "anchor_out": outputs.astype(np.float16)}


def _match(anchor: np.ndarray, suspect: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each anchor unit, the suspect unit whose activations point the same way (a linear assignment
    on cosine similarity), and the positive scale suspect ≈ scale · anchor (1 where a unit is silent)."""
    from scipy.optimize import linear_sum_assignment

    if suspect.shape[1] < anchor.shape[1]:
        raise UserError(f"the suspect's layer has {suspect.shape[1]} units, the marked model's {anchor.shape[1]}")
    a, s = anchor.astype(np.float64), suspect.astype(np.float64)
    a_norm, s_norm = np.linalg.norm(a, axis=0), np.linalg.norm(s, axis=0)
    similarity = (a / np.maximum(a_norm, 1e-12)).T @ (s / np.maximum(s_norm, 1e-12))
    ties = min(similarity.shape)
    similarity[np.arange(ties), np.arange(ties)] += 1e-6  # silent units (all-zero activations) stay in place
    rows, columns = linear_sum_assignment(similarity, maximize=True)
    order = columns[np.argsort(rows)]
    scale = np.where(a_norm > 1e-9, np.sum(a * s[:, order], axis=0) / np.maximum(a_norm ** 2, 1e-12), 1.0)
    scale = np.where(scale > 0, scale, 1.0)
    return order, np.where(np.abs(scale - 1.0) < 1e-2, 1.0, scale)  # float16 anchors: 1 within their precision


def align(weight: np.ndarray, suspect_in: np.ndarray, suspect_out: np.ndarray, anchor_in: np.ndarray,
          anchor_out: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """The suspect's ``weight`` (out × in, or out × in × kh × kw) in the marked model's unit order and scale,
    with how far that moved it (units out of place, the spread of the scales)."""
    rows, row_scale = _match(anchor_out, suspect_out)
    columns, column_scale = _match(anchor_in, suspect_in)
    picked = weight[rows][:, columns]
    shape = (-1, 1) + (1,) * (weight.ndim - 2)
    aligned = picked / row_scale.reshape(shape) * column_scale.reshape((1, -1) + (1,) * (weight.ndim - 2))
    moved = int(np.sum(rows != np.arange(len(rows))) + np.sum(columns != np.arange(len(columns))))
    scales = np.concatenate([row_scale, column_scale])
    return aligned.astype(np.float32), {"units_moved": moved, "units": len(rows) + len(columns),
                                        "scale_range": [float(scales.min()), float(scales.max())]}
