"""Progress bars for long work: shown on stderr while stdout is a terminal, off with --quiet or --json."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Callable, Iterator


class Progress:
    """Hands out progress tasks; a disabled instance makes every task a no-op."""

    def __init__(self, enabled: bool | None = None):
        self.enabled = sys.stdout.isatty() if enabled is None else enabled

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        """A bar for ``total`` steps; yields ``advance(steps=1)``."""
        if not self.enabled:
            yield lambda steps=1: None
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        with RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), console=Console(stderr=True), transient=True) as bar:
            task_id = bar.add_task(description, total=total)
            yield lambda steps=1: bar.advance(task_id, steps)


SILENT = Progress(enabled=False)
