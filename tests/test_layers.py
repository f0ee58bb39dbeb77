"""The import contracts (pyproject's [tool.importlinter]) hold, and they name every module there is."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
CORE_MODULES = {path.stem for path in (ROOT / "wmtool").glob("*.py") if path.stem != "__init__"} | {"commands"}


def test_lint_imports_keeps_every_contract():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert re.search(rf"Contracts: {len(CONTRACTS)} kept, 0 broken", result.stdout)


def test_the_layers_name_every_module():
    layers = next(c for c in CONTRACTS if c["type"] == "layers")
    named = {name.strip() for layer in layers["layers"] for name in re.split(r"[|:]", layer)}
    assert named == CORE_MODULES


def test_plugins_may_import_the_api_and_nothing_else_of_wmtool():
    forbidden = next(c for c in CONTRACTS if c["type"] == "forbidden")
    assert {name.removeprefix("wmtool.") for name in forbidden["forbidden_modules"]} == CORE_MODULES - {"api"}
