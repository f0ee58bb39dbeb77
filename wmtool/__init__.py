"""wmtool: watermark neural networks, attack the watermarks, verify ownership.

From Python: ``wmtool.open_model``, ``train``, ``accuracy``, ``embed``, ``fingerprint``, ``attack``, ``verify`` and ``evaluate`` run the
CLI's steps with its defaults (see docs/python.md); they are imported on first use.
"""

from importlib.metadata import PackageNotFoundError, version
from typing import Any

import pluggy

try:
    __version__ = version("wmtool")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

hookimpl = pluggy.HookimplMarker("wmtool")
"""Decorator marking a plugin's implementation of a wmtool hook."""

PYTHON_API = ("open_model", "train", "accuracy", "embed", "fingerprint", "attack", "verify", "evaluate")


def __getattr__(name: str) -> Any:
    """The Python API's functions, imported from :mod:`wmtool.python_api` on first use."""
    if name in PYTHON_API:
        import importlib

        return getattr(importlib.import_module("wmtool.python_api"), name)
    raise AttributeError(f"module 'wmtool' has no attribute {name!r}")
