"""Reproduce the ingrain paper's MNIST tables (Table 1: six schemes under four attacks; Table 3: P:CAP vs
P:ING at λ ∈ {0.5, 1, 2, 4, 8} under distillation T = 10) with the wmtool CLI. Resumable: each victim and
each (victim, attack) result is saved as JSON under benchmarks/runs/ingrain/ and skipped when present.

Setting (§5): MNIST, MLP 2×1200 ReLU, dropout 0.5; the owner trains on 80% of the training set, the
attacker holds the other 20% as the refining set; |D_S| = 1,000 random-walk carriers (W:* schemes:
3,000 bits, W:STA 256); P:ING with T = 10. Attacks: distillation into the 2×800 student at T = 5 (Table 1)
and T = 10 (Table 3) on the refining set; pruning 0.4 then fine-tuning; rounding to 2 digits;
fine-tuning on the refining set. The paper trains 500 epochs (ingrainer 1,000, distillation 500,
pruning/fine-tuning 25); this script's epochs are options, recorded in each result.

Run:     python benchmarks/ingrain_tables.py [--epochs 10] [--device auto]
Report:  python benchmarks/ingrain_tables.py --report
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ewe_table1 import DATA, ROOT, wmtool

RUNS = ROOT / "benchmarks" / "runs" / "ingrain"
SCHEMES = {  # name → (embed command options, normalisation classes)
    "W:LSB": (["--scheme", "lsb"], 2),
    "W:SGN": (["--scheme", "sign"], 2),
    "W:COR": (["--scheme", "correlation"], 2),
    "W:STA": (["--scheme", "uchida"], 2),
    "P:CAP": (["--scheme", "capacity"], 10),
    **{f"P:ING({lam:g})": (["--scheme", "ingrain", "--strength", lam], 10) for lam in (0.5, 1, 2, 4, 8)},
}
PAPER_TABLE1 = {  # normalised watermark accuracy after distillation / pruning / rounding / fine-tuning
    "W:LSB": "0 / 0.24 / 0 / 0.27", "W:SGN": "0 / 0.53 / 0.75 / 0.59", "W:COR": "0 / 0.42 / 0.41 / 0.48",
    "W:STA": "0 / 0.77 / 0.80 / 0.80", "P:CAP": "0.00 / ≈1 / ≈1 / ≈1", "P:ING(2)": "0.23 / ≈1 / ≈1 / ≈1",
}
PAPER_TABLE3 = {"P:CAP": "0.02–0.04", "P:ING(0.5)": "0.224", "P:ING(1)": "0.261", "P:ING(2)": "0.288",
                "P:ING(4)": "0.307", "P:ING(8)": "0.327"}


def split_data(folder: Path) -> tuple[Path, Path]:
    """The owner's 80% and the attacker's 20% of MNIST's training set (fixed permutation), each with the
    MNIST test set as its test split, as .npz files."""
    import gzip

    owner, attacker = folder / "owner.npz", folder / "attacker.npz"
    if owner.exists() and attacker.exists():
        return owner, attacker

    def idx(name: str) -> np.ndarray:
        raw = gzip.decompress((DATA / "mnist" / name).read_bytes())
        dims = raw[3]
        shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
        return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)

    x, y = idx("train-images-idx3-ubyte.gz"), idx("train-labels-idx1-ubyte.gz")
    x_test, y_test = idx("t10k-images-idx3-ubyte.gz"), idx("t10k-labels-idx1-ubyte.gz")
    order = np.random.default_rng(0).permutation(len(y))
    cut = int(0.8 * len(y))
    folder.mkdir(parents=True, exist_ok=True)
    for path, part in ((owner, order[:cut]), (attacker, order[cut:])):
        np.savez(path, x_train=x[part], y_train=y[part].astype(np.int64), x_test=x_test,
                 y_test=y_test.astype(np.int64))
    return owner, attacker


def victim_tag(name: str, args: argparse.Namespace) -> str:
    """The result-file tag of one victim: its epochs, then whatever differs from the defaults (optimizer and
    learning rate, initialisation, ingrainer epochs, ingrainer optimizer and learning rate)."""
    tag = f"e{args.epochs}"
    if args.optimizer != "adam" or args.lr != 1e-3:
        tag += f"-{args.optimizer}{args.lr:g}"
    if args.init != "torch":
        tag += f"-{args.init}"
    if name.startswith("P:ING") and args.ingrainer_epochs != 200:
        tag += f"-g{args.ingrainer_epochs}"
    if name.startswith("P:ING") and (args.ingrainer_optimizer or args.ingrainer_lr is not None):
        lr = args.lr if args.ingrainer_lr is None else args.ingrainer_lr
        tag += f"-g{args.ingrainer_optimizer or args.optimizer}{lr:g}"
    if args.seed:
        tag += f"-seed{args.seed}"
    return tag


def victim(name: str, args: argparse.Namespace, owner: Path) -> dict:
    """Embed one scheme from scratch (MLP 2×1200) and verify it; saved as JSON."""
    tag = victim_tag(name, args)
    result = RUNS / f"victim-{name}-{tag}.json"
    folder = RUNS / "models"
    model, key = folder / f"{name}-{tag}.safetensors", folder / f"{name}-{tag}.key.json"
    if result.exists() and model.exists():
        return json.loads(result.read_text())
    options, _ = SCHEMES[name]
    ingrainer = ["--ingrainer-optimizer", args.ingrainer_optimizer] if args.ingrainer_optimizer else []
    ingrainer += ["--ingrainer-lr", args.ingrainer_lr] if args.ingrainer_lr is not None else []
    epochs = (["--epochs", args.epochs, "--ingrainer-epochs", args.ingrainer_epochs, *ingrainer] if "ingrain" in options
              else ["--epochs", args.epochs] if "capacity" in options
              else ["--clean-epochs", args.epochs] if "lsb" in options
              else ["--clean-epochs", args.epochs - args.mark_epochs, "--epochs", args.mark_epochs])
    training = ["--optimizer", args.optimizer, "--lr", args.lr] if name.startswith("P:") else []
    start = time.perf_counter()
    embedded = wmtool("embed", *options, "--arch", "mlp", "--arch-args", json.dumps({"init": args.init}),
                      "--data", owner, "-o", model, "--key-out", key, *epochs, *training, "--device", args.device,
                      "--seed", args.seed)
    verified = wmtool("verify", "--key", key, model, "--device", args.device, "--seed", args.seed)
    row = {"scheme": name, "epochs": args.epochs, "tag": tag, "seed": args.seed, "optimizer": args.optimizer,
           "lr": args.lr, "init": args.init, "accuracy": embedded["test_accuracy"], "watermark": verified["details"],
           "model": str(model), "key": str(key), "seconds": round(time.perf_counter() - start, 1)}
    result.write_text(json.dumps(row, indent=1))
    print(json.dumps(row), flush=True)
    return row


ATTACKS = {
    "distill-T5": lambda a: ["distill", "--student-args", json.dumps({"width": 800, "init": a.init}),
                             "--temperature", 5, "--hard-weight", a.hard_weight, "--epochs", a.attack_epochs],
    "distill-T10": lambda a: ["distill", "--student-args", json.dumps({"width": 800, "init": a.init}),
                              "--temperature", 10, "--hard-weight", a.hard_weight, "--epochs", a.attack_epochs],
    "prune": lambda a: ["prune", "--rate", 0.4, "--epochs", a.attack_epochs],
    "round": lambda a: ["round", "--digits", 2],
    "finetune": lambda a: ["finetune", "--epochs", a.attack_epochs],
}


def attack_name(attack: str, args: argparse.Namespace) -> str:
    """The result-file tag of one attack: distillation with hard labels is tagged with their weight."""
    return f"{attack}-h{args.hard_weight:g}" if attack.startswith("distill") and args.hard_weight else attack


def attacked(row: dict, attack: str, args: argparse.Namespace, attacker: Path) -> dict:
    """Run one attack on one victim with the attacker's refining set and verify the result."""
    tag = attack_name(attack, args)
    victim_name = f"{row['scheme']}-{row.get('tag', 'e' + str(row['epochs']))}"
    result = RUNS / f"attack-{victim_name}-{tag}-a{args.attack_epochs}.json"
    if result.exists():
        return json.loads(result.read_text())
    out = RUNS / "models" / f"{victim_name}-{tag}.safetensors"
    start = time.perf_counter()
    report = wmtool("attack", *ATTACKS[attack](args), row["model"], "--data", attacker, "-o", out,
                    "--device", args.device, "--seed", args.seed)
    try:
        verified = wmtool("verify", "--key", row["key"], out, "--device", args.device, "--seed", args.seed)
    except RuntimeError as error:  # a W:* key on the student: its parameters are gone
        if "architecture" not in str(error) and "layers do not match" not in str(error):
            raise
        verified = {"details": {"normalised": 0.0, "note": str(error).split("error: ")[-1]}, "claimed": False}
    entry = {"scheme": row["scheme"], "attack": tag, "epochs": row["epochs"], "victim": victim_name,
             "attack_epochs": args.attack_epochs,
             "accuracy": report["accuracy_after"],
             "watermark": verified["details"], "claimed": verified["claimed"],
             "seconds": round(time.perf_counter() - start, 1)}
    result.write_text(json.dumps(entry, indent=1))
    print(json.dumps(entry), flush=True)
    return entry


