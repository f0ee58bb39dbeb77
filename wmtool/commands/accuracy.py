"""``wmtool accuracy``: a model's accuracy on a dataset split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from wmtool.commands.common import (ArchArgsOpt, ArchOpt, DataOpt, DeviceOpt, InputRangeOpt, JsonOpt, LayoutOpt,
                                    LimitOpt, MeanOpt, QuietOpt, SeedOpt, SplitOpt, StdOpt, emit, fmt,
                                    parse_arch_args, preprocessing_flags)
from wmtool.run import Run


def accuracy(
    model: Annotated[Path, typer.Argument(help="The model to evaluate.")],
    data: DataOpt = "digits",
    split: SplitOpt = "test",
    limit: LimitOpt = None,
    arch: ArchOpt = None,
    arch_args: ArchArgsOpt = None,
    input_range: InputRangeOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    layout: LayoutOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
) -> None:
    """Print the model's classification accuracy on a split of a dataset (ONNX runs through onnxruntime)."""
    import sys

    from wmtool.data import load_dataset
    from wmtool.training import accuracy as score
    from wmtool.workflows import check_task, open_suspect, task_of

    run = Run(json_out, quiet, device, seed)
    dataset = load_dataset(data, split, limit=limit, seed=seed)
    classifier = open_suspect(run, str(model), arch=arch, arch_args=parse_arch_args(arch_args), task=task_of(dataset),
                              preprocessing=preprocessing_flags(input_range, mean, std, layout))
    check_task(classifier.card, dataset, str(model))
    value = score(classifier, dataset.x, dataset.y)
    if value < 1.5 / classifier.card.num_classes:
        print(f"warning: accuracy {value:.3f} is near chance: the preprocessing (--input-range, --mean, --std, "
              "--layout) is probably wrong for this model", file=sys.stderr)
    payload = {"accuracy": value, "n": len(dataset), "model": str(model), "data": data, "split": split}
    emit(run, payload, lambda out: out.print(f"accuracy {fmt(value)} on {len(dataset)} samples of {dataset.name}"))
