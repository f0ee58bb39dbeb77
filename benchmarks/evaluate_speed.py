"""The evaluation engine's cost, measured side by side in one run (issue 18):

1. the engine (`wmtool evaluate --jobs 1`) against the same cells run as separate `wmtool` commands
   (train, embed, attack, verify, accuracy: one process each) — target ≤ 1.05× wall time;
2. `--jobs 2` against `--jobs 1` on the same sweep — target ≥ 1.3× throughput on a 2-core box;
3. `--backend ray --jobs 2` (a local Ray started by the run) against `--jobs 2` — target ≤ 1.15×.

Each run writes a fresh store under benchmarks/runs/evaluate-speed/ (git-ignored).

Run: python benchmarks/evaluate_speed.py [--spec benchmarks/specs/engine-bench.toml]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "benchmarks" / "runs" / "evaluate-speed"


def wmtool(*args: object) -> list[str]:
    return [sys.executable, "-m", "wmtool", *map(str, args)]


def timed(command: list[str]) -> float:
    """Wall seconds of one command (exit 1 is `verify`'s "not shown", not a failure)."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(map(str, command))} failed: {done.stderr[-1500:]}")
    return time.perf_counter() - start


def sweep(spec: Path, name: str, *extra: object) -> float:
    store = RUNS / name / "store"
    shutil.rmtree(store, ignore_errors=True)
    return timed(wmtool("evaluate", "--spec", spec, "--out", store, "--quiet", *extra))


def separate_commands(spec: Path) -> float:
    """The sweep's cells as one wmtool command each (the way the benchmarks/ scripts ran them)."""
    raw = tomllib.loads(spec.read_text())
    folder = RUNS / "separate" / "files"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    model, data = raw["model"], raw["data"]["owner"]
    total = 0.0
    for seed in raw["seeds"]:
        victims = {}
        for index in range(raw.get("references", 0) + 1):
            path = folder / f"clean-{seed}-{index}.safetensors"
            total += timed(wmtool("train", "--arch", model["arch"], "--epochs", model["epochs"], "--batch-size", 64,
                                  "--validation", 0, "--data", data, "--seed", seed if index == 0 else 10_000 + index,
                                  "-o", path, "--quiet"))
            victims[index] = path
        for scheme, options in raw["schemes"].items():
            marked, key = folder / f"{scheme}-{seed}.safetensors", folder / f"{scheme}-{seed}.json"
            flags = [x for k, v in options.items() for x in (f"--{k.replace('_', '-')}", v)]
            total += timed(wmtool("embed", "--scheme", scheme, victims[0], "--data", data, "--seed", seed,
                                  "-o", marked, "--key-out", key, "--quiet", *flags))
            suspects = [marked, *(victims[i] for i in range(1, len(victims)))]
            for attack, attack_options in raw["attacks"].items():
                grid = [(k, v) for k, v in attack_options.items() if isinstance(v, list)]
                values = grid[0][1] if grid else [None]
                for value in values:
                    flags = [x for k, v in attack_options.items() if not isinstance(v, list)
                             for x in (f"--{k.replace('_', '-')}", v)]
                    if grid:
                        flags += [f"--{grid[0][0].replace('_', '-')}", value]
                    out = folder / f"{scheme}-{seed}-{attack}-{value}.safetensors"
                    total += timed(wmtool("attack", attack, marked, "--data", data, "--seed", seed, "-o", out,
                                          "--quiet", *flags))
                    suspects.append(out)
            for suspect in suspects:
                total += timed(wmtool("verify", "--key", key, suspect, "--json"))
                total += timed(wmtool("accuracy", suspect, "--data", data, "--json"))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "benchmarks" / "specs" / "engine-bench.toml")
    spec = parser.parse_args().spec
    RUNS.mkdir(parents=True, exist_ok=True)
    one = sweep(spec, "jobs1")
    apart = separate_commands(spec)
    two = sweep(spec, "jobs2", "--jobs", 2)
    print(f"engine --jobs 1: {one:.1f} s; the same cells as separate commands: {apart:.1f} s; "
          f"ratio {one / apart:.2f} (target ≤ 1.05)")
    print(f"--jobs 2: {two:.1f} s; throughput {one / two:.2f}x of --jobs 1 (target ≥ 1.3)")
    try:
        import ray  # noqa: F401
    except ImportError:
        print("ray is not installed: pip install 'wmtool[ray]' for the third ratio")
        return
    with_ray = sweep(spec, "ray", "--jobs", 2, "--backend", "ray")
    print(f"--backend ray --jobs 2: {with_ray:.1f} s; {with_ray / two:.2f}x the local --jobs 2 (target ≤ 1.15)")


if __name__ == "__main__":
    main()
