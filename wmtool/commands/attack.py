"""``wmtool attack NAME``: run a watermark-removal attack on a victim model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from wmtool.commands.common import (DataOpt, DeviceOpt, ForceOpt, JsonOpt, LimitOpt, QuietOpt, SeedOpt, SplitOpt, emit, fmt, model_source_options)
from wmtool.commands.plugin_command import PluginCommand, plugin_values
from wmtool.run import Run

if TYPE_CHECKING:
    from wmtool.models import ModelSource


class AttackCommand(PluginCommand):
    """``attack`` takes the options of the attack named by its first argument."""

    kind = "attack"
    selector = None


@model_source_options
def attack(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Attack (see `wmtool plugins`).")],
    victim: Annotated[Path, typer.Argument(help="The model to attack.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output model; its suffix names the format (.safetensors, .onnx, ...).")],
    data: DataOpt = "digits",
    split: SplitOpt = "train",
    limit: LimitOpt = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    *,
    source: ModelSource,
) -> None:
    """Attack a watermarked model. The attack's own options follow; `wmtool attack NAME --help` lists them."""
    from wmtool.data import load_dataset
    from wmtool.atomic import refuse_existing
    from wmtool.models import save_model
    from wmtool.workflows import attack_model, data_card, open_model, open_suspect, test_accuracy

    run = Run(json_out, quiet, device, seed)
    plugin = run.registry.get("attack", name)
    given = plugin_values(ctx, plugin, "attack")
    refuse_existing([output], force)
    dataset = load_dataset(data, split, limit=limit, seed=seed)
    opener = open_model if plugin.white_box else open_suspect
    model = opener(run, str(victim), source, data_card(dataset))
    before = test_accuracy(model, data, run)
    outcome, params, seconds = attack_model(run, name, given, model, dataset)
    sha = save_model(outcome.model, output, run.registry, force=force)
    after = test_accuracy(outcome.model, data, run)
    payload = {"attack": name, "options": params, "victim": str(victim), "output": str(output), "sha256": sha,
               "data": data, "split": split, "samples": len(dataset), "queries": outcome.queries,
               "accuracy_before": before, "accuracy_after": after, "seconds": round(seconds, 2),
               "details": outcome.details}
    emit(run, payload, lambda out: out.print(
        f"attack {name} on {len(dataset)} samples in {seconds:.1f}s: test accuracy {fmt(before)} → {fmt(after)}"
        f" → {output}"))
