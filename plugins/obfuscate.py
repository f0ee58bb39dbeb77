"""Attack ``obfuscate``: structural obfuscation (Yan et al., USENIX Security 2023) — the same function with
other parameters, against watermarks read from fixed positions in the weights.

For every hidden layer whose units pass through a ReLU (with dropout or max-pooling between, which commute
with it) into exactly one next layer, the attack
- **permutes** the units (rows of the layer, the matching columns of the next),
- **rescales** each unit by a positive factor c (its row and bias times c, its column in the next layer
  divided by c: ReLU(c·z) = c·ReLU(z)), factors log-uniform in [1/scale, scale],
- adds ``dummy`` **units** per layer with random incoming weights and zero outgoing weights.
Every output stays equal up to float rounding. Layers are found by tracing the model (torch.fx); a
flatten between a convolution and a linear layer moves each channel's block of features together.
Dummy units widen the layers: the result is written as ONNX (or as safetensors when the architecture
takes a single ``width`` that all widened layers share, as ``mlp``).
"""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np

from wmtool.api import Attack, AttackJob, AttackOutcome, Option, UserError, hookimpl

WMTOOL_API_VERSION = 1

OPTIONS = (
    Option("permute", bool, True, "permute the hidden units"),
    Option("scale", float, 4.0, "rescale each unit by a factor in [1/scale, scale] (1: no rescaling)", min=1.0),
    Option("dummy", int, 0, "dummy units added to every hidden layer (widens it)", min=0),
)

PASS_THROUGH = ("relu", "dropout", "max_pool2d", "flatten", "MaxPool2d", "Dropout", "ReLU", "Flatten")


def hidden_pairs(net) -> list[tuple[str, str, bool]]:
    """(layer, next layer, flattened between) for each Linear/Conv2d whose output reaches exactly one
    Linear/Conv2d through a ReLU and unit-wise operations only."""
    import torch
    from torch import fx

    try:
        graph = fx.symbolic_trace(net).graph
    except Exception as exc:
        raise UserError(f"obfuscate traces the model with torch.fx and could not: {str(exc).splitlines()[0]}") \
            from None
    modules = dict(net.named_modules())

    def kind(node) -> str:
        if node.op == "call_module":
            module = modules[node.target]
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                return "layer"
            return type(module).__name__
        if node.op in ("call_function", "call_method"):
            return getattr(node.target, "__name__", str(node.target))
        return node.op

    pairs = []
    for node in graph.nodes:
        if kind(node) != "layer":
            continue
        current, seen_relu, flattened = node, False, False
        while len(current.users) == 1:
            nxt = next(iter(current.users))
            step = kind(nxt)
            if step == "layer":
                if seen_relu:
                    pairs.append((node.target, nxt.target, flattened))
                break
            if step not in PASS_THROUGH:
                break
            seen_relu |= step in ("relu", "ReLU")
            flattened |= step in ("flatten", "Flatten")
            current = nxt
    return pairs


def _transform(net, pairs, p: dict, rng: np.random.Generator) -> dict[str, int]:
    """Apply permutation, scaling and dummy units in place; return each widened layer's new size."""
    import torch

    modules = dict(net.named_modules())
    sizes = {}
    with torch.no_grad():
        for name, next_name, flattened in pairs:
            layer, following = modules[name], modules[next_name]
            units = layer.weight.shape[0]
            group = following.weight.shape[1] // units if flattened else 1  # features per unit after a flatten
            order = rng.permutation(units) if p["permute"] else np.arange(units)
            factor = np.exp(rng.uniform(-math.log(p["scale"]), math.log(p["scale"]), units))
            scale = torch.as_tensor(factor[order], dtype=layer.weight.dtype)
            index = torch.as_tensor(order)
            weight = layer.weight[index] * scale.reshape(-1, *([1] * (layer.weight.dim() - 1)))
            bias = layer.bias[index] * scale if layer.bias is not None else None
            columns = (index[:, None] * group + torch.arange(group)).reshape(-1)
            per_column = scale.repeat_interleave(group)
            incoming = following.weight[:, columns] / per_column.reshape(1, -1, *([1] * (following.weight.dim() - 2)))
            if p["dummy"]:
                extra = torch.randn(p["dummy"], *weight.shape[1:], dtype=weight.dtype) * weight.std()
                weight = torch.cat([weight, extra])
                bias = torch.cat([bias, torch.randn(p["dummy"], dtype=bias.dtype) * bias.std()]) if bias is not None \
                    else None
                zeros = torch.zeros(incoming.shape[0], p["dummy"] * group, *incoming.shape[2:], dtype=incoming.dtype)
                incoming = torch.cat([incoming, zeros], dim=1)
            _replace(net, name, layer, weight, bias, out=True)
            _replace(net, next_name, modules[next_name], incoming, following.bias, out=False)
            modules = dict(net.named_modules())
            sizes[name] = weight.shape[0]
    return sizes


def _replace(net, name: str, module, weight, bias, out: bool) -> None:
    """Put ``weight`` and ``bias`` into module ``name``, resized (a new Linear/Conv2d) when the shape changed."""
    import torch

    if tuple(weight.shape) != tuple(module.weight.shape):
        if isinstance(module, torch.nn.Linear):
            new = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        else:
            new = torch.nn.Conv2d(weight.shape[1], weight.shape[0], module.kernel_size, module.stride, module.padding,
                                  module.dilation, module.groups, bias is not None, module.padding_mode)
        parent, _, child = name.rpartition(".")
        setattr(net.get_submodule(parent) if parent else net, child, new.to(weight.device))
        module = new
    module.weight.copy_(weight)
    if bias is not None:
        module.bias.copy_(bias)


def run(job: AttackJob) -> AttackOutcome:
    """The victim with its hidden units permuted, rescaled and padded: the same function."""
    p = job.params
    victim = job.victim
    net = copy.deepcopy(victim.net).cpu().eval()
    pairs = hidden_pairs(net)
    if not pairs:
        raise UserError(f"architecture {victim.card.arch} has no hidden layer followed by a ReLU and one next layer "
                        "that obfuscate knows how to rewrite")
    sizes = _transform(net, pairs, p, np.random.default_rng(job.seed))
    card = victim.card
    widths = set(sizes.values())
    if p["dummy"] and "width" in card.arch_args and len(widths) == 1:
        card = dataclasses.replace(card, arch_args={**card.arch_args, "width": widths.pop()})
    obfuscated = type(victim)(net, card).to(job.device).eval()
    return AttackOutcome(obfuscated, queries=0, details={"layers": [name for name, _, _ in pairs],
                                                         "dummy": p["dummy"], "scale": p["scale"]})


@hookimpl
def register_attacks(register):
    """Register ``obfuscate``."""
    register(Attack("obfuscate", "structural obfuscation: permute, rescale through ReLUs and pad hidden units — "
                    "the same function, other parameters (USENIX Security 2023)", run, OPTIONS, white_box=True))