def report(epochs: int, attack_epochs: int) -> None:
    """Both tables as markdown for one victim / attack epoch setting (labels of the refining set not mixed
    into distillation), beside the paper's numbers."""
    victims = {r["scheme"]: r for r in map(lambda p: json.loads(p.read_text()),
                                           sorted(RUNS.glob(f"victim-*-e{epochs}.json")))}

    def cell(scheme: str, attack: str) -> str:
        path = RUNS / f"attack-{scheme}-e{epochs}-{attack}-a{attack_epochs}.json"
        if not path.exists():
            return "–"
        found = json.loads(path.read_text())
        return f"{found['accuracy']:.3f} / {found['watermark']['normalised']:.2f}"

    print("Table 1 (classification accuracy / normalised watermark accuracy)\n")
    print("| scheme | epochs | victim | distillation T=5 | pruning 0.4 + FT | rounding 2 | fine-tuning | paper (normalised wm: distill / prune / round / FT) |")
    print("|---|---|---|---|---|---|---|---|")
    for scheme in ("W:LSB", "W:SGN", "W:COR", "W:STA", "P:CAP", "P:ING(2)"):
        if scheme in victims:
            v = victims[scheme]
            print(f"| {scheme} | {v['epochs']} | {v['accuracy']:.3f} / {v['watermark']['normalised']:.2f} | "
                  f"{cell(scheme, 'distill-T5')} | {cell(scheme, 'prune')} | {cell(scheme, 'round')} | "
                  f"{cell(scheme, 'finetune')} | {PAPER_TABLE1[scheme]} |")
    print("\nTable 3, MNIST, distillation T = 10 (classification accuracy / normalised watermark accuracy)\n")
    print("| scheme | victim | distilled | paper (normalised wm after distillation) |")
    print("|---|---|---|---|")
    for scheme in PAPER_TABLE3:
        if scheme in victims:
            v = victims[scheme]
            print(f"| {scheme} | {v['accuracy']:.3f} / {v['watermark']['normalised']:.2f} | "
                  f"{cell(scheme, 'distill-T10')} | {PAPER_TABLE3[scheme]} |")


