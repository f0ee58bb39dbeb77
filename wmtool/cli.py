"""The ``wmtool`` command line: the typer app, its error handling and its commands.

Nothing here imports torch: each command imports what it needs when it runs, so ``wmtool --help``
stays fast. Plugins may add commands (hook ``register_commands``).
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

import typer
from typer.core import TyperGroup

from wmtool.click_compat import click
from wmtool.errors import UserError


class OneLineErrors(TyperGroup):
    """Runs the app so that every error a user can cause ends in one line on stderr and exit code 2."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        from wmtool.user_code import code_scope

        try:
            with code_scope(fresh=True):  # code named on this command is allowed for this command only
                result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = result if isinstance(result, int) else 0
        except UserError as exc:
            code = _fail(str(exc))
        except click.ClickException as exc:
            code = _fail(exc.format_message())
        except typer.Abort:
            code = _fail("aborted", 1)
        except KeyboardInterrupt:
            code = _fail("interrupted", 130)
        if standalone_mode:
            sys.exit(code)
        return code


def _fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


app = typer.Typer(
    cls=OneLineErrors, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Watermark neural networks, attack the watermarks, and verify ownership of suspect models.",
)


def _register_commands() -> None:
    from wmtool.commands import (accuracy, attack, calibrate, convert, demo, embed, evaluate, fingerprint, inspect,
                                 plugin_list, train, verify)

    app.command("train")(train.train)
    app.command("embed", cls=embed.EmbedCommand)(embed.embed)
    app.command("fingerprint", cls=fingerprint.FingerprintCommand)(fingerprint.fingerprint)
    app.command("attack", cls=attack.AttackCommand)(attack.attack)
    app.command("verify", cls=verify.VerifyCommand)(verify.verify)
    app.command("calibrate")(calibrate.calibrate)
    app.command("accuracy")(accuracy.accuracy)
    app.command("inspect")(inspect.inspect)
    app.command("convert")(convert.convert)
    app.command("plugins")(plugin_list.plugins)
    app.command("demo")(demo.demo)
    app.add_typer(evaluate.evaluate_app, name="evaluate")


_register_commands()


def _add_plugin_commands() -> None:
    from wmtool.plugins import add_plugin_commands

    for problem in add_plugin_commands(app):
        print(f"warning: {problem}", file=sys.stderr)


_add_plugin_commands()


def main() -> None:
    """Console-script entry point."""
    app()
