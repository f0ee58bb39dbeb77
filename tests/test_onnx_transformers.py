"""Transformer graphs in ONNX: ViT and ConvNeXt exported by torch's two exporters (TorchScript and
dynamo) convert to trainable torch modules that match onnxruntime, and are marked and verified."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

try:
    import transformers
except ImportError:
    if os.environ.get("CI"):
        raise RuntimeError("CI must install transformers")
    pytest.skip("transformers is not installed", allow_module_level=True)

from wmtool_plugins.onnx_graph import OnnxModule  # noqa: E402

EXPORTERS = ("torchscript", "dynamo")


class Logits(torch.nn.Module):
    """A transformers image classifier as images → logits, for the exporters."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).logits


def _convnext(seed: int = 0):
    torch.manual_seed(seed)
    return transformers.ConvNextForImageClassification(transformers.ConvNextConfig(
        num_channels=1, hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, num_labels=10, patch_size=2)).eval()


def _export(model: torch.nn.Module, path: Path, exporter: str) -> Path:
    """The model as ONNX with a dynamic batch, by torch's TorchScript (opset 17) or dynamo (18) exporter."""
    x = torch.rand(2, 1, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            pytest.importorskip("onnxscript")
            torch.onnx.export(Logits(model), (x,), str(path), dynamo=True, opset_version=18,
                              input_names=["input"], output_names=["logits"],
                              dynamic_shapes=({0: torch.export.Dim("batch")},))
        else:
            torch.onnx.export(Logits(model), (x,), str(path), dynamo=False, opset_version=17,
                              input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return path


@pytest.fixture(scope="module")
def exports(tmp_path_factory, trained_vit) -> dict[tuple[str, str], Path]:
    folder = tmp_path_factory.mktemp("onnx-transformers")
    models = {"vit": trained_vit, "convnext": _convnext()}
    return {(name, exporter): _export(model, folder / f"{name}-{exporter}.onnx", exporter)
            for name, model in models.items() for exporter in EXPORTERS}


@pytest.mark.parametrize("name", ["vit", "convnext"])
@pytest.mark.parametrize("exporter", EXPORTERS)
def test_converted_graph_matches_onnxruntime_and_trains(exports, name, exporter):
    import onnxruntime

    path = exports[(name, exporter)]
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert ops & {"LayerNormalization", "Erf"}  # a transformer's graph, not a CNN's
    module = OnnxModule(onnx.load(str(path)))
    x = np.random.default_rng(0).random((16, 1, 8, 8), dtype=np.float32)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        got = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    before = [p.detach().clone() for p in module.parameters()]
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    loss = torch.nn.functional.cross_entropy(module(torch.from_numpy(x)), torch.arange(16) % 10)
    loss.backward()
    optimizer.step()
    assert sum(not torch.equal(a, b) for a, b in zip(before, module.parameters())) > len(before) // 2


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("scheme, options", [("backdoor", ("--epochs", 2, "--lr", "3e-3")),
                                             ("sign", ("--epochs", 3, "--bits", 64))])
def test_exported_vit_is_marked_and_verified(cli, exports, tmp_path, exporter, scheme, options):
    source = exports[("vit", exporter)]
    flags = ("--mean", "0.5", "--std", "0.5")
    assert cli.json("accuracy", source, "--data", "digits", *flags)["accuracy"] > 0.5
    marked, key = tmp_path / "marked.onnx", tmp_path / "key.json"
    made = cli.json("embed", "--scheme", scheme, source, "--data", "digits", *flags, "-o", marked, "--key-out", key,
                    *options)
    assert made["test_accuracy"] > 0.5
    assert cli.json("verify", "--key", key, marked)["claimed"]
    assert not cli.json("verify", "--key", key, source, expect=1)["claimed"]


def test_exported_convnext_is_marked_and_verified(cli, exports, tmp_path):
    source = exports[("convnext", "dynamo")]
    marked, key = tmp_path / "marked.onnx", tmp_path / "key.json"
    cli("embed", "--scheme", "sign", source, "--data", "digits", "-o", marked, "--key-out", key, "--epochs", 3,
        "--bits", 64)
    assert cli.json("verify", "--key", key, marked)["claimed"]
    assert not cli.json("verify", "--key", key, source, expect=1)["claimed"]
