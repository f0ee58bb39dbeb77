"""The trainable model every format opens: a torch network plus its card."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from wmtool.model_card import ModelCard


class Classifier(nn.Module):
    """A network plus its card: takes canonical images (floats in [0, 1], NCHW) and returns logits."""

    def __init__(self, net: nn.Module, card: ModelCard):
        super().__init__()
        self.net = net
        self.card = card

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for canonical images, after the card's preprocessing."""
        return self.net(self.card.preprocessing.apply(x))

    @property
    def device(self) -> torch.device:
        """The device the parameters live on."""
        return next(self.parameters()).device

    @torch.no_grad()
    def predict_logits(self, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """Logits for a numpy batch of canonical images, computed in evaluation mode."""
        was_training = self.training
        self.eval()
        outputs = []
        for start in range(0, len(x), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(x[start:start + batch_size], dtype=np.float32))
            outputs.append(self(chunk.to(self.device)).float().cpu().numpy())
        self.train(was_training)
        if not outputs:
            return np.zeros((0, self.card.num_classes), dtype=np.float32)
        return np.concatenate(outputs)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted class indices for a numpy batch of canonical images."""
        return self.predict_logits(x).argmax(axis=1)

    def file_name(self, tensor: str) -> str:
        """The name a tensor of the network has in the model's file (a graph imported from a file keeps the
        file's names, which torch cannot use as attribute names)."""
        rename = getattr(self.net, "file_name", None)
        return rename(tensor) if rename is not None else tensor

    def parameter_arrays(self) -> dict[str, np.ndarray]:
        """The network's named tensors as numpy arrays, by their names in the model's file (for white-box
        verifiers)."""
        return {self.file_name(name): tensor.detach().cpu().numpy() for name, tensor in self.net.state_dict().items()}
