"""A line-by-line torch re-implementation of the EWE authors' MNIST/Fashion-MNIST experiment
(cleverhans-lab/entangled-watermark, train.py + models.py, read not copied), independent of wmtool,
to tell apart what the paper's Table 1 needs from what wmtool's `ewe` plugin does.

It follows the authors' loop literally: unshuffled data; 10 clean epochs; OOD watermarks tiled to the
target class's size; per watermark batch, target-logit sign steps (while > 10% are labelled c_T, at most
50) alternating with SNNL sign ascent (10 rounds), then 5 more target-logit steps; then
round(w_epochs · batches / w_batches) loops of (r clean batches, one [X_w, X_cT] batch) where the clean
batch pointer restarts at every loop; SNNL on ReLU'd representations, cosine distance at temperature
100/T, T ← T − 0.1 · ∂SNNL/∂T; summed cross-entropy, Adam(1e-3, 0.9, 0.99, 1e-5); extraction by a fresh
same-architecture model trained 20 epochs on the victim's hard labels of the training set.

Switches (each a difference from wmtool's plugin, to find which one matters):
  --init glorot|torch          TF's Glorot-uniform weights and zero biases, or torch's defaults
  --pointer reset|continue     the authors' clean-batch pointer restart, or running through all the data
  --kappa K                    SNNL weight per layer (0: the baseline)
  --scale S                    SNNL temperature S/T (authors: 100)

Run:     python benchmarks/ewe_port.py --dataset mnist --seeds 0 1 2 --device cuda [--jobs 4]
Report:  python benchmarks/ewe_port.py --report
Results: one JSON per configuration and seed under benchmarks/runs/ewe-port/ (skipped when present).
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RUNS = ROOT / "benchmarks" / "runs" / "ewe-port"
SETTINGS = {  # the authors' defaults per dataset (train.py, `default = 1`)
    "mnist": {"task": "mnist", "ood": "fashion-mnist", "source": 1, "target": 7, "batch": 512, "ratio": 1},
    "fashion": {"task": "fashion-mnist", "ood": "mnist", "source": 8, "target": 0, "batch": 128, "ratio": 2},
}


def idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file."""
    raw = gzip.decompress(path.read_bytes())
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images scaled to [0, 1] as N×1×28×28 float32, and labels."""
    prefix = "train" if split == "train" else "t10k"
    x = idx(DATA / name / f"{prefix}-images-idx3-ubyte.gz").astype(np.float32)[:, None] / 255
    return x, idx(DATA / name / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)


def network(init: str):
    """The authors' 2-conv net; forward returns (conv1, conv2, fc1) before their ReLUs, and the logits."""
    import torch
    from torch import nn

    class TwoConv(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 32, 5, padding=2)
            self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
            self.fc1 = nn.Linear(64 * 7 * 7, 128)
            self.fc2 = nn.Linear(128, 10)
            if init == "glorot":
                for layer in (self.conv1, self.conv2, self.fc1, self.fc2):
                    nn.init.xavier_uniform_(layer.weight)
                    nn.init.zeros_(layer.bias)

        def forward(self, x):
            pool = nn.functional.max_pool2d
            s1 = self.conv1(x)
            s2 = self.conv2(pool(torch.relu(s1), 2))
            s3 = self.fc1(pool(torch.relu(s2), 2).flatten(1))
            return (s1, s2, s3), self.fc2(torch.relu(s3))

    return TwoConv()


def snnl(h, groups, t):
    """The authors' SNNL: ReLU, cosine distance, exp(−d/t) without the diagonal, clipped, ε = 1e-5."""
    import torch

    x = torch.nn.functional.normalize(torch.relu(h).flatten(1), dim=1)
    distance = 1 - x @ x.T
    e = (torch.exp(-distance / t) - torch.eye(len(x), device=x.device)).clamp(0, 1)
    same = (groups[:, None] == groups[None, :]).float()
    p = e / (1e-5 + e.sum(1, keepdim=True)) * same
    return -torch.log(1e-5 + p.sum(1)).mean()


