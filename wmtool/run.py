"""The common options of one command invocation (device, seed, output mode) and what follows from them."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wmtool.progress import Progress
    from wmtool.registry import Registry

_reported: set[str] = set()


@dataclass
class Run:
    """The common options of one command invocation and what follows from them."""

    json: bool = False
    quiet: bool = False
    device: str = "auto"
    seed: int = 0
    _seeded: bool = field(default=False, init=False, repr=False)

    @cached_property
    def registry(self) -> "Registry":
        """The plugin registry; problems met while loading plugins are printed once on stderr."""
        from wmtool.plugins import get_registry

        registry = get_registry()
        for problem in registry.problems:
            if problem not in _reported:
                _reported.add(problem)
                print(f"warning: {problem}", file=sys.stderr)
        return registry

    @cached_property
    def torch_device(self) -> str:
        """The resolved torch device (``auto``: CUDA when torch has it)."""
        from wmtool.training import resolve_device

        return resolve_device(self.device)

    def seed_once(self) -> None:
        """Seed every random generator from ``seed``, once per run: the first model opened or built starts
        from it, and later steps continue the same streams."""
        if not self._seeded:
            from wmtool.training import seed_everything

            seed_everything(self.seed)
            self._seeded = True

    @property
    def progress(self) -> "Progress":
        """Progress bars, shown only on a terminal and without --json or --quiet."""
        from wmtool.progress import Progress

        return Progress(enabled=not (self.json or self.quiet) and sys.stdout.isatty())
