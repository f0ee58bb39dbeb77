"""Black-box attacks' training cost relative to a plain loop, measured side by side in one run.

For `distill` and `extract` on MNIST: the attack's whole run (querying the victim, training the student,
reporting its agreement) against a plain `fit_supervised` of the same student on labels computed
beforehand. Each is run for 1 and for 1 + E epochs; the difference divided by E is the time of one
student epoch, free of the one-off costs (the victim's query, building the model, the closing report).
Prints that per-epoch ratio (target ≤ 1.1×) beside the ratio of the whole (1 + E)-epoch runs.

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
          "ratio per student epoch | target |")
    print("|---|---|---|---|---|---|---|")
    for name, options in (("distill", {"student": "mlp", "student_args": '{"width": 800}'}), ("extract", {})):
        attack = registry.get("attack", name)
        labels = victim.predict(data.x)

        def plain(epochs: int) -> None:
            params = resolve(attack.options, {**options, "epochs": epochs}, name)
            student = fresh_model_for(victim.card, registry, params["student"], params["student_args"])
            fit_supervised(student, data.x, labels, epochs=epochs, batch_size=params["batch_size"],
                           lr=params["lr"], seed=0)

        def whole(epochs: int) -> None:
            params = resolve(attack.options, {**options, "epochs": epochs}, name)
            attack.run(AttackJob(victim, data, params, registry, 0, "cpu"))

        def query(_: int) -> None:
            victim.predict_logits(data.x)

        runs = [("attack", whole, 1), ("attack", whole, 1 + args.epochs), ("plain", plain, 1),
                ("plain", plain, 1 + args.epochs), ("query", query, 0)]
        times: dict[tuple[str, int], list[float]] = {(label, epochs): [] for label, _, epochs in runs}
        for _ in range(args.repeats):
            for label, function, epochs in runs:
                start = time.perf_counter()
                function(epochs)
                times[label, epochs].append(time.perf_counter() - start)
        median = {key: statistics.median(values) for key, values in times.items()}
        long = 1 + args.epochs
        per_epoch = {label: (median[label, long] - median[label, 1]) / args.epochs for label in ("attack", "plain")}
        print(f"| {name} | {median['query', 0]:.2f} | {per_epoch['attack']:.2f} | {per_epoch['plain']:.2f} | "
              f"{median['attack', long] / median['plain', long]:.3f} | "
              f"{per_epoch['attack'] / per_epoch['plain']:.3f} | ≤ 1.1 |", flush=True)


if __name__ == "__main__":
    main()
