"""Peak memory of `wmtool inspect` and `wmtool verify` on a ~500 MB model, safetensors and ONNX (issue 8,
part 6: target < 1.5× the file size).

Builds (once, under benchmarks/runs/scale/, git-ignored) an MNIST-shaped MLP with 2 hidden layers of
10,800 units (125 M float32 parameters, ~500 MB) as .safetensors and .onnx, and a small backdoor key for
the same task; then runs each command under `/usr/bin/time -v` and prints its maximum resident set size
beside the file size. The same commands on the key's own tiny model (0.1 MB) are measured too: their peak
is the floor of the interpreter and its imports (torch, scipy, onnxruntime), so the cost of the weights can
be told from it.

Run:  python benchmarks/peak_memory.py [--width 10800]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "benchmarks" / "runs" / "scale"
MNIST = ROOT.parent / "shared" / "data" / "mnist"


def wmtool(*args: object) -> list[str]:
    """The command line of one wmtool invocation."""
    return [sys.executable, "-m", "wmtool", *map(str, args)]


def build(width: int) -> tuple[Path, Path, Path]:
    """The big model as safetensors and ONNX, and a backdoor key for its task (skipped when present)."""
    from wmtool.model_card import ModelCard
    from wmtool.models import build_model, save_model
    from wmtool.plugins import get_registry

    RUNS.mkdir(parents=True, exist_ok=True)
    tensors, graph, key = RUNS / f"mlp{width}.safetensors", RUNS / f"mlp{width}.onnx", RUNS / "key.json"
    if not key.exists():
        subprocess.run(wmtool("embed", "--scheme", "backdoor", "--arch", "mlp", "--arch-args", '{"width": 32}',
                              "--data", MNIST, "--epochs", 1, "-o", RUNS / "small.safetensors", "--key-out", key,
                              "--force", "--json"), check=True, capture_output=True)
    if not tensors.exists() or not graph.exists():
        import torch

        torch.manual_seed(0)
        registry = get_registry()
        model = build_model(registry, ModelCard("mlp", (1, 28, 28), 10, {"width": width}))
        save_model(model, tensors, registry, force=True)
        save_model(model, graph, registry, force=True)
    return tensors, graph, key


def peak_rss(command: list[str]) -> tuple[int, float]:
    """Maximum resident set size (bytes) and wall seconds of one command, from GNU time."""
    done = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    clock = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", done.stderr).groups()
    seconds = int(clock[0] or 0) * 3600 + int(clock[1]) * 60 + float(clock[2])
    return kib * 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=10800, help="hidden width of the MLP (10,800: ~500 MB)")
    args = parser.parse_args()
    tensors, graph, key = build(args.width)
    small = RUNS / "small.safetensors"
    rows = []
    for path in (tensors, graph):
        size = path.stat().st_size
        for name, command in (("inspect", ["inspect"]), ("verify", ["verify", "--key", key])):
            floor, _ = peak_rss(wmtool(*command, small, "--json"))
            peak, seconds = peak_rss(wmtool(*command, path, "--json"))
            rows.append({"command": name, "format": path.suffix[1:], "file_mb": round(size / 1e6, 1),
                         "peak_mb": round(peak / 1e6, 1), "floor_mb": round(floor / 1e6, 1),
                         "ratio": round(peak / size, 2), "ratio_above_floor": round((peak - floor) / size, 2),
                         "seconds": round(seconds, 1)})
            print(json.dumps(rows[-1]), flush=True)
    print("\n| command | format | file (MB) | peak RSS (MB) | same command on a 0.1 MB model (MB) | peak / file "
          "| (peak − floor) / file | wall (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['command']} | {r['format']} | {r['file_mb']} | {r['peak_mb']} | {r['floor_mb']} | {r['ratio']} | "
              f"{r['ratio_above_floor']} | {r['seconds']} |")


if __name__ == "__main__":
    main()
