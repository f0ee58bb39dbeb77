"""Bring your own architecture: --arch file.py:Factory / module:Factory on metadata-free safetensors."""

from __future__ import annotations

import sys
import types

import pytest
import torch
from safetensors.torch import save_file

from wmtool_plugins.safetensors_format import read_card

ARCH = '''
import torch
from torch import nn


class Net(nn.Module):
    """A small CNN of the user's own."""

    def __init__(self, num_classes=10, width=16):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(width * 4 * 4, num_classes)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def make(num_classes=10):
    return Net(num_classes)
'''


def _trained_weights(path, width=16) -> None:
    """A metadata-free safetensors of Net trained a little on digits (as a third party would ship it)."""
    from wmtool.data import load_dataset

    namespace: dict = {}
    exec(ARCH, namespace)
    torch.manual_seed(0)
    net = namespace["Net"](10, width)
    data = load_dataset("digits", "train", seed=0)
    x, y = torch.from_numpy(data.x), torch.from_numpy(data.y)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(15):
        for start in range(0, len(x), 64):
            loss = torch.nn.functional.cross_entropy(net(x[start:start + 64]), y[start:start + 64])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))


@pytest.fixture(scope="module")
def user_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("byo")
    (folder / "my_arch.py").write_text(ARCH)
    _trained_weights(folder / "third_party.safetensors")
    return folder


def test_whole_workflow_with_a_file_architecture(cli, user_model, tmp_path):
    folder = user_model
    arch = f"{folder / 'my_arch.py'}:Net"
    weights = folder / "third_party.safetensors"
    args = ("--arch", arch, "--arch-args", '{"num_classes": 10}')
    accuracy = cli.json("accuracy", weights, "--data", "digits", *args)
    assert accuracy["accuracy"] > 0.85

    marked, key = tmp_path / "marked.safetensors", tmp_path / "key.json"
    cli("embed", "--scheme", "backdoor", weights, "--data", "digits", "-o", marked, "--key-out", key,
        "--epochs", 3, *args)
    card = read_card(marked)
    assert card.arch == arch and card.code_sha256 and card.arch_args == {"num_classes": 10}

    # the outputs name their code, which runs only when this command names it again or trusts the card
    attacked = tmp_path / "attacked.safetensors"
    refused = cli("attack", "finetune", marked, "--data", "digits", "-o", attacked, "--epochs", 1, expect=2).stderr
    assert f"names architecture code {arch}" in refused and "--trust-code" in refused and not attacked.exists()
    cli("attack", "finetune", marked, "--data", "digits", "-o", attacked, "--epochs", 1, "--arch", arch)
    assert read_card(attacked).arch == arch
    verdict = cli.json("verify", "--key", key, attacked, "--trust-code")
    assert verdict["claimed"] and verdict["success_rate"] > 0.5
    # the trained weights, not chance (the card's task and arguments are kept with --arch)
    assert cli.json("accuracy", marked, "--data", "digits", "--trust-code")["accuracy"] > 0.5


def test_a_factory_function_and_a_relative_path(cli, user_model, monkeypatch, tmp_path):
    monkeypatch.chdir(user_model)
    out = tmp_path / "trained.safetensors"
    cli("train", "--arch", "my_arch.py:make", "--data", "digits", "-o", out, "--epochs", 1)
    assert read_card(out).arch == f"{user_model / 'my_arch.py'}:make"  # stored absolute


def test_wrong_architecture_names_the_mismatched_tensors(cli, user_model):
    weights = user_model / "third_party.safetensors"
    wide = user_model / "wide_arch.py"
    wide.write_text(ARCH.replace("width=16", "width=24"))
    result = cli("accuracy", weights, "--data", "digits", "--arch", f"{wide}:Net", expect=2)
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in message
    assert "features.0.weight (16, 1, 3, 3) vs (24, 1, 3, 3)" in message and "head.weight" in message


def test_changed_or_moved_file_is_reported(cli, user_model, tmp_path):
    source = tmp_path / "arch.py"
    source.write_text(ARCH)
    out = tmp_path / "model.safetensors"
    cli("train", "--arch", f"{source}:Net", "--data", "digits", "-o", out, "--epochs", 1)
    source.write_text(ARCH + "\n# edited\n")
    changed = cli("accuracy", out, "--data", "digits", "--trust-code", expect=2).stderr
    assert "changed since the model was saved" in changed
    source.unlink()
    moved = cli("accuracy", out, "--data", "digits", "--trust-code", expect=2).stderr
    assert "not found (moved or deleted?)" in moved
    # naming the file again accepts it as it is now
    source.write_text(ARCH + "\n# edited\n")
    cli("accuracy", out, "--data", "digits", "--arch", f"{source}:Net")


def test_module_factory_and_bad_specs(cli, user_model, monkeypatch):
    monkeypatch.syspath_prepend(str(user_model))
    weights = user_model / "third_party.safetensors"
    assert cli.json("accuracy", weights, "--data", "digits", "--arch", "my_arch:Net")["accuracy"] > 0.85
    assert "has no class or function 'Nope'" in cli("accuracy", weights, "--data", "digits", "--arch",
                                                      "my_arch:Nope", expect=2).stderr
    assert "cannot be imported" in cli("accuracy", weights, "--data", "digits", "--arch", "no_such_mod:Net",
                                       expect=2).stderr


def test_inspect_without_metadata_suggests_arch_and_checks_a_forward_pass(cli, user_model):
    weights = user_model / "third_party.safetensors"
    plain = cli("inspect", weights).stdout
    assert "file.py:Factory" in plain and "features.0.weight" in plain
    info = cli.json("inspect", weights, "--arch", f"{user_model / 'my_arch.py'}:Net", "--input-shape", "1,8,8")
    assert info["check"]["parameters"] == 16 * 9 + 16 + 10 * 256 + 10
    assert info["check"]["forward"] == {"input": [1, 1, 8, 8], "output": [1, 10]}
    failed = cli("inspect", weights, "--arch", f"{user_model / 'my_arch.py'}:Net", "--input-shape", "1,28,28",
                 expect=2).stderr
    assert "forward pass" in failed and len(failed.strip().splitlines()) == 1


def test_config_json_names_a_library_model(cli, user_model, tmp_path, monkeypatch):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes((user_model / "third_party.safetensors").read_bytes())
    (tmp_path / "config.json").write_text('{"architecture": "tiny", "num_classes": 10}')
    monkeypatch.setitem(sys.modules, "timm", None)  # not installed
    message = cli("accuracy", weights, "--data", "digits", expect=2).stderr
    assert "pip install timm" in message

    namespace: dict = {}
    exec(ARCH, namespace)
    fake = types.ModuleType("timm")
    fake.create_model = lambda name, pretrained, num_classes: namespace["Net"](num_classes)
    fake.is_model = lambda name: name == "tiny"
    monkeypatch.setitem(sys.modules, "timm", fake)
    assert cli.json("accuracy", weights, "--data", "digits")["accuracy"] > 0.85
    # only names timm registers: no hf-hub: or local-dir: source from the file
    (tmp_path / "config.json").write_text('{"architecture": "hf-hub:someone/tiny", "num_classes": 10}')
    assert "runs only when you name it" in cli("accuracy", weights, "--data", "digits", expect=2).stderr
    (tmp_path / "config.json").write_text('{"architecture": "huge", "num_classes": 10}')
    assert "timm has no architecture 'huge'" in cli("accuracy", weights, "--data", "digits", expect=2).stderr
