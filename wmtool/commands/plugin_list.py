"""``wmtool plugins``: what is installed, and what failed to load."""

from __future__ import annotations

from wmtool.commands.common import OUTPUT, emit, shared_options
from wmtool.registry import KINDS, Fingerprinter
from wmtool.run import Run


@shared_options(OUTPUT)
def plugins(*, run: Run) -> None:
    """List the registered embedders, fingerprinters, attacks, verifiers, architectures and model formats with
    their options (and, for fingerprinters, what verifying needs and any caution the audit found)."""
    registry = run.registry
    rows = []
    for kind in KINDS:
        for name in registry.names(kind):
            entry = registry.entries[kind][name]
            rows.append({
                "name": name, "kind": kind, "distribution": entry.distribution, "version": entry.version,
                "summary": entry.item.summary, **_fingerprinter_fields(entry.item),
                "options": [{"name": o.name, "type": o.type_name, "default": o.default, "help": o.help}
                            for o in entry.item.options],
            })

    def human(out) -> None:
        from rich.table import Table

        table = Table("kind", "name", "distribution", "summary")
        for row in rows:
            summary = row["summary"] + (f" [yellow](caution: {row['caution']})[/yellow]" if row.get("caution") else "")
            table.add_row(row["kind"], row["name"], f"{row['distribution']} {row['version']}".strip(), summary)
        out.print(table)
        for problem in registry.problems:
            out.print(f"[red]problem:[/red] {problem}")

    emit(run, {"plugins": rows, "problems": registry.problems}, human)


def _fingerprinter_fields(item) -> dict:
    """What ``--json`` adds for a fingerprinter: the suspect access it needs and the audit's caution."""
    if not isinstance(item, Fingerprinter):
        return {}
    return {"verifier": item.verifier, "access": item.access, "caution": item.caution}
