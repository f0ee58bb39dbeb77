"""Gates that keep the plugin API honest: every hook is tested and documented, every plugin described."""

from pathlib import Path

from wmtool import hookspecs
from wmtool.plugins import get_registry

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("register_"))


def test_every_hook_has_a_test():
    tests = "".join(path.read_text() for path in (ROOT / "tests").glob("test_*.py") if path.name != "test_gates.py")
    untested = [hook for hook in HOOKS if hook not in tests]
    assert not untested, f"hooks without a test: {untested}"


def test_every_hook_has_a_documentation_section():
    guide = (ROOT / "docs" / "plugins.md").read_text()
    undocumented = [hook for hook in HOOKS if f"### `{hook}`" not in guide]
    assert not undocumented, f"hooks without a section in docs/plugins.md: {undocumented}"


def test_every_registered_plugin_has_a_summary_and_option_help():
    registry = get_registry()
    for kind, entries in registry.entries.items():
        for name, entry in entries.items():
            assert entry.item.summary.strip(), f"{kind} {name} has no summary"
            for option in entry.item.options:
                assert option.help.strip(), f"{kind} {name}: option {option.name} has no help"
