"""What the core hands a plugin (a job) and what the plugin hands back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from wmtool.keys import Key, NullRate
from wmtool.model_card import ModelCard
from wmtool.progress import SILENT, Progress

if TYPE_CHECKING:
    from wmtool.classifier import Classifier
    from wmtool.data import Dataset
    from wmtool.registry import Embedder, Registry


class Predictor(Protocol):
    """Anything that labels canonical images: a torch :class:`~wmtool.classifier.Classifier` or a black box
    (a format's predictor). White-box verifiers also use ``parameter_arrays()`` where the format has it."""

    card: ModelCard

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted class indices for canonical images (N, C, H, W) in [0, 1]."""


@dataclass
class EmbedJob:
    """An embedding request: a model (pretrained, or freshly built when ``pretrained`` is False) and data."""

    model: "Classifier"
    pretrained: bool
    data: "Dataset"
    params: dict[str, Any]
    registry: "Registry"
    seed: int = 0
    device: str = "cpu"
    progress: Progress = SILENT


@dataclass
class EmbedOutcome:
    """The marked model, the arrays verification needs, and the null rate of the watermark queries."""

    model: "Classifier"
    arrays: dict[str, np.ndarray]
    null: NullRate
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class FingerprintJob:
    """A fingerprinting request: the owner's model (trainable, for methods that search inputs by gradient),
    data to draw the fingerprint's inputs from (``data``: held-out data, ``train``: the data the model
    was trained on, for methods that contrast the two) and the method's options."""

    model: "Classifier"
    data: "Dataset"
    train: "Dataset"
    params: dict[str, Any]
    registry: "Registry"
    seed: int = 0
    device: str = "cpu"
    progress: Progress = SILENT


@dataclass
class FingerprintOutcome:
    """The arrays the method's verifier reads (the chosen inputs and the model's recorded behaviour) and
    the options used. The null rate is not the method's to choose: the core measures it on independent
    models."""

    arrays: dict[str, np.ndarray]
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class AttackJob:
    """An attack request: the victim (a trainable Classifier for white-box attacks, any Predictor for
    black-box ones), the attacker's data and the attack's options."""

    victim: Any
    data: "Dataset"
    params: dict[str, Any]
    registry: "Registry"
    seed: int = 0
    device: str = "cpu"
    progress: Progress = SILENT


@dataclass
class AttackOutcome:
    """The attacked model plus how many victim queries the attack spent and anything else worth reporting."""

    model: "Classifier"
    queries: int = 0
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class VerifyJob:
    """A verification request: the owner's key, the suspect, the verifier's options, at most ``queries``
    watermark queries, and the key's scheme (its :class:`~wmtool.registry.Embedder`, None when that scheme
    is not installed) for verifiers that read back what the scheme wrote."""

    key: Key
    suspect: Predictor
    params: dict[str, Any]
    queries: int | None = None
    scheme: "Embedder | None" = None


@dataclass
class Evidence:
    """What the ownership test weighs: ``successes`` of ``trials`` queries against ``null_rate``."""

    successes: int
    trials: int
    null_rate: float
    details: dict[str, Any] = field(default_factory=dict)
    min_success_rate: float | None = None
    """A decision threshold besides the test: no claim below this success rate, however small p is (for
    verifiers with thousands of trials, where a significant but tiny excess over the null means nothing)."""
