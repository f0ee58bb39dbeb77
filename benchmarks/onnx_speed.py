"""ONNX performance, measured side by side in one run (issue 3's targets).

1. `accuracy` through wmtool's onnxruntime predictor on the 10,000 MNIST test images, relative to a
   bare onnxruntime loop over the same (preprocessed) batches: throughput ratio, target ≥ 0.9.
2. One training step of an ONNX graph converted to torch, relative to the same architecture written
   in torch (ewe-cnn, exported to ONNX and converted back): time ratio, target ≤ 1.2.

Run: python benchmarks/onnx_speed.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from wmtool.data import load_dataset
from wmtool.model_card import ModelCard
from wmtool.models import build_model, load_model, save_model
from wmtool_plugins.onnx_format import OnnxPredictor, card_of, read_onnx
from wmtool.plugins import get_registry
from wmtool.preprocessing import Preprocessing
from wmtool.training import fit_supervised

SHARED = Path(__file__).resolve().parents[2] / "shared"


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def inference(repeats: int) -> None:
    """wmtool's predictor versus a bare session loop, alternating, median of ``repeats``."""
    test = load_dataset(str(SHARED / "data" / "mnist"), "test")
    for name, prep in (("mnist-canvas-cnn.onnx", Preprocessing(1.0, (0.1307,), (0.3081,))),
                       ("mnist-8.onnx", Preprocessing(255.0))):
        path = SHARED / "models" / name
        proto = read_onnx(path)
        predictor = OnnxPredictor(path, proto, card_of(proto, path, preprocessing=prep))
        session, batch = predictor.session, predictor.batch_size
        ready = prep.apply(torch.from_numpy(test.x)).numpy()
        input_name = session.get_inputs()[0].name

        def bare():
            for start in range(0, len(ready), batch):
                session.run(None, {input_name: ready[start:start + batch]})

        ours, theirs = [], []
        for _ in range(repeats):
            ours.append(timed(lambda: predictor.predict(test.x)))
            theirs.append(timed(bare))
        ratio = statistics.median(theirs) / statistics.median(ours)
        print(f"| accuracy throughput, {name} (batch {batch}) | {len(test) / statistics.median(ours):,.0f} img/s | "
              f"{len(test) / statistics.median(theirs):,.0f} img/s | {ratio:.3f} | ≥ 0.9 |")


def training(repeats: int) -> None:
    """Training steps of the converted graph versus the native torch module, alternating."""
    registry = get_registry()
    torch.manual_seed(0)
    native = build_model(registry, ModelCard("ewe-cnn", (1, 28, 28), 10))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.onnx"
        save_model(native, path, registry, force=True)
        converted = load_model(path, registry)
    data = load_dataset(str(SHARED / "data" / "mnist"), "train", limit=5120, seed=0)
    times = {"native": [], "converted": []}
    for _ in range(repeats):
        for label, model in (("native", native), ("converted", converted)):
            times[label].append(timed(lambda: fit_supervised(model, data.x, data.y, epochs=1, batch_size=128,
                                                             lr=1e-3, seed=0)) / (len(data) // 128))
    ratio = statistics.median(times["converted"]) / statistics.median(times["native"])
    print(f"| training step (batch 128), ewe-cnn converted from ONNX vs torch | "
          f"{1000 * statistics.median(times['converted']):.1f} ms | {1000 * statistics.median(times['native']):.1f} ms "
          f"| {ratio:.3f} | ≤ 1.2 |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    print("| measurement | wmtool | reference | ratio | target |")
    print("|---|---|---|---|---|")
    inference(args.repeats)
    training(args.repeats)


if __name__ == "__main__":
    main()
