"""Model format ``transformers``: a Hugging Face transformers folder, as ``save_pretrained`` writes it and
the Hugging Face cache keeps it.

A folder holds ``config.json`` (naming ``architectures``), the weights as ``model.safetensors`` or shards
listed in ``model.safetensors.index.json``, and for image models a ``preprocessor_config.json``. The model
is built by the library's own loading path with local files only (``from_pretrained``), so its key
renames, sharding and dtypes are the library's job; nothing is downloaded and nothing is unpickled. A
cache folder (``models--org--name``) opens the snapshot its ``refs/main`` names.

The card comes from the folder: channels and size, class count and names (``id2label``), and the
processor's rescale factor, mean and std. wmtool feeds image classifiers (``…ForImageClassification``);
any other model is refused in one line that names what it is.

Written back (``-o DIR``), the folder loads with ``from_pretrained`` unchanged: the library's own
``save_pretrained`` (original key layout, ``format: pt`` metadata, sharded like the input), the
processor's config carried over, and wmtool's card added to every shard's metadata.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from wmtool.api import (MAX_CLASSES, METADATA_KEY, PIL_RESAMPLING, Architecture, ModelCard, ModelFormat, ModelSource,
                        Option, Preprocessing, UserError, hookimpl, inside, read_config, staged)
from wmtool_plugins.safetensors_format import add_metadata, read_header

WMTOOL_API_VERSION = 1

ARCH = "transformers"
CONFIG, PROCESSOR, INDEX, SINGLE = "config.json", "preprocessor_config.json", "model.safetensors.index.json", \
    "model.safetensors"
PICKLES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
KINDS = {"SequenceClassification": "a text classifier", "TokenClassification": "a token classifier",
         "QuestionAnswering": "a question-answering model", "CausalLM": "a language model",
         "MaskedLM": "a language model", "AudioClassification": "an audio classifier",
         "CTC": "a speech model", "ObjectDetection": "an object detector", "SemanticSegmentation": "a segmenter"}


def snapshot(path: Path) -> Path:
    """The folder itself, or for a Hugging Face cache folder (``models--org--name``) the snapshot that
    ``refs/main`` names (else its only snapshot); a name that leads out of the cache folder is refused."""
    snapshots = path / "snapshots"
    if not snapshots.is_dir():
        return path
    ref = path / "refs" / "main"
    if ref.is_file():
        with open(ref, "rb") as handle:
            name = handle.read(256).decode("utf-8", "replace").strip()
        if "/" in name or "\\" in name:
            raise UserError(f"{ref} names {name!r}, not a snapshot: only folders inside the cache folder are read")
        chosen = inside(snapshots, name, str(ref), root=path)
        if chosen.is_dir():
            return chosen
    found = sorted(p for p in snapshots.iterdir() if p.is_dir())
    if len(found) != 1:
        raise UserError(f"{path}: a cache folder with {len(found)} snapshots and no refs/main; give the snapshot folder")
    return inside(snapshots, found[0].name, str(path), root=path)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object file of the folder (bounded in size and depth, inside the folder), or one clear error."""
    return read_config(inside(path.parent, path.name, str(path)), str(path))


def recognises(path: Path) -> bool:
    """A folder (or cache folder) whose config.json names transformers ``architectures``."""
    if not path.is_dir():
        return False
    config = snapshot(path) / CONFIG
    return config.is_file() and isinstance(read_json(config).get("architectures"), list)


def weight_files(folder: Path) -> dict[str, Path]:
    """The safetensors files holding the weights, by their names in the folder (the shards an index
    lists, or the single file), each checked to lie inside the folder; a folder with pickles only is
    refused with how to convert it."""
    if (folder / INDEX).is_file():
        index = read_json(folder / INDEX)
        weight_map = index.get("weight_map")
        names = sorted(set(weight_map.values())) if isinstance(weight_map, dict) else []
        if not names or not all(isinstance(name, str) for name in names):
            raise UserError(f"{folder / INDEX}: lists no shards")
        files = {name: inside(folder, name, str(folder / INDEX)) for name in names}
        missing = [name for name, file in files.items() if not file.is_file()]
        if missing:
            raise UserError(f"{folder / INDEX}: lists shards that are missing: {', '.join(missing)}")
        return {INDEX: inside(folder, INDEX, str(folder)), **files}
    if (folder / SINGLE).is_file():
        return {SINGLE: inside(folder, SINGLE, str(folder))}
    if any((folder / name).is_file() for name in PICKLES):
        raise UserError(f"{folder}: the weights are a pickle (pytorch_model.bin), which wmtool never loads (it can "
                        "run code); convert them once where you trust the file: AutoModelForImageClassification."
                        "from_pretrained(DIR).save_pretrained(DIR) writes model.safetensors")
    raise UserError(f"{folder}: no model.safetensors or {INDEX}")


