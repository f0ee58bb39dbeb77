"""``wmtool embed``: watermark a model with a registered scheme and write the marked model and its key."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from wmtool.commands.common import (ArchArgsOpt, ArchOpt, DataOpt, DeviceOpt, ForceOpt, InputRangeOpt, JsonOpt,
                                    LayoutOpt, LimitOpt, MeanOpt, QuietOpt, SeedOpt, StdOpt, emit, fmt,
                                    parse_arch_args, preprocessing_flags)
from wmtool.commands.plugin_command import PluginCommand, plugin_values
from wmtool.errors import UserError
from wmtool.run import Run


class EmbedCommand(PluginCommand):
    """``embed`` takes the options of the scheme named by ``--scheme``."""

    kind = "embedder"
    selector = "--scheme"


def embed(
    ctx: typer.Context,
    scheme: Annotated[str, typer.Option("--scheme", help="Watermarking scheme (see `wmtool plugins`).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output model (.safetensors or .onnx).")],
    model: Annotated[Path | None, typer.Argument(help="Pretrained model to mark; omit to train from --arch.")] = None,
    key_out: Annotated[Path | None, typer.Option("--key-out", help="Key file (default: OUTPUT with .key.json).")] = None,
    data: DataOpt = "digits",
    arch: ArchOpt = None,
    arch_args: ArchArgsOpt = None,
    input_range: InputRangeOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    layout: LayoutOpt = None,
    limit: LimitOpt = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
) -> None:
    """Embed a watermark. The scheme's own options follow; `wmtool embed --scheme NAME --help` lists them."""
    from wmtool.data import load_dataset
    from wmtool.keys import commitment, save_key
    from wmtool.models import save_model
    from wmtool.workflows import embed_watermark, make_key, new_model, open_model, task_of, test_accuracy

    run = Run(json_out, quiet, device, seed)
    embedder = run.registry.get("embedder", scheme)
    given = plugin_values(ctx, embedder, "embedder")
    key_path = key_out or output.with_name(output.stem + ".key.json")
    for path in (output, key_path):
        if path.exists() and not force:
            raise UserError(f"{path} exists; pass --force to overwrite it")
    dataset = load_dataset(data, "train", limit=limit, seed=seed)
    if model is not None:
        task = task_of(dataset)
        marked = open_model(run, str(model), arch=arch, arch_args=parse_arch_args(arch_args), task=task,
                            preprocessing=preprocessing_flags(input_range, mean, std, layout))
    elif arch is not None:
        marked = new_model(run, arch, parse_arch_args(arch_args), dataset)
    else:
        raise UserError("give a pretrained MODEL to mark, or --arch to train a marked model from scratch")
    outcome = embed_watermark(run, scheme, given, dataset, marked, pretrained=model is not None)
    sha = save_model(outcome.model, output, force=force)
    key = make_key(run, scheme, outcome, sha)
    save_key(key, key_path, force=force)
    success = float((outcome.model.predict(outcome.arrays["inputs"]) == outcome.arrays["labels"]).mean()) \
        if {"inputs", "labels"} <= set(outcome.arrays) else None
    test = test_accuracy(outcome.model, data, run)
    payload = {"output": str(output), "key": str(key_path), "scheme": scheme, "sha256": sha,
               "params": outcome.params, "test_accuracy": test, "watermark_success": success,
               "null_rate": key.null.rate, "null_method": key.null.method, "commitment": commitment(key)}
    emit(run, payload, lambda out: out.print(
        f"embedded {scheme}: test accuracy {fmt(test)}, watermark success {fmt(success)}, "
        f"null rate {fmt(key.null.rate)} ({key.null.method}) → {output}, key {key_path} (keep it secret)\n"
        f"commitment {payload['commitment']}: publish it before releasing the model; "
        "`wmtool verify --commitment` then refuses any other key"))
