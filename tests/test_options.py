"""Plugin option parsing and validation."""

import pytest

from wmtool.errors import UserError
from wmtool.options import Option, parse_args, resolve

OPTIONS = (
    Option("epochs", int, 5, "epochs", min=0),
    Option("lr", float, 1e-3, "learning rate", min=0.0),
    Option("mode", str, "a", "mode", choices=("a", "b")),
    Option("shuffle", bool, True, "shuffle"),
    Option("source", int, None, "source class"),
)


def test_defaults_and_conversions():
    values = parse_args(["--epochs", "3", "--lr=0.5", "--no-shuffle", "--mode", "b"], OPTIONS, "t")
    assert values == {"epochs": 3, "lr": 0.5, "mode": "b", "shuffle": False, "source": None}
    assert parse_args([], OPTIONS, "t")["epochs"] == 5


@pytest.mark.parametrize("args,message", [
    (["--epochs", "x"], "expects INTEGER"),
    (["--epochs", "-1"], "at least 0"),
    (["--mode", "c"], "must be one of a, b"),
    (["--nope", "1"], "no such option --nope"),
    (["--epochs"], "needs a value"),
    (["stray"], "unexpected argument"),
])
def test_bad_values_raise_one_clear_error(args, message):
    with pytest.raises(UserError, match=message):
        parse_args(args, OPTIONS, "t")


def test_resolve_rejects_unknown_names_and_fractional_ints():
    with pytest.raises(UserError, match="unknown option"):
        resolve(OPTIONS, {"bogus": 1}, "t")
    with pytest.raises(UserError):
        resolve(OPTIONS, {"epochs": 2.5}, "t")
    assert resolve(OPTIONS, {"epochs": 2.0}, "t")["epochs"] == 2


def test_json_object_arguments():
    from wmtool.options import json_object

    assert json_object(None, "--x") == {} and json_object('{"width": 8}', "--x") == {"width": 8}
    with pytest.raises(UserError, match="--x is not valid JSON"):
        json_object("{width", "--x")
    with pytest.raises(UserError, match="--x must be a JSON object"):
        json_object("[1]", "--x")
