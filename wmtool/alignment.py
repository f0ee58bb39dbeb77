"""Undoing structural obfuscation: a network whose hidden units were permuted and rescaled through ReLUs
(and padded with dummy units) computes the same function with other parameters, which defeats weights-based
watermarks read at fixed positions. A W:* key therefore records **anchors**: the marked model's activations
of the input and output units of the watermarked layer on seeded noise probes. At verification the suspect's
units are matched to the anchors by the correlation of their activations (a linear assignment, so extra
units are left out), their scales are read off the matched activations, and the watermarked tensor is
rebuilt in the marked model's unit order and scale before its bits are decoded. A suspect whose units stand
where the anchors' do, or whose units match none of them well (an independent model), is left as it is.
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


def plain_layer(net: Any, tensor: str) -> Any:
    """The Linear or ungrouped Conv2d whose ``weight`` is ``tensor``, or None (no units to align: another
    kind of layer, a grouped convolution, or a name that is no module's, as in a model converted from ONNX)."""
    import torch

    module_name, _, parameter = tensor.rpartition(".")
    module = dict(net.named_modules()).get(module_name)
    if parameter != "weight" or module is None:
        return None
    if isinstance(module, torch.nn.Linear) or (isinstance(module, torch.nn.Conv2d) and module.groups == 1):
        return module
    return None


@contextmanager
def _layer_io(module: Any) -> Iterator[dict[str, Any]]:
    """Capture the input and output of ``module`` during the forward passes inside the block."""
    seen: dict[str, Any] = {}

    def hook(module: Any, args: Any, output: Any) -> None:
        seen["in"], seen["out"] = args[0].detach(), output.detach()

    handle = module.register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def _per_unit(activation: Any, channel_axis: int) -> np.ndarray:
    """probes × units: a convolution's channels (axis 1) or a linear layer's features (the last axis),
    averaged over every other axis but the batch."""
    array = np.moveaxis(activation.float().cpu().numpy(), channel_axis, 1)
    return array.reshape(array.shape[0], array.shape[1], -1).mean(axis=2)


def unit_activations(model: Any, tensor: str, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(inputs, outputs) of the layer holding ``tensor`` (a file name, e.g. ``hidden.1.weight``) on the
    probes, each probes × units, for a torch model (a :class:`~wmtool.classifier.Classifier`); None when
    the model does not run in torch or the tensor is not a plain layer's weight (:func:`plain_layer`)."""
    import torch

    module = plain_layer(model.net, tensor) if hasattr(model, "net") else None
    if module is None:
        return None
    x = torch.from_numpy(probes(tuple(model.card.input_shape), seed)).to(model.device)
    model.eval()
    with torch.no_grad(), _layer_io(module) as seen:
        model(x)
    axis = 1 if isinstance(module, torch.nn.Conv2d) else -1
    return _per_unit(seen["in"], axis), _per_unit(seen["out"], axis)


def anchors(model: Any, tensor: str, seed: int) -> dict[str, np.ndarray]:
    """The key arrays ``anchor_in`` and ``anchor_out`` (float16) of the marked ``model``, or none when its
    watermarked tensor is not a plain layer's weight."""
    found = unit_activations(model, tensor, seed)
    if found is None:
        return {}
    return {"anchor_in": found[0].astype(np.float16), "anchor_out": found[1].astype(np.float16)}


def _in_place(suspect_in: np.ndarray, suspect_out: np.ndarray, anchor_in: np.ndarray, anchor_out: np.ndarray) -> bool:
    """Whether the suspect's units already stand where the anchors' do (same counts, and each unit's
    activations point the anchor's way: mean cosine ≥ 0.99), so that nothing needs aligning."""
    def cosine(a: np.ndarray, s: np.ndarray) -> float:
        a, s = a.astype(np.float64), s.astype(np.float64)
        live = np.linalg.norm(a, axis=0) > 1e-9
        if not live.any():
            return 1.0
        a, s = a[:, live], s[:, live]
        return float(np.mean(np.sum(a * s, axis=0) / np.maximum(np.linalg.norm(a, axis=0) * np.linalg.norm(s, axis=0),
                                                                 1e-12)))

    return (suspect_in.shape == anchor_in.shape and suspect_out.shape == anchor_out.shape
            and cosine(anchor_in, suspect_in) >= 0.99 and cosine(anchor_out, suspect_out) >= 0.99)


MATCHED = 0.95
"""Mean correlation of matched output units above which a suspect counts as a unit-permuted, rescaled
copy and is aligned; an independent model's units match far worse and its tensor is read as it stands."""


def _match(anchor: np.ndarray, suspect: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """For each anchor unit, the suspect unit whose activations correlate best with it (a linear assignment),
    the positive scale suspect ≈ scale · anchor (1 where a unit is silent), and the mean matched correlation."""
    from scipy.optimize import linear_sum_assignment

    if suspect.shape[1] < anchor.shape[1]:
        raise UserError(f"the suspect's layer has {suspect.shape[1]} units, the marked model's {anchor.shape[1]}")
    # both sides at the anchors' float16 precision and correlations to 4 decimals, so that the matching
    # does not hang on the last bits of a forward pass (thread counts, devices); ties keep units in place
    a, s = anchor.astype(np.float16).astype(np.float64), suspect.astype(np.float16).astype(np.float64)
    ac, sc = a - a.mean(axis=0), s - s.mean(axis=0)
    similarity = np.round((ac / np.maximum(np.linalg.norm(ac, axis=0), 1e-12)).T
                          @ (sc / np.maximum(np.linalg.norm(sc, axis=0), 1e-12)), 4)
    ties = min(similarity.shape)
    similarity[np.arange(ties), np.arange(ties)] += 1e-6
    rows, columns = linear_sum_assignment(similarity, maximize=True)
    order = columns[np.argsort(rows)]
    a_norm = np.linalg.norm(a, axis=0)
    scale = np.where(a_norm > 1e-9, np.sum(a * s[:, order], axis=0) / np.maximum(a_norm ** 2, 1e-12), 1.0)
    scale = np.where(scale > 0, scale, 1.0)
    matched = float(np.mean(similarity[np.arange(len(order)), order]))
    return order, np.where(np.abs(scale - 1.0) < 1e-2, 1.0, scale), matched  # float16: 1 within its precision


def align(weight: np.ndarray, suspect_in: np.ndarray, suspect_out: np.ndarray, anchor_in: np.ndarray,
          anchor_out: np.ndarray) -> tuple[np.ndarray, dict[str, Any]] | None:
    """The suspect's ``weight`` (out × in, or out × in × kh × kw) in the marked model's unit order and scale,
    with how far that moved it (units out of place, the spread of the scales); None when nothing is to be
    aligned: the units already stand in place, or the suspect's output units do not match the anchors'
    (mean correlation under :data:`MATCHED`)."""
    if _in_place(suspect_in, suspect_out, anchor_in, anchor_out):
        return None
    rows, row_scale, matched = _match(anchor_out, suspect_out)
    if matched < MATCHED:
        return None
    columns, column_scale, _ = _match(anchor_in, suspect_in)
    moved = int(np.sum(rows != np.arange(len(rows))) + np.sum(columns != np.arange(len(columns))))
    if not moved and np.all(row_scale == 1.0) and np.all(column_scale == 1.0):
        return None
    picked = weight[rows][:, columns]
    shape = (-1, 1) + (1,) * (weight.ndim - 2)
    aligned = picked / row_scale.reshape(shape) * column_scale.reshape((1, -1) + (1,) * (weight.ndim - 2))
    scales = np.concatenate([row_scale, column_scale])
    return aligned.astype(np.float32), {"units_moved": moved, "units": len(rows) + len(columns),
                                        "matched_correlation": round(matched, 4),
                                        "scale_range": [float(scales.min()), float(scales.max())]}
