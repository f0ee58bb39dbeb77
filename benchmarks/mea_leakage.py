"""Why a disjoint attacker's hard-label extraction carries so little of mea-defender on MNIST: the student sees
only the victim's labels on natural images, so the watermark can only travel in the labels the watermark
changed. For every mea-defender model of an evaluation store (each option variant, each seed) this prints
the marked model's test accuracy, how many of the attacker's images it labels differently from the
unmarked victim it was made from (and how many of those it labels with the watermark's target), and the
watermark success of its extracted copy (hard labels, same architecture), side by side.

    python benchmarks/mea_leakage.py --store benchmarks/runs/evaluate/extraction-mnist
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

import numpy as np

import wmtool
from wmtool.api import load_dataset, load_key


def cells(db: sqlite3.Connection, kind: str) -> list[tuple[str, dict, list, dict, dict]]:
    """(key, params, deps, row, result) of every finished cell of ``kind``."""
    return [(key, json.loads(params), json.loads(deps), json.loads(row), json.loads(result))
            for key, params, deps, row, result in db.execute(
                "SELECT key, params, deps, row, result FROM cells WHERE kind = ? AND status = 'ok'", (kind,))]


def main() -> None:
    """Print one markdown row per mea-defender model with an extracted copy in the store."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--attack", default="extract", help="the spec's name of the extraction attack")
    args = parser.parse_args()
    db = sqlite3.connect(Path(args.store) / "results.sqlite")
    trained = {key: result for key, *_, result in cells(db, "train")}
    embedded = {key: (params, deps, result) for key, params, deps, _, result in cells(db, "embed")
                if params["scheme"] == "mea-defender"}
    success = {deps[0]: result["success_rate"] for _, _, deps, row, result in cells(db, "verify")
               if row.get("role") == "attacked" and row.get("attack") == args.attack}
    attacker_data = {params["data"] for _, params, *_ in cells(db, "attack")}
    if len(attacker_data) != 1:
        raise SystemExit(f"expected one attacker dataset in the store, found {sorted(attacker_data)}")
    attacker = load_dataset(attacker_data.pop(), "train")
    tests = {}
    print("| options | seed | marked accuracy | attacker images relabelled (of which → target) | extracted success |")
    print("|---|---|---|---|---|")
    for key, (params, deps, result) in sorted(embedded.items(), key=lambda item: (
            json.dumps(item[1][0]["options"], sort_keys=True), item[1][0]["seed"])):
        if key not in success:
            continue
        test = tests.setdefault(params["data"], load_dataset(params["data"], "test"))
        marked = wmtool.open_model(result["model"], device="cpu")
        victim = wmtool.open_model(trained[deps[0]]["model"], device="cpu")
        target = load_key(result["key"]).params["target"]
        before, after = victim.predict(attacker.x), marked.predict(attacker.x)
        changed = before != after
        accuracy = float(np.mean(marked.predict(test.x) == test.y))
        options = {k: v for k, v in params["options"].items() if k != "epochs"} or "defaults"
        print(f"| {options} | {params['seed']} | {accuracy:.4f} | {int(changed.sum())} "
              f"({int(np.sum(changed & (after == target)))}) | {success[key]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
