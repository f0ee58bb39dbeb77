"""``wmtool inspect``: what a model file holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from wmtool.commands.common import JsonOpt, emit
from wmtool.run import Run


def inspect(
    model: Annotated[Path, typer.Argument(help="A .safetensors model file.")],
    json_out: JsonOpt = False,
) -> None:
    """Show a model file's format, tensors, parameter count, architecture, preprocessing and classes."""
    import math

    from wmtool.models import check_readable, read_card, read_header

    run = Run(json=json_out)
    path = check_readable(model)
    tensors, _ = read_header(path)
    card = read_card(path)
    parameters = sum(math.prod(info["shape"]) for info in tensors.values())
    payload = {"path": str(path), "format": "safetensors", "parameters": parameters, "tensors": tensors,
               "card": card.to_json() if card else None}

    def human(out) -> None:
        from rich.table import Table

        out.print(f"[bold]{path}[/bold]: safetensors, {len(tensors)} tensors, {parameters:,} parameters")
        if card is None:
            out.print("no wmtool metadata: pass --arch NAME to the commands (see `wmtool plugins` for architectures)")
        else:
            prep = card.preprocessing
            out.print(f"architecture {card.arch} {card.arch_args or ''}; input {tuple(card.input_shape)}; "
                      f"{card.num_classes} classes {list(card.classes) if card.classes else ''}")
            out.print(f"preprocessing: range {prep.input_range:g}, mean {prep.mean}, std {prep.std}, {prep.layout}")
        table = Table("tensor", "dtype", "shape")
        for name, info in tensors.items():
            table.add_row(name, info["dtype"], str(tuple(info["shape"])))
        out.print(table)

    emit(run, payload, human)
