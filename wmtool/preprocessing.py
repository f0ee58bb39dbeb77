"""What a network expects of its input, applied to wmtool's canonical images (floats in [0, 1], NCHW)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from wmtool.errors import UserError


RESAMPLING = ("nearest", "bilinear", "bicubic")
EIGHT_BIT_TOLERANCE = 1e-3
"""How far from a multiple of 1/255 (in 0-255 units) a pixel may lie and still count as 8-bit."""
MAX_SIDE = 8192
"""The largest side an image is resized to."""
PIL_RESAMPLING = {0: "nearest", 2: "bilinear", 3: "bicubic"}
"""PIL's resampling codes (as image processors store them) that wmtool resizes with; others: bilinear."""


@dataclass(frozen=True)
class Preprocessing:
    """Maps canonical [0, 1] NCHW images to the network's input, as image processors do, in this order:
    greyscale to RGB (``to_rgb``), resize, centre crop, ``(x * input_range - mean) / std``, channel flip
    (``flip_channels``, RGB to BGR), and ``layout`` NHWC (channels last).

    The resize is to ``size`` (H, W), or with ``shortest_edge`` to that shorter side keeping the aspect
    ratio (the longer side truncated, as transformers and timm compute it); ``resample`` is antialiased
    when shrinking, as PIL and torchvision resize. ``crop`` (H, W) takes the centre (zero-padded when the
    image is smaller). ``any_size`` marks a network that takes images of any size unresized (a processor
    with ``do_resize: false`` in front of a size-agnostic network). ``mean`` and ``std`` are per channel
    (or one value for all) in the units of ``input_range``.
    """

    input_range: float = 1.0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    layout: str = "NCHW"
    size: tuple[int, int] | None = None
    resample: str = "bilinear"
    shortest_edge: int | None = None
    crop: tuple[int, int] | None = None
    to_rgb: bool = False
    flip_channels: bool = False
    any_size: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.input_range) and self.input_range > 0):
            raise UserError(f"input range must be positive, got {self.input_range}")
        if any(not math.isfinite(value) for value in (*(self.mean or ()), *(self.std or ()))):
            raise UserError(f"mean and std must be finite numbers, got {self.mean} and {self.std}")
        if self.layout not in ("NCHW", "NHWC"):
            raise UserError(f"layout must be NCHW or NHWC, got {self.layout!r}")
        if self.std is not None and any(value <= 0 for value in self.std):
            raise UserError(f"std values must be positive, got {self.std}")
        for name, sides in (("resize size", self.size), ("crop size", self.crop)):
            if sides is not None and (len(sides) != 2 or min(sides) < 1 or max(sides) > MAX_SIDE):
                raise UserError(f"{name} must be two sizes from 1 to {MAX_SIDE}, got {sides}")
        if self.shortest_edge is not None and not 1 <= self.shortest_edge <= MAX_SIDE:
            raise UserError(f"resize size must be from 1 to {MAX_SIDE}, got shortest edge {self.shortest_edge}")
        if self.size is not None and self.shortest_edge is not None:
            raise UserError("a resize has a size or a shortest edge, not both")
        if self.resample not in RESAMPLING:
            raise UserError(f"resampling must be one of {', '.join(RESAMPLING)}, got {self.resample!r}")

    @property
    def resizes(self) -> bool:
        """Whether images of another height and width are made to fit (resized, cropped, or taken as they are)."""
        return self.size is not None or self.shortest_edge is not None or self.crop is not None or self.any_size

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dictionary (without the resize fields when there is no resize, as before they
        existed, so that keys written earlier keep their checksum and commitment)."""
        data = asdict(self)
        if self.size is None and self.shortest_edge is None:
            del data["size"], data["resample"]
        elif self.size is not None:
            data["size"] = list(self.size)
        for name in ("shortest_edge", "crop", "to_rgb", "flip_channels", "any_size"):  # omitted when unused
            if not data[name]:
                del data[name]
        if self.crop is not None:
            data["crop"] = list(self.crop)
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
            size, crop, edge = data.get("size"), data.get("crop"), data.get("shortest_edge")
            return cls(
                input_range=float(data.get("input_range", 1.0)),
                mean=tuple(float(v) for v in mean) if mean is not None else None,
                std=tuple(float(v) for v in std) if std is not None else None,
                layout=str(data.get("layout", "NCHW")),
                size=(int(size[0]), int(size[1])) if size is not None else None,
                resample=str(data.get("resample", "bilinear")),
                shortest_edge=int(edge) if edge is not None else None,
                crop=(int(crop[0]), int(crop[1])) if crop is not None else None,
                to_rgb=bool(data.get("to_rgb", False)),
                flip_channels=bool(data.get("flip_channels", False)),
                any_size=bool(data.get("any_size", False)),
            )
        except (TypeError, ValueError) as exc:
            raise UserError(f"malformed preprocessing: {exc}") from None

    def accepts(self, shape: tuple[int, ...], expected: tuple[int, ...]) -> bool:
        """Whether images of ``shape`` (C, H, W) can feed a network that takes ``expected``: the same shape,
        or, when this resizes or crops, the same channel count (greyscale too, when it converts to RGB)."""
        shape, expected = tuple(shape), tuple(expected)
        if shape == expected:
            return True
        channels_fit = len(shape) == len(expected) == 3 and (
            shape[0] == expected[0] or (self.to_rgb and shape[0] == 1 and expected[0] == 3))
        return channels_fit and (self.resizes or shape[1:] == expected[1:])

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """The (H, W) that the resize makes of an image of ``height`` × ``width`` (before the crop)."""
        if self.size is not None:
            return tuple(self.size)  # type: ignore[return-value]
        if self.shortest_edge is not None:
            short, long = sorted((height, width))
            new_long = int(self.shortest_edge * long / short)
            return (self.shortest_edge, new_long) if height <= width else (new_long, self.shortest_edge)
        return height, width

    def resize(self, x):
        """Canonical images resized (unchanged without a resize, or when they have the size already), kept in
        [0, 1]. Images of 8-bit pixels (every value a multiple of 1/255, as decoded pictures are) are resized
        as 8-bit pictures, as PIL, torchvision and so the libraries' processors resize them (rounded, and
        without bicubic overshoot); others, and images that need a gradient, in floating point."""
        target = self.output_size(*x.shape[-2:])
        if tuple(x.shape[-2:]) == tuple(target):
            return x
        height, width = target
        if isinstance(x, np.ndarray):
            from PIL import Image

            eight_bit = _on_8bit_grid(x)
            code = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
                    "bicubic": Image.Resampling.BICUBIC}[self.resample]
            source = np.round(x * 255).astype(np.uint8) if eight_bit else x.astype(np.float32, copy=False)
            resized = np.stack([np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(channel),
                                                                     mode="L" if eight_bit else "F")
                                                     .resize((width, height), code)) for channel in image])
                                for image in source]).astype(np.float32)
            return resized / 255 if eight_bit else np.clip(resized, 0.0, 1.0)
        import torch
        import torch.nn.functional as F

        smooth = self.resample != "nearest"
        options = {"size": (height, width), "mode": self.resample, "antialias": smooth,
                   **({"align_corners": False} if smooth else {})}
        if x.device.type == "cpu" and not x.requires_grad and _on_8bit_grid(x):  # 8-bit kernels: CPU only
            return F.interpolate((x * 255).round().to(torch.uint8), **options).to(x.dtype) / 255
        return F.interpolate(x, **options).clamp(0.0, 1.0)

    def center_crop(self, x):
        """The centre ``crop`` of the images, zero-padded first where they are smaller (as torchvision)."""
        if self.crop is None or tuple(x.shape[-2:]) == tuple(self.crop):
            return x
        (height, width), (crop_h, crop_w) = x.shape[-2:], self.crop
        pad_h, pad_w = max(crop_h - height, 0), max(crop_w - width, 0)
        if pad_h or pad_w:
            padding = ((0, 0), (0, 0), (pad_h // 2, (pad_h + 1) // 2), (pad_w // 2, (pad_w + 1) // 2))
            if isinstance(x, np.ndarray):
                x = np.pad(x, padding)
            else:
                import torch.nn.functional as F

                x = F.pad(x, (*padding[3], *padding[2]))
            height, width = x.shape[-2:]
        top, left = int((height - crop_h) / 2.0), int((width - crop_w) / 2.0)
        return x[..., top:top + crop_h, left:left + crop_w]

    def apply(self, x):
        """Apply to canonical images (N, C, H, W): a torch tensor, or a float32 numpy array."""
        if self.to_rgb and x.shape[1] == 1:
            x = np.repeat(x, 3, axis=1) if isinstance(x, np.ndarray) else x.expand(-1, 3, -1, -1)
        x = self.center_crop(self.resize(x))
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
        if self.flip_channels:
            x = x[:, ::-1] if isinstance(x, np.ndarray) else x.flip(1)
        if self.layout == "NHWC":
            x = channels_last(x)
        return x


def _on_8bit_grid(x) -> bool:
    """Whether every value of canonical images (numpy or torch) is a multiple of 1/255, as decoded 8-bit
    pictures are (within :data:`EIGHT_BIT_TOLERANCE`)."""
    pixels = x * 255
    size = pixels.size if isinstance(pixels, np.ndarray) else pixels.numel()
    return bool(size) and float(abs(pixels - pixels.round()).max()) < EIGHT_BIT_TOLERANCE
