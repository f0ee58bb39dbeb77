"""The built-in architectures of the two papers, registered through the same hook plugins use."""

from __future__ import annotations

from typing import Any

from wmtool import hookimpl
from wmtool.options import Option
from wmtool.registry import Architecture

INIT = Option("init", str, "torch", "initial weights: torch's defaults, or Glorot-uniform with zero biases "
              "(TensorFlow's, as the papers' code)", choices=("torch", "glorot"))


def _builder(class_name: str):
    """A build function that imports torch only when a model is actually built."""

    def build(input_shape: tuple[int, ...], num_classes: int, **options: Any):
        from wmtool import nets

        return getattr(nets, class_name)(tuple(input_shape), num_classes, **options)

    return build


@hookimpl
def register_architectures(register):
    """Register ewe-cnn, mlp, ingrain-cnn and resnet18."""
    register(Architecture(
        "ewe-cnn", "EWE's MNIST CNN: conv 32 5x5, conv 64 3x3, 2x2 pooling, FC 128, FC classes",
        _builder("EweCNN"),
        options=(Option("dropout", float, 0.0, "dropout after each hidden layer (the authors' code runs with none)",
                        min=0.0, max=0.95), INIT),
        layers=("conv1", "conv2", "fc1"),
    ))
    register(Architecture(
        "mlp", "ingrain's MNIST MLP: depth x width ReLU layers with dropout (2x1200; student 2x800)",
        _builder("MLP"),
        options=(Option("width", int, 1200, "units per hidden layer", min=1),
                 Option("depth", int, 2, "number of hidden layers", min=1),
                 Option("dropout", float, 0.5, "dropout after each hidden layer", min=0.0, max=0.95), INIT),
        layers=("hidden.0", "hidden.1"),
    ))
    register(Architecture(
        "ingrain-cnn", "ingrain's CIFAR-10 CNN: 2x conv64, pool, 2x conv128, pool, 2x FC, dropout",
        _builder("IngrainCNN"),
        options=(Option("fc_width", int, 256, "units of the two FC layers (the student uses 200)", min=1),
                 Option("dropout", float, 0.5, "dropout after the FC layers", min=0.0, max=0.95),
                 Option("student", bool, False, "the paper's smaller distillation student (one conv128)")),
        layers=("fc1", "fc2"),
    ))
    register(Architecture(
        "resnet18", "ResNet-18, CIFAR form (3x3 stem), 8 basic blocks",
        _builder("ResNet18"),
        options=(Option("width", int, 64, "channels of the first stage", min=1),),
        layers=("layer3.1", "layer4.0", "layer4.1"),
    ))
