"""The plugin layer: built-ins through entry points, a fake plugin in-process, broken plugins reported."""

import json
import os
import subprocess
import sys

import pytest

from wmtool import hookimpl, hookspecs, plugins
from wmtool.api import Architecture, Attack, AttackOutcome, Evidence, Option, Verifier
from wmtool.plugins import get_registry, pm


class FakePlugin:
    """Registers one attack that returns the victim unchanged, plus a duplicate of a built-in name."""

    @hookimpl
    def register_attacks(self, register):
        register(Attack("identity", "returns the victim unchanged", lambda job: AttackOutcome(job.victim),
                        (Option("strength", int, 1, "unused"),)))
        register(Attack("finetune", "a clash with the built-in", lambda job: AttackOutcome(job.victim)))


class FakeVerifierAndArchitecture:
    """register_verifiers and register_architectures, in-process."""

    @hookimpl
    def register_verifiers(self, register):
        register(Verifier("count-all", "counts every query a success", lambda job: Evidence(10, 10, 0.1)))

    @hookimpl
    def register_architectures(self, register):
        def build(input_shape, num_classes, width=4):
            import torch

            return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(torch.tensor(input_shape).prod()),
                                                                           width), torch.nn.ReLU(),
                                       torch.nn.Linear(width, num_classes))

        register(Architecture("tiny", "a one-hidden-layer MLP", build, (Option("width", int, 4, "hidden units"),)))


@pytest.fixture
def tiny_and_count_all():
    pm.register(FakeVerifierAndArchitecture(), name="fake2")
    yield get_registry()
    pm.unregister(name="fake2")


def test_hook_register_architectures(tiny_and_count_all, tmp_path):
    from wmtool.model_card import ModelCard
    from wmtool.models import build_model, load_model, save_model

    registry = tiny_and_count_all
    model = build_model(registry, ModelCard("tiny", (1, 8, 8), 10, {"width": 6}))
    save_model(model, tmp_path / "tiny.safetensors", registry)
    assert load_model(tmp_path / "tiny.safetensors", registry).card.arch_args == {"width": 6}


def test_hook_register_verifiers(tiny_and_count_all):
    from wmtool.keys import Key, NullRate, Task
    from wmtool.model_card import ModelCard
    from wmtool.models import build_model
    from wmtool.run import Run
    from wmtool.workflows import verify_suspect

    model = build_model(tiny_and_count_all, ModelCard("tiny", (1, 8, 8), 10, {"width": 6}))
    key = Key("x", "count-all", {}, Task((1, 8, 8), 10), NullRate.chance(10), "0" * 64)
    result, _ = verify_suspect(Run(), key, model, alpha=0.01, test="binomial", queries=None)
    assert result.claimed and result.successes == 10


def test_hook_register_embedders(fakes, cli, digits_models, tmp_path):
    made = cli.json("embed", "--scheme", "fake-mark", digits_models["clean"], "-o", tmp_path / "m.safetensors")
    assert fakes == ["fake-mark"] and made["watermark_success"] == 1.0 and made["null_rate"] == 0.1
    assert cli.json("verify", "--key", tmp_path / "m.key.json", tmp_path / "m.safetensors")["claimed"]


class BrokenPlugin:
    @hookimpl
    def register_embedders(self, register):
        raise RuntimeError("boom")


@pytest.fixture
def fake_plugin():
    pm.register(FakePlugin(), name="fake")
    yield
    pm.unregister(name="fake")


def test_builtins_come_through_the_entry_points():
    registry = get_registry()
    assert {"backdoor"} <= set(registry.names("embedder"))
    assert {"finetune"} <= set(registry.names("attack"))
    assert {"trigger-set"} <= set(registry.names("verifier"))
    assert registry.entries["embedder"]["backdoor"].distribution == "wmtool"
    assert {"ewe-cnn", "mlp", "ingrain-cnn", "resnet18"} <= set(registry.names("architecture"))


