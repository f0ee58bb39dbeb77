"""Removal attacks on digits: each does what it claims."""

import numpy as np
import pytest

from wmtool.models import load_model
from wmtool.plugins import get_registry


def weights(path):
    model = load_model(path, get_registry())
    return {name: w.detach().numpy() for name, w in model.net.named_parameters()}


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_prune_zeroes_the_stated_share(cli, digits_models, tmp_path, scope):
    out = tmp_path / "pruned.safetensors"
    report = cli.json("attack", "prune", digits_models["marked"], "-o", out, "--rate", 0.6, "--scope", scope)
    pruned = [w for w in weights(out).values() if w.ndim >= 2]
    share = sum((w == 0).sum() for w in pruned) / sum(w.size for w in pruned)
    assert share == pytest.approx(0.6, abs=0.01) and report["details"]["zeroed_share"] == pytest.approx(share)
    if scope == "layer":
        assert all(abs((w == 0).mean() - 0.6) < 0.02 for w in pruned)


def test_prune_then_fine_tune_keeps_the_pruned_weights_at_zero(cli, digits_models, tmp_path):
    out = tmp_path / "pruned.safetensors"
    report = cli.json("attack", "prune", digits_models["marked"], "-o", out, "--rate", 0.5, "--epochs", 2,
                      "--lr", 1e-3)
    assert report["details"]["zeroed_share"] >= 0.5 and report["accuracy_after"] > 0.8


def test_round_leaves_no_digit_beyond_n(cli, digits_models, tmp_path):
    out = tmp_path / "rounded.safetensors"
    cli("attack", "round", digits_models["marked"], "-o", out, "--digits", 2)
    for w in weights(out).values():
        scaled = w.astype(np.float64) * 100
        assert np.abs(scaled - np.round(scaled)).max() < 1e-4
    before = weights(digits_models["marked"])
    assert any(not np.array_equal(before[k], w) for k, w in weights(out).items())


def test_noise_perturbs_each_tensor_at_the_relative_scale(cli, digits_models, tmp_path):
    out = tmp_path / "noisy.safetensors"
    cli("attack", "noise", digits_models["marked"], "-o", out, "--scale", 0.1)
    before, after = weights(digits_models["marked"]), weights(out)
    for name, w in before.items():
        if w.size > 100:
            assert np.std(after[name] - w) == pytest.approx(0.1 * np.std(w), rel=0.25)


@pytest.mark.parametrize("mode", ["ftll", "rtll", "rtal"])
def test_finetune_modes(cli, digits_models, tmp_path, mode):
    out = tmp_path / f"{mode}.safetensors"
    report = cli.json("attack", "finetune", digits_models["marked"], "-o", out, "--mode", mode, "--epochs", 3,
                      "--lr", 1e-3)
    assert report["details"]["last_layer"] == "fc2"
    before, after = weights(digits_models["marked"]), weights(out)
    others_same = all(np.array_equal(before[k], after[k]) for k in before if not k.startswith("fc2"))
    assert others_same == (mode in ("ftll", "rtll"))
    assert not np.array_equal(before["fc2.weight"], after["fc2.weight"])
    assert report["accuracy_after"] > 0.5


def test_distillation_student_reaches_most_of_the_teacher(cli, digits_models, tmp_path):
    out = tmp_path / "student.safetensors"
    report = cli.json("attack", "distill", digits_models["marked"], "-o", out, "--student", "mlp",
                      "--student-args", '{"width": 256, "dropout": 0.0}', "--epochs", 30, "--temperature", 5)
    assert report["details"]["student"] == "mlp" and report["queries"] == 1438
    assert report["accuracy_after"] >= 0.9 * report["accuracy_before"]
    assert cli.json("inspect", out)["card"]["arch_args"]["width"] == 256


def test_distillation_of_an_onnx_victim(cli, digits_models, tmp_path):
    victim = tmp_path / "victim.onnx"
    cli("convert", digits_models["marked"], "-o", victim)
    report = cli.json("attack", "distill", victim, "-o", tmp_path / "s.onnx", "--epochs", 20, "--hard-weight", 0.5)
    assert report["details"]["student"] == "ewe-cnn" and report["accuracy_after"] > 0.8


