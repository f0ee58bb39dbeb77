"""``wmtool verify``: test whether a suspect model carries the watermark of a key."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from wmtool.click_compat import click
from wmtool.commands.common import RUN, SOURCE, emit, fmt, fmt_p, shared_options
from wmtool.commands.plugin_command import PluginCommand, chosen_plugin
from wmtool.errors import UserError
from wmtool.run import Run

if TYPE_CHECKING:
    from wmtool.models import ModelSource


class VerifyCommand(PluginCommand):
    """``verify`` takes the options of the verifier its ``--key`` names."""

    kind = "verifier"
    selector = "--key"

    def _plugin_name(self, ctx: click.Context, args: list[str]) -> str | None:
        """The verifier named in the key file given by ``--key`` (None when it cannot be read: the command
        then reports the key's problem itself)."""
        import json

        path = super()._plugin_name(ctx, args)
        try:
            return str(json.loads(Path(path).read_text())["verifier"]) if path else None
        except (OSError, ValueError, KeyError, TypeError):
            return None


@shared_options(SOURCE, RUN)
def verify(
    ctx: typer.Context,
    suspect: Annotated[Path, typer.Argument(help="The suspect model.")],
    key: Annotated[Path, typer.Option("--key", help="The owner's key file.")],
    alpha: Annotated[float, typer.Option("--alpha", help="Significance level of the ownership test.")] = 0.01,
    test: Annotated[str, typer.Option("--test", help="binomial (exact) | ttest (the EWE paper's).")] = "binomial",
    queries: Annotated[int | None, typer.Option("--queries", help="Use at most this many watermark queries.")] = None,
    expect_marked: Annotated[bool, typer.Option(
        "--expect-marked", help="Also require the suspect file to be the marked model itself (sha256).")] = False,
    published: Annotated[str | None, typer.Option(
        "--commitment", help="The commitment published at embedding time: refuse a key that does not match it.")] = None,
    *, source: ModelSource, run: Run,
) -> None:
    """Verify ownership: exit 0 when the watermark is shown (p < alpha), 1 when not, 2 on error.

    The options of the key's verifier follow (`wmtool verify --key KEY --help` lists them). A suspect
    whose file states no preprocessing is fed with the key's unless flags say otherwise.
    """
    from wmtool.keys import commitment, load_key
    from wmtool.models import file_sha256
    from wmtool.stats import queries_needed
    from wmtool.workflows import key_card, open_suspect, verify_suspect

    owner_key = load_key(key)
    if published is not None and commitment(owner_key) != published.strip().lower():
        raise UserError(f"{key} does not match the published commitment {published} (it is "
                        f"{commitment(owner_key)}): a key made or changed after publication proves nothing")
    _, given = chosen_plugin(ctx, run.registry, owner_key.verifier)
    model = open_suspect(run, str(suspect), source, key_card(owner_key))
    same_file = file_sha256(suspect) == owner_key.model_sha256
    if expect_marked and not same_file:
        raise UserError(f"{suspect} is not the model this key was made for (sha256 differs)")
    result, details = verify_suspect(run, owner_key, model, alpha=alpha, test=test, queries=queries,
                                     given=given)
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
