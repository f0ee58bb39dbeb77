"""wmtool: watermark neural networks, attack the watermarks, verify ownership."""

from importlib.metadata import PackageNotFoundError, version

import pluggy

try:
    __version__ = version("wmtool")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

hookimpl = pluggy.HookimplMarker("wmtool")
"""Decorator marking a plugin's implementation of a wmtool hook."""
