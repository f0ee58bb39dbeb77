"""``wmtool accuracy``: a model's accuracy on a dataset split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from wmtool.commands.common import (ArchArgsOpt, ArchOpt, DataOpt, DeviceOpt, JsonOpt, LimitOpt, QuietOpt, SeedOpt,
                                    SplitOpt, emit, fmt, parse_arch_args)
from wmtool.run import Run


def accuracy(
    model: Annotated[Path, typer.Argument(help="The model to evaluate.")],
    data: DataOpt = "digits",
    split: SplitOpt = "test",
    limit: LimitOpt = None,
    arch: ArchOpt = None,
    arch_args: ArchArgsOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
) -> None:
    """Print the model's classification accuracy on a split of a dataset."""
    from wmtool.data import load_dataset
    from wmtool.training import accuracy as score
    from wmtool.workflows import check_task, open_model, task_of

    run = Run(json_out, quiet, device, seed)
    dataset = load_dataset(data, split, limit=limit, seed=seed)
    classifier = open_model(run, str(model), arch=arch, arch_args=parse_arch_args(arch_args), task=task_of(dataset))
    check_task(classifier.card, dataset, str(model))
    value = score(classifier, dataset.x, dataset.y)
    payload = {"accuracy": value, "n": len(dataset), "model": str(model), "data": data, "split": split}
    emit(run, payload, lambda out: out.print(f"accuracy {fmt(value)} on {len(dataset)} samples of {dataset.name}"))
