"""What every command shares: the common options, the model-source options, the run context and output
(JSON or rich)."""

from __future__ import annotations

import functools
import inspect
import json
import math
import sys
from typing import TYPE_CHECKING, Annotated, Any, Callable

import typer

from wmtool.errors import UserError
from wmtool.run import Run

if TYPE_CHECKING:
    from rich.console import Console

    from wmtool.models import ModelSource

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout and nothing else there.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto | cpu | cuda (auto: CUDA when available).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for every random choice.")]
DataOpt = Annotated[str, typer.Option("--data", help="digits (embedded), an IDX folder, a .npz or an image folder.")]
SplitOpt = Annotated[str, typer.Option("--split", help="train | test | all (sources without a test split hold out a fixed 20% as test).")]
LimitOpt = Annotated[int | None, typer.Option("--limit", help="Use at most this many samples (chosen by --seed).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite existing output files.")]

_SOURCE_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("arch", Annotated[str | None, typer.Option("--arch", help=(
        "Architecture for weights that name none: a registered name, path/to/file.py:Factory or "
        "package.module:Factory (a class or function returning a torch.nn.Module; its code RUNS, trust it)."))]),
    ("arch_args", Annotated[str | None, typer.Option("--arch-args", help="JSON object of the architecture's arguments.")]),
    ("input_range", Annotated[float | None, typer.Option(
        "--input-range", help="Preprocessing: the model takes pixels in [0, R], e.g. 1 or 255.")]),
    ("mean", Annotated[str | None, typer.Option(
        "--mean", help="Preprocessing: mean per channel (comma-separated, in input-range units), subtracted.")]),
    ("std", Annotated[str | None, typer.Option("--std", help="Preprocessing: std per channel, divided by.")]),
    ("layout", Annotated[str | None, typer.Option("--layout", help="Preprocessing: NCHW or NHWC input layout.")]),
)

ArchArgsOpt = dict(_SOURCE_OPTIONS)["arch_args"]  # for commands that build a model of a named architecture


def model_source_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command the model-source options (``--arch``, ``--arch-args``, ``--input-range``, ``--mean``,
    ``--std``, ``--layout``), declared here once; the command receives them as ``source: ModelSource``."""
    signature = inspect.signature(command)
    own = [param.replace(annotation=_evaluated(param.annotation, command))
           for name, param in signature.parameters.items() if name != "source"]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
             for name, annotation in _SOURCE_OPTIONS]
    names = [param.name for param in own]
    at = names.index("json_out") if "json_out" in names else len(own)  # the shared run options stay last
    keyword = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own[at:]]
    positional = own[:at]

    @functools.wraps(command)
    def with_source(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name, _ in _SOURCE_OPTIONS}
        return command(*args, source=model_source(**values), **kwargs)

    del with_source.__wrapped__  # typer must read the signature below, not the command's own
    parameters = [*positional, *added, *keyword]
    with_source.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    with_source.__annotations__ = {param.name: param.annotation for param in parameters}
    return with_source


def _evaluated(annotation: Any, command: Callable[..., Any]) -> Any:
    """A postponed (string) annotation of ``command`` evaluated in its module, as typer needs it."""
    return eval(annotation, command.__globals__) if isinstance(annotation, str) else annotation  # noqa: S307


def model_source(arch: str | None = None, arch_args: str | None = None, input_range: float | None = None,
                 mean: str | None = None, std: str | None = None, layout: str | None = None) -> "ModelSource":
    """The :class:`~wmtool.models.ModelSource` the flags state."""
    from wmtool.models import ModelSource

    return ModelSource(arch, parse_arch_args(arch_args), preprocessing_flags(input_range, mean, std, layout))


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
