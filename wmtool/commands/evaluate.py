"""``wmtool evaluate``: the robustness matrix — schemes × attacks × strengths × seeds — computed cell by
cell into a resumable store, and ``wmtool evaluate report STORE`` to read it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from wmtool.commands.common import OUTPUT, RUN, emit, shared_options
from wmtool.errors import UserError
from wmtool.run import Run

evaluate_app = typer.Typer(help="The robustness matrix: run a sweep into a store (resumable), then report it.",
                           no_args_is_help=False, add_completion=False)

FORMATS = ("table", "csv", "json", "markdown")


def _names(raw: str | None) -> list[str]:
    return [name.strip() for name in (raw or "").split(",") if name.strip()]


def _spec_from_flags(model: str | None, arch: str | None, epochs: int, data: str, attacker: str | None,
                     test: str | None, schemes: str | None, attacks: str | None, seeds: str,
                     references: int) -> dict[str, Any]:
    """The spec the flags state (each plugin with its default options)."""
    if not schemes:
        raise UserError("give --spec FILE, or --schemes (and --attacks) with --model or --arch")
    return {"model": {"path": model} if model else {"arch": arch or "ewe-cnn", "epochs": epochs},
            "data": {"owner": data, "attacker": attacker or data, "test": test or data},
            "schemes": {name: {} for name in _names(schemes)}, "attacks": {name: {} for name in _names(attacks)},
            "seeds": seeds, "references": references if not model else 0}


@evaluate_app.callback(invoke_without_command=True)
@shared_options(RUN)
def evaluate(
    ctx: typer.Context,
    spec_file: Annotated[Path | None, typer.Option("--spec", help="A sweep spec (TOML; docs/evaluate.md).")] = None,
    out: Annotated[Path, typer.Option("--out", help="The store: results.sqlite and the cells' models.")] = Path(
        "wmtool-evaluate"),
    jobs: Annotated[int, typer.Option("--jobs", help="Cells computed at once (local processes, or Ray tasks).")] = 1,
    backend: Annotated[str, typer.Option("--backend", help=(
        "local, or ray: cells as Ray tasks (needs the ray extra of wmtool)."))] = "local",
    ray_address: Annotated[str | None, typer.Option("--ray-address", help=(
        "With --backend ray: an existing cluster's address (default: start a local Ray).")) ] = None,
    model: Annotated[str | None, typer.Option("--model", help="Without --spec: the model to mark.")] = None,
    arch: Annotated[str | None, typer.Option("--arch", help="Without --spec: train this architecture.")] = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Without --spec: epochs of clean training.")] = 10,
    data: Annotated[str, typer.Option("--data", help="Without --spec: the owner's data.")] = "digits",
    attacker: Annotated[str | None, typer.Option("--attacker-data", help="The attacker's data (default: --data).")
                        ] = None,
    test: Annotated[str | None, typer.Option("--test-data", help="Test data (default: --data's test split).")] = None,
    schemes: Annotated[str | None, typer.Option("--schemes", help="Without --spec: schemes, comma-separated.")] = None,
    attacks: Annotated[str | None, typer.Option("--attacks", help="Without --spec: attacks, comma-separated.")] = None,
    seeds: Annotated[str, typer.Option("--seeds", help="Without --spec: seeds, e.g. 0-4.")] = "0-2",
    references: Annotated[int, typer.Option("--references", help="Clean reference models per seed.")] = 2,
    *, run: Run,
) -> None:
    """Run a sweep: every cell the store lacks is computed; a killed run resumes where it stopped."""
    if ctx.invoked_subcommand is not None:
        return
    from wmtool.engine import run_sweep
    from wmtool.report import matrix, table
    from wmtool.store import Store
    from wmtool.sweep import plan, read_spec, spec_from

    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    if backend not in ("local", "ray"):
        raise UserError(f"--backend must be local or ray, got {backend!r}")
    registry = run.registry
    spec = read_spec(spec_file, registry) if spec_file else spec_from(
        _spec_from_flags(model, arch, epochs, data, attacker, test, schemes, attacks, seeds, references), registry,
        "flags")
    cells = plan(spec, registry)
    store = Store(out)
    progress = _Progress(len(cells), enabled=not (run.json or run.quiet) and sys.stderr.isatty(), lines=run.json)
    with progress:
        counts = run_sweep(cells, store, jobs=jobs, device=run.device, report=progress.report, backend=backend,
                           ray_address=ray_address)
    found = matrix(store.verify_rows())
    payload = {"store": str(out), "cells": len(cells), **counts, "matrix": found}
    if run.json:
        sys.stdout.write(json.dumps({"summary": {k: v for k, v in payload.items() if k != "matrix"}}) + "\n")
        return
    emit(run, payload, lambda console: (console.print(table(found)), console.print(
        f"{len(cells)} cells: {counts['computed']} computed, {counts['cached']} from the store, {counts['failed']} "
        f"failed → {out}")))


class _Progress:
    """One progress display for the sweep (cells done, from the store, failed), or one JSON line per
    finished cell with --json."""

    def __init__(self, total: int, enabled: bool, lines: bool):
        self.total, self.enabled, self.lines = total, enabled, lines
        self.counts = {"done": 0, "cached": 0, "failed": 0}
        self.bar: Any = None

    def __enter__(self) -> "_Progress":
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("cells", total=self.total)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.stop()

    def report(self, cell: Any, status: str, result: dict[str, Any], error: str | None, cached: bool) -> None:
        """Count one finished cell, and show it."""
        self.counts["cached" if cached else "failed" if status == "failed" else "done"] += 1
        if self.lines and not cached:
            sys.stdout.write(json.dumps({"cell": cell.key, "kind": cell.kind, "status": status, "error": error,
                                         **cell.row, **result}, default=str) + "\n")
            sys.stdout.flush()
        if self.bar is not None:
            c = self.counts
            self.bar.update(self.task, advance=1, description=f"cells ({c['done']} done, {c['cached']} from the "
                                                              f"store, {c['failed']} failed)")


@evaluate_app.command("report")
@shared_options(OUTPUT)
def report(
    store_folder: Annotated[Path, typer.Argument(help="The store a sweep wrote (its --out).")],
    form: Annotated[str, typer.Option("--format", help="table | csv | json | markdown.")] = "table",
    plot: Annotated[Path | None, typer.Option("--plot", help="Also write PNG plots into this folder.")] = None,
    *, run: Run,
) -> None:
    """Print the matrix of a store: accuracy / watermark success over seeds, claims, false claims."""
    from wmtool.report import matrix, plots, render, table
    from wmtool.store import Store

    if form not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {form!r}")
    if not (store_folder / "results.sqlite").is_file():
        raise UserError(f"{store_folder}: no results.sqlite (not a store `wmtool evaluate` wrote)")
    found = matrix(Store(store_folder).verify_rows())
    written = [str(p) for p in plots(found, plot)] if plot else []
    if run.json or form == "json":
        sys.stdout.write(json.dumps({**found, "plots": written}, default=str) + "\n")
    elif form == "table":
        emit(run, found, lambda console: (console.print(table(found)),
                                          console.print("\n".join(f"plot → {p}" for p in written))))
    else:
        sys.stdout.write(render(found, form))
