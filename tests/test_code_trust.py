"""No code from a file: a model whose own card names architecture code (``module:Factory`` or
``file.py:Factory``) never runs it, in any command that opens a model, unless the user names that code on
the command (``--arch``) or passes ``--trust-code``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import save_file

import wmtool
from wmtool.errors import UserError

EVIL_MODULE = '''
from pathlib import Path
Path({marker!r}).write_text("imported")


def Net(**kwargs):
    Path({marker!r}).write_text("called")
'''


def _cards(marker: Path, folder: Path) -> dict[str, dict]:
    """Two hostile architecture specs: a standard-library function and a Python file beside the model
    (with its true sha256, so that the file check alone would let it through)."""
    evil = folder / "evil.py"
    evil.write_text(EVIL_MODULE.format(marker=str(marker)))
    return {"module": {"arch": "os:system", "arch_args": {"command": f"touch {marker}"}},
            "file": {"arch": f"{evil}:Net", "arch_args": {},
                     "code_sha256": hashlib.sha256(evil.read_bytes()).hexdigest()}}


def _hostile_safetensors(clean: Path, out: Path, spec: dict) -> Path:
    with safe_open(str(clean), "pt") as handle:
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        card = json.loads(handle.metadata()["wmtool"])
    save_file(tensors, str(out), metadata={"wmtool": json.dumps({**card, **spec})})
    return out


def _hostile_onnx(cli, clean: Path, out: Path, spec: dict) -> Path:
    import onnx

    cli("convert", clean, "-o", out)
    proto = onnx.load(str(out))
    entry = next(p for p in proto.metadata_props if p.key == "wmtool")
    entry.value = json.dumps({**json.loads(entry.value), **spec})
    onnx.save(proto, str(out))
    return out


def _timm_folder(clean: Path, folder: Path, spec: dict) -> Path:
    """A timm-style folder whose config.json names the code as its architecture."""
    folder.mkdir()
    _hostile_safetensors(clean, folder / "model.safetensors", spec)
    (folder / "config.json").write_text(json.dumps({"architecture": spec["arch"], "num_classes": 10,
                                                    "pretrained_cfg": {"input_size": [1, 8, 8]}}))
    return folder


def _transformers_folder(clean: Path, folder: Path, spec: dict, marker: Path) -> Path:
    """A transformers folder naming custom code of its own (auto_map, trust_remote_code) that writes the marker."""
    folder.mkdir()
    _hostile_safetensors(clean, folder / "model.safetensors", spec)
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["EvilForImageClassification"], "model_type": "evil-net", "trust_remote_code": True,
        "auto_map": {"AutoConfig": "configuration_evil.EvilConfig",
                     "AutoModelForImageClassification": "modeling_evil.EvilForImageClassification"},
        "num_labels": 10, "image_size": 8, "num_channels": 1}))
    for name in ("modeling_evil.py", "configuration_evil.py"):
        (folder / name).write_text(EVIL_MODULE.format(marker=str(marker)))
    return folder


@pytest.fixture(scope="module")
def hostile(cli, digits_models, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("hostile")
    marker = root / "PWNED"
    made = {}
    clean = digits_models["clean"]
    for kind, spec in _cards(marker, root).items():
        made[f"safetensors-{kind}"] = _hostile_safetensors(clean, root / f"{kind}.safetensors", spec)
        made[f"onnx-{kind}"] = _hostile_onnx(cli, clean, root / f"{kind}.onnx", spec)
        beside = root / f"beside-{kind}"  # a bare weights file beside a config.json naming the code
        beside.mkdir()
        (beside / "config.json").write_text(json.dumps({"architecture": spec["arch"], "num_classes": 10}))
        save_file({"w": __import__("torch").zeros(1)}, str(beside / "model.safetensors"))
        made[f"beside-{kind}"] = beside / "model.safetensors"
    made["timm-folder"] = _timm_folder(clean, root / "timm-folder", _cards(marker, root)["module"])
    made["transformers-folder"] = _transformers_folder(clean, root / "hf-folder", _cards(marker, root)["file"], marker)
    return {"models": made, "marker": marker, "root": root}


def _spec(tmp: Path, text: str) -> Path:
    path = tmp / "spec.toml"
    path.write_text(text)
    return path


def _commands(model: Path, models: dict, tmp: Path) -> dict[str, tuple]:
    key, clean = models["key"], models["clean"]
    model_spec = _spec(tmp, f"seeds = [0]\nreferences = 0\n[model]\npath = '{model}'\n[data]\nowner = 'digits'\n"
                            "[schemes.backdoor]\nepochs = 1\n")
    reference_spec = tmp / "reference.toml"
    reference_spec.write_text(f"seeds = [0]\nreferences = 0\n[model]\npath = '{clean}'\n[[reference_models]]\n"
                              f"path = '{model}'\n[data]\nowner = 'digits'\n[schemes.backdoor]\nepochs = 1\n")
    return {
        "inspect": ("inspect", model),
        "accuracy": ("accuracy", model, "--data", "digits"),
        "embed": ("embed", "--scheme", "backdoor", model, "--data", "digits", "-o", tmp / "m.safetensors",
                  "--key-out", tmp / "k.json", "--epochs", 1),
        "attack-finetune": ("attack", "finetune", model, "--data", "digits", "-o", tmp / "a.onnx", "--epochs", 1),
        "attack-extract": ("attack", "extract", model, "--data", "digits", "-o", tmp / "e.safetensors",
                           "--epochs", 1),
        "verify": ("verify", "--key", key, model),
        "calibrate": ("calibrate", "--key", tmp / "copy.key.json", model),
        "fingerprint": ("fingerprint", model, "--data", "digits", "-o", tmp / "fp.json", "--reference",
                        models["marked"]),
        "fingerprint-reference": ("fingerprint", models["marked"], "--data", "digits", "-o", tmp / "fp2.json",
                                  "--reference", model),
        "convert": ("convert", model, "-o", tmp / "c.onnx"),
        "evaluate-model": ("evaluate", "--spec", model_spec, "--out", tmp / "store", "--quiet"),
        "evaluate-reference": ("evaluate", "--spec", reference_spec, "--out", tmp / "store2", "--quiet"),
    }


COMMANDS = ["inspect", "accuracy", "embed", "attack-finetune", "attack-extract", "verify", "calibrate", "fingerprint",
            "fingerprint-reference", "convert", "evaluate-model", "evaluate-reference"]
KINDS = ["safetensors-module", "safetensors-file", "onnx-module", "onnx-file", "beside-module", "beside-file",
         "timm-folder", "transformers-folder"]
REFUSALS = ("runs only when you name it", "which timm does not register", "never imports a folder's own code")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("command", COMMANDS)
def test_a_hostile_card_never_runs_code(cli, hostile, digits_models, tmp_path, kind, command):
    model = hostile["models"][kind]
    (tmp_path / "copy.key.json").write_bytes(Path(digits_models["key"]).read_bytes())
    args = _commands(model, digits_models, tmp_path)[command]
    result = cli(*args, expect=None)
    assert not hostile["marker"].exists(), f"{command} on {kind} ran the card's code"
    if kind.startswith("onnx") and command != "attack-extract":
        # an ONNX model is its graph: the card's architecture is never built, so the command works
        assert result.exit_code in (0, 1), result.stderr
    elif command == "inspect":
        assert result.exit_code == 0  # reading a header builds nothing
        if kind.startswith("safetensors"):
            assert "commands run it only with --arch" in " ".join(result.stdout.split())  # wrapped to the terminal
    elif command.startswith("evaluate"):
        assert result.exit_code == 0  # a failing cell is recorded; the sweep goes on and says so
        assert any(refusal in _failures(tmp_path) for refusal in REFUSALS)
    else:
        assert result.exit_code == 2, (result.stdout, result.stderr)
        message = result.stderr.strip()
        assert len(message.splitlines()) == 1 and message.startswith("error: ")
        # convert has no task for a bare weights file, and says so before building anything
        expected = ("must come from --data",) if (command, kind[:6]) == ("convert", "beside") else REFUSALS
        assert any(refusal in message for refusal in expected), message


def _failures(tmp: Path) -> str:
    import sqlite3

    text = []
    for store in ("store", "store2"):
        path = tmp / store / "results.sqlite"
        if path.exists():
            with sqlite3.connect(path) as db:
                text += [str(row) for row in db.execute("SELECT * FROM cells").fetchall()]
    return "\n".join(text)


def test_naming_the_code_or_trusting_it_accepts_it(cli, hostile, digits_models, tmp_path):
    marker, model = hostile["marker"], hostile["models"]["safetensors-file"]
    evil = hostile["root"] / "evil.py"
    for accept in (("--arch", f"{evil}:Net"), ("--trust-code",)):
        result = cli("accuracy", model, "--data", "digits", *accept, expect=2)
        assert marker.read_text() == "called"  # the user asked for it: the code ran (and returned no module)
        assert "the factory returned NoneType, not a torch.nn.Module" in result.stderr
        marker.unlink()
    # the permission lasts one command
    cli("accuracy", model, "--data", "digits", expect=2)
    assert not marker.exists()


def test_registered_architectures_keep_working_from_a_card(cli, digits_models):
    assert cli.json("accuracy", digits_models["marked"], "--data", "digits")["accuracy"] > 0.8


def test_the_python_api_never_runs_a_cards_code(hostile, digits_models):
    for kind in ("safetensors-module", "safetensors-file", "beside-file"):
        model = hostile["models"][kind]
        with pytest.raises(UserError, match="runs only when you name it"):
            wmtool.open_model(model, data="digits")
        with pytest.raises(UserError, match="runs only when you name it"):
            wmtool.accuracy(model, data="digits")
        with pytest.raises(UserError, match="runs only when you name it"):
            wmtool.verify(model, digits_models["key"])
        with pytest.raises(UserError, match="runs only when you name it"):
            wmtool.attack(model, "finetune", epochs=1)
    assert not hostile["marker"].exists()
    with pytest.raises(UserError, match="runs only when you name it"):  # a fresh student of the card's architecture
        wmtool.attack(hostile["models"]["onnx-module"], "extract", epochs=1)
    assert not hostile["marker"].exists()


def test_trust_code_in_the_python_api_lasts_one_call(hostile):
    marker, model = hostile["marker"], hostile["models"]["safetensors-module"]
    with pytest.raises(UserError, match="the factory returned int"):
        wmtool.open_model(model, trust_code=True)
    assert marker.exists()
    marker.unlink()
    with pytest.raises(UserError, match="runs only when you name it"):
        wmtool.open_model(model)
    assert not marker.exists()
