"""``wmtool embed``: watermark a model with a registered scheme and write the marked model and its key."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from wmtool.atomic import refuse_existing
from wmtool.commands.common import FORCE, RUN, SOURCE, DataOpt, LimitOpt, OutputOpt, emit, fmt, shared_options
from wmtool.commands.plugin_command import PluginCommand, chosen_plugin
from wmtool.data import load_dataset
from wmtool.errors import UserError
from wmtool.models import check_output, save_model
from wmtool.run import Run

if TYPE_CHECKING:
    from wmtool.models import ModelSource


class EmbedCommand(PluginCommand):
    """``embed`` takes the options of the scheme named by ``--scheme``."""

    kind = "embedder"
    selector = "--scheme"


@shared_options(SOURCE, RUN, FORCE)
def embed(
    ctx: typer.Context,
    scheme: Annotated[str, typer.Option("--scheme", help="Watermarking scheme (see `wmtool plugins`).")],
    output: OutputOpt,
    model: Annotated[Path | None, typer.Argument(help="Pretrained model to mark; omit to train from --arch.")] = None,
    key_out: Annotated[Path | None, typer.Option("--key-out", help="Key file (default: OUTPUT with .key.json).")] = None,
    data: DataOpt = "digits",
    limit: LimitOpt = None,
    *, source: ModelSource, run: Run, force: bool,
) -> None:
    """Embed a watermark. The scheme's own options follow; `wmtool embed --scheme NAME --help` lists them."""
    from wmtool.keys import commitment, save_key
    from wmtool.workflows import data_card, embed_watermark, make_key, new_model, open_model, test_accuracy

    _, given = chosen_plugin(ctx, run.registry, scheme)
    key_path = key_out or output.with_name(output.stem + ".key.json")
    check_output(output, run.registry, force)
    refuse_existing([key_path], force)
    dataset = load_dataset(data, "train", limit=limit, seed=run.seed)
    if model is not None:
        marked = open_model(run, str(model), source, data_card(dataset))
    elif source.arch is not None:
        marked = new_model(run, source.arch, source.arch_args, dataset)
    else:
        raise UserError("give a pretrained MODEL to mark, or --arch to train a marked model from scratch")
    outcome = embed_watermark(run, scheme, given, dataset, marked, pretrained=model is not None)
    sha = save_model(outcome.model, output, run.registry, force=force)
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
