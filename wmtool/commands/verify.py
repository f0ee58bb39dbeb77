"""``wmtool verify``: test whether a suspect model carries the watermark of a key."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from wmtool.commands.common import (ArchArgsOpt, ArchOpt, DeviceOpt, InputRangeOpt, JsonOpt, LayoutOpt, MeanOpt,
                                    QuietOpt, SeedOpt, StdOpt, emit, fmt, fmt_p, parse_arch_args,
                                    preprocessing_flags)
from wmtool.errors import UserError
from wmtool.run import Run


def verify(
    suspect: Annotated[Path, typer.Argument(help="The suspect model.")],
    key: Annotated[Path, typer.Option("--key", help="The owner's key file.")],
    alpha: Annotated[float, typer.Option("--alpha", help="Significance level of the ownership test.")] = 0.01,
    test: Annotated[str, typer.Option("--test", help="binomial (exact) | ttest (the EWE paper's).")] = "binomial",
    queries: Annotated[int | None, typer.Option("--queries", help="Use at most this many watermark queries.")] = None,
    expect_marked: Annotated[bool, typer.Option(
        "--expect-marked", help="Also require the suspect file to be the marked model itself (sha256).")] = False,
    published: Annotated[str | None, typer.Option(
        "--commitment", help="The commitment published at embedding time: refuse a key that does not match it.")] = None,
    arch: ArchOpt = None,
    arch_args: ArchArgsOpt = None,
    input_range: InputRangeOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    layout: LayoutOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
) -> None:
    """Verify ownership: exit 0 when the watermark is shown (p < alpha), 1 when not, 2 on error.

    An ONNX suspect without wmtool metadata is fed with the key's preprocessing unless flags say otherwise.
    """
    from wmtool.keys import commitment, load_key
    from wmtool.model_card import ModelCard
    from wmtool.models import file_sha256
    from wmtool.stats import queries_needed
    from wmtool.workflows import open_suspect, verify_suspect

    run = Run(json_out, quiet, device, seed)
    owner_key = load_key(key)
    if published is not None and commitment(owner_key) != published.strip().lower():
        raise UserError(f"{key} does not match the published commitment {published} (it is "
                        f"{commitment(owner_key)}): a key made or changed after publication proves nothing")
    task = ModelCard("", owner_key.task.input_shape, owner_key.task.num_classes,
                     preprocessing=owner_key.task.preprocessing, classes=owner_key.task.classes)
    model = open_suspect(run, str(suspect), arch=arch, arch_args=parse_arch_args(arch_args), task=task,
                         preprocessing=preprocessing_flags(input_range, mean, std, layout))
    same_file = file_sha256(suspect) == owner_key.model_sha256
    if expect_marked and not same_file:
        raise UserError(f"{suspect} is not the model this key was made for (sha256 differs)")
    result, details = verify_suspect(run, owner_key, model, alpha=alpha, test=test, queries=queries)
    needed = queries_needed(result.success_rate, result.null_rate, alpha=alpha, test=test)
    payload = {**result.to_json(), "queries_needed": needed, "scheme": owner_key.scheme, "verifier": owner_key.verifier,
               "null_method": owner_key.null.method, "suspect": str(suspect), "same_file_as_marked": same_file,
               "details": details}
    verdict = "ownership SHOWN" if result.claimed else "ownership NOT shown"
    emit(run, payload, lambda out: out.print(
        f"{verdict}: watermark success {fmt(result.success_rate)} ({result.successes}/{result.queries} queries), "
        f"null rate {fmt(result.null_rate)}, p-value {fmt_p(result.p_value)} ({result.test}, alpha {alpha}); "
        f"queries needed at this success rate: {needed if needed is not None else 'never'}"))
    raise typer.Exit(0 if result.claimed else 1)
