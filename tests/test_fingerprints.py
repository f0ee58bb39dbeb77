"""Fingerprints: ``wmtool fingerprint`` keys verified like watermark keys, on digits."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wmtool.data import load_dataset
from wmtool.errors import UserError
from wmtool.keys import commitment, load_key
from wmtool.models import file_sha256

LABEL_METHODS = ("mistakes", "ipguard")
SCORE_METHODS = ("modeldiff", "sac-m")


@pytest.fixture(scope="module")
def models(cli, tmp_path_factory):
    """A briefly trained digits victim (it still makes mistakes), near copies of it (quantised, pruned,
    fine-tuned) and an independent model trained on the same data."""
    folder = tmp_path_factory.mktemp("fingerprints")
    names = ("victim", "independent", "quantized", "finetuned", "pruned")
    paths = {name: folder / f"{name}.safetensors" for name in names}
    cli("train", "--arch", "ewe-cnn", "--data", "digits", "-o", paths["victim"], "--epochs", 4, "--seed", 0)
    cli("train", "--arch", "ewe-cnn", "--data", "digits", "-o", paths["independent"], "--epochs", 4, "--seed", 5)
    cli("attack", "finetune", paths["victim"], "-o", paths["finetuned"], "--epochs", 1, "--lr", 1e-4)
    cli("attack", "prune", paths["victim"], "-o", paths["pruned"], "--rate", 0.2)
    cli("attack", "quantize", paths["victim"], "-o", paths["quantized"])
    return {**paths, "folder": folder}


def _fingerprint(cli, model, key, method, *extra):
    return cli.json("fingerprint", model, "-o", key, "--method", method, "--references", 2,
                    "--reference-epochs", 4, *extra)


@pytest.mark.parametrize("method", LABEL_METHODS)
def test_label_fingerprints_claim_near_copies_and_not_an_independent_model(cli, models, method):
    key = models["folder"] / f"{method}.json"
    made = _fingerprint(cli, models["victim"], key, method)
    assert made["null_rate"] > 1 / 10 and made["access"] == "labels"
    assert len(made["independent_models"]) == 2 and len(made["commitment"]) == 64
    loaded = load_key(key)
    assert loaded.scheme == method and loaded.null.method == "independent-models"
    assert loaded.model_sha256 == file_sha256(models["victim"])
    for copy in ("victim", "quantized", "pruned"):
        verdict = cli.json("verify", "--key", key, models[copy], expect=0)
        assert verdict["success_rate"] > verdict["null_rate"] and verdict["p_value"] < 0.01, copy
    # one epoch of fine-tuning corrects many of a young model's mistakes: ipguard's boundary survives it
    tuned = cli.json("verify", "--key", key, models["finetuned"], expect=None)
    assert tuned["claimed"] is (method == "ipguard")
    refused = cli.json("verify", "--key", key, models["independent"], expect=1)
    assert not refused["claimed"]


@pytest.mark.parametrize("method", SCORE_METHODS)
def test_score_fingerprints_tell_the_model_from_an_independent_one_and_need_scores(cli, models, method):
    key = models["folder"] / f"{method}.json"
    made = _fingerprint(cli, models["victim"], key, method)
    assert made["access"] == "scores"
    itself = cli.json("verify", "--key", key, models["victim"], expect=0)
    assert itself["success_rate"] == 1.0
    other = cli.json("verify", "--key", key, models["independent"], expect=1)
    assert other["success_rate"] < itself["success_rate"]


def test_fingerprints_work_on_onnx_files(cli, models):
    onnx_victim = models["folder"] / "victim.onnx"
    cli("convert", models["victim"], "-o", onnx_victim)
    key = models["folder"] / "onnx-ipguard.json"
    refused = cli("fingerprint", onnx_victim, "-o", key, "--method", "ipguard", expect=2)
    assert "has no fresh form" in refused.stderr and "--reference-arch ewe-cnn" in refused.stderr
    _fingerprint(cli, onnx_victim, key, "ipguard", "--reference-arch", "ewe-cnn")
    assert cli.json("verify", "--key", key, onnx_victim)["success_rate"] == 1.0
    assert cli.json("verify", "--key", key, models["pruned"], expect=0)["claimed"]
    assert not cli.json("verify", "--key", key, models["independent"], expect=1)["claimed"]


def test_dataset_inference_sees_the_private_data_but_lacks_the_power_to_claim_on_digits(cli, tmp_path):
    """A model overfitted to 150 private images stands farther from its boundary on them than on public
    ones, and models trained on other images of the same distribution do not — but with 150 points the
    margin test does not reach significance against the independent models' null (docs/results.md)."""
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    private = tmp_path / "private.npz"
    np.savez(private, x_train=train.x[:150], y_train=train.y[:150], x_test=test.x, y_test=test.y)
    other = tmp_path / "other.npz"
    np.savez(other, x_train=train.x[600:750], y_train=train.y[600:750], x_test=test.x, y_test=test.y)
    paths = {}
    for name, data, seed in (("victim", private, 0), ("ref1", other, 1), ("ref2", other, 2), ("outsider", other, 3)):
        paths[name] = tmp_path / f"{name}.safetensors"
        cli("train", "--arch", "ewe-cnn", "--data", data, "-o", paths[name], "--epochs", 60, "--seed", seed)
    key = tmp_path / "di.json"
    made = cli.json("fingerprint", paths["victim"], "--data", private, "-o", key, "--method", "dataset-inference",
                    "--reference", paths["ref1"], "--reference", paths["ref2"], "--count", 150)
    assert made["independent_models"] == [str(paths["ref1"]), str(paths["ref2"])]
    assert 0.4 < made["null_observed"] < 0.6  # models of other data: their private-point margins are typical
    victim = cli.json("verify", "--key", key, paths["victim"], expect=None)
    outsider = cli.json("verify", "--key", key, paths["outsider"], expect=1)
    assert victim["details"]["mean_margin_private"] > 1.1 * victim["details"]["mean_margin_public"]
    assert victim["success_rate"] > made["null_observed"] + 0.1 > outsider["success_rate"] + 0.1


