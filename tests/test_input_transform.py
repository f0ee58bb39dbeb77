"""``jpeg``, ``smooth``, ``input-noise``: the transformations against direct implementations, and the wrapped
models written as safetensors and ONNX that answer alike."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

transform = importlib.import_module("wmtool_plugins.input_transform")
torch = pytest.importorskip("torch")


def _wrapped(transform_name: str, strength: float, shape=(1, 28, 28)):
    from wmtool.plugins import get_registry

    net = transform._transformed_classifier(shape, 10, "mlp", '{"width": 8}', '{"input_range": 1.0}', transform_name,
                                            strength, get_registry())
    return net.eval()


@pytest.mark.parametrize("quality", [10, 50, 90])
def test_jpeg_equals_the_blockwise_codec_and_keeps_a_smooth_image_close(quality):
    rng = np.random.default_rng(quality)
    x = rng.random((2, 1, 28, 28), dtype=np.float32)  # 28 is not a multiple of 8: edge padding
    net = _wrapped("jpeg", quality)
    with torch.no_grad():
        ours = net.jpeg(torch.from_numpy(x)).numpy()
    assert np.allclose(ours, transform.jpeg_numpy(x, quality), atol=1e-4)
    gradient = np.tile(np.linspace(0, 1, 28, dtype=np.float32), (1, 1, 28, 1))
    with torch.no_grad():
        kept = net.jpeg(torch.from_numpy(gradient)).numpy()
    assert np.abs(kept - gradient).max() < (0.05 if quality >= 50 else 0.15)
    assert transform.quantisation_table(50)[0, 0] == 16 and transform.quantisation_table(100).max() == 1


def test_smoothing_equals_a_separable_gaussian_filter():
    ndimage = pytest.importorskip("scipy.ndimage")
    x = np.random.default_rng(0).random((1, 1, 12, 12), dtype=np.float32)
    with torch.no_grad():
        ours = _wrapped("smooth", 1.0).smooth(torch.from_numpy(x)).numpy()
    assert np.allclose(ours[0, 0], ndimage.gaussian_filter(x[0, 0], 1.0, mode="nearest", truncate=3.0), atol=1e-5)


def test_wrapped_models_answer_alike_in_safetensors_and_onnx(cli, tmp_path, digits_models):
    marked = digits_models["marked"]
    base = cli.json("accuracy", marked, "--data", "digits")["accuracy"]
    outputs = {}
    for name, flags in (("jpeg", ("--quality", 50)), ("smooth", ("--sigma", 0.7)), ("input-noise", ("--sigma", 0.0))):
        for suffix in ("safetensors", "onnx"):
            path = tmp_path / f"{name}.{suffix}"
            cli("attack", name, marked, "--data", "digits", "-o", path, *flags)
            outputs[name, suffix] = cli.json("accuracy", path, "--data", "digits")["accuracy"]
        assert outputs[name, "safetensors"] == pytest.approx(outputs[name, "onnx"], abs=0.003)
    assert outputs["input-noise", "safetensors"] == pytest.approx(base)  # σ = 0 answers as the victim
    assert outputs["smooth", "onnx"] < base and outputs["jpeg", "onnx"] > 0.5
    verdict = cli.json("verify", "--key", digits_models["key"], tmp_path / "jpeg.onnx", expect=None)
    assert 0.0 <= verdict["success_rate"] <= 1.0
