"""The ingrain paper's data split (§5): the owner's 80% and the attacker's 20% of MNIST's training set, by a
fixed permutation (seed 0), each with MNIST's test set as its test split, written as .npz datasets for the
sweep specs benchmarks/specs/ingrain-*.toml.

Run: python benchmarks/mnist_split.py [--out benchmarks/runs/ingrain/data]   (a few seconds; skipped when present)
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data" / "mnist"


def _idx(name: str) -> np.ndarray:
    """One IDX array of the MNIST folder."""
    raw = gzip.decompress((MNIST / name).read_bytes())
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


def split_data(folder: Path) -> tuple[Path, Path]:
    """Write owner.npz (80%) and attacker.npz (20%) into folder, unless both exist; return their paths."""
    owner, attacker = folder / "owner.npz", folder / "attacker.npz"
    if owner.exists() and attacker.exists():
        return owner, attacker
    x, y = _idx("train-images-idx3-ubyte.gz"), _idx("train-labels-idx1-ubyte.gz")
    x_test, y_test = _idx("t10k-images-idx3-ubyte.gz"), _idx("t10k-labels-idx1-ubyte.gz")
    order = np.random.default_rng(0).permutation(len(y))
    cut = int(0.8 * len(y))
    folder.mkdir(parents=True, exist_ok=True)
    for path, part in ((owner, order[:cut]), (attacker, order[cut:])):
        np.savez(path, x_train=x[part], y_train=y[part].astype(np.int64), x_test=x_test,
                 y_test=y_test.astype(np.int64))
    return owner, attacker


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "runs" / "ingrain" / "data")
    for written in split_data(parser.parse_args().out):
        print(written)
