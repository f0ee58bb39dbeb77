"""The description wmtool stores beside a model's weights: architecture, task and preprocessing."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from wmtool.errors import UserError
from wmtool.preprocessing import Preprocessing

METADATA_KEY = "wmtool"
MAX_CLASSES = 100_000
"""The most classes a model card may state (ImageNet-21k has 21,843)."""
MAX_INPUT_ELEMENTS = 2**26
"""The most numbers one input may hold (3 × 4096 × 4096 is 50 million): a card claiming more is refused
before anything is allocated for it."""


@dataclass(frozen=True)
class ModelCard:
    """Everything needed to rebuild and query a model besides its tensors."""

    arch: str
    input_shape: tuple[int, ...]
    num_classes: int
    arch_args: dict[str, Any] = field(default_factory=dict)
    preprocessing: Preprocessing = Preprocessing()
    classes: tuple[str, ...] | None = None
    code_sha256: str | None = None

    def __post_init__(self) -> None:
        elements = math.prod(self.input_shape)
        if elements > MAX_INPUT_ELEMENTS:
            raise UserError(f"an input of shape {tuple(self.input_shape)} holds {elements:,} numbers, more than "
                            f"wmtool feeds a model ({MAX_INPUT_ELEMENTS:,})")
        if self.num_classes > MAX_CLASSES:
            raise UserError(f"{self.num_classes:,} classes are more than wmtool reads ({MAX_CLASSES:,})")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {
            "arch": self.arch,
            "arch_args": self.arch_args,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "preprocessing": self.preprocessing.to_json(),
            "classes": list(self.classes) if self.classes is not None else None,
            **({"code_sha256": self.code_sha256} if self.code_sha256 else {}),
        }

    @classmethod
    def from_json(cls, data: Any, source: str) -> "ModelCard":
        """Read what :meth:`to_json` wrote; anything malformed raises one :class:`UserError` naming ``source``."""
        try:
            if isinstance(data, str):
                data = json.loads(data)
            shape = tuple(int(v) for v in data["input_shape"])
            num_classes = int(data["num_classes"])
            if not shape or any(v <= 0 for v in shape) or num_classes < 2:
                raise ValueError("input shape and class count must be positive (at least 2 classes)")
            classes = data.get("classes")
            return cls(
                arch=str(data["arch"]),
                input_shape=shape,
                num_classes=num_classes,
                arch_args=dict(data.get("arch_args") or {}),
                preprocessing=Preprocessing.from_json(data.get("preprocessing") or {}),
                classes=tuple(str(c) for c in classes) if classes is not None else None,
                code_sha256=str(data["code_sha256"]) if data.get("code_sha256") else None,
            )
        except UserError:
            raise
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
            raise UserError(f"{source}: malformed wmtool model metadata ({exc})") from None
