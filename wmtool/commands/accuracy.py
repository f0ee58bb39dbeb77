"""``wmtool accuracy``: a model's accuracy on a dataset split."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from wmtool.commands.common import RUN, SOURCE, DataOpt, LimitOpt, SplitOpt, emit, fmt, shared_options
from wmtool.run import Run

if TYPE_CHECKING:
    from wmtool.models import ModelSource


@shared_options(SOURCE, RUN)
def accuracy(
    model: Annotated[Path, typer.Argument(help="The model to evaluate.")],
    data: DataOpt = "digits",
    split: SplitOpt = "test",
    limit: LimitOpt = None,
    *, source: ModelSource, run: Run,
) -> None:
    """Print the model's classification accuracy on a split of a dataset (ONNX runs through onnxruntime)."""
    import sys

    from wmtool.data import load_dataset
    from wmtool.training import accuracy as score
    from wmtool.workflows import check_task, data_card, open_suspect

    dataset = load_dataset(data, split, limit=limit, seed=run.seed)
    classifier = open_suspect(run, str(model), source, data_card(dataset))
    check_task(classifier.card, dataset, str(model))
    value = score(classifier, dataset.x, dataset.y)
    if value < 1.5 / classifier.card.num_classes:
        print(f"warning: accuracy {value:.3f} is near chance: the preprocessing (--input-range, --mean, --std, "
              "--layout) is probably wrong for this model", file=sys.stderr)
    payload = {"accuracy": value, "n": len(dataset), "model": str(model), "data": data, "split": split}
    emit(run, payload, lambda out: out.print(f"accuracy {fmt(value)} on {len(dataset)} samples of {dataset.name}"))
