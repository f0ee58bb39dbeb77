"""Count false ownership claims (issue 8): keys of every scheme verified against models known not to
carry them — independently trained clean MNIST models (several seeds and architectures) and the
third-party ONNX classifiers of ../shared/models. Target: 0 claims at α = 0.01.

Resumable: models, keys and each (key, model) verdict are saved under benchmarks/runs/false-claims/.

Run:     python benchmarks/false_claims.py [--seeds 1 2 3 4 5 6 7 8] [--limit 10000] [--epochs 2]
Report:  python benchmarks/false_claims.py --report
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
from pathlib import Path

from ewe_table1 import DATA, ROOT, wmtool

RUNS = ROOT / "benchmarks" / "runs" / "false-claims"
SHARED_MODELS = ROOT.parent / "shared" / "models"
ARCHS = {"mlp1200": ("mlp", '{"width": 1200}'), "mlp800": ("mlp", '{"width": 800}'), "ewe-cnn": ("ewe-cnn", "{}")}
ONNX = {"mnist-8": ["--input-range", 255], "mnist-canvas-cnn": ["--mean", 0.1307, "--std", 0.3081]}
SCHEMES = {  # scheme → (owner architecture, quick embedding options)
    "backdoor": ("ewe-cnn", ["--epochs", 1]),
    "ewe": ("ewe-cnn", ["--epochs", 1, "--fgsm-rounds", 2, "--ood-data", DATA / "fashion-mnist"]),
    "lsb": ("mlp1200", []),
    "sign": ("mlp1200", ["--epochs", 1]),
    "correlation": ("mlp1200", ["--epochs", 1]),
    "uchida": ("mlp1200", ["--epochs", 1]),
    "capacity": ("mlp1200", ["--epochs", 2]),
    "ingrain": ("mlp1200", ["--epochs", 2, "--ingrainer-epochs", 50]),
}


def train(name: str, seed: int, args: argparse.Namespace) -> Path:
    """One clean model (skipped when its file exists)."""
    path = RUNS / "models" / f"{name}-seed{seed}.safetensors"
    if not path.exists():
        arch, arch_args = ARCHS[name]
        wmtool("train", "--arch", arch, "--arch-args", arch_args, "--data", DATA / "mnist", "--limit", args.limit,
               "--epochs", args.epochs, "--seed", seed, "-o", path)
    return path


def make_key(scheme: str, args: argparse.Namespace) -> Path:
    """The scheme's key, embedded into an owner model of seed 0 (skipped when it exists)."""
    key = RUNS / "models" / f"{scheme}.key.json"
    if not key.exists():
        arch, options = SCHEMES[scheme]
        owner = train(arch, 0, args)
        wmtool("embed", "--scheme", scheme, owner, "--data", DATA / "mnist", "--limit", args.limit, *options,
               "-o", RUNS / "models" / f"{scheme}-marked.safetensors", "--key-out", key)
    return key


def verdict(key: Path, model: Path, flags: list) -> dict:
    """verify's report (exit 0 or 1), or the one-line refusal (exit 2: e.g. the layers of a white-box key
    are not in the model), saved as JSON."""
    result = RUNS / f"{key.name.split('.')[0]}--{model.stem}.json"
    if result.exists():
        return json.loads(result.read_text())
    command = [sys.executable, "-m", "wmtool", "verify", "--key", str(key), str(model), "--json",
               *[str(f) for f in flags]]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode in (0, 1):
        report = json.loads(done.stdout)
        row = {"claimed": report["claimed"], "p_value": report["p_value"], "success_rate": report["success_rate"],
               "null_rate": report["null_rate"], "exit": done.returncode}
    elif done.returncode == 2:
        row = {"claimed": False, "refused": done.stderr.strip(), "exit": 2}
    else:
        raise RuntimeError(f"{' '.join(command)} crashed: {done.stderr.strip()}")
    row.update(key=key.name, model=model.name)
    result.write_text(json.dumps(row, indent=1))
    return row


def report() -> None:
    """Claims per scheme: verified, refused (exit 2) and false claims at α = 0.01."""
    rows = [json.loads(p.read_text()) for p in sorted(RUNS.glob("*--*.json"))]
    print("| key (scheme) | clean models tested | tested (exit 0/1) | refused, exit 2 (architecture or shape differs) "
          "| false claims at α = 0.01 | smallest p-value |")
    print("|---|---|---|---|---|---|")
    for scheme in SCHEMES:
        group = [r for r in rows if r["key"].startswith(f"{scheme}.")]
        if group:
            tested = [r for r in group if r["exit"] != 2]
            smallest = min((r["p_value"] for r in tested), default=None)
            print(f"| {scheme} | {len(group)} | {len(tested)} | {len(group) - len(tested)} | "
                  f"{sum(r['claimed'] for r in group)} | {f'{smallest:.3g}' if smallest is not None else '–'} |")
    print(f"\ntotal: {len(rows)} verifications, {sum(r['claimed'] for r in rows)} false claims")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 9)))
    parser.add_argument("--limit", type=int, default=10000, help="training images per clean model")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    if args.report:
        report()
        return
    (RUNS / "models").mkdir(parents=True, exist_ok=True)
    keys = [make_key(scheme, args) for scheme in SCHEMES]
    suspects = [(train(name, seed, args), []) for seed, name in itertools.product(args.seeds, ARCHS)]
    suspects += [(SHARED_MODELS / f"{name}.onnx", flags) for name, flags in ONNX.items()]
    for key, (model, flags) in itertools.product(keys, suspects):
        row = verdict(key, model, flags)
        if row["claimed"]:
            print("FALSE CLAIM", json.dumps(row), flush=True)
    report()


if __name__ == "__main__":
    main()
