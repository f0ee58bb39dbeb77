"""A click command whose options include those of the plugin named on its command line.

``wmtool attack finetune --epochs 2 …`` and ``wmtool embed --scheme backdoor --source 3 …``: the
plugin's declared options are taken out of the arguments before click parses the rest, stored in
``ctx.meta["plugin_args"]``, and shown by ``--help`` under the command's own options.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand

from wmtool.click_compat import click
from wmtool.errors import UserError
from wmtool.registry import Kind


class PluginCommand(TyperCommand):
    """Base class: subclasses set ``kind`` and ``selector`` (an option like ``--scheme``, or None for
    the first positional argument)."""

    kind: Kind = "attack"
    selector: str | None = None

    def _value_options(self, ctx: click.Context) -> set[str]:
        """The command's own option spellings that take a value."""
        spellings: set[str] = set()
        for param in self.get_params(ctx):
            if param.param_type_name == "option" and not getattr(param, "is_flag", False):
                spellings.update(param.opts)
        return spellings

    def _plugin_name(self, ctx: click.Context, args: list[str]) -> str | None:
        takes_value = self._value_options(ctx)
        skip = False
        for index, word in enumerate(args):
            if skip:
                skip = False
                continue
            if self.selector is not None:
                if word == self.selector and index + 1 < len(args):
                    return args[index + 1]
                if word.startswith(self.selector + "="):
                    return word.split("=", 1)[1]
            elif not word.startswith("-"):
                return word
            skip = word in takes_value
        return None

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        from wmtool.run import Run

        name = self._plugin_name(ctx, args)
        plugin = None
        if name is not None:
            try:
                plugin = Run().registry.get(self.kind, name)
            except UserError:
                plugin = None  # the command reports the unknown name itself, after normal parsing
        if plugin is not None and ("--help" in args or "-h" in args):
            click.echo(ctx.get_help())
            _print_plugin_help(self.kind, plugin)
            ctx.exit(0)
        own, extra = _split(args, plugin.options if plugin else (), self._value_options(ctx))
        ctx.meta["plugin_args"] = extra
        return super().parse_args(ctx, own)


def _split(args: list[str], options: Any, own_value_options: set[str]) -> tuple[list[str], list[str]]:
    """Separate the plugin's flags (with their values) from the command's own arguments."""
    flags = {option.flag: option for option in options}
    flags.update({"--no-" + option.flag[2:]: option for option in options if option.type is bool})
    own: list[str] = []
    extra: list[str] = []
    words = list(args)
    while words:
        word = words.pop(0)
        flag = word.split("=", 1)[0]
        if word.startswith("--") and flag in flags and flag not in own_value_options:
            extra.append(word)
            option = flags[flag]
            if "=" not in word and option.type is not bool and not flag.startswith("--no-") and words:
                extra.append(words.pop(0))
        else:
            own.append(word)
            if word in own_value_options and words:
                own.append(words.pop(0))
    return own, extra


def _print_plugin_help(kind: str, plugin: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{kind} {plugin.name}: {plugin.summary}", title_justify="left", show_lines=False)
    for column in ("option", "type", "default", "help"):
        table.add_column(column)
    for option in plugin.options:
        table.add_row(option.flag, option.type_name, repr(option.default) if option.default is not None else "-",
                      option.help)
    Console().print(table)
    if getattr(plugin, "caution", None):
        Console().print(f"[yellow]caution:[/yellow] {plugin.caution}")


def chosen_plugin(ctx: click.Context, registry: Any, name: str) -> tuple[Any, dict[str, Any]]:
    """The plugin ``name`` of the command's kind and its option values from what :class:`PluginCommand`
    set aside (extra words are errors)."""
    from wmtool.options import parse_args

    kind = ctx.command.kind  # type: ignore[attr-defined]
    plugin = registry.get(kind, name)
    return plugin, parse_args(ctx.meta.get("plugin_args", []) + list(ctx.args), plugin.options, f"{kind} {name}")
