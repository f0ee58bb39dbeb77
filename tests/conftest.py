"""Shared fixtures: a CLI runner and a small clean/marked model pair on the embedded digits data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wmtool import hookimpl
from wmtool.cli import app
from wmtool.plugins import pm

SHARED = Path(__file__).resolve().parents[2] / "shared"


class Cli:
    """Runs ``wmtool`` in-process and keeps exit code, stdout and stderr apart."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: object, expect: int | None = 0):
        result = self.runner.invoke(app, [str(a) for a in args])
        if expect is not None:
            assert result.exit_code == expect, (result.exit_code, result.stdout, result.stderr, result.exception)
        return result

    def json(self, *args: object, expect: int | None = 0) -> dict:
        result = self(*args, "--json", expect=expect)
        return json.loads(result.stdout)


@pytest.fixture(scope="session")
def cli() -> Cli:
    return Cli()


@pytest.fixture(scope="session")
def digits_models(tmp_path_factory, cli) -> dict[str, Path]:
    """A clean ewe-cnn on digits, a backdoor-marked copy and its key (a few seconds of training)."""
    folder = tmp_path_factory.mktemp("digits")
    clean, marked, key = folder / "clean.safetensors", folder / "marked.safetensors", folder / "key.json"
    cli("train", "--arch", "ewe-cnn", "--data", "digits", "-o", clean, "--epochs", 15, "--batch-size", 64)
    cli("embed", "--scheme", "backdoor", clean, "--data", "digits", "-o", marked, "--key-out", key,
        "--epochs", 3)
    return {"clean": clean, "marked": marked, "key": key, "folder": folder}


class FakeSchemeAndAttack:
    """An in-process embedder and attack for tests where training is not the point: ``fake-mark`` keeps the
    model as it is and records its own answers on 50 training inputs as the watermark (so the model itself
    is claimed); ``fake-attack`` returns the victim unchanged. Both count their calls."""

    calls: list[str] = []

    @staticmethod
    def _mark(job):
        import numpy as np

        from wmtool.api import EmbedOutcome, NullRate

        FakeSchemeAndAttack.calls.append("fake-mark")
        inputs = job.data.x[:50]
        return EmbedOutcome(job.model, {"inputs": inputs, "labels": job.model.predict(inputs).astype(np.int64)},
                            NullRate.chance(job.model.card.num_classes), dict(job.params))

    @staticmethod
    def _attack(job):
        from wmtool.api import AttackOutcome

        FakeSchemeAndAttack.calls.append("fake-attack")
        return AttackOutcome(job.victim)

    @hookimpl
    def register_embedders(self, register):
        from wmtool.api import Embedder

        register(Embedder("fake-mark", "test double: the model's own answers as the watermark", self._mark))

    @hookimpl
    def register_attacks(self, register):
        from wmtool.api import Attack

        register(Attack("fake-attack", "test double: the victim unchanged", self._attack))


@pytest.fixture
def fakes():
    """The fake embedder and attack, registered for one test; yields their call log."""
    pm.register(FakeSchemeAndAttack(), name="fakes")
    FakeSchemeAndAttack.calls.clear()
    yield FakeSchemeAndAttack.calls
    pm.unregister(name="fakes")


SMALL_TRANSFORMER = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


def tiny_vit(num_labels: int = 10, seed: int = 0):
    """A small ViT (transformers) with random weights for digits' 1×8×8 images."""
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.ViTConfig(image_size=8, patch_size=4, num_channels=1, num_labels=num_labels,
                                    id2label={i: f"digit {i}" for i in range(num_labels)},
                                    label2id={f"digit {i}": i for i in range(num_labels)}, **SMALL_TRANSFORMER)
    return transformers.ViTForImageClassification(config)


@pytest.fixture(scope="session")
def trained_vit():
    """A ViT on digits' 8×8 images, trained for a few seconds with the library's own model in a plain loop,
    normalised as its processor says ((x − 0.5) / 0.5 on [0, 1] pixels)."""
    import torch

    from wmtool.data import load_dataset

    pytest.importorskip("transformers")
    seed = 0
    model = tiny_vit(seed=seed)
    data = load_dataset("digits", "train")
    x = (torch.from_numpy(data.x) - 0.5) / 0.5
    y = torch.from_numpy(data.y)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(12):
        for index in torch.randperm(len(y), generator=generator).split(64):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(pixel_values=x[index]).logits, y[index]).backward()
            optimizer.step()
    return model.eval()
