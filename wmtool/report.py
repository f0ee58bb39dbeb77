"""The robustness matrix from a store: per scheme and attack, the attacked model's accuracy and watermark
success over seeds (mean, sd, 95% bootstrap interval), how many seeds were claimed, and the false-claim
rate on reference models (Clopper–Pearson 95% interval); as a table, CSV, JSON, Markdown or plots."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from wmtool.stats import clopper_pearson_upper

BOOTSTRAP = 2000


def _interval(values: list[float]) -> tuple[float, float] | None:
    """A 95% bootstrap interval of the mean over seeds (fixed resampling seed: the report is reproducible)."""
    import numpy as np

    if len(values) < 2:
        return None
    rng = np.random.default_rng(0)
    means = rng.choice(np.asarray(values), size=(BOOTSTRAP, len(values)), replace=True).mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def _summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"mean": None, "sd": None, "ci95": None}
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return {"mean": mean, "sd": sd, "ci95": _interval(values)}


def matrix(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The matrix's cells (scheme × attack, over seeds) and each scheme's false-claim rate."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    references: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["role"].startswith("reference"):
            references.setdefault(row["scheme"], []).append(row)
        else:
            groups.setdefault((row["scheme"], row["attack"]), []).append(row)
    cells = []
    for (scheme, attack), members in sorted(groups.items()):
        ok = [m for m in members if m["status"] == "ok"]
        claimed = sum(bool(m["claimed"]) for m in ok)
        cells.append({"scheme": scheme, "attack": attack, "seeds": sorted(m["seed"] for m in ok),
                      "accuracy": _summary([m["accuracy"] for m in ok if m.get("accuracy") is not None]),
                      "watermark_success": _summary([m["success_rate"] for m in ok]),
                      "queries_needed": [[m["success_rate"], m["queries_needed"]] for m in sorted(ok, key=lambda m: m["seed"])
                                         if m.get("queries_needed") is not None],
                      "claimed": claimed, "n": len(ok), "seeds_disagree": 0 < claimed < len(ok),
                      "failed": [m["error"] for m in members if m["status"] == "failed"]})
    false_claims = {}
    for scheme, members in sorted(references.items()):
        ok = [m for m in members if m["status"] == "ok"]
        claimed = sum(bool(m["claimed"]) for m in ok)
        false_claims[scheme] = {"claimed": claimed, "n": len(ok),
                                "rate": claimed / len(ok) if ok else None,
                                "upper95": clopper_pearson_upper(claimed, len(ok), 0.95) if ok else None}
    return {"cells": cells, "false_claims": false_claims}


def _fmt(summary: dict[str, Any]) -> str:
    if summary["mean"] is None:
        return "-"
    return f"{summary['mean']:.3f}±{summary['sd']:.3f}"


def _columns(found: dict[str, Any]) -> tuple[list[str], list[str]]:
    schemes = sorted({c["scheme"] for c in found["cells"]})
    attacks = sorted({c["attack"] for c in found["cells"]}, key=lambda a: (a != "none", a))
    return schemes, attacks


def _text(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return ""
    if cell["n"] == 0:
        return f"failed: {cell['failed'][0]}" if cell["failed"] else "-"
    flag = " (seeds disagree)" if cell["seeds_disagree"] else ""
    failed = f", {len(cell['failed'])} failed" if cell["failed"] else ""
    ci = cell["watermark_success"]["ci95"]
    interval = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
    return (f"{_fmt(cell['accuracy'])} / {_fmt(cell['watermark_success'])}{interval}, claimed "
            f"{cell['claimed']}/{cell['n']}{flag}{failed}")


def _grid(found: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    schemes, attacks = _columns(found)
    lookup = {(c["scheme"], c["attack"]): c for c in found["cells"]}
    header = ["scheme", *attacks, "false claims (references)"]
    body = []
    for scheme in schemes:
        fc = found["false_claims"].get(scheme)
        false = f"{fc['claimed']}/{fc['n']} (95% ≤ {fc['upper95']:.2f})" if fc and fc["n"] else "-"
        body.append([scheme, *(_text(lookup.get((scheme, attack))) for attack in attacks), false])
    return header, body


def render(found: dict[str, Any], form: str) -> str:
    """The matrix as ``csv``, ``json`` or ``markdown`` text (the rich table is :func:`table`)."""
    if form == "json":
        return json.dumps(found, indent=2, default=str)
    header, body = _grid(found)
    if form == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["scheme", "attack", "seeds", "accuracy_mean", "accuracy_sd", "success_mean", "success_sd",
                         "success_ci_low", "success_ci_high", "claimed", "n"])
        for c in found["cells"]:
            ci = c["watermark_success"]["ci95"] or (None, None)
            writer.writerow([c["scheme"], c["attack"], len(c["seeds"]), c["accuracy"]["mean"], c["accuracy"]["sd"],
                             c["watermark_success"]["mean"], c["watermark_success"]["sd"], *ci, c["claimed"], c["n"]])
        return out.getvalue()
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n\nCells: test accuracy / watermark success, mean ± sd over seeds [95% bootstrap " \
                              "interval of the mean]; claimed: seeds whose copy the ownership test claimed. False " \
                              "claims: reference models claimed by the scheme's keys (95% Clopper–Pearson upper " \
                              "bound).\n"


def table(found: dict[str, Any]) -> Any:
    """The matrix as a rich table: a row per scheme, a column per attack (and strength); each cell the
    test accuracy and the watermark success (means over seeds) and the seeds claimed."""
    from rich.table import Table

    schemes, attacks = _columns(found)
    lookup = {(c["scheme"], c["attack"]): c for c in found["cells"]}
    grid = Table("scheme", *(attack.replace(" ", "\n", 1) for attack in attacks), "false\nclaims",
                 title="test accuracy / watermark success (means over seeds), seeds claimed", show_lines=True)
    for scheme in schemes:
        row = []
        for attack in attacks:
            cell = lookup.get((scheme, attack))
            if cell is None or cell["n"] == 0:
                row.append("failed" if cell and cell["failed"] else "")
                continue
            mark = "!" if cell["seeds_disagree"] else ""
            row.append(f"{cell['accuracy']['mean']:.2f}/{cell['watermark_success']['mean']:.2f}\n"
                       f"{cell['claimed']}/{cell['n']}{mark}")
        fc = found["false_claims"].get(scheme)
        grid.add_row(scheme, *row, f"{fc['claimed']}/{fc['n']}" if fc and fc["n"] else "-")
    grid.caption = "!: seeds disagree about the claim; `--format markdown` adds sd and intervals"
    return grid


def plots(found: dict[str, Any], folder: Path) -> list[Path]:
    """PNGs: per attack with a varying option, strength vs accuracy and watermark success per scheme;
    accuracy vs watermark success over every attack (the Pareto view); and the queries a claim needs
    against watermark success (EWE's Figure 4)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    curves: dict[str, dict[str, list[tuple[float, dict[str, Any]]]]] = {}
    for cell in found["cells"]:
        name, _, setting = cell["attack"].partition(" ")
        if "=" in setting and "→" not in cell["attack"]:
            try:
                strength = float(setting.split("=", 1)[1])
            except ValueError:
                continue
            curves.setdefault(f"{name} {setting.split('=')[0]}", {}).setdefault(cell["scheme"], []).append(
                (strength, cell))
    for attack, schemes in sorted(curves.items()):
        figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        for scheme, points in sorted(schemes.items()):
            points.sort(key=lambda item: item[0])
            xs = [x for x, _ in points]
            for axis, measure in ((left, "accuracy"), (right, "watermark_success")):
                means = [c[measure]["mean"] for _, c in points]
                sds = [c[measure]["sd"] or 0 for _, c in points]
                axis.errorbar(xs, means, yerr=sds, marker="o", capsize=3, label=scheme)
        for axis, title in ((left, "test accuracy"), (right, "watermark success")):
            axis.set_xlabel(attack.split(" ")[1])
            axis.set_title(f"{title} after {attack.split(' ')[0]}")
            axis.set_ylim(-0.02, 1.02)
            axis.legend()
        written.append(_save(figure, folder / f"strength-{attack.replace(' ', '-')}.png"))
    figure, axis = plt.subplots(figsize=(6, 5))
    for scheme in sorted({c["scheme"] for c in found["cells"]}):
        points = [c for c in found["cells"] if c["scheme"] == scheme and c["accuracy"]["mean"] is not None]
        axis.scatter([c["accuracy"]["mean"] for c in points], [c["watermark_success"]["mean"] for c in points],
                     label=scheme)
    axis.set_xlabel("test accuracy after the attack")
    axis.set_ylabel("watermark success after the attack")
    axis.set_title("every attack: what the thief keeps vs what the owner keeps")
    axis.legend()
    pareto = _save(figure, folder / "accuracy-vs-watermark.png")
    figure, axis = plt.subplots(figsize=(6, 5))  # EWE's Figure 4: queries a claim needs at a success rate
    for scheme in sorted({c["scheme"] for c in found["cells"]}):
        points = [(rate, needed) for c in found["cells"] if c["scheme"] == scheme for rate, needed in c["queries_needed"]]
        axis.scatter([x for x, _ in points], [y for _, y in points], label=scheme)
    axis.set_yscale("log")
    axis.set_xlabel("watermark success (each seed, each attack)")
    axis.set_ylabel("queries a claim needs (each seed)")
    axis.set_title("queries needed for a claim at the sweep's alpha")
    axis.legend()
    return [*written, pareto, _save(figure, folder / "queries-needed.png")]


def _save(figure: Any, path: Path) -> Path:
    """Write a figure as a PNG and free it."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
