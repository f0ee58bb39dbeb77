"""The Python API: docs/python.md's example runs as written, and the functions behave as the CLI."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

import wmtool

DOC = Path(__file__).resolve().parents[1] / "docs" / "python.md"


def test_the_documented_example_runs_and_shows_ownership():
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, str(DOC), "exec"), {"__name__": "docs_example"})
    lines = printed.getvalue().splitlines()
    assert float(lines[0].split()[-1]) > 0.9
    owned = {line.split(":")[0]: line.endswith("owned: True") for line in lines[1:]}
    assert owned == {"clean": False, "marked": True, "fine-tuned copy": True}


def test_the_functions_are_the_documented_ones():
    documented = set(re.findall(r"`wmtool\.(\w+)\(", DOC.read_text()))
    assert documented == set(wmtool.PYTHON_API)
    assert all(callable(getattr(wmtool, name)) for name in wmtool.PYTHON_API)
    with pytest.raises(AttributeError):
        wmtool.nothing_of_that_name  # noqa: B018


def test_user_errors_raise_the_clis_message(digits_models):
    from wmtool.errors import UserError

    with pytest.raises(UserError, match="unknown embedder 'nope'"):
        wmtool.embed(digits_models["clean"], "nope")
    with pytest.raises(UserError, match="verifier trigger-set: unknown option .min_accuracy."):
        wmtool.verify(digits_models["clean"], digits_models["key"], min_accuracy=0.6)


def test_fingerprint_from_python_matches_the_cli(cli, digits_models, tmp_path):
    key = wmtool.fingerprint(digits_models["marked"], "ipguard", references=[digits_models["clean"]], count=50,
                             save_to=tmp_path / "fp.json")
    assert key.scheme == "ipguard" and len(key.array("inputs")) == 50 and (tmp_path / "fp.json").exists()
    assert wmtool.verify(digits_models["marked"], key).success_rate == 1.0
    shown = cli.json("fingerprint", digits_models["marked"], "-o", tmp_path / "cli.json", "--method", "ipguard",
                     "--reference", digits_models["clean"], "--count", 50)
    assert shown["null_rate"] == pytest.approx(key.null.rate)
