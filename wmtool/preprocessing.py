"""What a network expects of its input, applied to wmtool's canonical images (floats in [0, 1], NCHW)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from wmtool.errors import UserError


RESAMPLING = ("nearest", "bilinear", "bicubic")
MAX_SIDE = 8192
"""The largest side an image is resized to."""
PIL_RESAMPLING = {0: "nearest", 2: "bilinear", 3: "bicubic"}
"""PIL's resampling codes (as image processors store them) that wmtool resizes with; others: bilinear."""


@dataclass(frozen=True)
class Preprocessing:
    """Maps canonical [0, 1] NCHW images to the network's input: ``(resize(x) * input_range - mean) / std``.

    ``size`` (H, W), when set, resizes images of any other size first, with ``resample`` (antialiased
    when shrinking, as PIL resizes); ``mean`` and ``std`` are per channel (or one value for all) in the
    units of ``input_range``; ``layout`` NHWC moves the channels last after normalisation.
    """

    input_range: float = 1.0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    layout: str = "NCHW"
    size: tuple[int, int] | None = None
    resample: str = "bilinear"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.input_range) and self.input_range > 0):
            raise UserError(f"input range must be positive, got {self.input_range}")
        if any(not math.isfinite(value) for value in (*(self.mean or ()), *(self.std or ()))):
            raise UserError(f"mean and std must be finite numbers, got {self.mean} and {self.std}")
        if self.layout not in ("NCHW", "NHWC"):
            raise UserError(f"layout must be NCHW or NHWC, got {self.layout!r}")
        if self.std is not None and any(value <= 0 for value in self.std):
            raise UserError(f"std values must be positive, got {self.std}")
        if self.size is not None and (len(self.size) != 2 or min(self.size) < 1 or max(self.size) > MAX_SIDE):
            raise UserError(f"resize size must be two sizes from 1 to {MAX_SIDE}, got {self.size}")
        if self.resample not in RESAMPLING:
            raise UserError(f"resampling must be one of {', '.join(RESAMPLING)}, got {self.resample!r}")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dictionary (without the resize fields when there is no resize, as before they
        existed, so that keys written earlier keep their checksum and commitment)."""
        data = asdict(self)
        if self.size is None:
            del data["size"], data["resample"]
        else:
            data["size"] = list(self.size)
        return data

    @classmethod
    def stated(cls, input_range: Any = None, mean: Any = None, std: Any = None,
               layout: Any = None) -> "Preprocessing | None":
        """The preprocessing a user states (command-line flags, a sweep spec's fields), or None when nothing
        is stated (the model's own then applies); ``mean`` and ``std`` are a number or a list of numbers."""
        if input_range is None and mean is None and std is None and layout is None:
            return None

        def numbers(value: Any, name: str) -> tuple[float, ...] | None:
            if value is None:
                return None
            try:
                return tuple(float(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
            except (TypeError, ValueError):
                raise UserError(f"{name} takes numbers, got {value!r}") from None

        return cls(float(input_range) if input_range is not None else 1.0, numbers(mean, "mean"), numbers(std, "std"),
                   str(layout or "NCHW").upper())

    @classmethod
    def from_json(cls, data: Any) -> "Preprocessing":
        """Read the dictionary :meth:`to_json` wrote; a malformed one raises :class:`UserError`."""
        if not isinstance(data, dict):
            raise UserError("preprocessing must be an object")
        try:
            mean = data.get("mean")
            std = data.get("std")
            size = data.get("size")
            return cls(
                input_range=float(data.get("input_range", 1.0)),
                mean=tuple(float(v) for v in mean) if mean is not None else None,
                std=tuple(float(v) for v in std) if std is not None else None,
                layout=str(data.get("layout", "NCHW")),
                size=(int(size[0]), int(size[1])) if size is not None else None,
                resample=str(data.get("resample", "bilinear")),
            )
        except (TypeError, ValueError) as exc:
            raise UserError(f"malformed preprocessing: {exc}") from None

    def accepts(self, shape: tuple[int, ...], expected: tuple[int, ...]) -> bool:
        """Whether images of ``shape`` (C, H, W) can feed a network that takes ``expected``: the same shape,
        or with a resize the same channel count."""
        shape, expected = tuple(shape), tuple(expected)
        return shape == expected or (self.size is not None and len(shape) == len(expected) == 3
                                     and shape[0] == expected[0])

    def resize(self, x):
        """Canonical images resized to ``size`` (unchanged without one, or when they have it already)."""
        if self.size is None or tuple(x.shape[-2:]) == tuple(self.size):
            return x
        if isinstance(x, np.ndarray):
            from PIL import Image

            code = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
                    "bicubic": Image.Resampling.BICUBIC}[self.resample]
            height, width = self.size
            return np.stack([np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(channel), mode="F")
                                                  .resize((width, height), code)) for channel in image])
                             for image in x.astype(np.float32, copy=False)])
        import torch.nn.functional as F

        smooth = self.resample != "nearest"
        return F.interpolate(x, size=tuple(self.size), mode=self.resample, antialias=smooth,
                             **({"align_corners": False} if smooth else {}))

    def apply(self, x):
        """Apply to canonical images (N, C, H, W): a torch tensor, or a float32 numpy array."""
        x = self.resize(x)
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
