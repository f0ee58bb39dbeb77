"""White-box access to a model's parameters, for schemes that write their watermark into the weights.

The suspect is any model whose format offers ``parameter_arrays()`` (a torch
:class:`~wmtool.classifier.Classifier`, an ONNX model's initializers); tensors are found by name, or else
by a shape only one tensor has.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wmtool.errors import UserError
from wmtool.options import Option


def parameter_arrays(model: Any) -> dict[str, np.ndarray]:
    """The named floating-point parameter tensors of ``model`` (any model whose format offers
    ``parameter_arrays()``: a torch model's state dict, an ONNX model's initializers), a leading ``net.``
    stripped."""
    if not hasattr(model, "parameter_arrays"):
        raise UserError("this verifier reads the suspect's parameters; its format offers none (black box only)")
    return {name.removeprefix("net."): np.asarray(a) for name, a in model.parameter_arrays().items()
            if np.issubdtype(np.asarray(a).dtype, np.floating)}


def find_tensor(arrays: dict[str, np.ndarray], name: str, shape: tuple[int, ...]) -> np.ndarray:
    """The tensor ``name`` of ``shape``; if the name is absent, the only tensor of that shape (an ONNX export
    may rename it, and may store a linear layer's weight transposed)."""
    if name in arrays and tuple(arrays[name].shape) == shape:
        return arrays[name].astype(np.float32, copy=False)
    if name in arrays:
        raise UserError(f"the suspect's tensor {name} has shape {tuple(arrays[name].shape)}, the key's {shape}: "
                        "not the marked model's architecture")
    same = [a for a in arrays.values() if tuple(a.shape) == shape]
    if len(same) == 1:
        return same[0].astype(np.float32, copy=False)
    flipped = [a for a in arrays.values() if a.ndim == 2 and tuple(a.shape[::-1]) == shape]
    if not same and len(flipped) == 1:
        return flipped[0].T.astype(np.float32)
    raise UserError(f"the suspect has no tensor {name} of shape {shape} (its layers do not match the marked model's)")


def largest_weight(model: Any) -> str:
    """The name of the largest weight matrix or kernel of a torch model (the default watermark carrier)."""
    candidates = [(p.numel(), name) for name, p in model.net.named_parameters() if p.ndim >= 2]
    if not candidates:
        raise UserError("the model has no weight matrix to carry the watermark")
    return max(candidates)[1]


def named_parameter(model: Any, name: str) -> Any:
    """The torch parameter ``name`` of a Classifier, or one clear error listing the names."""
    parameters = dict(model.net.named_parameters())
    if name not in parameters:
        raise UserError(f"the model has no parameter {name!r}; it has: {', '.join(parameters)}")
    return parameters[name]


PENALTY_OPTIONS = (
    Option("tensor", str, None, "parameter that carries the bits (default: the largest weight matrix)"),
    Option("clean_epochs", int, 10, "epochs of plain training first, when starting from scratch", min=0),
    Option("epochs", int, 5, "epochs of training with the watermark term", min=0),
    Option("batch_size", int, 128, "batch size", min=1),
    Option("optimizer", str, "adam", "optimizer (the ingrain paper trains its MLP with adadelta, lr 0.1)",
           choices=("adam", "adadelta", "sgd")),
    Option("lr", float, 1e-3, "learning rate", min=0.0),
)


def bit_positions(size: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` distinct flat positions among ``size`` parameters, drawn by ``rng``."""
    if count > size:
        raise UserError(f"{count} bits do not fit a tensor of {size} parameters; choose --bits ≤ {size}")
    return np.sort(rng.choice(size, size=count, replace=False)).astype(np.int64)


def train_with_penalty(job: Any, parameter: Any, penalty: Any, description: str) -> None:
    """Plain training first when the model is fresh, then cross-entropy plus ``penalty(parameter)``."""
    from wmtool.training import cross_entropy

    clean_training(job)
    _fit(job, job.params["epochs"], description, loss=lambda net, batch: cross_entropy(net, batch) + penalty(parameter))


def clean_training(job: Any) -> None:
    """Plain training for ``--clean-epochs`` when the job's model is fresh (not when it is pretrained)."""
    if not job.pretrained and job.params["clean_epochs"]:
        _fit(job, job.params["clean_epochs"], "clean training")


def _fit(job: Any, epochs: int, description: str, **extra: Any) -> None:
    from wmtool.training import fit_supervised

    p = job.params
    fit_supervised(job.model, job.data.x, job.data.y, epochs=epochs, batch_size=p["batch_size"], lr=p["lr"],
                   seed=job.seed, optimizer=p["optimizer"], progress=job.progress, description=description, **extra)


def choose_bits(job: Any, rng: np.random.Generator, positions: bool = True) -> tuple[str, Any, np.ndarray, np.ndarray]:
    """The carrier parameter (``--tensor`` or the largest weight), the flat positions of the bits in it
    (when ``positions``) and a random bit string of ``--bits`` bits, all drawn by ``rng``."""
    p = job.params
    name = p["tensor"] or largest_weight(job.model)
    parameter = named_parameter(job.model, name)
    where = bit_positions(parameter.numel(), p["bits"], rng) if positions else np.zeros(0, dtype=np.int64)
    return name, parameter, where, rng.integers(0, 2, p["bits"]).astype(np.uint8)


def bits_outcome(job: Any, decoder: str, name: str, parameter: Any, arrays: dict[str, np.ndarray]) -> Any:
    """The outcome of a W:* embedding: the model, the key's arrays (with the anchors that undo an obfuscation,
    :mod:`wmtool.alignment`, on probes drawn from the key's seed), chance (1/2) as the null rate, and the parameters the ``bits`` verifier reads
    (decoder, tensor name and shape)."""
    from wmtool.alignment import anchors
    from wmtool.jobs import EmbedOutcome
    from wmtool.keys import NullRate

    tensor = job.model.file_name(name)
    how = {"decoder": decoder, "tensor": tensor, "shape": list(parameter.shape), "seed": job.seed}
    arrays = {**arrays, **anchors(job.model, tensor, job.seed)}
    return EmbedOutcome(job.model, arrays, NullRate(0.5, "chance"), {**job.params, **how})


def regenerate_bits(key: Any) -> dict[str, np.ndarray]:
    """A W:* key's positions and bits as its seed generates them (the order of :func:`choose_bits`)."""
    p = key.params
    if p.get("seed") is None:
        return {}
    rng = np.random.default_rng(p["seed"])
    positions = bit_positions(int(np.prod([int(v) for v in p["shape"]])), p["bits"], rng)
    return {"positions": positions, "bits": rng.integers(0, 2, p["bits"]).astype(np.uint8)}