def test_every_hookspec_is_implemented_by_some_plugin():
    specs = {name for name in dir(hookspecs) if name.startswith("register_")}
    implemented = {name for name in specs if getattr(pm.hook, name).get_hookimpls()}
    assert specs == implemented


def test_hook_register_attacks_in_process_and_duplicates_are_reported(fake_plugin, cli):
    registry = get_registry()
    assert registry.get("attack", "identity").options[0].name == "strength"
    assert registry.entries["attack"]["finetune"].distribution == "wmtool"
    assert any("'finetune' is already registered" in p for p in registry.problems)
    listed = cli.json("plugins")
    names = {(row["kind"], row["name"]) for row in listed["plugins"]}
    assert ("attack", "identity") in names
    for row in listed["plugins"]:
        assert set(row) >= {"name", "kind", "distribution", "version", "summary"}


def test_a_plugin_that_raises_is_reported_and_the_rest_works():
    pm.register(BrokenPlugin(), name="broken")
    try:
        registry = get_registry()
        assert any("register_embedders raised RuntimeError: boom" in p for p in registry.problems)
        assert "backdoor" in registry.names("embedder")
    finally:
        pm.unregister(name="broken")


def test_a_plugin_that_fails_to_import_is_one_warning(monkeypatch, capsys):
    class BadEntry:
        name = "bad"
        dist = type("Dist", (), {"name": "bad-dist", "version": "9"})()

        def load(self):
            raise ImportError("no module named nowhere")

    monkeypatch.setattr(plugins, "_loaded", False)
    monkeypatch.setattr(plugins, "_load_problems", [])
    monkeypatch.setattr(plugins, "entry_points", lambda group: [BadEntry()])
    registry = get_registry()
    assert registry.problems == ["plugin 'bad' from bad-dist failed to load: ImportError: no module named nowhere"]
    assert "backdoor" in registry.names("embedder")  # registered before, still there


def run_wmtool(*args, env_extra):
    env = {**os.environ, **env_extra}
    return subprocess.run([sys.executable, "-m", "wmtool", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_load_plugins_variable_selects_distributions():
    none = json.loads(run_wmtool("plugins", "--json", env_extra={"WMTOOL_LOAD_PLUGINS": ""}).stdout)
    assert {row["kind"] for row in none["plugins"]} == {"architecture"}
    only = json.loads(run_wmtool("plugins", "--json", env_extra={"WMTOOL_LOAD_PLUGINS": "wmtool"}).stdout)
    assert "backdoor" in {row["name"] for row in only["plugins"]}


def test_help_does_not_import_torch():
    code = "import sys; from wmtool.cli import app; app(['--help'], standalone_mode=False); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().endswith("False")


class FakeFingerprinter:
    """A fingerprinter that records the model's answers on 40 held-out images, with a caution."""

    @hookimpl
    def register_fingerprinters(self, register):
        from wmtool.api import FingerprintOutcome, Fingerprinter

        def fingerprint(job):
            inputs = job.data.x[:40]
            return FingerprintOutcome({"inputs": inputs, "labels": job.model.predict(inputs)}, dict(job.params))

        register(Fingerprinter("answers", "the model's own answers", fingerprint, "trigger-set",
                               caution="accuses every model that is accurate"))


def test_hook_register_fingerprinters(cli, digits_models, tmp_path):
    pm.register(FakeFingerprinter(), name="fake-fingerprinter")
    try:
        made = cli.json("fingerprint", digits_models["clean"], "--method", "answers", "-o", tmp_path / "fp.json",
                        "--reference", digits_models["marked"])
        assert made["caution"] == "accuses every model that is accurate" and made["inputs"] == 40
        # an accurate independent model gives the clean model's answers on most images: the null is high
        assert made["null_rate"] > 0.8
        listed = {row["name"]: row for row in cli.json("plugins")["plugins"]}
        assert listed["answers"]["caution"] == made["caution"] and listed["answers"]["kind"] == "fingerprinter"
        assert "caution: accuses every model" in cli("fingerprint", "--method", "answers", "--help").stdout
    finally:
        pm.unregister(name="fake-fingerprinter")
