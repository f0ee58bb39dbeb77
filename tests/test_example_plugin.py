"""The installable example package in examples/ works through the CLI like any stranger's plugin."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from wmtool import plugins

INSTALLED = importlib.util.find_spec("wmtool_plugin_example") is not None
if os.environ.get("CI") and not INSTALLED:
    raise RuntimeError("CI must install examples/wmtool-plugin-example (the README's test command does)")
pytestmark = pytest.mark.skipif(not INSTALLED, reason="examples/wmtool-plugin-example is not installed")


def test_listed_with_its_distribution_and_version(cli):
    rows = {(r["kind"], r["name"]): r for r in cli.json("plugins")["plugins"]}
    for kind, name in (("embedder", "frontier-stitching"), ("attack", "blur"), ("verifier", "true-adversaries")):
        assert rows[(kind, name)]["distribution"] == "wmtool-plugin-example"
        assert rows[(kind, name)]["version"] == "0.1.0"


def test_embed_attack_verify_end_to_end(cli, digits_models, tmp_path):
    marked, key = tmp_path / "fs.safetensors", tmp_path / "fs.json"
    report = cli.json("embed", "--scheme", "frontier-stitching", digits_models["clean"], "-o", marked,
                      "--key-out", key, "--keys", 60, "--eps", 0.15)
    assert report["params"]["true_adversaries"] > 5 and report["test_accuracy"] > 0.85
    assert json.loads(key.read_text())["verifier"] == "true-adversaries"
    owned = cli.json("verify", "--key", key, marked, expect=0)
    assert owned["claimed"] and owned["details"]["key_entries"] == 60
    assert not cli.json("verify", "--key", key, digits_models["clean"], expect=1)["claimed"]
    blurred = tmp_path / "blurred.onnx"
    attacked = cli.json("attack", "blur", marked, "-o", blurred, "--sigma", 0.8)
    assert attacked["details"] == {"sigma": 0.8} and attacked["accuracy_after"] < attacked["accuracy_before"] + 0.05
    assert cli.json("verify", "--key", key, blurred, expect=None)["queries"] > 0
    refused = cli("attack", "blur", marked, "-o", tmp_path / "blurred.safetensors", expect=2)
    assert "write it as .onnx" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


def test_without_it_nothing_else_changes():
    def listing(selection):
        env = {**os.environ, "WMTOOL_LOAD_PLUGINS": selection}
        out = subprocess.run([sys.executable, "-m", "wmtool", "plugins", "--json"], capture_output=True, text=True,
                             env=env, timeout=120)
        return {(r["kind"], r["name"], r["distribution"]) for r in json.loads(out.stdout)["plugins"]}

    everything, core_only = listing("wmtool,wmtool-plugin-example"), listing("wmtool")
    assert everything - core_only == {("embedder", "frontier-stitching", "wmtool-plugin-example"),
                                      ("attack", "blur", "wmtool-plugin-example"),
                                      ("verifier", "true-adversaries", "wmtool-plugin-example")}


def test_a_plugin_for_another_api_version_is_refused(monkeypatch):
    module = type(sys)("future_plugin")
    module.WMTOOL_API_VERSION = 99

    class Entry:
        name = "future"
        dist = type("Dist", (), {"name": "future-dist", "version": "1"})()

        def load(self):
            return module

    monkeypatch.setattr(plugins, "_loaded", False)
    monkeypatch.setattr(plugins, "_load_problems", [])
    monkeypatch.setattr(plugins, "entry_points", lambda group: [Entry()])
    registry = plugins.get_registry()
    assert registry.problems == ["plugin 'future' from future-dist needs plugin API 99, this wmtool provides 1; "
                                 "not loaded"]


def test_hook_register_commands_adds_the_example_command(cli, digits_models, tmp_path):
    marked, key = tmp_path / "fs.safetensors", tmp_path / "fs.json"
    made = cli.json("embed", "--scheme", "frontier-stitching", digits_models["clean"], "-o", marked,
                    "--key-out", key, "--keys", 20, "--eps", 0.15)
    shown = cli("frontier-keys", key).stdout.splitlines()
    assert shown[0] == f"20 key inputs: {made['params']['true_adversaries']} true adversaries, " \
                       f"{20 - made['params']['true_adversaries']} false"
    assert sum(int(line.split()[2]) for line in shown[1:]) == made["params"]["true_adversaries"]
    refused = cli("frontier-keys", digits_models["key"], expect=2)
    assert refused.stderr.strip() == f"error: {digits_models['key']}: a backdoor key, not a frontier-stitching one"