def distillation_report() -> None:
    """Every distillation result of the P:* schemes, by victim epochs, distillation epochs and label mix."""
    import re

    print("\nDistillation of the P:* schemes by epochs (classification accuracy / normalised watermark accuracy)\n")
    print("| scheme | victim epochs | victim variant | victim | distillation epochs | hard-label weight | T | "
          "distilled | claimed |")
    print("|---|---|---|---|---|---|---|---|---|")
    pattern = re.compile(r"attack-(P:[^-]+)-e(\d+)((?:-[a-z][\w.]*)*)-distill-T(\d+)(?:-h([\d.]+))?-a(\d+)\.json")
    rows = []
    for path in RUNS.glob("attack-P:*-distill-*.json"):
        found = pattern.fullmatch(path.name)
        if found:
            scheme, epochs, training, temperature, hard, attack_epochs = found.groups()
            rows.append((scheme, int(epochs), training, int(attack_epochs), float(hard or 0), int(temperature),
                         json.loads(path.read_text())))
    for scheme, epochs, training, attack_epochs, hard, temperature, entry in sorted(rows, key=lambda r: r[:6]):
        victim_file = RUNS / f"victim-{scheme}-e{epochs}{training}.json"
        trained = json.loads(victim_file.read_text()) if victim_file.exists() else None
        victim_cell = f"{trained['accuracy']:.3f} / {trained['watermark']['normalised']:.2f}" if trained else "–"
        print(f"| {scheme} | {epochs} | {training.strip('-') or 'default'} | {victim_cell} | {attack_epochs} | {hard:g} | {temperature} | "
              f"{entry['accuracy']:.3f} / {entry['watermark']['normalised']:.3f} | "
              f"{'yes' if entry['claimed'] else 'no'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10, help="victim training epochs (the paper: 500)")
    parser.add_argument("--mark-epochs", type=int, default=3, help="of those, epochs with the W:SGN/COR/STA term")
    parser.add_argument("--ingrainer-epochs", type=int, default=200, help="(the paper: 1,000)")
    parser.add_argument("--ingrainer-optimizer", choices=("adam", "adadelta", "sgd"),
                        help="P:ING's ingrainer optimizer (default: the victim's)")
    parser.add_argument("--ingrainer-lr", type=float, help="P:ING's ingrainer learning rate (default: the victim's)")
    parser.add_argument("--optimizer", default="adam", choices=("adam", "adadelta", "sgd"),
                        help="P:* victims' optimizer (the paper: adadelta, lr 0.1)")
    parser.add_argument("--lr", type=float, default=1e-3, help="P:* victims' learning rate")
    parser.add_argument("--init", default="torch", choices=("torch", "glorot"),
                        help="initial weights of victims and students (glorot: TensorFlow's defaults)")
    parser.add_argument("--attack-epochs", type=int, default=10, help="distillation/pruning/fine-tuning epochs")
    parser.add_argument("--schemes", nargs="+", default=["W:LSB", "W:SGN", "W:COR", "W:STA", "P:CAP", "P:ING(2)",
                                                          "P:ING(0.5)", "P:ING(1)", "P:ING(4)", "P:ING(8)"])
    parser.add_argument("--hard-weight", type=float, default=0.0,
                        help="distillation: weight of the refining set's true labels (the paper mixes them in)")
    parser.add_argument("--attacks", nargs="+", choices=sorted(ATTACKS), help="run only these attacks")
    parser.add_argument("--seed", type=int, default=0, help="seed of victims and attacks (tagged when not 0)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    if args.report:
        report(args.epochs, args.attack_epochs)
        distillation_report()
        return
    (RUNS / "models").mkdir(parents=True, exist_ok=True)
    owner, attacker = split_data(RUNS / "data")
    table1 = ("W:LSB", "W:SGN", "W:COR", "W:STA", "P:CAP", "P:ING(2)")
    for name in args.schemes:
        row = victim(name, args, owner)
        plan = (["distill-T5", "prune", "round", "finetune"] if name in table1 else []) + \
               (["distill-T10"] if name.startswith("P:") else [])
        for attack in plan:
            if args.attacks and attack not in args.attacks:
                continue
            attacked(row, attack, args, attacker)


if __name__ == "__main__":
    main()
