"""Plugin discovery (entry-point group ``wmtool``) and the registry built from the hooks."""

from __future__ import annotations

import os
from typing import Any
from importlib.metadata import entry_points

import pluggy

from wmtool import __version__, architectures, hookspecs
from wmtool.api_version import API_VERSION
from wmtool.registry import Architecture, Attack, Embedder, Fingerprinter, Kind, ModelFormat, Registry, Verifier

ENTRY_POINT_GROUP = "wmtool"
LOAD_ENV = "WMTOOL_LOAD_PLUGINS"

_HOOKS: tuple[tuple[str, Kind, type], ...] = (
    ("register_embedders", "embedder", Embedder),
    ("register_fingerprinters", "fingerprinter", Fingerprinter),
    ("register_attacks", "attack", Attack),
    ("register_verifiers", "verifier", Verifier),
    ("register_architectures", "architecture", Architecture),
    ("register_model_formats", "format", ModelFormat),
)

pm = pluggy.PluginManager("wmtool")
pm.add_hookspecs(hookspecs)
pm.register(architectures, name="wmtool.architectures")

_origins: dict[str, tuple[str, str]] = {"wmtool.architectures": ("wmtool", __version__)}
_load_problems: list[str] = []
_loaded = False


def _wanted_distributions() -> set[str] | None:
    """The distributions ``WMTOOL_LOAD_PLUGINS`` selects, or None when it is unset (load all)."""
    raw = os.environ.get(LOAD_ENV)
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def load_entry_points() -> None:
    """Import and register every plugin of the ``wmtool`` entry-point group (once per process).

    A plugin that fails to import, or declares a ``WMTOOL_API_VERSION`` other than this wmtool's, is
    recorded as a problem (the CLI prints each as one warning line) and skipped.
    """
    global _loaded
    if _loaded:
        return
    _loaded = True
    wanted = _wanted_distributions()
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        dist = entry.dist.name if entry.dist else "unknown"
        version = entry.dist.version if entry.dist else ""
        if wanted is not None and dist not in wanted:
            continue
        plugin_name = f"{dist}:{entry.name}"
        if pm.get_plugin(plugin_name) is not None:
            continue
        try:
            module = entry.load()
        except Exception as exc:  # a broken third-party plugin must not break the tool
            _load_problems.append(f"plugin {entry.name!r} from {dist} failed to load: {type(exc).__name__}: {exc}")
            continue
        wanted_api = getattr(module, "WMTOOL_API_VERSION", API_VERSION)
        if wanted_api != API_VERSION:
            _load_problems.append(f"plugin {entry.name!r} from {dist} needs plugin API {wanted_api}, this wmtool "
                                  f"provides {API_VERSION}; not loaded")
            continue
        pm.register(module, name=plugin_name)
        _origins[plugin_name] = (dist, version)


def get_registry() -> Registry:
    """Load the plugins if needed and collect everything they register."""
    load_entry_points()
    registry = Registry(problems=list(_load_problems))
    for hook_name, kind, expected in _HOOKS:
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            dist, version = _origins.get(impl.plugin_name, (impl.plugin_name, ""))

            def register(item: object, kind: Kind = kind, expected: type = expected,
                         dist: str = dist, version: str = version) -> None:
                if not isinstance(item, expected):
                    registry.problems.append(f"{dist}: {hook_name} got {type(item).__name__}, not {expected.__name__}")
                    return
                registry.add(kind, item, dist, version)

            try:
                impl.function(register=register)
            except Exception as exc:
                registry.problems.append(f"{dist}: {hook_name} raised {type(exc).__name__}: {exc}")
    return registry


def add_plugin_commands(app: Any) -> list[str]:
    """Let every plugin add its commands to ``app``; return the problems met (one line each)."""
    load_entry_points()
    problems: list[str] = []
    for impl in pm.hook.register_commands.get_hookimpls():
        dist = _origins.get(impl.plugin_name, (impl.plugin_name, ""))[0]
        try:
            impl.function(app=app)
        except Exception as exc:
            problems.append(f"{dist}: register_commands raised {type(exc).__name__}: {exc}")
    return problems