@pytest.mark.parametrize("granularity", ["channel", "tensor"])
def test_quantize_leaves_at_most_255_levels(cli, digits_models, tmp_path, granularity):
    out = tmp_path / "q.safetensors"
    report = cli.json("attack", "quantize", digits_models["marked"], "-o", out, "--granularity", granularity)
    for w in (w for w in weights(out).values() if w.ndim >= 2):
        rows = w.reshape(w.shape[0], -1) if granularity == "channel" else w.reshape(1, -1)
        assert all(len(np.unique(row)) <= 255 for row in rows)
    assert report["accuracy_after"] > report["accuracy_before"] - 0.02


def test_lowrank_truncates_each_layer_to_the_rank_of_its_speedup(cli, digits_models, tmp_path):
    from wmtool_plugins.lowrank import rank_for

    out = tmp_path / "lr.safetensors"
    report = cli.json("attack", "lowrank", digits_models["marked"], "-o", out, "--speedup", 3)
    ranks = report["details"]["ranks"]
    for name, w in weights(out).items():
        if name in ranks:
            matrix = w.reshape(w.shape[0], -1)
            assert ranks[name] == rank_for(*matrix.shape, 3)
            assert np.linalg.matrix_rank(matrix, tol=1e-4 * np.abs(matrix).max()) <= ranks[name]
    assert "fc1.weight" in ranks


def test_fineprune_prunes_the_least_active_channels_and_holds_them(cli, digits_models, tmp_path):
    out = tmp_path / "fp.safetensors"
    report = cli.json("attack", "fineprune", digits_models["marked"], "-o", out, "--rate", 0.5, "--epochs", 2)
    details = report["details"]
    assert details["layer"] == "conv2" and details["units"] == 64 and len(details["pruned_units"]) == 32
    conv2 = weights(out)["conv2.weight"]
    assert all(not conv2[i].any() for i in details["pruned_units"])
    assert report["queries"] == 1438 and report["accuracy_after"] > 0.7


def test_overwrite_embeds_the_attackers_watermark(cli, digits_models, tmp_path):
    out = tmp_path / "pirated.safetensors"
    report = cli.json("attack", "overwrite", digits_models["marked"], "-o", out, "--scheme", "backdoor",
                      "--scheme-options", '{"source": 3, "target": 5, "position": "top-left", "epochs": 3}')
    details = report["details"]
    assert details["scheme"] == "backdoor" and details["attacker_params"]["target"] == 5
    assert details["attacker_watermark_success"] > 0.9
    refused = cli("attack", "overwrite", digits_models["marked"], "-o", tmp_path / "x.safetensors",
                  "--scheme-options", '{"bogus": 1}', expect=2)
    assert "unknown option 'bogus'" in refused.stderr


def test_neural_cleanse_finds_the_backdoor_target_and_unlearns_it(cli, digits_models, tmp_path):
    out = tmp_path / "cleansed.safetensors"
    report = cli.json("attack", "neural-cleanse", digits_models["marked"], "-o", out, "--steps", 150, "--unlearn",
                      "--unlearn-epochs", 3)
    details = report["details"]
    assert details["flagged"] == [7] and details["max_anomaly_index"] > 2
    assert int(np.argmax(details["anomaly_index"])) == 7 and len(details["mask_l1"]) == 10
    before = cli.json("verify", "--key", digits_models["key"], digits_models["marked"])["success_rate"]
    after = cli.json("verify", "--key", digits_models["key"], out, expect=None)["success_rate"]
    assert after < before and report["accuracy_after"] > 0.8


@pytest.fixture(scope="module")
def parity_task(tmp_path_factory):
    """A new task in the same domain: the digits' parity (2 classes)."""
    from wmtool.data import load_dataset

    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    path = tmp_path_factory.mktemp("parity") / "parity.npz"
    np.savez(path, x_train=train.x, y_train=train.y % 2, x_test=test.x, y_test=test.y % 2)
    return path


def test_transfer_of_the_head_then_restore_leaves_the_body_untouched(cli, digits_models, parity_task, tmp_path):
    out = tmp_path / "transferred.safetensors"
    report = cli.json("attack", "transfer", digits_models["marked"], "-o", out, "--new-data", parity_task,
                      "--layers", "head", "--map-back", "restore", "--epochs", 5)
    assert report["details"]["new_classes"] == 2 and report["details"]["new_task_accuracy"] > 0.8
    before, after = weights(digits_models["marked"]), weights(out)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_transfer_of_all_layers_then_a_retrained_head(cli, digits_models, parity_task, tmp_path):
    out = tmp_path / "transferred.safetensors"
    report = cli.json("attack", "transfer", digits_models["marked"], "-o", out, "--new-data", parity_task,
                      "--layers", "all", "--epochs", 3, "--head-epochs", 5)
    assert report["details"]["new_task_accuracy"] > 0.85 and report["accuracy_after"] > 0.8
    before, after = weights(digits_models["marked"]), weights(out)
    assert before.keys() == after.keys() and all(before[k].shape == after[k].shape for k in before)
    assert not np.array_equal(before["conv1.weight"], after["conv1.weight"])


