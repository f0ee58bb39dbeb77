"""``wmtool convert``: between safetensors and ONNX."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from wmtool.commands.common import (ArchArgsOpt, ArchOpt, DataOpt, ForceOpt, InputRangeOpt, JsonOpt, LayoutOpt, MeanOpt,
                                    StdOpt, emit, parse_arch_args, preprocessing_flags)
from wmtool.errors import UserError
from wmtool.run import Run


def convert(
    model: Annotated[Path, typer.Argument(help="Input model (.safetensors or .onnx).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output model (.safetensors or .onnx).")],
    data: Annotated[str | None, typer.Option("--data", help="Dataset giving the task, for files that state none.")] = None,
    arch: ArchOpt = None,
    arch_args: ArchArgsOpt = None,
    input_range: InputRangeOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    layout: LayoutOpt = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Convert a model: safetensors → ONNX (one file, opset 17, dynamic batch) or ONNX → safetensors.

    The card (architecture, input shape, classes, preprocessing) travels in the output's metadata.
    """
    from wmtool.data import load_dataset
    from wmtool.models import load_model, save_model
    from wmtool.workflows import task_of

    run = Run(json=json_out)
    if output.exists() and not force:
        raise UserError(f"{output} exists; pass --force to overwrite it")
    task = task_of(load_dataset(data)) if data else None
    loaded = load_model(model, run.registry, arch=arch, arch_args=parse_arch_args(arch_args), task=task,
                        preprocessing=preprocessing_flags(input_range, mean, std, layout))
    sha = save_model(loaded, output, force=force)
    emit(run, {"input": str(model), "output": str(output), "sha256": sha, "arch": loaded.card.arch},
         lambda out: out.print(f"{model} → {output}"))
