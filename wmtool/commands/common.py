"""What every command shares: the common options, the model-source options, the run context and output
(JSON or rich)."""

from __future__ import annotations

import functools
import inspect
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
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
OutputOpt = Annotated[Path, typer.Option("--output", "-o", help=(
    "Output model; its suffix names the format (.safetensors, .onnx, ...)."))]


@dataclass(frozen=True)
class OptionGroup:
    """Options several commands share, declared once: the command receives them combined into one
    argument, ``parameter``, by ``combine(**values)``."""

    parameter: str
    options: tuple[tuple[str, Any, Any], ...]
    """(name, annotated type, default) for each option."""
    combine: Callable[..., Any]


def model_source(arch: str | None = None, arch_args: str | None = None, input_range: float | None = None,
                 mean: str | None = None, std: str | None = None, layout: str | None = None,
                 trust_code: bool = False) -> "ModelSource":
    """The :class:`~wmtool.models.ModelSource` the flags state."""
    from wmtool.models import ModelSource

    return ModelSource(arch, parse_arch_args(arch_args), preprocessing_flags(input_range, mean, std, layout),
                       trust_code)


ArchArgsOpt = Annotated[str | None, typer.Option("--arch-args", help="JSON object of the architecture's arguments.")]

SOURCE = OptionGroup("source", (
    ("arch", Annotated[str | None, typer.Option("--arch", help=(
        "Architecture for weights that name none: a registered name, path/to/file.py:Factory or "
        "package.module:Factory (a class or function returning a torch.nn.Module; its code RUNS, trust it)."))],
     None),
    ("arch_args", ArchArgsOpt, None),
    ("input_range", Annotated[float | None, typer.Option(
        "--input-range", help="Preprocessing: the model takes pixels in [0, R], e.g. 1 or 255.")], None),
    ("mean", Annotated[str | None, typer.Option(
        "--mean", help="Preprocessing: mean per channel (comma-separated, in input-range units), subtracted.")], None),
    ("std", Annotated[str | None, typer.Option("--std", help="Preprocessing: std per channel, divided by.")], None),
    ("layout", Annotated[str | None, typer.Option("--layout", help="Preprocessing: NCHW or NHWC input layout.")],
     None),
    ("trust_code", Annotated[bool, typer.Option("--trust-code", help=(
        "Run the architecture code (file.py:Factory, module:Factory) that a model's own card names. Off: such "
        "code runs only when you name it with --arch; use this only for files you trust."))], False),
), model_source)
"""How to open a model: ``--arch``, ``--arch-args``, ``--input-range``, ``--mean``, ``--std``, ``--layout``,
``--trust-code``."""

RUN = OptionGroup("run", (("json_out", JsonOpt, False), ("quiet", QuietOpt, False), ("device", DeviceOpt, "auto"),
                          ("seed", SeedOpt, 0)),
                  lambda json_out, quiet, device, seed: Run(json_out, quiet, device, seed))
"""The run options of commands that compute: ``--json``, ``--quiet``, ``--device``, ``--seed``."""

FORCE = OptionGroup("force", (("force", Annotated[bool, typer.Option("--force", help="Overwrite existing output files.")],
                                False),), lambda force: force)
"""``--force``: commands that write files overwrite existing ones only with it."""

OUTPUT = OptionGroup("run", (("json_out", JsonOpt, False),), lambda json_out: Run(json=json_out))
"""The run option of commands that only read or convert: ``--json``."""


def shared_options(*groups: OptionGroup) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the options of ``groups`` after its own; it receives each group as one argument."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        receives = {group.parameter for group in groups}
        own = [param.replace(annotation=_evaluated(param.annotation, command))
               for name, param in inspect.signature(command).parameters.items() if name not in receives]
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
                 for group in groups for name, annotation, default in group.options]

        @functools.wraps(command)
        def with_groups(*args: Any, **kwargs: Any) -> Any:
            for group in groups:
                kwargs[group.parameter] = group.combine(**{name: kwargs.pop(name) for name, _, _ in group.options})
            return command(*args, **kwargs)

        del with_groups.__wrapped__  # typer must read the signature below, not the command's own
        parameters = [*own, *added]
        with_groups.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        with_groups.__annotations__ = {param.name: param.annotation for param in parameters}
        return with_groups

    return decorate


def _evaluated(annotation: Any, command: Callable[..., Any]) -> Any:
    """A postponed (string) annotation of ``command`` evaluated in its module, as typer needs it."""
    return eval(annotation, command.__globals__) if isinstance(annotation, str) else annotation  # noqa: S307


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
    from wmtool.preprocessing import Preprocessing

    def numbers(raw: str | None, flag: str) -> tuple[float, ...] | None:
        if raw is None:
            return None
        try:
            return tuple(float(v) for v in raw.split(","))
        except ValueError:
            raise UserError(f"{flag} takes comma-separated numbers, got {raw!r}") from None

    return Preprocessing.stated(input_range, numbers(mean, "--mean"), numbers(std, "--std"), layout)


def fmt(value: float | None, digits: int = 4) -> str:
    """A number for a table: fixed digits, or '-' when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def fmt_p(value: float) -> str:
    """A p-value for a table."""
    return f"{value:.2e}" if value < 1e-3 else f"{value:.4f}"
