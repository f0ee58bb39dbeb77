"""A ViT-Base-sized transformers folder (issue 17, part 6): peak memory of `inspect` and `verify`, and
`accuracy` throughput against the library's own processor + model loop, measured side by side in one run.

Builds once, under benchmarks/runs/scale-vit/ (git-ignored): a ViT-Base (12 layers, width 768, MLP 3072,
12 heads: 86 M float32 parameters) for CIFAR-10's 3×32×32 images with patches of 8, random weights,
saved by transformers' `save_pretrained` in 100 MB shards, with an image processor (rescale 1/255, mean
0.5, std 0.5); the same architecture at width 16 as the floor; and for each a trigger-set key (100 CIFAR
images labelled with the model's own answers) and a `sign` key (256 bits of the largest weight's signs).

Peak memory: each command in its own process under `/usr/bin/time -v`; the floor is the same command
on the tiny folder (the interpreter with torch and transformers imported). Throughput: whole processes on the same N
images (the first N of the CIFAR-10 copy, written once as an .npz), `wmtool accuracy DIR --data that.npz
--split all` against a script that loads the folder with `from_pretrained`, runs `AutoImageProcessor` on
the images (as PIL images) and the model in batches of 64, alternating, median of `--repeats`; both print
their accuracy, which must agree.

Run:  python benchmarks/folder_scale.py [--images 500] [--repeats 3]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "benchmarks" / "runs" / "scale-vit"
CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpeg" / "test.npz"
PROCESSOR = {"do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5],
             "image_std": [0.5, 0.5, 0.5], "image_processor_type": "ViTImageProcessor", "resample": 2,
             "rescale_factor": 1 / 255, "size": {"height": 32, "width": 32}}

LIBRARY_LOOP = """
import sys, numpy as np, torch, transformers
from PIL import Image
transformers.logging.set_verbosity_error()
folder, limit = sys.argv[1], int(sys.argv[2])
data = np.load(sys.argv[3])
x, y = data["x"][:limit], data["y"][:limit].astype(np.int64)
processor = transformers.AutoImageProcessor.from_pretrained(folder, local_files_only=True)
model = transformers.AutoModelForImageClassification.from_pretrained(folder, local_files_only=True).eval()
correct = 0
with torch.no_grad():
    for start in range(0, len(x), 64):
        images = [Image.fromarray(image) for image in x[start:start + 64]]
        pixels = processor(images=images, return_tensors="pt")["pixel_values"]
        correct += int((model(pixel_values=pixels).logits.argmax(1).numpy() == y[start:start + 64]).sum())
print(correct / len(x))
"""


def wmtool(*args: object) -> list[str]:
    """One wmtool invocation."""
    return [sys.executable, "-m", "wmtool", *map(str, args)]


def build(name: str, width: int, heads: int, mlp: int) -> tuple[Path, Path, Path]:
    """A ViT folder of this width and its trigger-set and sign keys (skipped when present)."""
    folder, keys = RUNS / "folders" / name, RUNS / "keys"
    trigger, sign = keys / f"{name}-trigger.json", keys / f"{name}-sign.json"
    if folder.is_dir() and sign.is_file():
        return folder, trigger, sign
    import json

    import numpy as np
    import torch
    import transformers

    from wmtool.data import load_dataset
    from wmtool.keys import Key, NullRate, Task, save_key
    from wmtool.models import ModelSource, file_sha256, open_predictor
    from wmtool.plugins import get_registry

    torch.manual_seed(0)
    config = transformers.ViTConfig(image_size=32, patch_size=8, num_channels=3, num_labels=10, hidden_size=width,
                                    num_hidden_layers=12, num_attention_heads=heads, intermediate_size=mlp)
    model = transformers.ViTForImageClassification(config)
    folder.parent.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder), max_shard_size="100MB")
    (folder / "preprocessor_config.json").write_text(json.dumps(PROCESSOR))
    registry = get_registry()
    opened = open_predictor(folder, registry, ModelSource(), device="cpu")
    inputs = load_dataset(str(CIFAR), "all").x[:100]
    task = Task(opened.card.input_shape, 10, opened.card.preprocessing)
    keys.mkdir(parents=True, exist_ok=True)
    digest = file_sha256(folder)
    save_key(Key("benchmark", "trigger-set", {}, task, NullRate.chance(10), digest,
                 {"inputs": inputs, "labels": opened.predict(inputs).astype(np.int64)}), trigger, force=True)
    name_of, weight = max(((n, p) for n, p in model.named_parameters() if p.ndim == 2), key=lambda item: item[1].numel())
    rng = np.random.default_rng(0)
    positions = np.sort(rng.choice(weight.numel(), 256, replace=False)).astype(np.int64)
    bits = (weight.detach().reshape(-1).numpy()[positions] > 0).astype(np.uint8)
    params = {"decoder": "sign", "tensor": f"model.{name_of}", "shape": list(weight.shape), "bits": 256}
    save_key(Key("sign", "bits", params, task, NullRate(0.5, "chance"), digest,
                 {"positions": positions, "bits": bits}), sign, force=True)
    return folder, trigger, sign


def peak(command: list[str]) -> tuple[float, float]:
    """Peak resident MB and wall seconds of one command, from GNU time."""
    done = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1)) / 1024
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", done.stderr)
    seconds = int(wall.group(1) or 0) * 3600 + int(wall.group(2)) * 60 + float(wall.group(3))
    return rss, seconds


def timed(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    big = build("vit-base", 768, 12, 3072)
    tiny = build("vit-tiny", 16, 2, 32)
    size = sum(f.stat().st_size for f in big[0].glob("*.safetensors")) / 2**20
    shards = len(list(big[0].glob("*.safetensors")))
    print(f"weights: {size:.1f} MB in {shards} shards")
    print(f"{'command':28} {'peak MB':>8} {'floor MB':>9} {'peak/size':>9} {'(peak-floor)/size':>18} {'wall s':>7}")
    for label, args in (("inspect", lambda f: ("inspect", f[0])),
                        ("verify (trigger set)", lambda f: ("verify", "--key", f[1], f[0])),
                        ("verify (sign bits)", lambda f: ("verify", "--key", f[2], f[0]))):
        rss, wall = peak(wmtool(*args(big)))
        floor, _ = peak(wmtool(*args(tiny)))
        print(f"{label:28} {rss:8.0f} {floor:9.0f} {rss / size:9.2f} {(rss - floor) / size:18.2f} {wall:7.1f}")
    import numpy as np

    subset = RUNS / "keys" / f"cifar-first-{options.images}.npz"
    with np.load(CIFAR) as cifar:
        np.savez(subset, x=cifar["x"][:options.images], y=cifar["y"][:options.images])
    ours_command = wmtool("accuracy", big[0], "--data", subset, "--split", "all", "--json")
    library_command = [sys.executable, "-c", LIBRARY_LOOP, str(big[0]), str(options.images), str(subset)]
    runs = [(timed(ours_command), timed(library_command)) for _ in range(options.repeats)]
    ours = statistics.median(r[0][0] for r in runs)
    library = statistics.median(r[1][0] for r in runs)
    import json

    print(f"accuracy on {options.images} CIFAR images: wmtool {ours:.1f} s, library loop {library:.1f} s, "
          f"throughput ratio {library / ours:.2f}; accuracy wmtool {json.loads(runs[0][0][1])['accuracy']:.4f}, "
          f"library {float(runs[0][1][1]):.4f}")


if __name__ == "__main__":
    main()
