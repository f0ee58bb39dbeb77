"""What every command shares: the common options, the run context and output (JSON or rich)."""

from __future__ import annotations

import json
import math
import sys
from typing import TYPE_CHECKING, Annotated, Any, Callable

import typer

from wmtool.errors import UserError
from wmtool.run import Run

if TYPE_CHECKING:
    from rich.console import Console

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout and nothing else there.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto | cpu | cuda (auto: CUDA when available).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for every random choice.")]
DataOpt = Annotated[str, typer.Option("--data", help="digits (embedded), an IDX folder, a .npz or an image folder.")]
SplitOpt = Annotated[str, typer.Option("--split", help="train | test | all (sources without a test split hold out a fixed 20% as test).")]
LimitOpt = Annotated[int | None, typer.Option("--limit", help="Use at most this many samples (chosen by --seed).")]
ArchOpt = Annotated[str | None, typer.Option("--arch", help=(
    "Architecture for a file that names none: a registered name, path/to/file.py:Factory or "
    "package.module:Factory (a class or function returning a torch.nn.Module; its code RUNS, trust it)."))]
ArchArgsOpt = Annotated[str | None, typer.Option("--arch-args", help="JSON object of the architecture's arguments.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite existing output files.")]
InputRangeOpt = Annotated[float | None, typer.Option(
    "--input-range", help="Preprocessing: the model takes pixels in [0, R], e.g. 1 or 255.")]
MeanOpt = Annotated[str | None, typer.Option(
    "--mean", help="Preprocessing: mean per channel (comma-separated, in input-range units), subtracted.")]
StdOpt = Annotated[str | None, typer.Option("--std", help="Preprocessing: std per channel, divided by.")]
LayoutOpt = Annotated[str | None, typer.Option("--layout", help="Preprocessing: NCHW or NHWC input layout.")]


def console() -> "Console":
    """A rich console on stdout."""
    from rich.console import Console

    return Console()


def _clean(value: Any) -> Any:
    """JSON-safe values: NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def emit(run: Run, payload: dict[str, Any], human: Callable[["Console"], None]) -> None:
    """Print ``payload`` as one JSON object with --json, else call ``human`` with a rich console."""
    if run.json:
        sys.stdout.write(json.dumps(_clean(payload)) + "\n")
    else:
        human(console())


def parse_arch_args(raw: str | None) -> dict[str, Any]:
    """The --arch-args JSON object."""
    from wmtool.options import json_object

    return json_object(raw, "--arch-args")


def preprocessing_flags(input_range: float | None, mean: str | None, std: str | None, layout: str | None):
    """The Preprocessing the flags state, or None when none was given (the model's own then applies)."""
    if input_range is None and mean is None and std is None and layout is None:
        return None
    from wmtool.preprocessing import Preprocessing

    def numbers(raw: str | None, flag: str) -> tuple[float, ...] | None:
        if raw is None:
            return None
        try:
            return tuple(float(v) for v in raw.split(","))
        except ValueError:
            raise UserError(f"{flag} takes comma-separated numbers, got {raw!r}") from None

    return Preprocessing(input_range if input_range is not None else 1.0, numbers(mean, "--mean"),
                         numbers(std, "--std"), (layout or "NCHW").upper())


def fmt(value: float | None, digits: int = 4) -> str:
    """A number for a table: fixed digits, or '-' when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def fmt_p(value: float) -> str:
    """A p-value for a table."""
    return f"{value:.2e}" if value < 1e-3 else f"{value:.4f}"
