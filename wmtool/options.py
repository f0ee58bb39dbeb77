"""Plugin options: declared once, they drive parsing, validation, ``--help`` and the key file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from wmtool.errors import UserError

_TYPE_NAMES = {int: "INTEGER", float: "FLOAT", str: "TEXT", bool: "FLAG"}


@dataclass(frozen=True)
class Option:
    """One option of a plugin: ``--name value`` on the command line (``--flag/--no-flag`` for bools)."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None

    @property
    def flag(self) -> str:
        """The command-line spelling, e.g. ``--trigger-size`` for ``trigger_size``."""
        return "--" + self.name.replace("_", "-")

    @property
    def type_name(self) -> str:
        """A short upper-case name of the value type, as help texts show it."""
        if self.choices:
            return "|".join(self.choices)
        return _TYPE_NAMES.get(self.type, self.type.__name__.upper())

    def convert(self, raw: Any, owner: str) -> Any:
        """Turn a raw value (a string from the command line, or a Python value) into a valid value."""
        if raw is None:
            return None
        try:
            if self.type is bool and isinstance(raw, str):
                lowered = raw.lower()
                if lowered not in {"true", "false", "1", "0", "yes", "no"}:
                    raise ValueError(raw)
                value: Any = lowered in {"true", "1", "yes"}
            elif self.type is int and isinstance(raw, float) and not raw.is_integer():
                raise ValueError(raw)
            else:
                value = self.type(raw)
        except (TypeError, ValueError):
            raise UserError(f"{owner}: {self.flag} expects {self.type_name}, got {raw!r}") from None
        if self.choices and value not in self.choices:
            raise UserError(f"{owner}: {self.flag} must be one of {', '.join(self.choices)}, got {value!r}")
        if self.min is not None and value < self.min:
            raise UserError(f"{owner}: {self.flag} must be at least {self.min}, got {value}")
        if self.max is not None and value > self.max:
            raise UserError(f"{owner}: {self.flag} must be at most {self.max}, got {value}")
        return value


def json_object(raw: str | None, what: str) -> dict[str, Any]:
    """A JSON object given on the command line (``{}`` for None); anything else is one :class:`UserError`."""
    import json

    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UserError(f"{what} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise UserError(f"{what} must be a JSON object, e.g. '{{\"width\": 800}}'")
    return value


def defaults(options: Sequence[Option]) -> dict[str, Any]:
    """The default value of every option, by name."""
    return {option.name: option.default for option in options}


def resolve(options: Sequence[Option], given: dict[str, Any], owner: str) -> dict[str, Any]:
    """Validate ``given`` (values by option name) against ``options`` and fill in the defaults."""
    by_name = {option.name: option for option in options}
    unknown = sorted(set(given) - set(by_name))
    if unknown:
        raise UserError(f"{owner}: unknown option {unknown[0]!r}; known: {', '.join(sorted(by_name)) or 'none'}")
    values = defaults(options)
    for name, raw in given.items():
        values[name] = by_name[name].convert(raw, owner)
    return values


def parse_args(args: Sequence[str], options: Sequence[Option], owner: str) -> dict[str, Any]:
    """Parse ``--name value``, ``--name=value``, ``--flag`` and ``--no-flag`` words into option values."""
    by_flag = {option.flag: option for option in options}
    given: dict[str, Any] = {}
    words = list(args)
    while words:
        word = words.pop(0)
        if not word.startswith("--"):
            raise UserError(f"{owner}: unexpected argument {word!r}")
        flag, has_value, inline = word.partition("=")
        option = by_flag.get(flag)
        if option is None and flag.startswith("--no-"):
            negated = by_flag.get("--" + flag[5:])
            if negated is not None and negated.type is bool and not has_value:
                given[negated.name] = False
                continue
        if option is None:
            known = ", ".join(sorted(by_flag)) or "none"
            raise UserError(f"{owner}: no such option {flag}; its options are: {known}")
        if has_value:
            given[option.name] = inline
        elif option.type is bool:
            given[option.name] = True
        elif not words:
            raise UserError(f"{owner}: {flag} needs a value")
        else:
            given[option.name] = words.pop(0)
    return resolve(options, given, owner)
