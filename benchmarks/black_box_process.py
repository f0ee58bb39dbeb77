"""Whole-process cost of black-box commands on ONNX models against a bare onnxruntime script (issue 16,
part 11: target ≤ 1.2× wall time), measured side by side in one run.

- `wmtool accuracy` on the third-party `mnist-canvas-cnn.onnx` over MNIST's 10,000 test images, against a
  script that reads the same IDX file, preprocesses as the model's README says, runs onnxruntime and
  counts the correct answers.
- `wmtool verify` of the same model with a key of 10,000 queries (MNIST's test images labelled with the
  model's own answers, made once here), against a script that reads the key's inputs and labels,
  preprocesses, runs onnxruntime on them and computes the one-sided binomial p-value.
- `wmtool verify` of a backdoor-marked ONNX model (ewe-cnn trained and marked on 5,000 MNIST images,
  exported to ONNX, made once here) with its 100 watermark queries: here the bare script does almost
  nothing, so the row shows wmtool's fixed cost (interpreter, imports, plugin registration), not a ratio
  to meet.

Each command runs as its own process (interpreter start, imports, plugin registration included),
alternating with its bare counterpart, `--repeats` times; the table shows median wall seconds and peak
resident memory (from the kernel's accounting of each child), and whether the wmtool process imported
torch.

Run: python benchmarks/black_box_process.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
RUNS = ROOT / "benchmarks" / "runs" / "black-box" / "files"  # git-ignored, as every runs/*/*/
CANVAS = SHARED / "models" / "mnist-canvas-cnn.onnx"
MNIST = SHARED / "data" / "mnist"
CANVAS_FLAGS = ("--input-range", "255", "--mean", str(0.1307 * 255), "--std", str(0.3081 * 255))

BARE_ACCURACY = f"""
import gzip, struct
import numpy as np, onnxruntime as ort
def idx(path):
    data = gzip.open(path).read()
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)
x = ((idx("{MNIST}/t10k-images-idx3-ubyte.gz").astype(np.float32) - 0.1307 * 255) / (0.3081 * 255))[:, None]
y = idx("{MNIST}/t10k-labels-idx1-ubyte.gz")
session = ort.InferenceSession("{CANVAS}", providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
answers = np.array([session.run(None, {{name: x[i:i + 1]}})[0].argmax() for i in range(len(x))])
print((answers == y).mean())
"""

BARE_VERIFY = """
import base64, json, math, sys, zlib
import numpy as np, onnxruntime as ort
key = json.load(open(sys.argv[1]))
def array(entry):
    return np.frombuffer(zlib.decompress(base64.b64decode(entry["zlib_base64"])), entry["dtype"]).reshape(entry["shape"])
x, y = array(key["arrays"]["inputs"]), array(key["arrays"]["labels"])
prep = key["task"]["preprocessing"]
x = (x * prep["input_range"] - np.float32(prep["mean"][0])) / np.float32(prep["std"][0]) if prep["mean"] else x
session = ort.InferenceSession(sys.argv[2], providers=["CPUExecutionProvider"])
name, batch = session.get_inputs()[0].name, session.get_inputs()[0].shape[0]
batch = batch if isinstance(batch, int) else len(x)
answers = np.concatenate([session.run(None, {name: x[i:i + batch]})[0] for i in range(0, len(x), batch)]).argmax(1)
k, n, p = int((answers == y).sum()), len(y), key["null"]["rate"]
print(k, n, sum(math.comb(n, i) * p**i * (1 - p)**(n - i) for i in range(k, n + 1)))
"""

PROBE = "import atexit, sys; atexit.register(lambda: print('torch imported:', 'torch' in sys.modules, file=sys.stderr))"


def wmtool(*args: object) -> list[str]:
    """One wmtool process, which reports at exit whether it imported torch."""
    code = f"{PROBE}; from wmtool.cli import main; sys.argv = ['wmtool', *sys.argv[1:]]; main()"
    return [sys.executable, "-c", code, *map(str, args)]


def marked_model() -> tuple[Path, Path]:
    """A backdoor-marked ONNX model and its key (made once, under benchmarks/runs/black-box/)."""
    RUNS.mkdir(parents=True, exist_ok=True)
    clean, marked, key = RUNS / "clean.safetensors", RUNS / "marked.onnx", RUNS / "marked.key.json"
    if not key.exists():
        subprocess.run(wmtool("train", "--arch", "ewe-cnn", "--data", MNIST, "--limit", 5000, "--epochs", 2,
                              "-o", clean, "--force", "--quiet"), check=True, capture_output=True)
        subprocess.run(wmtool("embed", "--scheme", "backdoor", clean, "--data", MNIST, "--limit", 5000, "--epochs", 1,
                              "-o", marked, "--key-out", key, "--force", "--quiet"), check=True, capture_output=True)
    return marked, key


def canvas_key() -> Path:
    """A key of 10,000 queries for mnist-canvas-cnn: MNIST's test images and the model's own answers."""
    path = RUNS / "canvas-10000.key.json"
    if not path.exists():
        from wmtool.data import load_dataset
        from wmtool.keys import Key, NullRate, Task, save_key
        from wmtool.models import ModelSource, file_sha256, open_predictor
        from wmtool.plugins import get_registry
        from wmtool.preprocessing import Preprocessing

        prep = Preprocessing(255.0, (0.1307 * 255,), (0.3081 * 255,))
        model = open_predictor(CANVAS, get_registry(), ModelSource(preprocessing=prep), device="cpu")
        test = load_dataset(str(MNIST), "test")
        arrays = {"inputs": test.x, "labels": model.predict(test.x).astype("int64")}
        save_key(Key("benchmark", "trigger-set", {}, Task((1, 28, 28), 10, prep), NullRate.chance(10),
                     file_sha256(CANVAS), arrays), path, force=True)
    return path


# As a user's machine has it: Python caches compiled modules (some sandboxes set PYTHONDONTWRITEBYTECODE,
# which makes every run compile wmtool's own modules again).
ENV = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def measure(command: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak resident bytes and stderr of one process."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                             env=ENV)
    stderr = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise RuntimeError(f"{command} failed: {stderr[-1500:]}")
    return seconds, usage.ru_maxrss * 1024, stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    repeats = parser.parse_args().repeats
    marked, key = marked_model()
    if not (RUNS / "canvas-10000.key.json").exists():  # made in a child, so that this process stays small
        subprocess.run([sys.executable, "-c", "import black_box_process as b; b.canvas_key()"], check=True,
                       cwd=Path(__file__).parent)
    big_key = canvas_key()
    pairs = {
        "accuracy (mnist-canvas-cnn, 10,000 images)": (
            wmtool("accuracy", CANVAS, "--data", MNIST, *CANVAS_FLAGS, "--json"),
            [sys.executable, "-c", BARE_ACCURACY]),
        "verify (mnist-canvas-cnn, 10,000 queries)": (
            wmtool("verify", "--key", big_key, CANVAS, "--json"),
            [sys.executable, "-c", BARE_VERIFY, str(big_key), str(CANVAS)]),
        "verify (marked ONNX, 100 queries: fixed cost)": (
            wmtool("verify", "--key", key, marked, "--json"),
            [sys.executable, "-c", BARE_VERIFY, str(key), str(marked)]),
    }
    print(f"{'command':50} {'wmtool s':>9} {'bare s':>7} {'ratio':>6} {'wmtool MB':>10} {'bare MB':>8}  torch")
    for label, (ours, bare) in pairs.items():
        measure(ours), measure(bare)  # warm the page cache
        runs = [(measure(ours), measure(bare)) for _ in range(repeats)]
        ours_s = statistics.median(r[0][0] for r in runs)
        bare_s = statistics.median(r[1][0] for r in runs)
        ours_mb = max(r[0][1] for r in runs) / 2**20
        bare_mb = max(r[1][1] for r in runs) / 2**20
        torch_seen = "imported" if any("torch imported: True" in r[0][2] for r in runs) else "not imported"
        print(f"{label:50} {ours_s:9.2f} {bare_s:7.2f} {ours_s / bare_s:6.2f} {ours_mb:10.0f} {bare_mb:8.0f}  "
              f"{torch_seen}")


if __name__ == "__main__":
    main()
