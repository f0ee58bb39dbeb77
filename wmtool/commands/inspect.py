"""``wmtool inspect``: what a model file holds."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from wmtool.commands.common import OUTPUT, SOURCE, emit, shared_options
from wmtool.errors import UserError
from wmtool.run import Run

if TYPE_CHECKING:
    from wmtool.models import ModelSource


def _parse_shape(raw: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in raw.replace("x", ",").split(","))
    except ValueError:
        raise UserError(f"--input-shape takes sizes like 1,28,28, got {raw!r}") from None
    if not shape or min(shape) <= 0:
        raise UserError(f"--input-shape takes positive sizes, got {raw!r}")
    return shape


def _architecture_check(run: Run, path: Path, card: dict[str, Any] | None, source: ModelSource,
                        data: str | None, input_shape: str | None) -> dict[str, Any]:
    """Load the file with ``arch`` (naming any tensor that does not fit), count its parameters and run one
    input of the declared shape through it."""
    import dataclasses

    import torch

    from wmtool.data import load_dataset
    from wmtool.model_card import ModelCard
    from wmtool.models import load_model
    from wmtool.workflows import data_card

    if data:
        task = data_card(load_dataset(data, "test", seed=run.seed))
    elif input_shape or card:
        shape = _parse_shape(input_shape) if input_shape else tuple(card["input_shape"])
        task = ModelCard("", shape, card["num_classes"] if card else 2)
    else:
        raise UserError("with --arch, give --input-shape C,H,W (or --data) for the forward-pass check")
    if input_shape:
        task = dataclasses.replace(task, input_shape=_parse_shape(input_shape))
    loaded = load_model(path, run.registry, source, task)
    probe = torch.rand(1, *task.input_shape)
    try:
        with torch.no_grad():
            output = loaded.eval()(probe)
    except Exception as exc:  # the architecture's own code: report its failure in one line
        raise UserError(f"{path}: forward pass of one {tuple(probe.shape)} input through {loaded.card.arch} failed: "
                        f"{type(exc).__name__}: {exc}") from None
    return {"arch": loaded.card.arch, "code_sha256": loaded.card.code_sha256,
            "parameters": sum(p.numel() for p in loaded.parameters()),
            "forward": {"input": list(probe.shape), "output": list(getattr(output, "shape", []))}}


@shared_options(SOURCE, OUTPUT)
def inspect(
    model: Annotated[Path, typer.Argument(help="A model (any format `wmtool plugins` lists).")],
    data: Annotated[str | None, typer.Option("--data", help="With --arch: the task (shape, classes) to check.")] = None,
    input_shape: Annotated[str | None, typer.Option(
        "--input-shape", help="With --arch: the input C,H,W for the forward-pass check (default: the file's).")] = None,
    *, source: ModelSource, run: Run,
) -> None:
    """Show a model file's format, tensors, parameter count, architecture, preprocessing and classes.

    With --arch, also load the weights into that architecture (naming any tensor that does not fit),
    count its parameters and check one forward pass. An --arch given as code runs that code.
    """
    from wmtool.models import describe_model

    path = model
    info = describe_model(path, run.registry)
    notes = info.pop("notes", [])
    check = _architecture_check(run, path, info["card"], source, data, input_shape) if source.arch else None
    info["parameters"] = sum(math.prod(t["shape"]) for t in info["tensors"].values())
    card = info["card"]
    payload = {"path": str(path), **info, **({"check": check} if check else {})}

    def human(out) -> None:
        from rich.table import Table

        out.print(f"[bold]{path}[/bold]: {info['format']}, {len(info['tensors'])} tensors, "
                  f"{info['parameters']:,} parameters")
        for note in notes:
            out.print(note, markup=False)
        if card is not None:
            prep = card["preprocessing"]
            out.print(f"architecture {card['arch']} {card['arch_args'] or ''}; input {tuple(card['input_shape'])}; "
                      f"{card['num_classes']} classes {card['classes'] or ''}")
            out.print(f"preprocessing: {_geometry(prep)}range {prep['input_range']:g}, mean {prep['mean']}, "
                      f"std {prep['std']}, {prep['layout']}")
        if check:
            out.print(f"with --arch {check['arch']}: all tensors fit, {check['parameters']:,} parameters; forward "
                      f"pass {tuple(check['forward']['input'])} → {tuple(check['forward']['output'])}")
        table = Table("tensor", "dtype", "shape")
        for name, tensor in info["tensors"].items():
            table.add_row(name, tensor["dtype"], str(tuple(tensor["shape"])))
        out.print(table)

    emit(run, payload, human)


def _geometry(prep: dict) -> str:
    """The resize, crop and channel steps of a card's preprocessing, as the human output says them."""
    steps = ["greyscale to RGB"] if prep.get("to_rgb") else []
    if prep.get("size"):
        steps.append(f"resize to {prep['size'][0]}×{prep['size'][1]} ({prep['resample']})")
    if prep.get("shortest_edge"):
        steps.append(f"resize the shortest edge to {prep['shortest_edge']} ({prep['resample']})")
    if prep.get("crop"):
        steps.append(f"centre crop {prep['crop'][0]}×{prep['crop'][1]}")
    if prep.get("any_size"):
        steps.append("any image size")
    if prep.get("flip_channels"):
        steps.append("RGB to BGR (after normalising)")
    return "".join(f"{step}, " for step in steps)
