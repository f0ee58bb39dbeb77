"""``wmtool train``: train a clean model of a registered architecture."""

from __future__ import annotations

from typing import Annotated

import typer

from wmtool.commands.common import (
    FORCE,
    RUN,
    ArchArgsOpt,
    DataOpt,
    LimitOpt,
    OutputOpt,
    emit,
    fmt,
    parse_arch_args,
    shared_options,
)
from wmtool.data import load_dataset
from wmtool.errors import UserError
from wmtool.models import check_output, save_model
from wmtool.run import Run


@shared_options(RUN, FORCE)
def train(
    arch: Annotated[str, typer.Option("--arch", help="Registered architecture (see `wmtool plugins`).")],
    output: OutputOpt,
    data: DataOpt = "digits",
    arch_args: ArchArgsOpt = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Training epochs.")] = 10,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Batch size.")] = 128,
    lr: Annotated[float, typer.Option("--lr", help="Learning rate.")] = 1e-3,
    optimizer: Annotated[str, typer.Option("--optimizer", help="adam | sgd | adadelta.")] = "adam",
    validation: Annotated[float, typer.Option("--validation", help="Fraction held out for validation.")] = 0.1,
    limit: LimitOpt = None,
    *, run: Run, force: bool,
) -> None:
    """Train a clean (non-watermarked) model and save it as safetensors."""
    from wmtool.workflows import test_accuracy, train_model

    if not 0 <= validation < 1:
        raise UserError(f"--validation must lie in [0, 1), got {validation}")
    check_output(output, run.registry, force)
    dataset = load_dataset(data, "train", limit=limit, seed=run.seed)
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