def shards(files: dict[str, Path]) -> list[Path]:
    """The safetensors files among :func:`weight_files` (not the index)."""
    return [file for name, file in files.items() if name != INDEX]


def library() -> Any:
    """The transformers package, quiet and offline, or one line on how to install it."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import transformers
    except ImportError:
        raise UserError("reading a transformers folder needs the transformers package: pip install "
                        "'wmtool[transformers]'") from None
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


def check_image_classifier(config: dict[str, Any], where: Path) -> str:
    """The architecture's class name, or one error naming the kind of model that image data cannot feed
    (or a class count no classifier has)."""
    name = str(config["architectures"][0]) if config.get("architectures") else "?"
    if name.endswith("ForImageClassification"):
        labels = config.get("id2label")
        count = len(labels) if isinstance(labels, (dict, list)) else config.get("num_labels", 2)
        if not isinstance(count, int) or not 2 <= count <= MAX_CLASSES:
            raise UserError(f"{where}: config.json states {count!r} classes; wmtool reads classifiers of 2 to "
                            f"{MAX_CLASSES:,} classes")
        return name
    kind = next((text for key, text in KINDS.items() if name.endswith(key)), f"a {config.get('model_type', '?')} model")
    raise UserError(f"{where}: {kind} ({name}): image data cannot feed it; wmtool reads image classifiers "
                    "(…ForImageClassification)")


def _sides(value: Any) -> tuple[int, int] | None:
    """A processor's size entry as (H, W): ``{"height", "width"}``, a square ``{"shortest_edge"}`` crop or an int."""
    if isinstance(value, dict) and {"height", "width"} <= set(value):
        return int(value["height"]), int(value["width"])
    if isinstance(value, dict) and "shortest_edge" in value:
        return int(value["shortest_edge"]), int(value["shortest_edge"])
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    return None


def _geometry(processor: dict[str, Any]) -> dict[str, Any]:
    """The processor's resize and centre crop as :class:`Preprocessing` fields, as the library applies them:
    ``size`` {height, width} warps; {shortest_edge} keeps the aspect ratio (ConvNeXt's ``crop_pct`` below 384
    resizes to shortest_edge / crop_pct and crops the centre square); ``do_center_crop`` crops
    ``crop_size``; ``do_resize: false`` with no crop takes images at their own size."""
    fields: dict[str, Any] = {}
    size = processor.get("size")
    if processor.get("do_resize", True) and size is not None:
        edge = size.get("shortest_edge") if isinstance(size, dict) and "height" not in size else None
        if edge is None:
            fields["size"] = _sides(size)
        elif processor.get("crop_pct") is not None:  # ConvNeXt's resize
            if int(edge) < 384:
                fields["shortest_edge"], fields["crop"] = int(int(edge) / float(processor["crop_pct"])), \
                    (int(edge), int(edge))
            else:
                fields["size"] = (int(edge), int(edge))
        else:
            fields["shortest_edge"] = int(edge)
    if processor.get("do_center_crop") and _sides(processor.get("crop_size")) is not None:
        fields["crop"] = _sides(processor.get("crop_size"))
    if not fields and not processor.get("do_resize", True):
        fields["any_size"] = True
    return fields


def _size(config: dict[str, Any], geometry: dict[str, Any]) -> tuple[int, int]:
    """The image size the model is fed: the crop, the resize, else the config's image_size (224 when it states
    none; a network taking any size is fed the data's own)."""
    if geometry.get("crop"):
        return geometry["crop"]
    if geometry.get("size"):
        return geometry["size"]
    if geometry.get("shortest_edge"):
        return geometry["shortest_edge"], geometry["shortest_edge"]
    image = config.get("image_size", 224)
    return (int(image[0]), int(image[1])) if isinstance(image, (list, tuple)) else (int(image), int(image))


