"""Model formats are plugins: a toy ``.npzmodel`` format registered in-process works with every command,
with no change in the core."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from wmtool.api import METADATA_KEY, ModelCard, ModelFormat, ModelSource, UserError, hookimpl, load_weights
from wmtool.plugins import pm


def _load(path: Path, registry, source: ModelSource, task) -> object:
    import torch

    with np.load(path) as stored:
        card = ModelCard.from_json(str(stored[METADATA_KEY]), str(path))
        tensors = {name: torch.from_numpy(stored[name]) for name in stored.files if name != METADATA_KEY}
    return load_weights(registry, card, tensors, path)


def _save(model, path: Path, registry) -> bytes:
    buffer = io.BytesIO()
    arrays = {name: t.detach().cpu().numpy() for name, t in model.net.state_dict().items()}
    np.savez(buffer, **arrays, **{METADATA_KEY: np.array(json.dumps(model.card.to_json()))})
    return buffer.getvalue()


def _describe(path: Path) -> dict:
    with np.load(path) as stored:
        if METADATA_KEY not in stored.files:
            raise UserError(f"{path}: an .npzmodel without its card")
        return {"format": "npzmodel", "card": json.loads(str(stored[METADATA_KEY])),
                "tensors": {n: {"dtype": str(stored[n].dtype), "shape": list(stored[n].shape)}
                            for n in stored.files if n != METADATA_KEY}}


class NpzModelFormat:
    @hookimpl
    def register_model_formats(self, register):
        register(ModelFormat("npzmodel", "a toy format: numpy's .npz of the state dict plus the card",
                             (".npzmodel",), _load, _describe, _save))


@pytest.fixture
def npzmodel():
    pm.register(NpzModelFormat(), name="npzmodel")
    yield
    pm.unregister(name="npzmodel")


def test_hook_register_model_formats_a_toy_format_works_with_every_command(npzmodel, cli, digits_models, tmp_path):
    clean = tmp_path / "clean.npzmodel"
    cli("convert", digits_models["clean"], "-o", clean)
    assert cli.json("inspect", clean)["format"] == "npzmodel"
    scored = cli.json("accuracy", clean)["accuracy"]
    assert scored == cli.json("accuracy", digits_models["clean"])["accuracy"] and scored > 0.9
    marked, key = tmp_path / "marked.npzmodel", tmp_path / "key.json"
    made = cli.json("embed", "--scheme", "backdoor", clean, "-o", marked, "--key-out", key, "--epochs", 2)
    assert made["watermark_success"] > 0.9 and made["test_accuracy"] > 0.85
    assert cli.json("verify", "--key", key, marked)["claimed"]
    assert not cli.json("verify", "--key", key, clean, expect=1)["claimed"]
    assert cli.json("verify", "--key", key, digits_models["clean"], expect=1)["queries"] > 0  # across formats


def test_without_the_format_its_files_are_refused_in_one_line(cli, tmp_path):
    path = tmp_path / "model.npzmodel"
    path.write_bytes(b"whatever")
    refused = cli("accuracy", path, expect=2)
    assert refused.stderr.startswith(f"error: {path}: not a model wmtool can open; it opens ")
    assert "onnx (.onnx)" in refused.stderr and "safetensors (.safetensors)" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_an_output_suffix_no_format_writes_is_refused_before_any_work(fakes, cli, digits_models, tmp_path):
    for command in (("embed", "--scheme", "fake-mark", digits_models["clean"]), ("attack", "fake-attack",
                                                                                 digits_models["clean"])):
        refused = cli(*command, "-o", tmp_path / "model.h5", expect=2)
        assert refused.stderr.strip() == (f"error: {tmp_path / 'model.h5'}: output models are written as onnx "
                                          "(.onnx), safetensors (.safetensors)")
    assert fakes == [] and not list(tmp_path.iterdir())  # neither plugin ran
    cli("embed", "--scheme", "fake-mark", digits_models["clean"], "-o", tmp_path / "m.onnx")
    cli("attack", "fake-attack", tmp_path / "m.onnx", "-o", tmp_path / "a.onnx")
    assert fakes == ["fake-mark", "fake-attack"]
    assert cli.json("verify", "--key", tmp_path / "m.key.json", tmp_path / "a.onnx")["success_rate"] == 1.0
