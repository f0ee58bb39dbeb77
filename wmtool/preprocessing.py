"""What a network expects of its input, applied to wmtool's canonical images (floats in [0, 1], NCHW)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from wmtool.errors import UserError


@dataclass(frozen=True)
class Preprocessing:
    """Maps canonical [0, 1] NCHW images to the network's input: ``(x * input_range - mean) / std``.

    ``mean`` and ``std`` are per channel (or one value for all) in the units of ``input_range``;
    ``layout`` NHWC moves the channels last after normalisation.
    """

    input_range: float = 1.0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    layout: str = "NCHW"

    def __post_init__(self) -> None:
        if self.input_range <= 0:
            raise UserError(f"input range must be positive, got {self.input_range}")
        if self.layout not in ("NCHW", "NHWC"):
            raise UserError(f"layout must be NCHW or NHWC, got {self.layout!r}")
        if self.std is not None and any(value <= 0 for value in self.std):
            raise UserError(f"std values must be positive, got {self.std}")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> "Preprocessing":
        """Read the dictionary :meth:`to_json` wrote; a malformed one raises :class:`UserError`."""
        if not isinstance(data, dict):
            raise UserError("preprocessing must be an object")
        try:
            mean = data.get("mean")
            std = data.get("std")
            return cls(
                input_range=float(data.get("input_range", 1.0)),
                mean=tuple(float(v) for v in mean) if mean is not None else None,
                std=tuple(float(v) for v in std) if std is not None else None,
                layout=str(data.get("layout", "NCHW")),
            )
        except (TypeError, ValueError) as exc:
            raise UserError(f"malformed preprocessing: {exc}") from None

    def apply(self, x):
        """Apply to canonical images (N, C, H, W): a torch tensor, or a float32 numpy array."""
        if isinstance(x, np.ndarray):
            def constant(values):
                return np.asarray(values, dtype=x.dtype).reshape(1, -1, 1, 1)

            def channels_last(v):
                return np.ascontiguousarray(v.transpose(0, 2, 3, 1))
        else:
            def constant(values):
                return x.new_tensor(values).reshape(1, -1, 1, 1)

            def channels_last(v):
                return v.permute(0, 2, 3, 1)
        if self.input_range != 1.0:
            x = x * self.input_range
        if self.mean is not None:
            x = x - constant(self.mean)
        if self.std is not None:
            x = x / constant(self.std)
        if self.layout == "NHWC":
            x = channels_last(x)
        return x
