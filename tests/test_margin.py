"""``margin``: the projected gradient-ascent step, the key's random wrong labels, embedding from a trained
model and from scratch, and round trips through ONNX and safetensors."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

margin = importlib.import_module("wmtool_plugins.margin")
torch = pytest.importorskip("torch")


def test_the_margin_step_stays_in_the_ball_and_raises_the_key_labels_loss():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    net.train()
    x = torch.rand(8, 1, 4, 4)
    labels = torch.randint(0, 4, (8,))
    moved = margin.margin_step(net, x, labels, eps=0.1, steps=5)
    assert net.training  # its mode restored
    assert float((moved - x).abs().max()) <= 0.1 + 1e-6 and float(moved.min()) >= 0 and float(moved.max()) <= 1
    loss = torch.nn.functional.cross_entropy
    with torch.no_grad():
        assert loss(net(moved), labels) > loss(net(x), labels)
    # a direct single step: x + eps·sign(∇), clipped (2.5·eps/1 exceeds the ball, so the step lands on its edge)
    x.requires_grad_(True)
    grad, = torch.autograd.grad(loss(net(x), labels), x)
    direct = (x + 0.1 * grad.sign()).clamp(0, 1).detach()
    assert torch.allclose(margin.margin_step(net, x.detach(), labels, eps=0.1, steps=1), direct)
    unmoved = x.detach()
    assert margin.margin_step(net, unmoved, labels, eps=0.1, steps=0) is unmoved


def test_key_labels_are_random_and_never_the_true_label(digits_models):
    from types import SimpleNamespace

    from wmtool.data import load_dataset

    data = load_dataset("digits", "train", seed=0)
    job = SimpleNamespace(data=data, params={"queries": 300})
    index, inputs, labels = margin.choose_key(job, np.random.default_rng(0))
    assert np.all(labels != data.y[index]) and np.array_equal(inputs, data.x[index])
    assert len(np.unique(labels)) == data.num_classes  # every class is used
    assert len(np.unique(index)) == 300


def test_embeds_verifies_refuses_the_clean_model_and_survives_round_trips(cli, tmp_path, digits_models):
    marked, key = tmp_path / "m.safetensors", tmp_path / "k.json"
    report = cli.json("embed", "--scheme", "margin", digits_models["clean"], "--data", "digits", "-o", marked,
                      "--key-out", key, "--epochs", 30, "--queries", 30, "--eps", 0.05)  # digits: ~1,000 images
    assert report["watermark_success"] >= 0.9 and report["test_accuracy"] >= 0.85 and report["null_rate"] == 0.1
    assert cli("verify", "--key", key, digits_models["clean"], expect=1)
    onnx_file = tmp_path / "m.onnx"
    cli("convert", marked, "-o", onnx_file)
    for suspect in (marked, onnx_file):
        assert cli.json("verify", "--key", key, suspect, expect=0)["claimed"]
    scratch = cli.json("embed", "--scheme", "margin", "--arch", "ewe-cnn", "--data", "digits", "-o",
                       tmp_path / "s.safetensors", "--key-out", tmp_path / "s.json", "--clean-epochs", 10, "--epochs", 30,
                       "--queries", 30, "--eps", 0.05)
    assert scratch["watermark_success"] >= 0.9
    refused = cli("embed", "--scheme", "margin", "--arch", "ewe-cnn", "--data", "digits", "-o",
                  tmp_path / "x.safetensors", "--key-out", tmp_path / "x.json", "--queries", 5000, expect=2)
    assert "--queries 5000 is too many" in refused.stderr
