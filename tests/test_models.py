"""Safetensors models: every architecture builds, round trips keep predictions, bad files are refused."""

import numpy as np
import pytest
import torch

from wmtool.errors import UserError
from wmtool.model_card import ModelCard
from wmtool.models import ModelSource, build_model, load_model, save_model
from wmtool_plugins.safetensors_format import read_card
from wmtool.plugins import get_registry
from wmtool.preprocessing import Preprocessing


@pytest.fixture(scope="module")
def registry():
    return get_registry()


@pytest.mark.parametrize("arch", ["ewe-cnn", "mlp", "ingrain-cnn", "resnet18"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_every_builtin_architecture_builds_for_every_shape(registry, arch, shape):
    model = build_model(registry, ModelCard(arch, shape, 10))
    assert model(torch.rand(2, *shape)).shape == (2, 10)


def test_paper_sizes(registry):
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    mlp = build_model(registry, ModelCard("mlp", (1, 28, 28), 10))
    assert count(mlp) == 784 * 1200 + 1200 + 1200 * 1200 + 1200 + 1200 * 10 + 10
    student = build_model(registry, ModelCard("mlp", (1, 28, 28), 10, {"width": 800}))
    assert student.net.hidden[0].out_features == 800
    cnn = build_model(registry, ModelCard("ewe-cnn", (1, 28, 28), 10))
    assert [cnn.net.conv1.out_channels, cnn.net.conv2.out_channels, cnn.net.fc1.out_features] == [32, 64, 128]
    assert cnn.net.fc1.in_features == 64 * 7 * 7


@pytest.mark.parametrize("arch", ["ewe-cnn", "mlp"])
def test_glorot_init_draws_within_the_glorot_bound_with_zero_biases(registry, arch):
    torch.manual_seed(0)
    glorot = build_model(registry, ModelCard(arch, (1, 28, 28), 10, {"init": "glorot"})).net
    torch.manual_seed(0)
    default = build_model(registry, ModelCard(arch, (1, 28, 28), 10)).net
    layers = [m for m in glorot.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(layers) >= 3
    for layer in layers:
        fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(layer.weight)
        bound = (6 / (fan_in + fan_out)) ** 0.5
        assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.9 * bound
        assert not layer.bias.any()
    assert any(m.bias.abs().sum() > 0 for m in default.modules() if isinstance(m, torch.nn.Linear))
    with pytest.raises(UserError, match="init"):
        build_model(registry, ModelCard(arch, (1, 28, 28), 10, {"init": "he"}))


def test_round_trip_keeps_weights_card_and_predictions(registry, tmp_path):
    torch.manual_seed(0)
    card = ModelCard("ewe-cnn", (1, 8, 8), 10, preprocessing=Preprocessing(255.0, (10.0,), (50.0,)),
                     classes=tuple("abcdefghij"))
    model = build_model(registry, card)
    path = tmp_path / "m.safetensors"
    save_model(model, path, registry)
    loaded = load_model(path, registry)
    assert loaded.card == model.card
    x = np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)
    np.testing.assert_allclose(loaded.predict_logits(x), model.predict_logits(x), rtol=1e-6)
    assert read_card(path).preprocessing.input_range == 255.0


def test_preprocessing_is_applied(registry):
    base = build_model(registry, ModelCard("mlp", (1, 2, 2), 2, {"dropout": 0.0}))
    scaled = build_model(registry, ModelCard("mlp", (1, 2, 2), 2, {"dropout": 0.0},
                                             preprocessing=Preprocessing(255.0)))
    scaled.net.load_state_dict(base.net.state_dict())
    x = np.full((1, 1, 2, 2), 0.5, dtype=np.float32)
    np.testing.assert_allclose(scaled.predict_logits(x), base.predict_logits(x * 255), rtol=1e-5)


def test_bad_files_are_refused_in_one_clear_error(registry, tmp_path):
    model = build_model(registry, ModelCard("ewe-cnn", (1, 8, 8), 10))
    good = tmp_path / "good.safetensors"
    save_model(model, good, registry)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(UserError, match="truncated"):
        load_model(truncated, registry)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\xff" * 64)
    with pytest.raises(UserError, match="not a safetensors file"):
        load_model(garbage, registry)
    with pytest.raises(UserError, match="never loads pickle"):
        load_model(tmp_path / "model.pt", registry)
    with pytest.raises(UserError, match="no such file"):
        load_model(tmp_path / "missing.safetensors", registry)


def test_a_file_without_card_needs_arch_and_mismatches_are_named(registry, tmp_path):
    from safetensors.torch import save_file

    model = build_model(registry, ModelCard("ewe-cnn", (1, 8, 8), 10))
    bare = tmp_path / "bare.safetensors"
    save_file({k: v.contiguous() for k, v in model.net.state_dict().items()}, str(bare))
    with pytest.raises(UserError, match="known: ewe-cnn"):
        load_model(bare, registry)
    task = ModelCard("", (1, 8, 8), 10)
    loaded = load_model(bare, registry, ModelSource("ewe-cnn"), task)
    assert loaded.card.arch == "ewe-cnn"
    with pytest.raises(UserError, match=r"fc2.weight \(10, 128\) vs \(12, 128\)"):
        load_model(bare, registry, ModelSource("ewe-cnn"), ModelCard("", (1, 8, 8), 12))
    with pytest.raises(UserError, match="missing hidden.0.bias, hidden.0.weight.*unexpected conv1.bias"):
        load_model(bare, registry, ModelSource("mlp"), task)


def test_resize_in_numpy_and_torch_agree_and_old_cards_read_the_same():
    import torch

    from wmtool.preprocessing import Preprocessing

    images = np.random.default_rng(0).random((3, 2, 12, 12), dtype=np.float32)
    for size in ((24, 20), (5, 7)):
        for resample in ("bilinear", "bicubic"):
            prep = Preprocessing(size=size, resample=resample)
            by_torch = prep.apply(torch.from_numpy(images)).numpy()
            assert by_torch.shape == (3, 2, *size)
            np.testing.assert_allclose(prep.apply(images), by_torch, atol=0.03)
    assert Preprocessing().to_json() == {"input_range": 1.0, "mean": None, "std": None, "layout": "NCHW"}
    assert Preprocessing.from_json({"input_range": 255.0}) == Preprocessing(255.0)
    resized = Preprocessing(size=(16, 16), resample="bicubic")
    assert Preprocessing.from_json(resized.to_json()) == resized
    assert resized.accepts((1, 8, 8), (1, 16, 16)) and not resized.accepts((3, 8, 8), (1, 16, 16))
