"""EWE's training cost relative to plain training of the same model on the same data, in one run.

Times, alternating and taking medians: (a) one plain epoch (cross-entropy only) over N MNIST images,
(b) one epoch of EWE's watermark phase over the same images (every clean batch followed, r = 1, by one
[X_w, X_cT] batch with the SNNL on conv1, conv2 and fc1), and (c) the same phase with κ = 0 (the
baseline's interleaving without the SNNL). Prints the ratios per epoch and per optimizer step.

Run: python benchmarks/ewe_speed.py [--samples 10240] [--repeats 3] [--device auto]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from wmtool.data import load_dataset
from wmtool.jobs import EmbedJob
from wmtool.model_card import ModelCard
from wmtool.models import build_model
from wmtool.plugins import get_registry
from wmtool.training import fit, fit_supervised, resolve_device
from wmtool_plugins.ewe import OPTIONS, Entangler, watermark_batches

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=10240)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    registry = get_registry()
    data = load_dataset(str(SHARED / "data" / "mnist"), "train", limit=args.samples, seed=0)
    ood = load_dataset(str(SHARED / "data" / "fashion-mnist"), "train")
    targets = data.x[data.y == 7]
    watermarks = ood.x[ood.y == 1][:len(targets)]
    base = {o.name: o.default for o in OPTIONS}
    torch.manual_seed(0)
    model = build_model(registry, ModelCard("ewe-cnn", (1, 28, 28), 10)).to(device)
    adam = {"eps": 1e-5, "betas": (0.9, 0.99)}

    def plain() -> int:
        fit_supervised(model, data.x, data.y, epochs=1, batch_size=512, lr=1e-3, seed=0, optimizer_options=adam,
                       shuffle=False)
        return -(-len(data) // 512)

    def phase(kappa: float) -> int:
        params = {**base, "kappa": kappa, "epochs": 1}
        job = EmbedJob(model, True, data, params, registry, 0, device)
        entangler = Entangler(model, ["conv1", "conv2", "fc1"], params, device)
        loop, loops, steps = watermark_batches(job, watermarks, targets, 7, np.random.default_rng(0))
        fit(model, loop, epochs=loops, lr=1e-3, optimizer_options=adam, loss=entangler.loss,
            after_step=entangler.update_temperatures)
        return loops * steps

    times: dict[str, list[float]] = {"plain": [], "ewe": [], "baseline": []}
    steps: dict[str, int] = {}
    plain()  # warm-up
    for _ in range(args.repeats):
        for label, run in (("plain", plain), ("ewe", lambda: phase(32.0)), ("baseline", lambda: phase(0.0))):
            start = time.perf_counter()
            steps[label] = run()
            times[label].append(time.perf_counter() - start)
    median = {label: statistics.median(values) for label, values in times.items()}
    print(f"device {device}, {len(data)} images, batch 512, medians of {args.repeats}")
    print("| training | seconds per epoch | steps per epoch | ratio per epoch vs plain | ratio per step vs plain |")
    print("|---|---|---|---|---|")
    for label in ("plain", "baseline", "ewe"):
        per_step = (median[label] / steps[label]) / (median["plain"] / steps["plain"])
        print(f"| {label} | {median[label]:.2f} | {steps[label]} | {median[label] / median['plain']:.2f} | "
              f"{per_step:.2f} |")


if __name__ == "__main__":
    main()
