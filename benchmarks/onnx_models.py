"""The three third-party ONNX classifiers of ../shared/models: accuracy through onnxruntime with their
stated preprocessing, and how closely the torch conversion reproduces onnxruntime's logits.

Run: python benchmarks/onnx_models.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch

from wmtool.data import load_dataset
from wmtool_plugins.onnx_format import OnnxPredictor, card_of, read_onnx
from wmtool_plugins.onnx_graph import OnnxModule
from wmtool.preprocessing import Preprocessing
from wmtool.training import accuracy

SHARED = Path(__file__).resolve().parents[2] / "shared"
MODELS = (  # file, data, split, preprocessing, README accuracy
    ("mnist-8.onnx", "data/mnist", "test", Preprocessing(255.0), 0.9890),
    ("mnist-8.onnx", "data/mnist", "test", Preprocessing(1.0), 0.9890),
    ("mnist-canvas-cnn.onnx", "data/mnist", "test", Preprocessing(1.0, (0.1307,), (0.3081,)), 0.9949),
    ("cifar10-resnet20.onnx", "data/cifar10-jpeg/test.npz", "all",
     Preprocessing(1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), 0.810),
)


def main() -> None:
    print("| model | preprocessing | accuracy (onnxruntime) | README | max abs logit difference, torch conversion "
          "vs onnxruntime (256 test images) |")
    print("|---|---|---|---|---|")
    for name, data_path, split, prep, readme in MODELS:
        path = SHARED / "models" / name
        data = load_dataset(str(SHARED / data_path), split)
        proto = read_onnx(path)
        predictor = OnnxPredictor(path, proto, card_of(proto, path, preprocessing=prep))
        score = accuracy(predictor, data.x, data.y)
        x = data.x[np.random.default_rng(0).permutation(len(data))[:256]]
        with torch.no_grad():
            converted = OnnxModule(onnx.load(str(path)))(prep.apply(torch.from_numpy(x))).numpy()
        difference = np.abs(converted - predictor.predict_logits(x)).max()
        stated = f"range {prep.input_range:g}, mean {prep.mean}, std {prep.std}"
        print(f"| {name} | {stated} | {100 * score:.2f}% | {100 * readme:.2f}% | {difference:.2e} |")


if __name__ == "__main__":
    main()