def run(dataset: str, seed: int, kappa: float, init: str, pointer: str, scale: float, device: str,
        limit: int = 0) -> dict:
    """One victim, its extraction and a clean model, as the authors' train() does."""
    import torch
    import torch.nn.functional as F

    s = SETTINGS[dataset]
    torch.manual_seed(seed)
    np.random.seed(seed)
    start = time.perf_counter()
    x_np, y_np = load(s["task"], "train")
    if limit:
        x_np, y_np = x_np[:limit], y_np[:limit]
    xt_np, yt_np = load(s["task"], "test")
    ood_x, ood_y = load(s["ood"], "train")
    x, y = torch.from_numpy(x_np).to(device), torch.from_numpy(y_np).to(device)
    x_test, y_test = torch.from_numpy(xt_np).to(device), torch.from_numpy(yt_np).to(device)
    bs, half, target = s["batch"], s["batch"] // 2, s["target"]
    target_data = x[y == target]
    source = torch.from_numpy(ood_x[ood_y == s["source"]]).to(device)
    trigger = torch.cat([source] * (len(target_data) // len(source) + 1))[:len(target_data)].clone()
    num_batch, w_num_batch = len(x) // bs, len(target_data) // bs * 2
    w_groups = torch.cat([torch.ones(half), torch.zeros(half)]).to(device)

    def adam(net):
        return torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.99), eps=1e-5)

    def accuracy(net, inputs, labels):
        with torch.no_grad():
            return float((net(inputs)[1].argmax(1) == labels).float().mean())

    def wm_success(net):
        rows = trigger[:w_num_batch * half]
        return accuracy(net, rows, torch.full((len(rows),), target, device=device))

    model = network(init).to(device)
    opt = adam(model)
    temperatures = torch.ones(3, device=device)

    def step(xb, yb, marked: bool) -> None:
        nonlocal temperatures
        t = temperatures.clone().requires_grad_(True)
        reps, logits = model(xb)
        loss = F.cross_entropy(logits, yb, reduction="sum")
        if marked:
            total = sum(snnl(h, w_groups, scale / t[i]) for i, h in enumerate(reps))
            t_grad = torch.autograd.grad(total, t, retain_graph=True)[0]
            loss = loss - kappa * total
        opt.zero_grad()
        loss.backward()
        opt.step()
        if marked:
            temperatures = temperatures - 0.1 * t_grad.detach()

    for _ in range(10):
        for b in range(num_batch):
            step(x[b * bs:(b + 1) * bs], y[b * bs:(b + 1) * bs], False)

    def logit_grad(inputs):
        inputs = inputs.clone().requires_grad_(True)
        return torch.autograd.grad(model(inputs)[1][:, target].sum(), inputs)[0]

    def snnl_grad(inputs):
        inputs = inputs.clone().requires_grad_(True)
        reps, _ = model(inputs)
        total = sum(snnl(h, w_groups, scale / temperatures[i]) for i, h in enumerate(reps))
        return torch.autograd.grad(total, inputs)[0]

    for b in range(w_num_batch):
        current = trigger[b * half:(b + 1) * half]
        steps = 0
        for _ in range(10):
            while steps < 50 and accuracy(model, current, torch.full((half,), target, device=device)) > 0.1:
                steps += 1
                current = (current - 0.01 * logit_grad(current).sign()).clamp(0, 1)
            grad = snnl_grad(torch.cat([current, target_data[b * half:(b + 1) * half]]))[:half]
            current = (current + 0.01 * grad.sign()).clamp(0, 1)
        for _ in range(5):
            current = (current - 0.01 * logit_grad(current).sign()).clamp(0, 1)
        trigger[b * half:(b + 1) * half] = current

    wm_labels = torch.full((bs,), target, device=device)
    j = 0
    for _ in range(round(10 * num_batch / w_num_batch)):
        if pointer == "reset":
            j = 0
        for b in range(w_num_batch):
            for _ in range(s["ratio"]):
                j = 0 if j >= num_batch else j
                step(x[j * bs:(j + 1) * bs], y[j * bs:(j + 1) * bs], False)
                j += 1
            batch = torch.cat([trigger[b * half:(b + 1) * half], target_data[b * half:(b + 1) * half]])
            step(batch, wm_labels, True)
    victim = model
    row = {"dataset": dataset, "seed": seed, "kappa": kappa, "init": init, "pointer": pointer, "scale": scale,
           "victim_accuracy": accuracy(victim, x_test, y_test), "victim_success": wm_success(victim),
           "temperatures": [round(float(t), 4) for t in temperatures]}
    with torch.no_grad():
        stolen_labels = torch.cat([victim(x[b * bs:(b + 1) * bs])[1].argmax(1) for b in range(num_batch)])

    def plain(labels):
        net = network(init).to(device)
        optimizer = adam(net)
        for _ in range(20):
            for b in range(num_batch):
                loss = F.cross_entropy(net(x[b * bs:(b + 1) * bs])[1], labels[b * bs:(b + 1) * bs], reduction="sum")
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        return net

    extracted = plain(stolen_labels)
    clean = plain(y[:num_batch * bs])
    row.update(extracted_accuracy=accuracy(extracted, x_test, y_test), extracted_success=wm_success(extracted),
               clean_accuracy=accuracy(clean, x_test, y_test), clean_success=wm_success(clean),
               seconds=round(time.perf_counter() - start, 1))
    return row


