"""The query-filter defence: the detector written into the model scores as scikit-learn does, catches most
out-of-distribution queries, flags about the contamination share of clean ones, and survives ONNX export."""

import importlib

import numpy as np
import pytest
import torch

from conftest import SHARED
from wmtool.data import load_dataset
from wmtool.models import load_model, open_predictor
from wmtool.plugins import get_registry

query_filter = importlib.import_module("wmtool_plugins.query_filter")


@pytest.fixture(scope="module", params=["lof", "isolation-forest"])
def filtered(request, cli, digits_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("qf") / f"{request.param}.safetensors"
    # On the CPU: the detector must be fitted on the same features scikit-learn gets below (on a GPU,
    # cuDNN's TF32 convolutions move them by ~1e-3, enough to move an Isolation Forest's splits).
    report = cli.json("attack", "query-filter", digits_models["marked"], "-o", out, "--detector", request.param,
                      "--watermark-key", digits_models["key"], "--seed", 3, "--device", "cpu")
    return request.param, out, report, digits_models


def fashion_at_8x8(n=300):
    """Fashion-MNIST test images shrunk to the digits' 8×8: out-of-distribution queries for a digits model."""
    fashion = load_dataset(str(SHARED / "data" / "fashion-mnist"), "test", limit=n)
    return torch.nn.functional.interpolate(torch.from_numpy(fashion.x), size=(8, 8), mode="area").numpy()


def test_scores_match_scikit_learn(filtered):
    from sklearn.ensemble import IsolationForest
    from sklearn.neighbors import LocalOutlierFactor

    detector, out, report, models = filtered
    wrapped = load_model(out, get_registry()).eval()
    victim = load_model(models["marked"], get_registry()).eval()
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    queries = np.concatenate([query_filter.hidden_activations(victim, "fc1", test.x),
                              query_filter.hidden_activations(victim, "fc1", fashion_at_8x8(100))])
    with torch.no_grad():
        ours = wrapped.net.score(torch.from_numpy(queries)).numpy()
    if detector == "lof":
        reference = wrapped.net.reference.numpy()
        fitted = LocalOutlierFactor(n_neighbors=20, contamination=0.05, novelty=True).fit(reference)
    else:
        features = query_filter.hidden_activations(victim, "fc1", train.x)
        fitted = IsolationForest(n_estimators=100, contamination=0.05, random_state=3).fit(features)
    np.testing.assert_allclose(ours, fitted.decision_function(queries), rtol=1e-4, atol=1e-4)


def test_catches_out_of_distribution_queries_and_few_clean_ones(filtered):
    detector, out, report, _ = filtered
    wrapped = load_model(out, get_registry()).eval()
    test = load_dataset("digits", "test")
    assert query_filter._flagged_share(wrapped, fashion_at_8x8()) > 0.5
    assert query_filter._flagged_share(wrapped, test.x) < 0.12
    assert report["details"]["clean_flagged"] == pytest.approx(0.05, abs=0.03)
    assert 0 <= report["details"]["watermark_caught"] <= 1
    assert report["accuracy_before"] - report["accuracy_after"] < 0.12


def test_flagged_queries_get_the_scrambled_label_and_onnx_answers_alike(filtered, tmp_path, cli):
    detector, out, _, _ = filtered
    wrapped = load_model(out, get_registry()).eval()
    queries = np.concatenate([load_dataset("digits", "test").x[:100], fashion_at_8x8(100)])
    x = torch.from_numpy(queries)
    with torch.no_grad():
        logits, outlier = wrapped.net.inner_and_outliers(x)
        answers = wrapped(x).argmax(1)
    inner = logits.argmax(1)
    scrambled = (x.flatten(1) @ wrapped.net.scramble).argmax(1)
    assert torch.equal(answers, torch.where(outlier, scrambled, inner)) and outlier.any() and (~outlier).any()
    onnx_path = tmp_path / "filtered.onnx"
    cli("convert", out, "-o", onnx_path)
    exported = open_predictor(onnx_path, get_registry(), device="cpu")
    np.testing.assert_array_equal(exported.predict(queries), answers.numpy())
