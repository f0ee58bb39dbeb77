"""``wmtool demo``: the whole story on the embedded digits data, in one table."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from wmtool.commands.common import DeviceOpt, JsonOpt, QuietOpt, SeedOpt, emit, fmt, fmt_p
from wmtool.run import Run


def demo(
    scheme: Annotated[str, typer.Option("--scheme", help="Watermarking scheme to show.")] = "backdoor",
    attack_name: Annotated[str, typer.Option("--attack", help="Attack to run on the marked model.")] = "finetune",
    out_dir: Annotated[Path | None, typer.Option("--out-dir", help="Keep the models and key here.")] = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Epochs of clean training.")] = 30,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
) -> None:
    """Train a clean model on digits, watermark it, attack it, and verify all three."""
    from wmtool.data import load_dataset, split_validation
    from wmtool.keys import save_key
    from wmtool.models import save_model
    from wmtool.training import accuracy
    from wmtool.workflows import attack_model, embed_watermark, make_key, train_model, verify_suspect

    run = Run(json_out, quiet, device, seed)
    data = load_dataset("digits", "train")
    test = load_dataset("digits", "test")
    owner, attacker = split_validation(data, 0.3, seed)
    folder = out_dir or Path(tempfile.mkdtemp(prefix="wmtool-demo-"))
    folder.mkdir(parents=True, exist_ok=True)

    clean = train_model(run, "ewe-cnn", {}, owner, epochs=epochs, batch_size=64, lr=1e-3, optimizer="adam",
                        validation=0).model
    save_model(clean, folder / "clean.safetensors")
    outcome = embed_watermark(run, scheme, {}, owner, _copy(clean, folder / "clean.safetensors", run),
                              pretrained=True)
    key = make_key(run, scheme, outcome, save_model(outcome.model, folder / "marked.safetensors"))
    save_key(key, folder / "key.json")
    stolen = _copy(outcome.model, folder / "marked.safetensors", run)
    attacked, _, _ = attack_model(run, attack_name, {}, stolen, attacker)
    save_model(attacked.model, folder / "attacked.safetensors")

    rows = []
    for label, model in (("clean", clean), ("marked", outcome.model), ("attacked", attacked.model)):
        result, _ = verify_suspect(run, key, model, alpha=0.01, test="binomial", queries=None)
        rows.append({"model": label, "accuracy": accuracy(model, test.x, test.y),
                     "watermark_success": result.success_rate, "p_value": result.p_value, "claimed": result.claimed})

    def human(out) -> None:
        from rich.table import Table

        table = Table("model", "test accuracy", "watermark success", "p-value", "verdict",
                      title=f"wmtool demo: {scheme} on digits, attack {attack_name} (null rate {key.null.rate:.3f})")
        for row in rows:
            verdict = "[green]owned[/green]" if row["claimed"] else "[yellow]not shown[/yellow]"
            table.add_row(row["model"], fmt(row["accuracy"]), fmt(row["watermark_success"]), fmt_p(row["p_value"]),
                          verdict)
        out.print(table)
        out.print(f"files in {folder}")

    emit(run, {"scheme": scheme, "attack": attack_name, "null_rate": key.null.rate, "rows": rows,
               "folder": str(folder)}, human)


def _copy(model, path: Path, run: Run):
    """A fresh copy of a saved model, so later steps never change an earlier one."""
    from wmtool.workflows import open_model

    return open_model(run, str(path)).train()
