"""Shared fixtures: a CLI runner and a small clean/marked model pair on the embedded digits data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wmtool.cli import app

SHARED = Path(__file__).resolve().parents[2] / "shared"


class Cli:
    """Runs ``wmtool`` in-process and keeps exit code, stdout and stderr apart."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: object, expect: int | None = 0):
        result = self.runner.invoke(app, [str(a) for a in args])
        if expect is not None:
            assert result.exit_code == expect, (result.exit_code, result.stdout, result.stderr, result.exception)
        return result

    def json(self, *args: object, expect: int | None = 0) -> dict:
        result = self(*args, "--json", expect=expect)
        return json.loads(result.stdout)


@pytest.fixture(scope="session")
def cli() -> Cli:
    return Cli()


@pytest.fixture(scope="session")
def digits_models(tmp_path_factory, cli) -> dict[str, Path]:
    """A clean ewe-cnn on digits, a backdoor-marked copy and its key (a few seconds of training)."""
    folder = tmp_path_factory.mktemp("digits")
    clean, marked, key = folder / "clean.safetensors", folder / "marked.safetensors", folder / "key.json"
    cli("train", "--arch", "ewe-cnn", "--data", "digits", "-o", clean, "--epochs", 15, "--batch-size", 64)
    cli("embed", "--scheme", "backdoor", clean, "--data", "digits", "-o", marked, "--key-out", key,
        "--epochs", 3)
    return {"clean": clean, "marked": marked, "key": key, "folder": folder}
