"""Attack ``query-filter``: a deployed-model defence that answers suspicious queries with a random label
(EWE §6.2, Table 2: LOF and Isolation Forest on the last hidden layer's activations).

The detector is fitted by scikit-learn on the activations of the defender's clean data, then written into
the model itself: the wrapped model (architecture ``query-filter``) computes the victim's logits and the
detector's score in one forward pass, and replaces the logits of a query scored as an outlier by a fixed
random projection of the input (a label that looks random but is reproducible). So the written model is a
plain safetensors or ONNX file that any tool can query. LOF keeps its reference activations with their
k-distances and local reachability densities; Isolation Forest keeps its trees as padded node arrays.
"""

from __future__ import annotations

import json
import math

import numpy as np

from wmtool.api import Architecture, Attack, AttackJob, AttackOutcome, ModelCard, Option, UserError, build_model, \
    hookimpl, json_object

WMTOOL_API_VERSION = 1
DETECTORS = ("lof", "isolation-forest")

OPTIONS = (
    Option("detector", str, "lof", "outlier detector on the hidden activations", choices=DETECTORS),
    Option("layer", str, None, "layer whose output is scored (default: the architecture's last hidden layer)"),
    Option("contamination", float, 0.05, "share of the clean data the detector is set to flag", min=1e-4, max=0.5),
    Option("references", int, 2000, "LOF: clean activations kept as references", min=2),
    Option("neighbours", int, 20, "LOF: neighbours per query", min=1),
    Option("trees", int, 100, "Isolation Forest: number of trees", min=1),
    Option("watermark_key", str, None, "a key file: report the share of its watermark inputs the filter catches"),
)


def average_path_length(n: np.ndarray) -> np.ndarray:
    """c(n), the mean path length of an unsuccessful search in a binary search tree of n points (Liu et al.)."""
    n = np.asarray(n, dtype=np.float64)
    safe = np.maximum(n, 3.0)
    harmonic = 2.0 * (np.log(safe - 1.0) + np.euler_gamma) - 2.0 * (safe - 1.0) / safe
    return np.where(n <= 1, 0.0, np.where(n == 2, 1.0, harmonic))


