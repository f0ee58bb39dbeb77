"""Why does EWE (reference settings) extract like the baseline? Ablations on a reduced MNIST setting.

Each variant embeds EWE into ewe-cnn on the first N MNIST training images (OOD Fashion-MNIST class 1 → 7,
batch 512, FGSM refinement), extracts it (hard labels, same N images) and verifies the extracted model.
Resumable: each variant's result is saved under benchmarks/runs/ewe-ablation/.

Run:    python benchmarks/ewe_ablation.py [--samples 20000] [--epochs 5] [--variants ...]
Report: python benchmarks/ewe_ablation.py --report
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ewe_table1 import DATA, ROOT, wmtool

RUNS = ROOT / "benchmarks" / "runs" / "ewe-ablation"
VARIANTS = {  # name: embed options beyond the common ones
    "baseline": ["--kappa", 0],
    "reference (kappa 32, T scale 100)": ["--kappa", 32],
    "kappa 32, T scale 1": ["--kappa", 32, "--temperature-scale", 1],
    "kappa 320, T scale 1": ["--kappa", 320, "--temperature-scale", 1],
    "kappa 3200, T scale 100": ["--kappa", 3200],
    "kappa -32, T scale 1": ["--kappa", -32, "--temperature-scale", 1],
}


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")


def one(name: str, options: list, samples: int, epochs: int, seed: int) -> dict:
    folder = RUNS / slug(name)
    folder.mkdir(parents=True, exist_ok=True)
    victim, key, stolen = folder / "victim.safetensors", folder / "key.json", folder / "extracted.safetensors"
    data = ["--data", DATA / "mnist", "--limit", samples, "--seed", seed]
    start = time.perf_counter()
    embedded = wmtool("embed", "--scheme", "ewe", "--arch", "ewe-cnn", *data, "--ood-data", DATA / "fashion-mnist",
                      "--clean-epochs", epochs, "--epochs", epochs, *options, "-o", victim, "--key-out", key)
    extracted = wmtool("attack", "extract", victim, *data, "-o", stolen, "--epochs", 2 * epochs, "--no-shuffle")
    verdict = wmtool("verify", "--key", key, stolen)
    return {"variant": name, "samples": samples, "epochs": epochs, "seed": seed,
            "victim_accuracy": embedded["test_accuracy"], "victim_success": embedded["watermark_success"],
            "temperatures": embedded["params"]["temperatures"], "extracted_accuracy": extracted["accuracy_after"],
            "extracted_success": verdict["success_rate"], "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    if args.report:
        print("| variant | samples | epochs | victim acc | victim success | learned T | extracted acc | "
              "extracted success | seconds |")
        print("|---|---|---|---|---|---|---|---|---|")
        for path in sorted(RUNS.glob("*.json")):
            r = json.loads(path.read_text())
            print(f"| {r['variant']} | {r['samples']} | {r['epochs']} | {r['victim_accuracy']:.4f} | "
                  f"{r['victim_success']:.3f} | {r['temperatures']} | {r['extracted_accuracy']:.4f} | "
                  f"{r['extracted_success']:.3f} | {r['seconds']} |")
        return
    for name in args.variants:
        result = RUNS / f"{slug(name)}-n{args.samples}-e{args.epochs}-s{args.seed}.json"
        if not result.exists():
            row = one(name, VARIANTS[name], args.samples, args.epochs, args.seed)
            result.write_text(json.dumps(row, indent=1))
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
