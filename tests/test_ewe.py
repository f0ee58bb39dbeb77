"""EWE: the soft-nearest-neighbour loss, its temperature, trigger placement, and embed → extract → verify."""

import math

import numpy as np
import pytest
import torch

from wmtool.model_card import ModelCard
from wmtool.models import build_model
from wmtool.plugins import get_registry
from wmtool.representations import capture, snnl
from wmtool_plugins.ewe import OPTIONS, Entangler, choose_pair, place_trigger


def snnl_float64(h: np.ndarray, groups: np.ndarray, temperature: float, metric: str) -> float:
    """Equation 1 written out with loops, in float64."""
    x = np.maximum(h.reshape(len(h), -1).astype(np.float64), 0)
    n = len(x)

    def distance(a, b):
        if metric == "cosine":
            return 1 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
        return float(((a - b) ** 2).sum())

    terms = []
    for i in range(n):
        same = sum(math.exp(-distance(x[i], x[j]) / temperature) for j in range(n) if j != i and groups[j] == groups[i])
        every = sum(math.exp(-distance(x[i], x[k]) / temperature) for k in range(n) if k != i)
        terms.append(-math.log(same / every))
    return float(np.mean(terms))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("temperature", [0.05, 1.0, 100.0])
def test_snnl_matches_a_direct_float64_implementation(metric, temperature):
    rng = np.random.default_rng(0)
    h = rng.normal(size=(12, 3, 2, 2)).astype(np.float32) + 0.3
    groups = np.array([0] * 6 + [1] * 6)
    ours = snnl(torch.from_numpy(h), torch.from_numpy(groups), temperature, metric).item()
    assert ours == pytest.approx(snnl_float64(h, groups, temperature, metric), rel=1e-4, abs=1e-5)


def test_snnl_is_stable_at_tiny_temperatures_and_measures_entanglement():
    separated = torch.cat([torch.ones(5, 4) * torch.tensor([1.0, 0, 0, 0]), torch.ones(5, 4) * torch.tensor([0, 1.0, 0, 0])])
    separated = separated + 0.01 * torch.rand(10, 4)
    groups = torch.tensor([0] * 5 + [1] * 5)
    value = snnl(separated, groups, 1e-4, "euclidean")
    assert torch.isfinite(value) and value.item() < 0.01  # clusters apart: low SNNL
    mixed = torch.rand(10, 4)
    assert snnl(mixed, groups, 1.0, "euclidean").item() > 0.3  # entangled: high SNNL