def test_a_fingerprint_made_after_the_fact_from_the_suspect_is_refused_by_the_commitment(cli, models):
    owner_key = models["folder"] / "owner.json"
    published = _fingerprint(cli, models["victim"], owner_key, "mistakes")["commitment"]
    forged = models["folder"] / "forged.json"
    _fingerprint(cli, models["independent"], forged, "mistakes")
    assert commitment(load_key(forged)) != published
    refused = cli("verify", "--key", forged, models["independent"], "--commitment", published, expect=2)
    assert "does not match the published commitment" in refused.stderr
    cli("verify", "--key", owner_key, models["victim"], "--commitment", published, expect=0)


def test_verify_combines_a_watermark_key_and_a_fingerprint_with_holm(cli, digits_models, models):
    fingerprint_key = models["folder"] / "marked-ipguard.json"
    _fingerprint(cli, digits_models["marked"], fingerprint_key, "ipguard")
    both = cli.json("verify", "--key", digits_models["key"], "--key", fingerprint_key, digits_models["marked"])
    assert [entry["scheme"] for entry in both["keys"]] == ["backdoor", "ipguard"]
    small, large = sorted(entry["p_value"] for entry in both["keys"])
    expected = {small: min(1, 2 * small), large: max(min(1, 2 * small), large)}
    assert [entry["holm_p_value"] for entry in both["keys"]] == pytest.approx(
        [expected[entry["p_value"]] for entry in both["keys"]])
    assert both["combined"] == {"correction": "holm", "alpha": 0.01, "claimed": True,
                                "smallest_adjusted_p_value": min(e["holm_p_value"] for e in both["keys"])}
    neither = cli.json("verify", "--key", digits_models["key"], "--key", fingerprint_key, models["independent"],
                       expect=1)
    assert neither["combined"]["claimed"] is False
    mismatch = cli("verify", "--key", digits_models["key"], "--key", fingerprint_key, models["victim"],
                   "--commitment", "0" * 64, expect=2)
    assert "one --commitment per --key" in mismatch.stderr


