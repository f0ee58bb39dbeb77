"""Black-box attacks' training cost relative to a plain loop, measured side by side in one run.

For `distill` and `extract` on MNIST: the attack's whole run (querying the victim, then training the
student) against a plain `fit_supervised` of the same student on labels computed beforehand, both for
the same epochs; prints seconds per student epoch and the ratio (target ≤ 1.1×). The one-off query of
the victim (all the attacker's images, in batches) is timed on its own too, so the ratio is printed
both for the whole run and for the student's epochs alone (the whole run minus that query).

Run: python benchmarks/attack_speed.py [--samples 10000] [--epochs 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from wmtool.data import load_dataset
from wmtool.jobs import AttackJob
from wmtool.model_card import ModelCard
from wmtool.models import build_model, fresh_model_for
from wmtool.options import resolve
from wmtool.plugins import get_registry
from wmtool.training import fit_supervised

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    registry = get_registry()
    data = load_dataset(str(SHARED / "data" / "mnist"), "train", limit=args.samples, seed=0)
    torch.manual_seed(0)
    victim = build_model(registry, ModelCard("ewe-cnn", (1, 28, 28), 10)).eval()
    print("| attack | victim query s (once) | attack s/epoch | plain loop s/epoch | ratio, whole run | "
          "ratio, student epochs | target |")
    print("|---|---|---|---|---|---|---|")
    for name, options in (("distill", {"student": "mlp", "student_args": '{"width": 800}'}), ("extract", {})):
        attack = registry.get("attack", name)
        params = resolve(attack.options, {**options, "epochs": args.epochs}, name)
        labels = victim.predict(data.x)

        def plain() -> None:
            student = fresh_model_for(victim.card, registry, params["student"], params["student_args"])
            fit_supervised(student, data.x, labels, epochs=args.epochs, batch_size=params["batch_size"],
                           lr=params["lr"], seed=0)

        def whole() -> None:
            attack.run(AttackJob(victim, data, params, registry, 0, "cpu"))

        def query() -> None:
            victim.predict_logits(data.x)

        times: dict[str, list[float]] = {"attack": [], "plain": [], "query": []}
        for _ in range(args.repeats):
            for label, function in (("attack", whole), ("plain", plain), ("query", query)):
                start = time.perf_counter()
                function()
                times[label].append(time.perf_counter() - start)
        a, p, q = (statistics.median(times[k]) for k in ("attack", "plain", "query"))
        print(f"| {name} | {q:.2f} | {a / args.epochs:.2f} | {p / args.epochs:.2f} | {a / p:.3f} | "
              f"{(a - q) / p:.3f} | ≤ 1.1 |", flush=True)


if __name__ == "__main__":
    main()
