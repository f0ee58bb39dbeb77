"""``wmtool inspect``: what a model file holds."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer

from wmtool.commands.common import ArchArgsOpt, ArchOpt, JsonOpt, emit, parse_arch_args
from wmtool.errors import UserError
from wmtool.run import Run

ARCH_FORMS = "--arch NAME (see `wmtool plugins`), --arch path/to/file.py:Factory or --arch package.module:Factory"


def _safetensors_info(path: Path) -> dict[str, Any]:
    from wmtool.models import read_card, read_header

    tensors, _ = read_header(path)
    card = read_card(path)
    return {"format": "safetensors", "tensors": tensors, "card": card.to_json() if card else None}


def _onnx_info(path: Path) -> dict[str, Any]:
    from onnx import helper

    from wmtool.model_card import METADATA_KEY, ModelCard
    from wmtool.onnx_io import graph_input, read_onnx_graph

    model, _ = read_onnx_graph(path)

    def shape(info: Any) -> list[Any]:
        return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in info.type.tensor_type.shape.dim]

    stored = {p.key: p.value for p in model.metadata_props}
    card = ModelCard.from_json(stored[METADATA_KEY], str(path)).to_json() if METADATA_KEY in stored else None
    return {
        "format": "onnx",
        "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
        "input": {"name": graph_input(model).name, "shape": shape(graph_input(model))},
        "outputs": [{"name": o.name, "shape": shape(o)} for o in model.graph.output],
        "ops": sorted({node.op_type for node in model.graph.node}),
        "tensors": {t.name: {"dtype": helper.tensor_dtype_to_np_dtype(t.data_type).name, "shape": list(t.dims)}
                    for t in model.graph.initializer},
        "card": card,
    }


def _parse_shape(raw: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in raw.replace("x", ",").split(","))
    except ValueError:
        raise UserError(f"--input-shape takes sizes like 1,28,28, got {raw!r}") from None
    if not shape or min(shape) <= 0:
        raise UserError(f"--input-shape takes positive sizes, got {raw!r}")
    return shape


def _architecture_check(run: Run, path: Path, card: dict[str, Any] | None, arch: str, arch_args: str | None,
                        data: str | None, input_shape: str | None) -> dict[str, Any]:
    """Load the file with ``arch`` (naming any tensor that does not fit), count its parameters and run one
    input of the declared shape through it."""
    import dataclasses

    import torch

    from wmtool.data import load_dataset
    from wmtool.model_card import ModelCard
    from wmtool.models import load_model
    from wmtool.workflows import task_of

    if data:
        task = task_of(load_dataset(data, "test", seed=run.seed))
    elif input_shape or card:
        shape = _parse_shape(input_shape) if input_shape else tuple(card["input_shape"])
        task = ModelCard("", shape, card["num_classes"] if card else 2)
    else:
        raise UserError("with --arch, give --input-shape C,H,W (or --data) for the forward-pass check")
    if input_shape:
        task = dataclasses.replace(task, input_shape=_parse_shape(input_shape))
    loaded = load_model(path, run.registry, arch=arch, arch_args=parse_arch_args(arch_args), task=task)
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


def inspect(
    model: Annotated[Path, typer.Argument(help="A .safetensors or .onnx model file.")],
    arch: ArchOpt = None,
    arch_args: ArchArgsOpt = None,
    data: Annotated[str | None, typer.Option("--data", help="With --arch: the task (shape, classes) to check.")] = None,
    input_shape: Annotated[str | None, typer.Option(
        "--input-shape", help="With --arch: the input C,H,W for the forward-pass check (default: the file's).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Show a model file's format, tensors, parameter count, architecture, preprocessing and classes.

    With --arch, also load the weights into that architecture (naming any tensor that does not fit),
    count its parameters and check one forward pass. An --arch given as code runs that code.
    """
    from wmtool.models import check_readable

    run = Run(json=json_out)
    path = check_readable(model)
    info = _onnx_info(path) if path.suffix.lower() == ".onnx" else _safetensors_info(path)
    check = _architecture_check(run, path, info["card"], arch, arch_args, data, input_shape) if arch else None
    info["parameters"] = sum(math.prod(t["shape"]) for t in info["tensors"].values())
    card = info["card"]
    if card and card["arch"] == "onnx":
        card["arch_args"] = {}  # the stored graph itself is not for reading
    payload = {"path": str(path), **info, **({"check": check} if check else {})}

    def human(out) -> None:
        from rich.table import Table

        out.print(f"[bold]{path}[/bold]: {info['format']}, {len(info['tensors'])} tensors, "
                  f"{info['parameters']:,} parameters")
        if info["format"] == "onnx":
            out.print(f"opset {info['opset']}; input {info['input']['name']} {info['input']['shape']}; outputs "
                      + ", ".join(f"{o['name']} {o['shape']}" for o in info["outputs"]))
            out.print("ops: " + ", ".join(info["ops"]))
        if card is None and info["format"] == "onnx":
            out.print("no wmtool metadata: state the preprocessing (--input-range, --mean, --std, --layout) on the "
                      "commands")
        elif card is None:
            out.print(f"no wmtool metadata: name the architecture on the commands: {ARCH_FORMS}, with "
                      "--arch-args '{\"num_classes\": 10}' for its arguments")
        else:
            prep = card["preprocessing"]
            out.print(f"architecture {card['arch']} {card['arch_args'] or ''}; input {tuple(card['input_shape'])}; "
                      f"{card['num_classes']} classes {card['classes'] or ''}")
            out.print(f"preprocessing: range {prep['input_range']:g}, mean {prep['mean']}, std {prep['std']}, "
                      f"{prep['layout']}")
        if check:
            out.print(f"with --arch {check['arch']}: all tensors fit, {check['parameters']:,} parameters; forward "
                      f"pass {tuple(check['forward']['input'])} → {tuple(check['forward']['output'])}")
        table = Table("tensor", "dtype", "shape")
        for name, tensor in info["tensors"].items():
            table.add_row(name, tensor["dtype"], str(tuple(tensor["shape"])))
        out.print(table)

    emit(run, payload, human)
