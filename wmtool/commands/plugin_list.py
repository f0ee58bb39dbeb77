"""``wmtool plugins``: what is installed, and what failed to load."""

from __future__ import annotations

from wmtool.commands.common import OUTPUT, emit, shared_options
from wmtool.registry import KINDS
from wmtool.run import Run


@shared_options(OUTPUT)
def plugins(*, run: Run) -> None:
    """List the registered embedders, attacks, verifiers, architectures and model formats with their options."""
    registry = run.registry
    rows = []
    for kind in KINDS:
        for name in registry.names(kind):
            entry = registry.entries[kind][name]
            rows.append({
                "name": name, "kind": kind, "distribution": entry.distribution, "version": entry.version,
                "summary": entry.item.summary,
                "options": [{"name": o.name, "type": o.type_name, "default": o.default, "help": o.help}
                            for o in entry.item.options],
            })

    def human(out) -> None:
        from rich.table import Table

        table = Table("kind", "name", "distribution", "summary")
        for row in rows:
            table.add_row(row["kind"], row["name"], f"{row['distribution']} {row['version']}".strip(), row["summary"])
        out.print(table)
        for problem in registry.problems:
            out.print(f"[red]problem:[/red] {problem}")

    emit(run, {"plugins": rows, "problems": registry.problems}, human)
