"""``wmtool fingerprint``: record how a model behaves, as a key that ``verify`` tests suspects against."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from wmtool.atomic import refuse_existing
from wmtool.click_compat import click
from wmtool.commands.common import FORCE, RUN, SOURCE, DataOpt, emit, fmt, shared_options
from wmtool.commands.plugin_command import PluginCommand, chosen_plugin
from wmtool.run import Run

if TYPE_CHECKING:
    from wmtool.models import ModelSource

DEFAULT_METHOD = "mistakes"
"""The method the audit on MNIST recommends (docs/results.md, "Fingerprints")."""


class FingerprintCommand(PluginCommand):
    """``fingerprint`` takes the options of the method named by ``--method`` (default :data:`DEFAULT_METHOD`)."""

    kind = "fingerprinter"
    selector = "--method"

    def _plugin_name(self, ctx: click.Context, args: list[str]) -> str | None:
        return super()._plugin_name(ctx, args) or DEFAULT_METHOD


@shared_options(SOURCE, RUN, FORCE)
def fingerprint(
    ctx: typer.Context,
    model: Annotated[Path, typer.Argument(help="The model to fingerprint (left unchanged).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The fingerprint key file to write.")],
    method: Annotated[str, typer.Option("--method", help="Fingerprinting method (see `wmtool plugins`).")] = DEFAULT_METHOD,
    data: DataOpt = "digits",
    split: Annotated[str, typer.Option("--split", help=(
        "The split of --data the fingerprint's inputs come from (held-out data: test).")) ] = "test",
    reference: Annotated[list[Path] | None, typer.Option("--reference", help=(
        "A model known to be independent of MODEL (repeatable): the null rate is measured on these. "
        "Without any, --references models are trained on the train split of --data."))] = None,
    references: Annotated[int, typer.Option("--references", min=1, help=(
        "How many independent models to train when no --reference is given."))] = 2,
    reference_arch: Annotated[str | None, typer.Option("--reference-arch", help=(
        "Architecture of the trained independent models (default: MODEL's own)."))] = None,
    reference_epochs: Annotated[int, typer.Option("--reference-epochs", min=1, help=(
        "Training epochs of each trained independent model."))] = 10,
    *, source: ModelSource, run: Run, force: bool,
) -> None:
    """Fingerprint a model: write a key of its behaviour that `wmtool verify --key` tests suspects against.

    The key's null rate is measured on models independent of MODEL (given, or trained on the same data:
    the hardest case, and the one that matters). The method's options follow; `wmtool fingerprint
    --method NAME --help` lists them.
    """
    from wmtool.data import load_dataset
    from wmtool.keys import commitment, save_key
    from wmtool.models import file_sha256
    from wmtool.workflows import data_card, fingerprint_model, independent_models, open_model

    fingerprinter, given = chosen_plugin(ctx, run.registry, method)
    refuse_existing([output], force)
    held_out = load_dataset(data, split, seed=run.seed)
    train = load_dataset(data, "train", seed=run.seed)
    owner_model = open_model(run, str(model), source, data_card(train))
    independent = independent_models(run, owner_model, train, [str(path) for path in reference or []], source,
                                     count=references, arch=reference_arch, epochs=reference_epochs)
    key = fingerprint_model(run, method, given, owner_model, held_out, train, file_sha256(model), independent)
    save_key(key, output, force=force)
    payload = {"key": str(output), "method": method, "verifier": key.verifier, "params": key.params,
               "inputs": _input_count(key), "null_rate": key.null.rate, "null_observed": key.null.observed,
               "independent_models": [m["path"] for m in key.calibration["models"]], "access": fingerprinter.access,
               "caution": fingerprinter.caution, "commitment": commitment(key)}
    emit(run, payload, lambda out: out.print(
        f"fingerprinted {model} with {method}: {payload['inputs']} inputs, null rate {fmt(key.null.rate)} "
        f"(measured on {len(independent)} independent models, observed {fmt(key.null.observed)}) → {output} "
        f"(keep it secret)\ncommitment {payload['commitment']}: publish it before releasing the model; "
        "`wmtool verify --commitment` then refuses any other key"
        + (f"\n[yellow]caution:[/yellow] {fingerprinter.caution}" if fingerprinter.caution else "")))


def _input_count(key) -> int:
    """The number of fingerprint inputs the key holds (every array named ``inputs…``)."""
    arrays = [array for name, array in key.arrays.items() if name.startswith("inputs")]
    return int(sum(len(array) for array in arrays))
