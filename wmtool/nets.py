"""The papers' network architectures as torch modules (imported only when a model is built)."""

from __future__ import annotations

import torch
from torch import nn


def _flat_size(features: nn.Module, input_shape: tuple[int, ...]) -> int:
    """The number of features ``features`` produces for one input of ``input_shape``."""
    with torch.no_grad():
        return int(features(torch.zeros(1, *input_shape)).numel())


def initialise(module: nn.Module, init: str) -> None:
    """Re-initialise ``module``'s conv and linear layers: ``torch`` keeps torch's defaults, ``glorot`` draws
    Glorot-uniform weights and zero biases (TensorFlow/Keras' defaults, which both papers' code used)."""
    if init == "torch":
        return
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


class EweCNN(nn.Module):
    """EWE's MNIST network: conv 32 5×5, pool, conv 64 3×3, pool, FC 128, FC classes ("same" padding)."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, dropout: float = 0.0,
                 init: str = "torch"):
        super().__init__()
        channels = input_shape[0]
        self.conv1 = nn.Conv2d(channels, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.drop = nn.Dropout(dropout)
        flat = _flat_size(self._features, input_shape)
        self.fc1 = nn.Linear(flat, 128)
        self.fc2 = nn.Linear(128, num_classes)
        initialise(self, init)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.pool(torch.relu(self.conv1(x))))
        return self.drop(self.pool(torch.relu(self.conv2(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._features(x).flatten(1)
        return self.fc2(self.drop(torch.relu(self.fc1(x))))


class MLP(nn.Module):
    """ingrain's MNIST multilayer perceptron: ``depth`` ReLU layers of ``width`` units with dropout."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: int = 1200, depth: int = 2,
                 dropout: float = 0.5, init: str = "torch"):
        super().__init__()
        size = 1
        for dim in input_shape:
            size *= dim
        self.hidden = nn.ModuleList()
        for _ in range(depth):
            self.hidden.append(nn.Linear(size, width))
            size = width
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(size, num_classes)
        initialise(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.hidden:
            x = self.drop(torch.relu(layer(x)))
        return self.out(x)


class IngrainCNN(nn.Module):
    """ingrain's CIFAR-10 network (2×conv64, pool, 2×conv128, pool, 2×FC, dropout).

    ``student=True`` gives the paper's distillation student: conv64, conv64, pool, conv128, pool, 2×FC.
    """

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, fc_width: int = 256,
                 dropout: float = 0.5, student: bool = False):
        super().__init__()
        channels = input_shape[0]
        block2 = [nn.Conv2d(64, 128, 3, padding=1), nn.ReLU()]
        if not student:
            block2 += [nn.Conv2d(128, 128, 3, padding=1), nn.ReLU()]
        self.features = nn.Sequential(
            nn.Conv2d(channels, 64, 3, padding=1), nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            *block2,
            nn.MaxPool2d(2),
        )
        flat = _flat_size(self.features, input_shape)
        self.fc1 = nn.Linear(flat, fc_width)
        self.fc2 = nn.Linear(fc_width, fc_width)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(fc_width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).flatten(1)
        x = self.drop(torch.relu(self.fc1(x)))
        x = self.drop(torch.relu(self.fc2(x)))
        return self.out(x)


class BasicBlock(nn.Module):
    """A ResNet basic block: two 3×3 convolutions with batch norm and an identity or 1×1 shortcut."""

    def __init__(self, inputs: int, outputs: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(outputs)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(outputs)
        self.shortcut = nn.Sequential()
        if stride != 1 or inputs != outputs:
            self.shortcut = nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 in its CIFAR form (3×3 stem, no initial pooling), 8 basic blocks, global pooling."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(input_shape[0], width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        stages = []
        inputs = width
        for index, stride in enumerate((1, 2, 2, 2)):
            outputs = width * 2**index
            stages.append(nn.Sequential(BasicBlock(inputs, outputs, stride), BasicBlock(outputs, outputs, 1)))
            inputs = outputs
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inputs, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.pool(x).flatten(1))
