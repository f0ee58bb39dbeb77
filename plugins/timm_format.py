"""Model format ``timm``: a folder as timm's hub export writes it (``config.json`` naming an
``architecture``, with ``model_args`` and ``pretrained_cfg``, beside ``model.safetensors``).

The model is built by timm itself, ``timm.create_model("local-dir:DIR", pretrained=True)``: its
``model_args`` (another image size, say) and weight loading are timm's job; nothing is downloaded and
nothing is unpickled. The card comes from ``pretrained_cfg`` (input size, mean, std) and the config's
``num_classes`` and ``label_names``. Written back (``-o DIR``), the folder is timm's own export
(``save_for_hf``) with wmtool's card added to the weights' metadata, and loads with
``timm.create_model("local-dir:DIR", pretrained=True)`` unchanged.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from wmtool.api import (MAX_SIDE, METADATA_KEY, RESAMPLING, Architecture, ModelCard, ModelFormat, ModelSource, Option,
                        Preprocessing, UserError, hookimpl, inside, staged)
from wmtool_plugins.safetensors_format import add_metadata, read_header
from wmtool_plugins.transformers_format import read_json, snapshot

WMTOOL_API_VERSION = 1

ARCH = "timm"
WEIGHTS = "model.safetensors"
DEFAULT_CROP_PCT = 0.875
"""timm's crop_pct when a pretrained_cfg states none (timm.data.constants.DEFAULT_CROP_PCT)."""


def recognises(path: Path) -> bool:
    """A folder (or cache folder) whose config.json names one timm ``architecture``."""
    if not path.is_dir():
        return False
    config = snapshot(path) / "config.json"
    return config.is_file() and isinstance(read_json(config).get("architecture"), str)


def library() -> Any:
    """The timm package, or one line on how to install it (or mend a torchvision that does not fit torch)."""
    try:
        import timm
    except ImportError:
        raise UserError("reading a timm folder needs timm: install torch and torchvision as a pair first, then "
                        "pip install 'wmtool[timm]' (README: Hugging Face and timm)") from None
    except RuntimeError as exc:  # torchvision built for another torch: its operators do not register
        import torch

        raise UserError(f"timm cannot import: torchvision does not fit torch {torch.__version__} ({exc}); install the "
                        "pair built together, e.g. pip install torch==2.14.1 torchvision==0.29.1") from None
    return timm


def weights(folder: Path) -> Path:
    """The folder's safetensors weights; pickles only are refused with how to convert them."""
    if (folder / WEIGHTS).is_file():
        return inside(folder, WEIGHTS, str(folder))
    if any(folder.glob("*.bin")) or any(folder.glob("*.pth")):
        raise UserError(f"{folder}: the weights are a pickle (pytorch_model.bin), which wmtool never loads (it can run "
                        "code); convert them once where you trust the file: timm.models.save_for_hf(model, DIR, "
                        "safe_serialization=True)")
    raise UserError(f"{folder}: no {WEIGHTS}")


def card_of(config: dict[str, Any]) -> ModelCard:
    """The card a timm config states: input size, classes, mean and std (on [0, 1] pixels)."""
    try:
        return _card_of(config)
    except (TypeError, ValueError, IndexError, KeyError) as exc:
        raise UserError(f"timm config.json: malformed pretrained_cfg or classes ({exc})") from None


def _card_of(config: dict[str, Any]) -> ModelCard:
    pretrained = config.get("pretrained_cfg") or {}
    size = pretrained.get("input_size") or [3, 224, 224]
    if len(size) != 3:
        raise ValueError(f"input_size {size!r} is not [channels, height, width]")
    channels = int(size[0])
    num_classes = int(config.get("num_classes", pretrained.get("num_classes", 1000)))
    names = config.get("label_names") or pretrained.get("label_names")
    classes = tuple(str(name) for name in names) if isinstance(names, list) and len(names) == num_classes else None

    def per_channel(values: Any) -> tuple[float, ...] | None:
        if values is None:
            return None
        values = [float(v) for v in values]
        return tuple(values * channels) if len(values) == 1 else tuple(values[:channels])

    args = {"name": str(config["architecture"]), "model_args": json.dumps(config.get("model_args") or {},
                                                                           sort_keys=True),
            "config": json.dumps(config, sort_keys=True)}
    interpolation = str(pretrained.get("interpolation", "bicubic"))
    resize = Preprocessing(1.0, per_channel(pretrained.get("mean")), per_channel(pretrained.get("std")), "NCHW",
                           resample=interpolation if interpolation in RESAMPLING else "bilinear",
                           **eval_geometry(pretrained, (int(size[1]), int(size[2]))))
    return ModelCard(ARCH, tuple(int(v) for v in size), num_classes, args, resize, classes)


