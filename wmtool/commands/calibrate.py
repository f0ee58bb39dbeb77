"""``wmtool calibrate``: measure a key's null rate on models known not to carry its watermark."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from wmtool.commands.common import RUN, SOURCE, emit, fmt, shared_options
from wmtool.run import Run

if TYPE_CHECKING:
    from wmtool.models import ModelSource


@shared_options(SOURCE, RUN)
def calibrate(
    references: Annotated[list[Path], typer.Argument(help="Models known NOT to carry the watermark.")],
    key: Annotated[Path, typer.Option("--key", help="The key to calibrate (rewritten in place, atomically).")],
    *, source: ModelSource, run: Run,
) -> None:
    """Measure the key's null rate on reference models and store it, with their sha256, in the key.

    The rate stored is the largest of the references' 99% Clopper–Pearson upper bounds of watermark success
    (models, not queries, vary under the null; the pooled bound is reported beside it);
    `verify` then tests against the larger of it and the key's default null rate (as the
    Watermark-Robustness-Toolbox calibrates its decision thresholds on unmarked models).
    """
    from wmtool.keys import load_key, save_key
    from wmtool.models import file_sha256
    from wmtool.workflows import calibrate_key, key_card, open_suspect

    owner_key = load_key(key)
    opened = [(str(path), open_suspect(run, str(path), source, key_card(owner_key)), file_sha256(path))
              for path in references]
    calibration = calibrate_key(run, owner_key, opened)
    updated = dataclasses.replace(owner_key, calibration=calibration)
    save_key(updated, key, force=True)
    payload = {"key": str(key), **calibration, "default_null_rate": owner_key.null.rate,
               "null_rate_used": updated.null_rate()}
    emit(run, payload, lambda out: out.print(
        f"calibrated on {len(opened)} reference models: {calibration['successes']}/{calibration['trials']} "
        f"watermark answers (observed {fmt(calibration['observed'])}, largest model's 99% upper bound {fmt(calibration['rate'])}); "
        f"verify now tests against null rate {fmt(updated.null_rate())} → {key}"))
