"""Building blocks for trigger-set schemes: trigger patches, watermark sets and interleaved batches."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from wmtool.data import Dataset
from wmtool.errors import UserError
from wmtool.keys import NullRate

POSITIONS = ("bottom-right", "bottom-left", "top-right", "top-left", "center")


def default_trigger_size(input_shape: tuple[int, ...]) -> int:
    """A patch side of about 1/7 of the image (4 px on 28×28, 2 px on 8×8)."""
    return max(2, round(min(input_shape[-2:]) / 7))


def trigger_corner(input_shape: tuple[int, ...], size: int, position: str, margin: int = 1) -> tuple[int, int]:
    """The (row, column) of the patch's top-left pixel for a named position."""
    height, width = input_shape[-2:]
    if size + 2 * margin > min(height, width):
        raise UserError(f"a trigger of {size} px does not fit a {height}×{width} image")
    rows = {"top": margin, "bottom": height - size - margin, "center": (height - size) // 2}
    cols = {"left": margin, "right": width - size - margin, "center": (width - size) // 2}
    if position == "center":
        return rows["center"], cols["center"]
    if position not in POSITIONS:
        raise UserError(f"unknown trigger position {position!r}; known: {', '.join(POSITIONS)}")
    vertical, horizontal = position.split("-")
    return rows[vertical], cols[horizontal]


def stamp(x: np.ndarray, size: int, corner: tuple[int, int], value: float = 1.0) -> np.ndarray:
    """A copy of images ``x`` (N, C, H, W) with a ``size``×``size`` patch of ``value`` at ``corner``."""
    out = np.array(x, dtype=np.float32, copy=True)
    row, col = corner
    out[:, :, row:row + size, col:col + size] = value
    return out


def pick_class(data: Dataset, label: int, count: int, rng: np.random.Generator, role: str) -> np.ndarray:
    """``count`` random images of class ``label`` (fewer if the class is smaller)."""
    if not 0 <= label < data.num_classes:
        raise UserError(f"{role} class {label} is not one of the {data.num_classes} classes")
    index = np.flatnonzero(data.y == label)
    if len(index) == 0:
        raise UserError(f"{data.name} has no images of {role} class {label}")
    return data.x[rng.choice(index, size=min(count, len(index)), replace=False)]


def interleaved_batches(data: Dataset, watermark_x: np.ndarray, target: int, *, batch_size: int, every: int,
                        rng: np.random.Generator) -> Iterator[tuple[object, object, object]]:
    """One epoch of training batches as (inputs, labels, is_watermark_batch).

    After every ``every`` clean batches comes one interleaved batch ``[X_w, X_cT]``: half watermark
    inputs labelled ``target``, half clean images of class ``target`` (EWE Algorithm 1; the baseline
    backdoor trains on the same batches without the entangling loss).
    """
    import torch

    targets = data.x[data.y == target]
    if len(targets) == 0:
        raise UserError(f"{data.name} has no images of target class {target}")
    half = max(1, batch_size // 2)
    order = rng.permutation(len(data))
    for step, start in enumerate(range(0, len(order), batch_size), start=1):
        index = order[start:start + batch_size]
        yield torch.from_numpy(data.x[index]), torch.from_numpy(data.y[index]), False
        if step % every == 0:
            marks = watermark_x[rng.choice(len(watermark_x), size=min(half, len(watermark_x)), replace=False)]
            clean = targets[rng.choice(len(targets), size=len(marks), replace=len(targets) < len(marks))]
            inputs = np.concatenate([marks, clean]).astype(np.float32)
            yield torch.from_numpy(inputs), torch.full((len(inputs),), target, dtype=torch.int64), True


def reference_null_rate(model, inputs: np.ndarray, labels: np.ndarray, num_classes: int) -> NullRate:
    """The null rate measured on a non-watermarked reference ``model`` (see :meth:`NullRate.from_reference`)."""
    successes = int(np.sum(model.predict(inputs) == labels))
    return NullRate.from_reference(successes, len(labels), num_classes)


CARRIERS = ("random-walk", "white-noise", "uniform-noise", "one-hot")


def carrier_images(kind: str, count: int, input_shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Synthetic watermark-carrier images (ingrain §5.2), float32 in [0, 1].

    ``random-walk``: from the centre of a blank image, H·W steps of one pixel in a random direction, each
    visited pixel (all channels) set to a random value; ``white-noise``: Gaussian N(0.5, 0.25²) clipped;
    ``uniform-noise``: U(0, 1); ``one-hot``: one random pixel at 1.
    """
    shape = (count, *input_shape)
    height, width = input_shape[-2:]
    if kind == "uniform-noise":
        return rng.random(shape, dtype=np.float32)
    if kind == "white-noise":
        return np.clip(rng.normal(0.5, 0.25, shape), 0, 1).astype(np.float32)
    images = np.zeros(shape, dtype=np.float32)
    rows = np.arange(count)
    if kind == "one-hot":
        images[rows, ..., rng.integers(0, height, count), rng.integers(0, width, count)] = 1.0
        return images
    if kind != "random-walk":
        raise UserError(f"unknown carrier {kind!r}; known: {', '.join(CARRIERS)}")
    row, col = np.full(count, height // 2), np.full(count, width // 2)
    moves = np.array([(-1, 0), (1, 0), (0, -1), (0, 1)])
    for _ in range(height * width):
        step = moves[rng.integers(0, 4, count)]
        row, col = np.clip(row + step[:, 0], 0, height - 1), np.clip(col + step[:, 1], 0, width - 1)
        images[rows, ..., row, col] = rng.random(count, dtype=np.float32)[:, None]
    return images