def test_transfer_refuses_a_new_task_of_another_shape(cli, digits_models, tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, x=np.zeros((20, 1, 10, 10), np.float32), y=np.arange(20) % 2)
    result = cli("attack", "transfer", digits_models["marked"], "-o", tmp_path / "t.safetensors", "--new-data", path,
                 expect=2)
    assert "(1, 10, 10)" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = cli("attack", "transfer", digits_models["marked"], "-o", tmp_path / "t.safetensors", expect=2)
    assert "--new-data" in result.stderr


def test_disentangle_lowers_the_snnl_between_the_guessed_watermarks_and_target(cli, digits_models, tmp_path):
    """Extraction with the SNNL minimised leaves the guessed watermarks less entangled with the guessed target
    class (lower SNNL in the student's layers) than the same extraction without it."""
    import json

    import torch

    from wmtool.data import load_dataset
    from wmtool.representations import capture, snnl
    from wmtool.watermarks import stamp

    params = json.loads(digits_models["key"].read_text())["params"]
    test = load_dataset("digits", "test")
    marks = stamp(test.x[test.y == params["source"]], params["trigger_size"], tuple(params["corner"]))
    x = torch.from_numpy(np.concatenate([marks, test.x[test.y == params["target"]]]))
    groups = torch.cat([torch.ones(len(marks), dtype=torch.long), torch.zeros(len(x) - len(marks), dtype=torch.long)])
    entanglement = {}
    for strength in (1, 0):
        out = tmp_path / f"d{strength}.safetensors"
        report = cli.json("attack", "disentangle", digits_models["marked"], "-o", out, "--key", digits_models["key"],
                          "--source", params["source"], "--target", params["target"], "--strength", strength,
                          "--epochs", 12)
        assert report["details"]["agreement"] > 0.7 and report["queries"] > 0
        student = load_model(out, get_registry()).eval()
        with torch.no_grad(), capture(student, ["fc1"]) as reps:
            student(x)
            entanglement[strength] = float(snnl(reps["fc1"], groups, 0.1))
    assert entanglement[1] < entanglement[0] / 2, entanglement


def test_disentangle_needs_the_trigger_or_the_ood_data(cli, digits_models, tmp_path):
    result = cli("attack", "disentangle", digits_models["marked"], "-o", tmp_path / "d.safetensors", expect=2)
    assert "--key" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_extract_keeps_to_its_query_budget_draws_another_distribution_and_samples_adaptively(cli, tmp_path,
                                                                                             digits_models):
    import numpy as np

    from wmtool.data import load_dataset

    victim = digits_models["clean"]
    budget = cli.json("attack", "extract", victim, "--data", "digits", "-o", tmp_path / "b.safetensors",
                      "--queries", 300, "--epochs", 5)
    assert budget["queries"] == 300
    digits = load_dataset("digits", "train", seed=0)
    other = tmp_path / "other.npz"  # another distribution: the digits mirrored, labelled by parity
    np.savez(other, x_train=digits.x[:, 0, :, ::-1], y_train=(digits.y % 2).astype(np.int64))
    shifted = cli.json("attack", "extract", victim, "--data", "digits", "--query-data", other, "-o",
                       tmp_path / "o.safetensors", "--queries", 500, "--epochs", 5)
    assert shifted["queries"] == 500
    adaptive = cli.json("attack", "extract", victim, "--data", "digits", "-o", tmp_path / "a.safetensors",
                        "--queries", 400, "--sampling", "adaptive", "--rounds", 4, "--epochs", 15, "--batch-size", 32)
    per_class = adaptive["details"]["queries_per_class"]
    assert adaptive["queries"] == sum(per_class) == 400 and len(per_class) == 10
    assert adaptive["accuracy_after"] > 0.8
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x_train=np.zeros((20, 1, 4, 4), np.uint8), y_train=np.zeros(20, np.int64))
    refused = cli("attack", "extract", victim, "--data", "digits", "--query-data", wrong, "-o",
                  tmp_path / "w.safetensors", expect=2)
    assert "--query-data images are (1, 4, 4)" in refused.stderr
