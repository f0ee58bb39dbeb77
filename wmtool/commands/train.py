"""``wmtool train``: train a clean model of a registered architecture."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from wmtool.commands.common import (ArchArgsOpt, DataOpt, DeviceOpt, ForceOpt, JsonOpt, LimitOpt, QuietOpt,
                                    SeedOpt, emit, fmt, parse_arch_args)
from wmtool.errors import UserError
from wmtool.run import Run


def train(
    arch: Annotated[str, typer.Option("--arch", help="Registered architecture (see `wmtool plugins`).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output model (.safetensors, or another format by its suffix).")],
    data: DataOpt = "digits",
    arch_args: ArchArgsOpt = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Training epochs.")] = 10,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Batch size.")] = 128,
    lr: Annotated[float, typer.Option("--lr", help="Learning rate.")] = 1e-3,
    optimizer: Annotated[str, typer.Option("--optimizer", help="adam | sgd | adadelta.")] = "adam",
    validation: Annotated[float, typer.Option("--validation", help="Fraction held out for validation.")] = 0.1,
    limit: LimitOpt = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
) -> None:
    """Train a clean (non-watermarked) model and save it as safetensors."""
    from wmtool.atomic import refuse_existing
    from wmtool.data import load_dataset
    from wmtool.models import save_model
    from wmtool.workflows import test_accuracy, train_model

    run = Run(json_out, quiet, device, seed)
    if not 0 <= validation < 1:
        raise UserError(f"--validation must lie in [0, 1), got {validation}")
    refuse_existing([output], force)
    dataset = load_dataset(data, "train", limit=limit, seed=seed)
    trained = train_model(run, arch, parse_arch_args(arch_args), dataset, epochs=epochs, batch_size=batch_size,
                          lr=lr, optimizer=optimizer, validation=validation)
    sha = save_model(trained.model, output, run.registry, force=force)
    test = test_accuracy(trained.model, data, run)
    payload = {"output": str(output), "sha256": sha, "arch": trained.model.card.arch,
               "arch_args": trained.model.card.arch_args, "data": data, "train_samples": len(dataset),
               "epochs": epochs, "losses": trained.losses, "validation_accuracy": trained.validation_accuracy,
               "test_accuracy": test, "seconds": round(trained.seconds, 2), "device": run.torch_device}
    emit(run, payload, lambda out: out.print(
        f"trained {arch} on {len(dataset)} samples in {trained.seconds:.1f}s: validation accuracy "
        f"{fmt(trained.validation_accuracy)}, test accuracy {fmt(test)} → {output}"))
