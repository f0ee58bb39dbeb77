"""How much of the ingrainer's watermark can distillation carry at all? An upper bound for P:ING.

P:ING trains the classifier F so that its softened outputs on the training data imitate the ingrainer G
(an MLP overfit on the carrier set D_S), hoping that a student distilled from F on the attacker's data
then answers D_S as G does. This script skips F: it distils G itself into the attack's 2×800 student
on the attacker's refining set (soft outputs only, G knows nothing of the digits' labels) and verifies
the student with a P:ING key's carriers. No classifier imitates G better than G, so this normalised
watermark accuracy bounds what a P:ING student can keep with that ingrainer. Each result is saved under
benchmarks/runs/ingrain/ and skipped when present.

Run:     python benchmarks/ingrain_ceiling.py [--key KEY] [--ingrainer-epochs 200] [--optimizer adam]
Report:  python benchmarks/ingrain_ceiling.py --report
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mnist_split import ROOT, split_data

RUNS = ROOT / "benchmarks" / "runs" / "ingrain"


def wmtool(*args: object) -> dict:
    """Run one wmtool command with --json and return its report (exit 1 of verify is a result, not an error)."""
    command = [sys.executable, "-m", "wmtool", *[str(a) for a in args], "--json"]
    if args[0] != "verify":
        command.append("--force")
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode not in (0, 1) or not done.stdout.strip():
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def carriers_file(key: Path, folder: Path) -> Path:
    """The key's carriers and labels as a .npz dataset (the same set as train and test split)."""
    from wmtool.keys import load_key

    out = folder / f"carriers-{key.stem}.npz"
    if not out.exists():
        found = load_key(key)
        x, y = found.arrays["inputs"], found.arrays["labels"]
        np.savez(out, x_train=x, y_train=y, x_test=x, y_test=y)
    return out


def ceiling(args: argparse.Namespace, temperature: float) -> dict:
    """Train the ingrainer on the key's carriers, distil it at ``temperature``, verify the student."""
    tag = f"g{args.ingrainer_epochs}-{args.optimizer}{args.lr:g}-a{args.attack_epochs}-seed{args.seed}"
    result = RUNS / f"ceiling-{tag}-T{temperature:g}.json"
    if result.exists():
        return json.loads(result.read_text())
    models = RUNS / "models"
    models.mkdir(parents=True, exist_ok=True)
    _, attacker = split_data(RUNS / "data")
    carriers = carriers_file(args.key, RUNS / "data")
    ingrainer = models / f"ingrainer-{tag}.safetensors"
    start = time.perf_counter()
    if not ingrainer.exists():
        wmtool("train", "--arch", "mlp", "--data", carriers, "--validation", 0, "--epochs", args.ingrainer_epochs,
               "--optimizer", args.optimizer, "--lr", args.lr, "-o", ingrainer, "--device", args.device,
               "--seed", args.seed)
    own = wmtool("verify", "--key", args.key, ingrainer, "--device", args.device, "--seed", args.seed)
    student = models / f"ingrainer-{tag}-distill-T{temperature:g}.safetensors"
    distilled = wmtool("attack", "distill", ingrainer, "--student-args", json.dumps({"width": 800}),
                       "--temperature", temperature, "--epochs", args.attack_epochs, "--data", attacker,
                       "-o", student, "--device", args.device, "--seed", args.seed)
    verified = wmtool("verify", "--key", args.key, student, "--device", args.device, "--seed", args.seed)
    row = {"key": str(args.key), "ingrainer_epochs": args.ingrainer_epochs, "optimizer": args.optimizer,
           "lr": args.lr, "temperature": temperature, "attack_epochs": args.attack_epochs, "seed": args.seed,
           "ingrainer_watermark": own["details"], "student_agreement": distilled["details"]["agreement"],
           "student_watermark": verified["details"], "claimed": verified["claimed"],
           "seconds": round(time.perf_counter() - start, 1)}
    result.write_text(json.dumps(row, indent=1))
    print(json.dumps(row), flush=True)
    return row


def report() -> None:
    """A markdown table of every finished ceiling run."""
    print("| ingrainer | distillation | T | ingrainer on D_S (normalised) | student on D_S (normalised) | claimed |")
    print("|---|---|---|---|---|---|")
    for path in sorted(RUNS.glob("ceiling-*.json")):
        r = json.loads(path.read_text())
        print(f"| {r['optimizer']} {r['lr']:g}, {r['ingrainer_epochs']} epochs, seed {r['seed']} | "
              f"{r['attack_epochs']} epochs, soft only | {r['temperature']:g} | "
              f"{r['ingrainer_watermark']['normalised']:.3f} | {r['student_watermark']['normalised']:.3f} | "
              f"{'yes' if r['claimed'] else 'no'} |")


def main() -> None:
    """Parse options; run what is missing, or print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key", type=Path, default=RUNS / "models" / "P:ING(2)-e30.key.json",
                        help="a P:ING key, e.g. a cell's key.json of benchmarks/specs/ingrain-tables-1-3.toml (its carriers and labels are used)")
    parser.add_argument("--ingrainer-epochs", type=int, default=200, help="(the plugin's default; the paper: 1,000)")
    parser.add_argument("--optimizer", default="adam", choices=("adam", "adadelta", "sgd"))
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--attack-epochs", type=int, default=50)
    parser.add_argument("--temperatures", type=float, nargs="+", default=[5.0, 10.0])
    parser.add_argument("--seed", type=int, default=1, help="the ingrainer's seed (P:ING uses the victim's + 1)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    if args.report:
        report()
        return
    for temperature in args.temperatures:
        ceiling(args, temperature)


if __name__ == "__main__":
    main()
