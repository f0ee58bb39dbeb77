"""``wmtool attack NAME``: run a watermark-removal attack on a victim model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from wmtool.commands.common import FORCE, RUN, SOURCE, DataOpt, LimitOpt, OutputOpt, SplitOpt, emit, fmt, shared_options
from wmtool.commands.plugin_command import PluginCommand, chosen_plugin
from wmtool.data import load_dataset
from wmtool.models import check_output, save_model
from wmtool.run import Run

if TYPE_CHECKING:
    from wmtool.models import ModelSource


class AttackCommand(PluginCommand):
    """``attack`` takes the options of the attack named by its first argument."""

    kind = "attack"
    selector = None


@shared_options(SOURCE, RUN, FORCE)
def attack(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Attack (see `wmtool plugins`).")],
    victim: Annotated[Path, typer.Argument(help="The model to attack.")],
    output: OutputOpt,
    data: DataOpt = "digits",
    split: SplitOpt = "train",
    limit: LimitOpt = None,
    *, source: ModelSource, run: Run, force: bool,
) -> None:
    """Attack a watermarked model. The attack's own options follow; `wmtool attack NAME --help` lists them."""
    from wmtool.workflows import attack_model, data_card, open_model, open_suspect, test_accuracy

    plugin, given = chosen_plugin(ctx, run.registry, name)
    check_output(output, run.registry, force)
    dataset = load_dataset(data, split, limit=limit, seed=run.seed)
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
