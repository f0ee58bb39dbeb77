"""Gates that keep the plugin API honest: every hook is tested and documented, every plugin described."""

import inspect
import re
from pathlib import Path

from wmtool import hookspecs
from wmtool.plugins import get_registry

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("register_"))


def test_every_hook_has_a_test_named_for_it():
    """datasette's rule: a test function ``test_hook_<name>...`` for every hook."""
    tests = "".join(path.read_text() for path in (ROOT / "tests").glob("test_*.py") if path.name != "test_gates.py")
    named = set(re.findall(r"^def (test_hook_\w+)\(", tests, re.M))
    untested = [hook for hook in HOOKS if not any(name.startswith(f"test_hook_{hook}") for name in named)]
    assert not untested, f"hooks without a test_hook_<name> test: {untested}"


def test_every_hook_is_documented_with_its_signature():
    guide = (ROOT / "docs" / "plugins.md").read_text()
    for hook in HOOKS:
        signature = f"{hook}({', '.join(inspect.signature(getattr(hookspecs, hook)).parameters)})"
        assert f"### `{signature}`" in guide, f"docs/plugins.md has no section headed `{signature}`"


def test_every_registered_plugin_has_a_summary_and_option_help():
    registry = get_registry()
    for kind, entries in registry.entries.items():
        for name, entry in entries.items():
            assert entry.item.summary.strip(), f"{kind} {name} has no summary"
            for option in entry.item.options:
                assert option.help.strip(), f"{kind} {name}: option {option.name} has no help"