def test_fingerprinters_are_listed_with_their_access_and_verifier(cli):
    listed = {row["name"]: row for row in cli.json("plugins")["plugins"] if row["kind"] == "fingerprinter"}
    assert set(listed) >= {"mistakes", "ipguard", "modeldiff", "sac-m", "dataset-inference"}
    assert listed["modeldiff"]["access"] == "scores" and listed["mistakes"]["verifier"] == "trigger-set"
    help_text = cli("fingerprint", "--method", "ipguard", "--help").stdout
    assert "--margin" in help_text


def test_a_model_without_enough_mistakes_is_refused():
    from types import SimpleNamespace

    from wmtool.data import Dataset
    from wmtool_plugins.mistakes import fingerprint

    data = Dataset(np.zeros((50, 1, 2, 2), np.float32), np.arange(50) % 3, 3, "tiny")

    class Perfect:
        def predict(self, x):
            return data.y.copy()

    with pytest.raises(UserError, match="gets only 0 of 50 images of tiny wrong"):
        fingerprint(SimpleNamespace(model=Perfect(), data=data, params={"count": 10}, seed=0))


def test_holm_adjusted_p_values():
    from wmtool.stats import holm_adjusted

    assert holm_adjusted([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm_adjusted([0.5]) == [0.5]
    assert holm_adjusted([0.9, 0.001]) == pytest.approx([0.9, 0.002])


def test_ipguard_loss_against_its_formula():
    import torch

    from wmtool_plugins.ipguard import boundary_loss

    logits = torch.tensor([[3.0, 1.0, 0.5], [0.0, 2.0, 2.5]])
    loss = boundary_loss(logits, torch.tensor([0, 1]), torch.tensor([1, 2]), 0.5)
    # first: ReLU(3 − 1 + 0.5) + ReLU(0.5 − 3) = 2.5; second: ReLU(2 − 2.5 + 0.5) + ReLU(0 − 2) = 0
    assert loss.tolist() == pytest.approx([2.5, 0.0])


def test_cutmix_pastes_one_box_of_the_second_image():
    from wmtool_plugins.sample_correlation import cutmix

    first, second = np.zeros((20, 1, 8, 8), np.float32), np.ones((20, 1, 8, 8), np.float32)
    mixed = cutmix(first, second, np.random.default_rng(0))
    for image in mixed[:, 0]:
        rows, cols = np.nonzero(image)
        assert len(rows) == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)  # one filled box


def test_blind_walk_measures_the_distance_to_a_linear_boundary():
    from wmtool_plugins.dataset_inference import blind_walk

    class Threshold:
        """Label 1 where the mean pixel exceeds 0.5."""

        def predict(self, x):
            return (x.reshape(len(x), -1).mean(axis=1) > 0.5).astype(np.int64)

    points = np.stack([np.full((1, 2, 2), 0.12, np.float32), np.full((1, 2, 2), 0.42, np.float32)])
    direction = np.full((1, 1, 2, 2), 0.5, np.float32)  # unit L2 norm: each step adds 0.5·step per pixel
    steps = blind_walk(Threshold(), points, direction, step=0.1, max_steps=20)
    assert steps.tolist() == [8.0, 2.0]  # the mean crosses 0.5 after ⌈0.38/0.05⌉ and ⌈0.08/0.05⌉ steps


def test_decision_distance_is_zero_for_identical_outputs():
    from wmtool_plugins.modeldiff import decision_distances

    class Fixed:
        def predict_logits(self, x):
            return np.tile(np.arange(3.0), (len(x), 1))

    assert decision_distances(Fixed(), np.zeros((4, 1, 2, 2)), np.ones((4, 1, 2, 2))) == pytest.approx(0.0, abs=1e-9)
