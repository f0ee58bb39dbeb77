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
    """``verify`` takes the options of the verifier its (first) ``--key`` names."""

    kind = "verifier"
    selector = "--key"

    def _plugin_name(self, ctx: click.Context, args: list[str]) -> str | None:
        """The verifier named in the key file given by the first ``--key`` (None when it cannot be read: the
        command then reports the key's problem itself)."""
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
    key: Annotated[list[Path], typer.Option("--key", help=(
        "The owner's key file: a watermark or fingerprint key. Repeat it to test several keys at once "
        "(a combined verdict with Holm's correction)."))],
    alpha: Annotated[float, typer.Option("--alpha", help="Significance level of the ownership test.")] = 0.01,
    test: Annotated[str, typer.Option("--test", help="binomial (exact) | ttest (the EWE paper's).")] = "binomial",
    queries: Annotated[int | None, typer.Option("--queries", help="Use at most this many watermark queries.")] = None,
    expect_marked: Annotated[bool, typer.Option(
        "--expect-marked", help="Also require the suspect file to be the marked model itself (sha256).")] = False,
    published: Annotated[list[str] | None, typer.Option(
        "--commitment", help=("The commitment published at embedding time: refuse a key that does not match it "
                              "(one per --key, in the same order)."))] = None,
    *, source: ModelSource, run: Run,
) -> None:
    """Verify ownership: exit 0 when the watermark or fingerprint is shown (p < alpha), 1 when not, 2 on error.

    The options of the key's verifier follow (`wmtool verify --key KEY --help` lists them). A suspect
    whose file states no preprocessing is fed with the key's unless flags say otherwise. With several
    keys each is tested, and ownership is shown when Holm's step-down correction rejects at least one
    (family-wise error at most alpha).
    """
    from wmtool.keys import commitment, load_key
    from wmtool.stats import holm_adjusted

    keys = [load_key(path) for path in key]
    if published and len(published) != len(keys):
        raise UserError(f"give one --commitment per --key ({len(keys)} keys, {len(published)} commitments)")
    for path, owner_key, expected in zip(key, keys, published or [None] * len(keys)):
        if expected is not None and commitment(owner_key) != expected.strip().lower():
            raise UserError(f"{path} does not match the published commitment {expected} (it is "
                            f"{commitment(owner_key)}): a key made or changed after publication proves nothing")
    _, given = chosen_plugin(ctx, run.registry, keys[0].verifier)
    if given and len({owner_key.verifier for owner_key in keys}) > 1:
        raise UserError("verifier options apply to keys of one verifier; these keys name "
                        + ", ".join(sorted({owner_key.verifier for owner_key in keys})))
    from wmtool.models import file_sha256
    from wmtool.workflows import key_card, open_suspect

    opened = {}  # keys of one task share the opened suspect
    for owner_key in keys:
        if owner_key.task not in opened:
            opened[owner_key.task] = open_suspect(run, str(suspect), source, key_card(owner_key))
    suspect_sha256 = file_sha256(suspect)  # after opening, which reports a missing or unreadable file
    reports = [_verify_one(run, suspect, opened[owner_key.task], suspect_sha256, path, owner_key, alpha=alpha,
                           test=test, queries=queries, given=given, expect_marked=expect_marked)
               for path, owner_key in zip(key, keys)]
    if len(reports) == 1:
        payload, claimed = reports[0], reports[0]["claimed"]
        emit(run, payload, lambda out: out.print(_line(payload, alpha)))
    else:
        adjusted = holm_adjusted([report["p_value"] for report in reports])
        for report, p in zip(reports, adjusted):
            report["holm_p_value"] = p
        claimed = min(adjusted) <= alpha
        payload = {"suspect": str(suspect), "keys": reports, "combined": {
            "correction": "holm", "alpha": alpha, "claimed": claimed, "smallest_adjusted_p_value": min(adjusted)}}

        def human(out) -> None:
            for report in reports:
                out.print(f"{report['key']}: {_line(report, alpha)} (Holm-adjusted p {fmt_p(report['holm_p_value'])})")
            out.print(f"combined over {len(reports)} keys (Holm, family-wise alpha {alpha}): ownership "
                      f"{'SHOWN' if claimed else 'NOT shown'}")

        emit(run, payload, human)
    raise typer.Exit(0 if claimed else 1)


def _verify_one(run: Run, suspect: Path, model, suspect_sha256: str, path: Path, owner_key, *, alpha: float,
                test: str, queries: int | None, given: dict, expect_marked: bool) -> dict:
    """One key's ownership test of the opened suspect ``model``, as the JSON payload ``verify`` prints."""
    from wmtool.stats import queries_needed
    from wmtool.workflows import verify_suspect

    same_file = suspect_sha256 == owner_key.model_sha256
    if expect_marked and not same_file:
        raise UserError(f"{suspect} is not the model {path} was made for (sha256 differs)")
    result, details = verify_suspect(run, owner_key, model, alpha=alpha, test=test, queries=queries, given=given)
    needed = queries_needed(result.success_rate, result.null_rate, alpha=alpha, test=test)
    return {**result.to_json(), "queries_needed": needed, "key": str(path), "scheme": owner_key.scheme,
            "verifier": owner_key.verifier, "null_method": owner_key.null.method, "suspect": str(suspect),
            "same_file_as_marked": same_file, "details": details}


def _line(report: dict, alpha: float) -> str:
    """One key's verdict as a sentence."""
    verdict = "ownership SHOWN" if report["claimed"] else "ownership NOT shown"
    needed = report["queries_needed"]
    return (f"{verdict}: {report['scheme']} success {fmt(report['success_rate'])} ({report['successes']}/"
            f"{report['queries']} queries), null rate {fmt(report['null_rate'])}, p-value {fmt_p(report['p_value'])} "
            f"({report['test']}, alpha {alpha}); queries needed at this success rate: "
            f"{needed if needed is not None else 'never'}")