def _filtered_classifier(input_shape, num_classes, inner, inner_args, layer, detector, features, references,
                         neighbours, trees, nodes, depth, registry):
    """The victim's architecture wrapped with a detector whose fitted state lives in buffers."""
    import torch
    from torch import nn

    class FilteredClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            card = ModelCard(inner, tuple(input_shape), num_classes, json_object(inner_args, "inner_args"))
            self.inner = build_model(registry, card).net
            modules = dict(self.inner.named_modules())
            if layer not in modules:
                raise UserError(f"architecture {inner} has no layer {layer!r}")
            self._hidden: list[torch.Tensor] = []
            modules[layer].register_forward_hook(lambda module, args, output: self._hidden.append(output))
            self.register_buffer("scramble", torch.zeros(math.prod(input_shape), num_classes))
            self.register_buffer("offset", torch.zeros(()))
            if detector == "lof":
                self.register_buffer("reference", torch.zeros(references, features))
                self.register_buffer("k_distance", torch.zeros(references))
                self.register_buffer("lrd", torch.zeros(references))
            else:
                for name, dtype in (("feature", torch.long), ("left", torch.long), ("right", torch.long),
                                    ("threshold", torch.float32), ("leaf_length", torch.float32)):
                    self.register_buffer(name, torch.zeros(trees, nodes, dtype=dtype))
                self.register_buffer("normaliser", torch.ones(()))

        def score(self, hidden: torch.Tensor) -> torch.Tensor:
            """scikit-learn's decision_function: negative for outliers."""
            if detector == "lof":
                distances = torch.cdist(hidden, self.reference)
                nearest, index = distances.topk(neighbours, dim=1, largest=False)
                reach = torch.maximum(nearest, self.k_distance[index])
                density = 1.0 / (reach.mean(dim=1) + 1e-10)
                return -(self.lrd[index].mean(dim=1) / density) - self.offset
            rows = torch.arange(trees, device=hidden.device) * nodes
            node = torch.zeros(hidden.shape[0], trees, dtype=torch.long, device=hidden.device)
            steps = torch.zeros(hidden.shape[0], trees, device=hidden.device)
            for _ in range(depth):
                flat = node + rows
                leaf = self.left.flatten()[flat] < 0
                value = hidden.gather(1, self.feature.flatten()[flat])
                child = torch.where(value <= self.threshold.flatten()[flat], self.left.flatten()[flat],
                                    self.right.flatten()[flat])
                node = torch.where(leaf, node, child)
                steps = steps + (~leaf).float()
            lengths = steps + self.leaf_length.flatten()[node + rows]
            return -torch.pow(2.0, -lengths.mean(dim=1) / self.normaliser) - self.offset

        def inner_and_outliers(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """The wrapped classifier's logits and which queries the detector scores as outliers."""
            self._hidden.clear()
            logits = self.inner(x)
            return logits, self.score(self._hidden[-1].flatten(1)) < 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            logits, outlier = self.inner_and_outliers(x)
            return torch.where(outlier[:, None], x.flatten(1) @ self.scramble, logits)

    return FilteredClassifier()


def hidden_activations(victim, layer: str, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """The flattened output of ``layer`` for every image of ``x`` (float32)."""
    import torch

    from wmtool.api import capture

    device = next(victim.parameters()).device
    chunks = []
    victim.eval()
    with torch.no_grad(), capture(victim, [layer]) as outputs:
        for start in range(0, len(x), batch_size):
            victim(torch.from_numpy(x[start:start + batch_size]).to(device))
            chunks.append(outputs[layer].flatten(1).float().cpu().numpy())
    return np.concatenate(chunks)


def _fit_lof(features: np.ndarray, p: dict, seed: int) -> tuple[dict, dict]:
    from sklearn.neighbors import LocalOutlierFactor

    rng = np.random.default_rng(seed)
    chosen = features[np.sort(rng.permutation(len(features))[:p["references"]])]
    k = min(p["neighbours"], len(chosen) - 1)
    lof = LocalOutlierFactor(n_neighbors=k, contamination=p["contamination"], novelty=True).fit(chosen)
    distances, index = lof.kneighbors()  # each reference's neighbours among the others
    k_distance = distances[:, -1]
    lrd = 1.0 / (np.maximum(distances, k_distance[index]).mean(axis=1) + 1e-10)
    state = {"reference": chosen, "k_distance": k_distance, "lrd": lrd, "offset": np.float32(lof.offset_)}
    return state, {"references": len(chosen), "neighbours": k, "trees": 1, "nodes": 1, "depth": 0}


def _fit_isolation_forest(features: np.ndarray, p: dict, seed: int) -> tuple[dict, dict]:
    from sklearn.ensemble import IsolationForest

    forest = IsolationForest(n_estimators=p["trees"], contamination=p["contamination"], random_state=seed)
    forest.fit(features)
    nodes = max(tree.tree_.node_count for tree in forest.estimators_)
    shape = (len(forest.estimators_), nodes)
    feature, left, right = np.zeros(shape, np.int64), np.full(shape, -1, np.int64), np.full(shape, -1, np.int64)
    threshold, leaf_length = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    for t, (tree, columns) in enumerate(zip(forest.estimators_, forest.estimators_features_)):
        inner, count = tree.tree_, tree.tree_.node_count
        split = inner.children_left >= 0
        feature[t, :count] = np.where(split, np.asarray(columns)[np.maximum(inner.feature, 0)], 0)
        left[t, :count], right[t, :count] = inner.children_left, inner.children_right
        threshold[t, :count] = inner.threshold
        leaf_length[t, :count] = np.where(split, 0.0, average_path_length(inner.n_node_samples))
    state = {"feature": feature, "left": left, "right": right, "threshold": threshold, "leaf_length": leaf_length,
             "normaliser": np.float32(average_path_length(np.array([forest.max_samples_]))[0]),
             "offset": np.float32(forest.offset_)}
    depth = max(tree.tree_.max_depth for tree in forest.estimators_)
    return state, {"references": 1, "neighbours": 1, "trees": shape[0], "nodes": nodes, "depth": depth}


def run(job: AttackJob) -> AttackOutcome:
    """Fit the detector on the clean data's hidden activations and write it into the wrapped model."""
    import dataclasses

    import torch

    from wmtool.api import load_key

    p, victim = job.params, job.victim
    layers = job.registry.layers_of(victim.card.arch)
    layer = p["layer"] or (layers[-1] if layers else None)
    if layer is None:
        raise UserError(f"architecture {victim.card.arch} names no hidden layers: give --layer")
    features = hidden_activations(victim, layer, job.data.x)
    fit = _fit_lof if p["detector"] == "lof" else _fit_isolation_forest
    state, sizes = fit(features, p, job.seed)
    args = {"inner": victim.card.arch, "inner_args": json.dumps(victim.card.arch_args), "layer": layer,
            "detector": p["detector"], "features": features.shape[1], **sizes}
    wrapped = build_model(job.registry, dataclasses.replace(victim.card, arch="query-filter", arch_args=args,
                                                            code_sha256=None))
    generator = torch.Generator().manual_seed(job.seed)
    buffers = {name: torch.as_tensor(np.asarray(value)) for name, value in state.items()}
    buffers["scramble"] = torch.randn(wrapped.net.scramble.shape, generator=generator)
    inner = {f"inner.{name}": tensor for name, tensor in victim.net.state_dict().items()}
    wrapped.net.load_state_dict({**inner, **buffers}, strict=True)
    wrapped.to(job.device).eval()
    flagged = _flagged_share(wrapped, job.data.x)
    details = {"detector": p["detector"], "layer": layer, "clean_flagged": flagged}
    if p["watermark_key"]:
        details["watermark_caught"] = _flagged_share(wrapped, load_key(p["watermark_key"]).array("inputs"))
    return AttackOutcome(wrapped, queries=0, details=details)


def _flagged_share(wrapped, x: np.ndarray) -> float:
    """The share of ``x`` the wrapped model's detector scores as outliers."""
    import torch

    device = next(wrapped.parameters()).device
    flagged = []
    with torch.no_grad():
        for start in range(0, len(x), 512):
            batch = torch.from_numpy(np.asarray(x[start:start + 512], np.float32)).to(device)
            flagged.append(wrapped.net.inner_and_outliers(batch)[1].cpu().numpy())
    return float(np.mean(np.concatenate(flagged)))


@hookimpl
def register_architectures(register):
    """Register ``query-filter``, the architecture of a filtered model."""
    register(Architecture(
        "query-filter", "a classifier wrapped with an outlier detector that answers outliers with random labels",
        _filtered_classifier,
        options=(Option("inner", str, "ewe-cnn", "the wrapped classifier's architecture"),
                 Option("inner_args", str, "{}", "JSON object of its arguments"),
                 Option("layer", str, "fc1", "the layer whose output is scored"),
                 Option("detector", str, "lof", "outlier detector", choices=DETECTORS),
                 Option("features", int, 1, "size of the scored activation", min=1),
                 Option("references", int, 1, "LOF references", min=1),
                 Option("neighbours", int, 1, "LOF neighbours", min=1),
                 Option("trees", int, 1, "Isolation Forest trees", min=1),
                 Option("nodes", int, 1, "Isolation Forest nodes per tree (padded)", min=1),
                 Option("depth", int, 0, "Isolation Forest depth", min=0)),
        needs_registry=True,
    ))


@hookimpl
def register_attacks(register):
    """Register ``query-filter``."""
    register(Attack("query-filter", "defence: outlier detector on hidden activations answers suspicious queries "
                    "with random labels (EWE Table 2)", run, OPTIONS, white_box=True))
