"""The fingerprint audit (issue 20): true claims on stolen copies, false claims on independent models.

It reuses the models of an ``evaluate`` store (by default the MNIST extraction matrix,
benchmarks/specs/extraction-mnist.toml): each marked victim there is fingerprinted (a marked model is a
model like any other), its attacked copies are the copies, and the independent models are the clean
references of every seed (trained on the owner's 80% of MNIST with other seeds), the clean victims of the
other seeds, and the extracted copies of the other seeds' victims (trained on the attacker's disjoint 20%,
in the same architecture and as an MLP). Two references of the victim's own seed measure each key's null
rate and are left out of its independents. Results go to OUT/results.jsonl (resumable) and OUT/summary.md.

    python benchmarks/fingerprint_audit.py --store benchmarks/runs/evaluate/extraction-mnist \\
        --out benchmarks/runs/fingerprint-audit
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np

import wmtool
from wmtool.keys import load_key
from wmtool.models import ModelSource
from wmtool.run import Run
from wmtool.stats import queries_needed
from wmtool.workflows import key_card, open_suspect, verify_suspect

ALPHA = 0.01


def store_models(store: Path) -> dict:
    """The store's models: clean victims and references per seed, marked victims and their attacked copies."""
    db = sqlite3.connect(store / "results.sqlite")
    rows = db.execute("select key, kind, params, deps from cells where status = 'ok' and kind != 'verify'")
    victims, references, marked, copies = {}, {}, {}, {}
    for key, kind, params, deps in rows:
        params, deps = json.loads(params), json.loads(deps)
        path = store / "cells" / key / "model.safetensors"
        if not path.exists():
            continue
        if kind == "train" and params["seed"] < 10000:
            victims[params["seed"]] = str(path)
        elif kind == "train":
            references.setdefault((params["seed"] - 10000) // 100, []).append((params["seed"], str(path)))
        elif kind == "embed":
            marked[key] = {"scheme": params["scheme"], "seed": params["seed"], "path": str(path)}
        elif kind == "attack":
            options = params.get("options", {})
            name = params["attack"] + ("-mlp" if options.get("student") == "mlp" else "") \
                + ("-knockoff" if options.get("query_data") else "")
            copies.setdefault(deps[0], []).append((name, str(path)))
    return {"victims": victims, "references": {s: [p for _, p in sorted(r)] for s, r in references.items()},
            "marked": marked, "copies": copies}


def suspects_of(models: dict, victim_key: str) -> tuple[list[str], list[tuple[str, str, str]]]:
    """The two calibration references of a victim, and its suspects as (role, kind, path)."""
    victim = models["marked"][victim_key]
    seed, scheme = victim["seed"], victim["scheme"]
    own_refs = models["references"].get(seed, [])
    calibration, suspects = own_refs[:2], []
    suspects += [("copy", name, path) for name, path in models["copies"].get(victim_key, [])]
    for other_seed, refs in models["references"].items():
        for path in (refs if other_seed != seed else refs[2:]):
            suspects.append(("independent", "same data, other seed", path))
    for other_seed, path in models["victims"].items():
        if other_seed != seed:
            suspects.append(("independent", "same data, other seed", path))
    for key, other in models["marked"].items():
        if other["scheme"] == scheme and other["seed"] != seed:
            for name, path in models["copies"].get(key, []):
                if name == "extract":
                    suspects.append(("independent", "attacker's data, same architecture", path))
                elif name == "extract-mlp":
                    suspects.append(("independent", "attacker's data, MLP", path))
    return calibration, suspects


def auc(positives: list[float], negatives: list[float]) -> float | None:
    """ROC AUC: the chance that a random copy scores above a random independent model (ties count half)."""
    if not positives or not negatives:
        return None
    pos, neg = np.asarray(positives)[:, None], np.asarray(negatives)[None, :]
    return float(((pos > neg) + 0.5 * (pos == neg)).mean())


def pooled_claims(results: list[dict], keys: Path) -> list[bool]:
    """Whether each verification would claim against the pooled null (the references' queries pooled into
    one Clopper–Pearson bound, as thresholds calibrated on a few models usually are) instead of the
    largest single model's bound that wmtool keeps."""
    from wmtool.stats import binomial_p_value

    pooled = {}
    for row in results:
        name = f"{row['method']}-{row['victim']}"
        if name not in pooled:
            key = load_key(keys / f"{name}.json")
            pooled[name] = max(key.calibration["pooled_rate"], 1 / key.task.num_classes)
    return [binomial_p_value(round(r["success_rate"] * r["queries"]), r["queries"],
                             pooled[f"{r['method']}-{r['victim']}"]) < ALPHA for r in results]


def summarise(results: list[dict], keys: Path) -> str:
    """Markdown tables: per method the false claims per independent kind (also against a pooled null),
    true claims per attack, AUC."""
    for row, claimed in zip(results, pooled_claims(results, keys)):
        row["claimed_pooled"] = claimed
    lines = []
    for method in sorted({r["method"] for r in results}):
        rows = [r for r in results if r["method"] == method]
        victims = sorted({r["victim"] for r in rows})
        copies = [r for r in rows if r["role"] == "copy"]
        independents = [r for r in rows if r["role"] == "independent"]
        score = lambda r: r["success_rate"] - r["null_rate"]  # noqa: E731
        needed = [r["queries_needed"] for r in copies if r["claimed"] and r["queries_needed"] is not None]
        lines += [f"### {method} ({len(victims)} victims, {len(copies)} copies, {len(independents)} verifications "
                  "of independent models)", "",
                  f"ROC AUC (success rate − null rate, copies vs independents): {auc([score(r) for r in copies], [score(r) for r in independents]):.3f}; "
                  f"median queries needed on claimed copies: {int(np.median(needed)) if needed else '-'}; "
                  f"null rate: mean {np.mean([r['null_rate'] for r in rows]):.3f}", "",
                  "| suspects | claimed at α = 0.01 | mean success rate | claimed against the pooled null |",
                  "|---|---|---|---|"]
        for role in ("independent", "copy"):
            for kind in sorted({r["kind"] for r in rows if r["role"] == role}):
                group = [r for r in rows if r["role"] == role and r["kind"] == kind]
                claimed, pooled = sum(r["claimed"] for r in group), sum(r["claimed_pooled"] for r in group)
                lines.append(f"| {role}: {kind} | **{claimed}/{len(group)}** | "
                             f"{np.mean([r['success_rate'] for r in group]):.3f} | {pooled}/{len(group)} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=Path("benchmarks/runs/evaluate/extraction-mnist"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/runs/fingerprint-audit"))
    parser.add_argument("--methods", default="mistakes,ipguard,modeldiff,sac-m,dataset-inference")
    parser.add_argument("--schemes", default="backdoor,mea-defender", help="the marked victims to fingerprint")
    parser.add_argument("--data", default="benchmarks/runs/ingrain/data/owner.npz",
                        help="the owner's data: train split private, test split held out")
    parser.add_argument("--max-victims", type=int, default=None, help="per method, at most this many victims")
    parser.add_argument("--summary-only", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.jsonl"
    results = [json.loads(line) for line in results_path.read_text().splitlines()] if results_path.exists() else []
    done = {(r["method"], r["victim"], r["suspect"]) for r in results}
    if not args.summary_only:
        models = store_models(args.store)
        run = Run(quiet=True, device="cpu")
        schemes = args.schemes.split(",")
        victim_keys = sorted((k for k, v in models["marked"].items() if v["scheme"] in schemes),
                             key=lambda k: (models["marked"][k]["seed"], models["marked"][k]["scheme"]))
        for method in args.methods.split(","):
            for victim_key in victim_keys[:args.max_victims]:
                victim = models["marked"][victim_key]
                calibration, suspects = suspects_of(models, victim_key)
                if all((method, victim_key, path) in done for _, _, path in suspects):
                    continue
                key_path = args.out / "keys" / f"{method}-{victim_key}.json"
                start = time.perf_counter()
                if not key_path.exists():
                    key_path.parent.mkdir(exist_ok=True)
                    wmtool.fingerprint(victim["path"], method, data=args.data, references=calibration,
                                       device="cpu", seed=victim["seed"], save_to=key_path)
                key = load_key(key_path)
                for role, kind, path in suspects:
                    if (method, victim_key, path) in done:
                        continue
                    suspect = open_suspect(run, path, ModelSource(), key_card(key))
                    result, _ = verify_suspect(run, key, suspect, alpha=ALPHA, test="binomial", queries=None)
                    row = {"method": method, "victim": victim_key, "scheme": victim["scheme"], "seed": victim["seed"],
                           "role": role, "kind": kind, "suspect": path, "success_rate": result.success_rate,
                           "null_rate": result.null_rate, "p_value": result.p_value, "claimed": result.claimed,
                           "queries": result.queries,
                           "queries_needed": queries_needed(result.success_rate, result.null_rate, alpha=ALPHA)}
                    results.append(row)
                    with results_path.open("a") as handle:
                        handle.write(json.dumps(row) + "\n")
                print(f"{method} {victim['scheme']} seed {victim['seed']}: null {key.null.rate:.3f}, "
                      f"{len(suspects)} suspects in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    summary = summarise(results, args.out / "keys")
    (args.out / "summary.md").write_text(summary)
    print(summary)


if __name__ == "__main__":
    main()