def eval_geometry(pretrained: dict[str, Any], size: tuple[int, int]) -> dict[str, Any]:
    """timm's evaluation resize and crop (``transforms_imagenet_eval``) as :class:`Preprocessing` fields:
    the scale size ``floor(side / crop_pct)`` (crop_pct 0.875 when the config states none), then the
    centre crop to the input size; ``crop_mode`` center keeps the aspect ratio (shortest edge, square
    inputs), squash warps. A ``border`` crop mode or a non-square centre crop is resized to the input size
    without a crop."""
    crop_pct = float(pretrained.get("crop_pct") or DEFAULT_CROP_PCT)
    if not 0 < crop_pct <= 1:
        raise ValueError(f"crop_pct {crop_pct} is not in (0, 1]")
    scale = (math.floor(size[0] / crop_pct), math.floor(size[1] / crop_pct))
    mode = pretrained.get("crop_mode", "center")
    if mode == "squash":
        return {"size": scale, "crop": size}
    if mode == "center" and size[0] == size[1]:
        return {"shortest_edge": scale[0], "crop": size}
    return {"size": size}


def load(path: Path, registry: Any, source: ModelSource, task: ModelCard | None) -> Any:
    """The folder's model through ``timm.create_model("local-dir:…", pretrained=True)``."""
    from wmtool.api import Classifier

    folder = snapshot(path)
    files = {WEIGHTS: weights(folder), "config.json": inside(folder, "config.json", str(path))}
    config = read_json(folder / "config.json")
    card = card_of(config)
    timm = library()
    check_architecture(timm, config, path)
    with staged(files) as checked:
        try:
            model = timm.create_model(f"local-dir:{checked}", pretrained=True)
        except Exception as exc:  # the library on a hostile folder: any failure is one line
            raise UserError(f"{path}: timm cannot load this folder ({type(exc).__name__}: "
                            f"{(str(exc).splitlines() or [''])[0][:300]})") from None
    return Classifier(model.float(), card)


def check_architecture(timm: Any, config: dict[str, Any], where: Path | str) -> None:
    """Refuse an architecture timm does not register (no ``hf-hub:`` or ``local-dir:`` source, no code) and
    model arguments that would build an absurdly large model."""
    name = config.get("architecture")
    if not isinstance(name, str) or not timm.is_model(name) or ":" in name:
        raise UserError(f"{where}: config.json names architecture {name!r}, which timm does not register (wmtool "
                        "builds only timm's own architectures)")
    model_args = config.get("model_args") or {}
    if not isinstance(model_args, dict):
        raise UserError(f"{where}: config.json's model_args is not an object")
    sizes = model_args.get("img_size")
    for side in sizes if isinstance(sizes, (list, tuple)) else [sizes] if sizes is not None else []:
        if not isinstance(side, int) or not 1 <= side <= MAX_SIDE:
            raise UserError(f"{where}: config.json's model_args img_size {sizes!r}: sides run from 1 to {MAX_SIDE}")


def build(input_shape: tuple[int, ...], num_classes: int, name: str = "", model_args: str = "{}",
          config: str = "{}") -> Any:
    """A fresh timm model of the stored name and arguments (timm's initialisation)."""
    if not name:
        raise UserError("architecture timm needs the folder's config.json (give the folder instead)")
    timm = library()
    arguments = json.loads(model_args)
    check_architecture(timm, {"architecture": name, "model_args": arguments}, "the model's card")
    return timm.create_model(name, pretrained=False, **{"num_classes": num_classes, "in_chans": input_shape[0],
                                                        **arguments})


def save(model: Any, folder: Path, registry: Any) -> None:
    """The model as timm's own hub export, plus wmtool's card in the weights' metadata."""
    card = model.card
    if card.arch != ARCH:
        raise UserError(f"a timm folder holds a timm model, not architecture {card.arch}")
    timm = library()
    config = json.loads(card.arch_args.get("config") or "{}")
    model_args = json.loads(card.arch_args.get("model_args") or "{}")
    timm.models.save_for_hf(model.net, str(folder), model_config={k: v for k, v in config.items()
                                                                   if k in ("label_names", "label_descriptions")},
                            model_args=model_args or None, safe_serialization=True)
    add_metadata(folder / WEIGHTS, {"format": "pt", METADATA_KEY: json.dumps(card.to_json())})


def describe(path: Path) -> dict[str, Any]:
    """The config's card and the weights' tensors, read from the header."""
    folder = snapshot(path)
    config = read_json(folder / "config.json")
    tensors, _ = read_header(weights(folder))
    card = card_of(config).to_json()
    card["arch_args"] = {"name": card["arch_args"]["name"], "model_args": json.loads(card["arch_args"]["model_args"])}
    return {"format": "timm", "tensors": tensors, "card": card,
            "notes": [f"timm {config['architecture']} {json.dumps(config.get('model_args') or {})}"]}


@hookimpl
def register_model_formats(register):
    """Register the ``timm`` folder format."""
    summary = "a timm folder: config.json (architecture, model_args, pretrained_cfg), model.safetensors"
    register(ModelFormat("timm", summary, (), load, describe, save, recognises=recognises, folder_of=ARCH))


@hookimpl
def register_architectures(register):
    """Register ``timm``: a model built by timm from its name and arguments."""
    register(Architecture(ARCH, "a timm model, built by timm from its name and model_args", build,
                          (Option("name", str, "", "timm model name (written by wmtool)"),
                           Option("model_args", str, "{}", "timm's model_args, as JSON"),
                           Option("config", str, "{}", "the folder's config.json, as JSON"))))