def test_self_gram_gradient():
    from wmtool.representations import SelfGram

    x = torch.rand(5, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(SelfGram.apply, (x,))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_snnl_gradient_matches_autograd_of_the_plain_formula(metric):
    """The Gram-matrix shortcuts (normalising after the product, one-product backward) change no gradient."""
    rng = np.random.default_rng(2)
    h = torch.from_numpy(rng.normal(size=(12, 40))).requires_grad_(True)
    groups = torch.tensor([0] * 6 + [1] * 6)
    (ours,) = torch.autograd.grad(snnl(h, groups, 0.5, metric), h)
    x = torch.relu(h)
    if metric == "cosine":
        unit = x / x.norm(dim=1, keepdim=True)
        distances = 1 - unit @ unit.T
    else:
        distances = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    eye = torch.eye(12, dtype=torch.bool)
    same = (groups[:, None] == groups[None, :]) & ~eye
    logits = -distances / 0.5
    plain = -(torch.logsumexp(logits.masked_fill(~same, float("-inf")), 1)
              - torch.logsumexp(logits.masked_fill(eye, float("-inf")), 1)).mean()
    (reference,) = torch.autograd.grad(plain, h)
    torch.testing.assert_close(ours, reference, rtol=1e-6, atol=1e-9)


def test_temperature_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    h = torch.from_numpy(rng.random((10, 6)).astype(np.float64))
    groups = torch.tensor([0] * 5 + [1] * 5)
    t = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(snnl(h, groups, t, "euclidean"), t)
    eps = 1e-6
    numeric = (snnl(h, groups, 0.7 + eps, "euclidean") - snnl(h, groups, 0.7 - eps, "euclidean")) / (2 * eps)
    assert grad.item() == pytest.approx(numeric.item(), rel=1e-5)


def ewe_params(**overrides):
    params = {option.name: option.default for option in OPTIONS}
    params.update(overrides)
    return params


def test_kappa_changes_the_gradients():
    """The public PyTorch port lost the SNNL term: make sure κ reaches the parameters' gradients."""
    torch.manual_seed(0)
    model = build_model(get_registry(), ModelCard("ewe-cnn", (1, 8, 8), 10))
    x = torch.rand(16, 1, 8, 8)
    batch = (x, torch.full((16,), 7), True)
    grads = []
    for kappa in (0.0, 32.0):
        entangler = Entangler(model, ["conv1", "conv2", "fc1"], ewe_params(kappa=kappa), "cpu")
        model.zero_grad()
        entangler.loss(model, batch).backward()
        grads.append(model.net.conv1.weight.grad.clone())
    assert not torch.allclose(grads[0], grads[1])
    entangler.update_temperatures()
    assert (entangler.temperatures != 1).all()  # T took its gradient step


def test_capture_names_missing_layers():
    model = build_model(get_registry(), ModelCard("ewe-cnn", (1, 8, 8), 10))
    with capture(model, ["conv1", "fc1"]) as reps:
        model(torch.rand(2, 1, 8, 8))
    assert reps["conv1"].shape == (2, 32, 8, 8) and reps["fc1"].shape == (2, 128)
    from wmtool.errors import UserError

    with pytest.raises(UserError, match="no layer 'nope'"):
        with capture(model, ["nope"]):
            pass


class PixelProbe(torch.nn.Module):
    """A 'network' whose one representation is the image itself."""

    def __init__(self):
        super().__init__()
        self.rep = torch.nn.Identity()
        self.head = torch.nn.Linear(144, 2)

    def forward(self, x):
        return self.head(self.rep(x).flatten(1))


def test_trigger_goes_where_the_snnl_gradient_is_largest():
    """Targets are bright only in one 3×3 patch: lighting that patch on the watermarks entangles them most."""
    rng = np.random.default_rng(0)
    targets = rng.random((8, 1, 12, 12), dtype=np.float32) * 0.05
    targets[:, :, 6:9, 2:5] = 1.0
    sources = rng.random((8, 1, 12, 12), dtype=np.float32) * 0.05
    entangler = Entangler(PixelProbe(), ["rep"], ewe_params(temperature_scale=10.0, metric="euclidean"), "cpu")
    assert place_trigger(entangler, sources, targets, 3, 16, "cpu") == (6, 2)


def test_class_pair_heuristic_picks_the_most_similar_centres():
    from wmtool.data import Dataset

    x = np.zeros((6, 1, 2, 2), dtype=np.float32)
    x[0:2, 0, 0, 0] = 1  # class 0
    x[2:4, 0, 1, 1] = 1  # class 1
    x[4:6, 0, 0, 0] = 1
    x[4:6, 0, 0, 1] = 0.2  # class 2, close to class 0
    data = Dataset(x, np.array([0, 0, 1, 1, 2, 2]), 3, "toy")
    assert choose_pair(data, data, exclude_same=True) in {(0, 2), (2, 0)}


def test_embed_extract_verify_on_digits(cli, tmp_path):
    victim, key, stolen = tmp_path / "v.safetensors", tmp_path / "k.json", tmp_path / "x.safetensors"
    report = cli.json("embed", "--scheme", "ewe", "--arch", "ewe-cnn", "--data", "digits", "-o", victim,
                      "--key-out", key, "--batch-size", 64, "--clean-epochs", 6, "--epochs", 4, "--fgsm-rounds", 2)
    assert report["test_accuracy"] > 0.85 and report["watermark_success"] > 0.9
    params = report["params"]
    assert params["layers"] == ["conv1", "conv2", "fc1"] and len(params["corner"]) == 2
    assert all(t != 1.0 for t in params["temperatures"])
    attack = cli.json("attack", "extract", victim, "--data", "digits", "-o", stolen, "--epochs", 10,
                      "--batch-size", 64)
    assert attack["queries"] == 1438 and attack["accuracy_after"] > 0.85 and attack["details"]["agreement"] > 0.9
    assert cli.json("verify", "--key", key, victim, expect=0)["claimed"]
    verdict = cli.json("verify", "--key", key, stolen, expect=None)
    assert 0.0 <= verdict["success_rate"] <= 1.0 and verdict["queries"] == len(np.arange(params["keep"])[:152])
