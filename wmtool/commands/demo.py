"""``wmtool demo``: the whole story on the embedded digits data, in one table."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from wmtool.commands.common import RUN, emit, fmt, fmt_p, parse_arch_args, shared_options
from wmtool.run import Run

FEATURED = "mea-defender"
"""The default demo's scheme: the one that survived extraction best in docs/results.md's matrix."""
EWE_OPTIONS = '{"kappa": 128, "temperature_scale": 1, "restart_clean": true, "batch_size": 64}'
FLAGSHIP = {  # a scheme's demo options and its baseline's (a JSON object each)
    "ewe": (EWE_OPTIONS, '{"kappa": 0}'),
}
ATTACK_OPTIONS = {"extract": {"batch_size": 64}}  # a few hundred steps on digits' 1,437 training images


@shared_options(RUN)
def demo(
    scheme: Annotated[str, typer.Option("--scheme", help=(
        "Watermarking scheme to show (default: mea-defender, beside EWE and the trigger-set baseline)."))
    ] = FEATURED,
    options: Annotated[str | None, typer.Option("--options", help=(
        "The scheme's options (JSON object). For ewe the default makes the soft-nearest-neighbour loss felt "
        "on digits (κ = 128 at temperature T, not 100/T) and restarts the clean batches as the authors' "
        "code does (docs/results.md)."))
    ] = None,
    baseline: Annotated[str | None, typer.Option("--baseline", help=(
        "Options of the same scheme for a comparison row (JSON object; '' for none). For ewe the default "
        "turns the entangling loss off (κ = 0)."))] = None,
    attack_name: Annotated[str, typer.Option("--attack", help="Attack to run on each marked model.")] = "extract",
    out_dir: Annotated[Path | None, typer.Option("--out-dir", help="Keep the models and keys here.")] = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Epochs of clean training.")] = 30,
    arch_args: Annotated[str | None, typer.Option("--arch-args", help=(
        "JSON object of the clean ewe-cnn's arguments, e.g. '{\"init\": \"glorot\"}'."))] = None,
    *, run: Run,
) -> None:
    """Train a clean model on 70% of digits' training set, watermark it (and a baseline), attack both
    with the whole training set as the attacker's data, and verify every model against each key.

    By default: mea-defender beside EWE and EWE's baseline (the same training with κ = 0, a plain trigger
    set), before and after extraction.
    """
    from wmtool.data import load_dataset, split_validation
    from wmtool.models import save_model
    from wmtool.options import json_object
    from wmtool.workflows import train_model

    default_options, default_baseline = FLAGSHIP.get(scheme, ("{}", ""))
    options = default_options if options is None else options
    methods = {scheme: (scheme, json_object(options, "--options"))}
    if scheme == FEATURED and baseline is None:  # the featured scheme beside EWE and its baseline
        ewe, ewe_baseline = FLAGSHIP["ewe"]
        methods["ewe"] = ("ewe", json_object(ewe, "--options"))
        methods["baseline"] = ("ewe", {**methods["ewe"][1], **json_object(ewe_baseline, "--baseline")})
    else:
        baseline = default_baseline if baseline is None else baseline
        if baseline:
            methods["baseline"] = (scheme, {**methods[scheme][1], **json_object(baseline, "--baseline")})
    run.registry.get("embedder", scheme)  # unknown names fail before any training
    run.registry.get("attack", attack_name)
    attacker = load_dataset("digits", "train")
    owner, _ = split_validation(attacker, 0.3, run.seed)
    test = load_dataset("digits", "test")
    folder = out_dir or Path(tempfile.mkdtemp(prefix="wmtool-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    clean = train_model(run, "ewe-cnn", parse_arch_args(arch_args), owner, epochs=epochs, batch_size=64, lr=1e-3,
                        optimizer="adam", validation=0).model
    save_model(clean, folder / "clean.safetensors", run.registry, force=True)
    rows = [_one_method(run, label, method, given, owner, attacker, test, clean, attack_name, folder)
            for label, (method, given) in methods.items()]

    def human(out) -> None:
        from rich.table import Table

        table = Table("key", "model", "test accuracy", "watermark success", "p-value", "verdict",
                      title=f"wmtool demo: {scheme} on digits, attack {attack_name}")
        for row in rows:
            for role, label in (("clean", "clean"), ("marked", "marked"), ("attacked", f"after {attack_name}")):
                found = row[role]
                table.add_row(row["method"] if role == "clean" else "", label, fmt(found["accuracy"]),
                              fmt(found["watermark_success"]), fmt_p(found["p_value"]), _verdict(found["claimed"]),
                              end_section=role == "attacked")
        out.print(table)
        out.print(f"files in {folder}")

    emit(run, {"scheme": scheme, "attack": attack_name, "rows": rows, "folder": str(folder)}, human)


def _verdict(claimed: bool) -> str:
    return "[green]owned[/green]" if claimed else "[yellow]not shown[/yellow]"


def _one_method(run: Run, label: str, scheme: str, given: dict[str, Any], owner, attacker, test, clean,
                attack_name: str, folder: Path) -> dict[str, Any]:
    """Mark a copy of the clean model, attack a copy of the marked one, and verify all three with the key."""
    from wmtool.keys import save_key
    from wmtool.models import save_model
    from wmtool.training import accuracy
    from wmtool.workflows import attack_model, embed_watermark, make_key, verify_suspect

    outcome = embed_watermark(run, scheme, given, owner, _copy(folder / "clean.safetensors", run), pretrained=True)
    marked_path = folder / f"{label}-marked.safetensors"
    key = make_key(run, scheme, outcome, save_model(outcome.model, marked_path, run.registry, force=True))
    save_key(key, folder / f"{label}-key.json", force=True)
    attacked, _, _ = attack_model(run, attack_name, ATTACK_OPTIONS.get(attack_name, {}), _copy(marked_path, run),
                                  attacker)
    save_model(attacked.model, folder / f"{label}-attacked.safetensors", run.registry, force=True)
    row: dict[str, Any] = {"method": label, "scheme": scheme, "options": given, "null_rate": key.null_rate()}
    for role, model in (("clean", clean), ("marked", outcome.model), ("attacked", attacked.model)):
        result, _ = verify_suspect(run, key, model, alpha=0.01, test="binomial", queries=None)
        row[role] = {"accuracy": accuracy(model, test.x, test.y), "watermark_success": result.success_rate,
                     "p_value": result.p_value, "claimed": result.claimed}
    return row


def _copy(path: Path, run: Run):
    """A fresh copy of a saved model, so later steps never change an earlier one."""
    from wmtool.workflows import open_model

    return open_model(run, str(path)).train()
