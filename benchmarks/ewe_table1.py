"""Reproduce EWE's Table 1 (MNIST and Fashion-MNIST): EWE versus the baseline (κ = 0), before and after
extraction, over several seeds. Resumable: each dataset × method × seed result is saved as JSON under
benchmarks/runs/ewe/ when it finishes and skipped when present.

Run:     python benchmarks/ewe_table1.py [--seeds 0 1 2] [--device auto] [--only mnist] [--setting authors]
         [--init glorot|torch]
Report:  python benchmarks/ewe_table1.py --report      (markdown table of what has finished)

Settings (the authors' reference code, see ../shared/papers/README.md): ewe-cnn with TensorFlow's Glorot
initialisation (victim and extracted model; `--init torch` for torch's defaults), batch 512 (Fashion:
128), Adam lr 1e-3, 10 clean + 10 watermark epochs, r = 1 (Fashion: 2), κ = 32 on 3 layers, T = 1
learned (lr 0.1), cosine SNNL at temperature 100/T, OOD watermarks (MNIST task: Fashion-MNIST class 1
→ 7; Fashion task: MNIST class 8 → 0), FGSM refinement; extraction: a fresh ewe-cnn trained for 20
epochs on the victim's hard labels of the whole training set.

Two settings: `algorithm` (Algorithm 1 as printed: watermark training runs through all the clean data)
and `authors` (the authors' loop, which restarts the clean batches at every watermark loop, so watermark
training sees only the first r × watermark-batches clean batches: `--restart-clean`). See
benchmarks/ewe_port.py and docs/results.md for why the difference decides the outcome.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RUNS = ROOT / "benchmarks" / "runs" / "ewe"
SETTINGS = {
    "mnist": {"data": DATA / "mnist", "ood": DATA / "fashion-mnist", "source": 1, "target": 7, "every": 1,
              "batch": 512},
    "fashion": {"data": DATA / "fashion-mnist", "ood": DATA / "mnist", "source": 8, "target": 0, "every": 2,
                "batch": 128},
}
PAPER = {  # Table 1: victim accuracy, victim success, extracted accuracy, extracted success (%)
    ("mnist", "baseline"): ("99.03 ± 0.04", "99.98 ± 0.03", "98.79 ± 0.12", "0.31 ± 0.23"),
    ("mnist", "ewe"): ("98.91 ± 0.13", "99.9 ± 0.11", "98.76 ± 0.12", "65.68 ± 10.89"),
    ("fashion", "baseline"): ("90.48 ± 0.32", "98.76 ± 1.07", "89.8 ± 0.38", "8.96 ± 8.28"),
    ("fashion", "ewe"): ("90.31 ± 0.31", "87.83 ± 5.86", "89.82 ± 0.45", "58.1 ± 12.95"),
}


def wmtool(*args: object) -> dict:
    """Run one wmtool command with --json and return its report (exit 1 of verify is a result, not an error)."""
    command = [sys.executable, "-m", "wmtool", *[str(a) for a in args], "--json", "--force"]
    if args[0] in ("verify",):
        command.remove("--force")
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode not in (0, 1) or not done.stdout.strip():
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def run_name(dataset: str, method: str, setting: str, init: str, seed: int) -> str:
    """The name of one run's result file and folder (torch's initialisation is the unnamed default)."""
    return f"{dataset}-{method}-{setting}{'-' + init if init != 'torch' else ''}-seed{seed}"


def one_run(dataset: str, method: str, setting: str, init: str, seed: int, device: str) -> dict:
    """Embed, extract and verify once; returns the measured row."""
    s = SETTINGS[dataset]
    folder = RUNS / run_name(dataset, method, setting, init, seed)
    folder.mkdir(parents=True, exist_ok=True)
    victim, key, stolen = folder / "victim.safetensors", folder / "key.json", folder / "extracted.safetensors"
    common = ("--seed", seed, "--device", device)
    start = time.perf_counter()
    embedded = wmtool("embed", "--scheme", "ewe", "--arch", "ewe-cnn", "--arch-args", json.dumps({"init": init}), "--data", s["data"], "--ood-data", s["ood"],
                      "--source", s["source"], "--target", s["target"], "--every", s["every"], "--batch-size",
                      s["batch"], "--kappa", 32 if method == "ewe" else 0, *(("--restart-clean",) if setting == "authors" else ()),
                      "-o", victim, "--key-out", key, *common)
    embed_seconds = time.perf_counter() - start
    extracted = wmtool("attack", "extract", victim, "--data", s["data"], "-o", stolen, "--epochs", 20,
                       "--batch-size", s["batch"], "--no-shuffle", *common)
    row = {"dataset": dataset, "method": method, "setting": setting, "init": init, "seed": seed,
           "victim_accuracy": embedded["test_accuracy"], "null_rate": embedded["null_rate"],
           "extracted_accuracy": extracted["accuracy_after"], "embed_seconds": round(embed_seconds, 1),
           "extract_seconds": extracted["seconds"], "temperatures": embedded["params"]["temperatures"]}
    for name, model in (("victim", victim), ("extracted", stolen)):
        full = wmtool("verify", "--key", key, model, *common)
        hundred = wmtool("verify", "--key", key, model, "--queries", 100, *common)
        row[f"{name}_success"] = full["success_rate"]
        row[f"{name}_queries_needed"] = full["queries_needed"]
        row[f"{name}_claimed_100"] = hundred["claimed"]
        row[f"{name}_p_100"] = hundred["p_value"]
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def stat(values: list[float]) -> str:
    """Fractions as a percentage, mean ± standard deviation over seeds."""
    import statistics

    values = [100 * v for v in values]
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def report() -> None:
    """Print the finished runs as a markdown table, mean ± std over seeds, beside the paper's numbers."""
    rows = [json.loads(p.read_text()) for p in sorted(RUNS.glob("*.json"))]
    print("| dataset | setting | init | method | seeds | victim acc % | victim success % | extracted acc % | extracted success % "
          "| claimed @100 queries | queries needed | paper (victim acc / success / extr. acc / extr. success) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")

    for dataset, setting, init, method in itertools.product(SETTINGS, ("algorithm", "authors"), ("torch", "glorot"),
                                                            ("baseline", "ewe")):
        group = [r for r in rows if (r["dataset"], r["setting"], r.get("init", "torch"), r["method"]) ==
                 (dataset, setting, init, method)]
        if group:
            needed = [r["extracted_queries_needed"] for r in group]
            print(f"| {dataset} | {setting} | {init} | {method} | {len(group)} | {stat([r['victim_accuracy'] for r in group])} | "
                  f"{stat([r['victim_success'] for r in group])} | {stat([r['extracted_accuracy'] for r in group])} | "
                  f"{stat([r['extracted_success'] for r in group])} | "
                  f"{sum(r['extracted_claimed_100'] for r in group)}/{len(group)} | "
                  f"{', '.join(str(n) if n is not None else 'never' for n in needed)} | "
                  f"{' / '.join(PAPER[(dataset, method)])} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", choices=sorted(SETTINGS), nargs="+", default=list(SETTINGS))
    parser.add_argument("--methods", choices=("ewe", "baseline"), nargs="+", default=["ewe", "baseline"])
    parser.add_argument("--setting", choices=("algorithm", "authors"), nargs="+", default=["authors"])
    parser.add_argument("--init", choices=("torch", "glorot"), default="glorot",
                        help="initial weights of victim and extracted model (glorot: the authors' TensorFlow default)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    if args.report:
        report()
        return
    for seed, dataset, setting, method in itertools.product(args.seeds, args.only, args.setting, args.methods):
        result = RUNS / f"{run_name(dataset, method, setting, args.init, seed)}.json"
        if result.exists():
            continue
        row = one_run(dataset, method, setting, args.init, seed, args.device)
        result.write_text(json.dumps(row, indent=1))
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