def name(config: tuple) -> str:
    """File stem of one configuration and seed."""
    dataset, seed, kappa, init, pointer, scale = config
    return f"{dataset}-k{kappa:g}-{init}-{pointer}-s{scale:g}-seed{seed}"


def work(config: tuple, device: str, limit: int = 0) -> str:
    """Run one configuration unless its result exists; returns the result's file name."""
    path = RUNS / f"{name(config)}{f'-n{limit}' if limit else ''}.json"
    if not path.exists():
        row = run(*config, device=device, limit=limit)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(row, indent=1))
        tmp.replace(path)
        print(json.dumps(row), flush=True)
    return path.name


def report() -> None:
    """Markdown table: mean ± std over seeds per configuration."""
    import statistics

    def stat(values: list[float]) -> str:
        values = [100 * v for v in values]
        return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"

    rows = [json.loads(p.read_text()) for p in sorted(RUNS.glob("*.json"))]
    keys = sorted({(r["dataset"], r["kappa"], r["init"], r["pointer"], r["scale"]) for r in rows})
    print("| dataset | κ | init | clean-batch pointer | scale | seeds | victim acc % | victim success % "
          "| extracted acc % | extracted success % | clean model's success % |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")

    for key in keys:
        group = [r for r in rows if (r["dataset"], r["kappa"], r["init"], r["pointer"], r["scale"]) == key]
        cells = [stat([r[f] for r in group]) for f in ("victim_accuracy", "victim_success", "extracted_accuracy",
                                                     "extracted_success", "clean_success")]
        print(f"| {key[0]} | {key[1]:g} | {key[2]} | {key[3]} | {key[4]:g} | {len(group)} | {' | '.join(cells)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(SETTINGS), nargs="+", default=["mnist"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--kappa", type=float, nargs="+", default=[32.0, 0.0])
    parser.add_argument("--init", choices=("glorot", "torch"), nargs="+", default=["glorot"])
    parser.add_argument("--pointer", choices=("reset", "continue"), nargs="+", default=["reset"])
    parser.add_argument("--scale", type=float, nargs="+", default=[100.0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    parser.add_argument("--limit", type=int, default=0, help="first N training images only (smoke tests)")
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    if args.report:
        report()
        return
    RUNS.mkdir(parents=True, exist_ok=True)
    configs = list(itertools.product(args.dataset, args.seeds, args.kappa, args.init, args.pointer, args.scale))
    if args.jobs == 1:
        for config in configs:
            work(config, args.device, args.limit)
        return
    import multiprocessing

    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for done in pool.map(work, configs, [args.device] * len(configs), [args.limit] * len(configs)):
            print("done", done, flush=True)


if __name__ == "__main__":
    main()