def preprocessing_of(processor: dict[str, Any], channels: int, geometry: dict[str, Any]) -> Preprocessing:
    """The processor's steps as wmtool's preprocessing of canonical [0, 1] images, in the library's order:
    ``do_convert_rgb``, resize and centre crop (:func:`_geometry`), rescale (``rescale_offset`` subtracts 1),
    normalise (EfficientNet's ``include_top`` divides by the std once more), ``do_flip_channel_order``."""
    rescale = processor.get("do_rescale", True)
    scale = float(processor.get("rescale_factor", 1 / 255)) if rescale else 1.0
    normalise = processor.get("do_normalize", bool(processor))

    def per_channel(values: Any) -> list[float]:
        values = [float(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
        return values * channels if len(values) == 1 else values

    std = per_channel(processor.get("image_std", 0.5)) if normalise or processor.get("include_top") else None
    mean = per_channel(processor.get("image_mean", 0.5)) if normalise else [0.0] * channels
    divisor = [1.0] * channels if not normalise else list(std or [])
    if processor.get("include_top"):
        divisor = [d * s for d, s in zip(divisor, std or [])]
    offset = 1.0 if rescale and processor.get("rescale_offset") else 0.0
    shift = tuple(offset + m for m in mean)
    resample = PIL_RESAMPLING.get(int(processor.get("resample", 2)), "bilinear")
    return Preprocessing(255.0 * scale, shift if any(shift) or normalise else None,
                         tuple(divisor) if normalise or processor.get("include_top") else None, "NCHW",
                         resample=resample, to_rgb=bool(processor.get("do_convert_rgb", False)),
                         flip_channels=bool(processor.get("do_flip_channel_order", False)), **geometry)


PROCESSOR_FIELDS = ("do_resize", "size", "resample", "do_center_crop", "crop_size", "crop_pct", "do_rescale",
                    "rescale_factor", "rescale_offset", "do_normalize", "image_mean", "image_std", "include_top",
                    "do_convert_rgb", "do_flip_channel_order")


def with_class_defaults(processor: dict[str, Any]) -> dict[str, Any]:
    """The processor's settings with the defaults of the library's class it names (``image_processor_type``)
    for the fields its file leaves out, as the library fills them in (only a class of transformers itself)."""
    name = processor.get("image_processor_type")
    if not (isinstance(name, str) and name.isidentifier()):
        return processor
    try:
        transformers = library()
        cls = getattr(transformers, name, None)
        base = transformers.image_processing_utils.BaseImageProcessor
    except (UserError, ImportError, AttributeError, RuntimeError):  # no such class, or its backend missing
        return processor
    if not (isinstance(cls, type) and issubclass(cls, base)):
        return processor
    defaults = {}
    for field in PROCESSOR_FIELDS:
        value = getattr(cls, field, None)
        if isinstance(value, (bool, int, float, str, list, tuple, dict)) or value is None:
            defaults[field] = list(value) if isinstance(value, tuple) else value
    return {**defaults, **processor}


def card_of(folder: Path, config: dict[str, Any], processor: dict[str, Any], shard_bytes: int) -> ModelCard:
    """The card a folder states: task from config.json, preprocessing from preprocessor_config.json."""
    labels = config.get("id2label") or {}
    num_classes = int(config.get("num_labels", len(labels) or 2))
    classes = tuple(str(labels.get(str(i), labels.get(i, i))) for i in range(num_classes)) if labels else None
    channels = int(config.get("num_channels", 3))
    steps = with_class_defaults(processor)
    try:
        geometry = _geometry(steps)
    except (TypeError, ValueError, ZeroDivisionError, AttributeError) as exc:
        raise UserError(f"{folder / PROCESSOR}: malformed size, crop_size or crop_pct ({exc})") from None
    args = {"config": json.dumps(config, sort_keys=True), "processor": json.dumps(processor, sort_keys=True),
            "shard_bytes": shard_bytes}
    return ModelCard(ARCH, (channels, *_size(config, geometry)), num_classes, args,
                     preprocessing_of(steps, channels, geometry), classes)


class ImageClassifierNet:
    """Wraps a transformers image classifier as a torch module from images to logits (defined lazily, so
    that registering this plugin does not import torch)."""

    @staticmethod
    def wrap(model: Any) -> Any:
        from torch import nn

        class Logits(nn.Module):
            def __init__(self, inner: nn.Module) -> None:
                super().__init__()
                self.model = inner

            def forward(self, x: Any) -> Any:
                return self.model(pixel_values=x).logits

        return Logits(model)


def load(path: Path, registry: Any, source: ModelSource, task: ModelCard | None) -> Any:
    """The folder's model through ``AutoModelForImageClassification.from_pretrained``, local files only."""
    from wmtool.api import Classifier

    folder = snapshot(path)
    config = read_json(folder / CONFIG)
    check_image_classifier(config, path)
    files = weight_files(folder)
    processor = read_json(folder / PROCESSOR) if (folder / PROCESSOR).is_file() else {}
    weights = shards(files)
    card = card_of(folder, config, processor, max(f.stat().st_size for f in weights) if len(weights) > 1 else 0)
    transformers = library()
    if config.get("model_type") not in transformers.CONFIG_MAPPING:
        raise UserError(f"{path}: config.json's model_type {config.get('model_type')!r} is not one transformers "
                        "has; wmtool never imports a folder's own code (auto_map, trust_remote_code)")
    check_output_count(path, config, files)
    with staged({CONFIG: inside(folder, CONFIG, str(path)), **files}) as checked:
        try:
            model = transformers.AutoModelForImageClassification.from_pretrained(
                str(checked), local_files_only=True, use_safetensors=True, trust_remote_code=False)
        except Exception as exc:  # the library on a hostile folder: any failure is one line
            raise UserError(f"{path}: transformers cannot load this folder ({type(exc).__name__}: "
                            f"{(str(exc).splitlines() or [''])[0][:300]})") from None
    return Classifier(ImageClassifierNet.wrap(model.float()), card)


def check_output_count(path: Path, config: dict[str, Any], files: dict[str, Path]) -> None:
    """Refuse a config whose class count no classifier tensor of the weights has (read from the headers:
    a 2-D tensor named ``…classifier….weight`` or ``…head….weight``)."""
    labels = config.get("id2label")
    count = len(labels) if isinstance(labels, (dict, list)) else int(config.get("num_labels", 2))
    heads = {name: info["shape"] for file in shards(files) for name, info in read_header(file)[0].items()
             if name.endswith(".weight") and len(info["shape"]) == 2 and ("classifier" in name or "head" in name)}
    if heads and all(shape[0] != count for shape in heads.values()):
        name, shape = sorted(heads.items())[-1]
        raise UserError(f"{path}: config.json states {count} classes, but the weights' classifier {name} has "
                        f"{shape[0]} outputs")


def build(input_shape: tuple[int, ...], num_classes: int, config: str = "{}", processor: str = "{}",
          shard_bytes: int = 0) -> Any:
    """A fresh transformers image classifier of the stored config (weights: the library's initialisation)."""
    transformers = library()
    settings = json.loads(config)
    model_type = settings.pop("model_type", None)
    if model_type is None:
        raise UserError("architecture transformers needs the folder's config.json (give the folder instead)")
    settings.pop("transformers_version", None)
    made = transformers.AutoConfig.for_model(model_type, **settings)
    return ImageClassifierNet.wrap(transformers.AutoModelForImageClassification.from_config(made))


def save(model: Any, folder: Path, registry: Any) -> None:
    """The model as a transformers folder: ``save_pretrained``, the processor config, the card."""
    card = model.card
    if card.arch != ARCH:
        raise UserError(f"a transformers folder holds a transformers model, not architecture {card.arch}")
    inner = model.net.model
    shard = int(card.arch_args.get("shard_bytes") or 0)
    inner.save_pretrained(str(folder), max_shard_size=shard if shard else "50GB")
    processor = json.loads(card.arch_args.get("processor") or "{}")
    if processor:
        (folder / PROCESSOR).write_text(json.dumps(processor, indent=2, sort_keys=True) + "\n")
    for file in shards(weight_files(folder)):
        add_metadata(file, {"format": "pt", METADATA_KEY: json.dumps(card.to_json())})


def describe(path: Path) -> dict[str, Any]:
    """Config, processor and the tensors of every shard, read from their headers."""
    folder = snapshot(path)
    config = read_json(folder / CONFIG)
    files = shards(weight_files(folder))
    tensors: dict[str, Any] = {}
    for file in files:
        tensors.update(read_header(file)[0])
    name = str((config.get("architectures") or ["?"])[0])
    processor = read_json(folder / PROCESSOR) if (folder / PROCESSOR).is_file() else {}
    notes = [f"transformers {name} ({config.get('model_type')}), {len(files)} weight file(s)"]
    try:
        check_image_classifier(config, path)
        card = card_of(folder, config, processor, 0).to_json()
        card["arch_args"] = {"architectures": name}
    except UserError as refusal:
        card, notes = None, [*notes, str(refusal)]
    return {"format": "transformers", "tensors": tensors, "card": card, "notes": notes}


@hookimpl
def register_model_formats(register):
    """Register the ``transformers`` folder format."""
    register(ModelFormat("transformers", "a Hugging Face transformers folder (config.json + safetensors, sharded "
                         "or not; a cache folder too), image classifiers", (), load, describe, save,
                         recognises=recognises, folder_of=ARCH))


@hookimpl
def register_architectures(register):
    """Register ``transformers``: an image classifier built by transformers from a stored config."""
    register(Architecture(ARCH, "a transformers image classifier, built by the library from its config.json",
                          build, (Option("config", str, "{}", "config.json, as JSON (written by wmtool)"),
                                  Option("processor", str, "{}", "preprocessor_config.json, as JSON"),
                                  Option("shard_bytes", int, 0, "largest shard of the input folder (0: one file)",
                                         min=0))))
