"""``wmtool attack NAME``: run a watermark-removal attack on a victim model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from wmtool.commands.common import (ArchArgsOpt, ArchOpt, DataOpt, DeviceOpt, ForceOpt, InputRangeOpt, JsonOpt,
                                    LayoutOpt, LimitOpt, MeanOpt, QuietOpt, SeedOpt, SplitOpt, StdOpt, emit, fmt,
                                    parse_arch_args, preprocessing_flags)
from wmtool.commands.plugin_command import PluginCommand, plugin_values
from wmtool.errors import UserError
from wmtool.run import Run


class AttackCommand(PluginCommand):
    """``attack`` takes the options of the attack named by its first argument."""

    kind = "attack"
    selector = None


def attack(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Attack (see `wmtool plugins`).")],
    victim: Annotated[Path, typer.Argument(help="The model to attack.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output model (.safetensors or .onnx).")],
    data: DataOpt = "digits",
    split: SplitOpt = "train",
    limit: LimitOpt = None,
    arch: ArchOpt = None,
    arch_args: ArchArgsOpt = None,
    input_range: InputRangeOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    layout: LayoutOpt = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
) -> None:
    """Attack a watermarked model. The attack's own options follow; `wmtool attack NAME --help` lists them."""
    from wmtool.data import load_dataset
    from wmtool.models import save_model
    from wmtool.workflows import attack_model, open_model, open_suspect, task_of, test_accuracy

    run = Run(json_out, quiet, device, seed)
    plugin = run.registry.get("attack", name)
    given = plugin_values(ctx, plugin, "attack")
    if output.exists() and not force:
        raise UserError(f"{output} exists; pass --force to overwrite it")
    dataset = load_dataset(data, split, limit=limit, seed=seed)
    opener = open_model if plugin.white_box else open_suspect
    model = opener(run, str(victim), arch=arch, arch_args=parse_arch_args(arch_args), task=task_of(dataset),
                   preprocessing=preprocessing_flags(input_range, mean, std, layout))
    before = test_accuracy(model, data, run)
    outcome, params, seconds = attack_model(run, name, given, model, dataset)
    sha = save_model(outcome.model, output, force=force)
    after = test_accuracy(outcome.model, data, run)
    payload = {"attack": name, "options": params, "victim": str(victim), "output": str(output), "sha256": sha,
               "data": data, "split": split, "samples": len(dataset), "queries": outcome.queries,
               "accuracy_before": before, "accuracy_after": after, "seconds": round(seconds, 2),
               "details": outcome.details}
    emit(run, payload, lambda out: out.print(
        f"attack {name} on {len(dataset)} samples in {seconds:.1f}s: test accuracy {fmt(before)} → {fmt(after)}"
        f" → {output}"))
