"""``wmtool convert``: between safetensors and ONNX."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from wmtool.commands.common import FORCE, OUTPUT, SOURCE, OutputOpt, emit, shared_options
from wmtool.data import load_dataset
from wmtool.models import check_output, save_model
from wmtool.run import Run

if TYPE_CHECKING:
    from wmtool.models import ModelSource


@shared_options(SOURCE, OUTPUT, FORCE)
def convert(
    model: Annotated[Path, typer.Argument(help="Input model (any format `wmtool plugins` lists).")],
    output: OutputOpt,
    data: Annotated[str | None, typer.Option("--data", help="Dataset giving the task, for files that state none.")] = None,
    *, source: ModelSource, run: Run, force: bool,
) -> None:
    """Convert a model between formats, chosen by the suffix of -o (e.g. safetensors ↔ ONNX; ONNX: one file,
    opset 17, dynamic batch).

    The card (architecture, input shape, classes, preprocessing) travels in the output's metadata.
    """
    from wmtool.models import load_model
    from wmtool.workflows import data_card

    check_output(output, run.registry, force)
    task = data_card(load_dataset(data)) if data else None
    loaded = load_model(model, run.registry, source, task)
    sha = save_model(loaded, output, run.registry, force=force)
    emit(run, {"input": str(model), "output": str(output), "sha256": sha, "arch": loaded.card.arch},
         lambda out: out.print(f"{model} → {output}"))
