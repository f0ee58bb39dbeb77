"""``wmtool inspect``: what a model file holds."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer

from wmtool.commands.common import JsonOpt, emit
from wmtool.run import Run


def _safetensors_info(path: Path) -> dict[str, Any]:
    from wmtool.models import read_card, read_header

    tensors, _ = read_header(path)
    card = read_card(path)
    return {"format": "safetensors", "tensors": tensors, "card": card.to_json() if card else None}


def _onnx_info(path: Path) -> dict[str, Any]:
    from onnx import helper

    from wmtool.model_card import METADATA_KEY, ModelCard
    from wmtool.onnx_io import graph_input, read_onnx

    model = read_onnx(path)

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


def inspect(
    model: Annotated[Path, typer.Argument(help="A .safetensors or .onnx model file.")],
    json_out: JsonOpt = False,
) -> None:
    """Show a model file's format, tensors, parameter count, architecture, preprocessing and classes."""
    from wmtool.models import check_readable

    run = Run(json=json_out)
    path = check_readable(model)
    info = _onnx_info(path) if path.suffix.lower() == ".onnx" else _safetensors_info(path)
    info["parameters"] = sum(math.prod(t["shape"]) for t in info["tensors"].values())
    card = info["card"]
    if card and card["arch"] == "onnx":
        card["arch_args"] = {}  # the stored graph itself is not for reading
    payload = {"path": str(path), **info}

    def human(out) -> None:
        from rich.table import Table

        out.print(f"[bold]{path}[/bold]: {info['format']}, {len(info['tensors'])} tensors, "
                  f"{info['parameters']:,} parameters")
        if info["format"] == "onnx":
            out.print(f"opset {info['opset']}; input {info['input']['name']} {info['input']['shape']}; outputs "
                      + ", ".join(f"{o['name']} {o['shape']}" for o in info["outputs"]))
            out.print("ops: " + ", ".join(info["ops"]))
        if card is None:
            out.print("no wmtool metadata: state the architecture (--arch, safetensors) or the preprocessing "
                      "(--input-range, --mean, --std, --layout) on the commands")
        else:
            prep = card["preprocessing"]
            out.print(f"architecture {card['arch']} {card['arch_args'] or ''}; input {tuple(card['input_shape'])}; "
                      f"{card['num_classes']} classes {card['classes'] or ''}")
            out.print(f"preprocessing: range {prep['input_range']:g}, mean {prep['mean']}, std {prep['std']}, "
                      f"{prep['layout']}")
        table = Table("tensor", "dtype", "shape")
        for name, tensor in info["tensors"].items():
            table.add_row(name, tensor["dtype"], str(tuple(tensor["shape"])))
        out.print(table)

    emit(run, payload, human)
