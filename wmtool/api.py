"""The plugin API: everything a wmtool plugin may import and rely on, in one module.

A plugin module implements one or more hooks of :mod:`wmtool.hookspecs` with :data:`hookimpl` and
registers :class:`Embedder`, :class:`Fingerprinter`, :class:`Attack`, :class:`Verifier`, :class:`Architecture` or
:class:`ModelFormat` objects. Names not exported here are internal and may change without notice. A
plugin module may declare ``WMTOOL_API_VERSION = 1``; wmtool refuses (with one warning line) a plugin
declaring another version.

Names are resolved when first used, so a plugin that imports only what registration needs (the
dataclasses, :class:`Option`, :data:`hookimpl`) loads without torch; torch comes with the names that
compute (``fit``, ``Classifier``, ...).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from wmtool import hookimpl
from wmtool.api_version import API_VERSION
from wmtool.errors import UserError
from wmtool.options import Option, json_object, resolve
from wmtool.registry import Architecture, Attack, Embedder, Fingerprinter, ModelFormat, Verifier

if TYPE_CHECKING:  # the lazily resolved names, for type checkers and import-linter
    from wmtool.alignment import align, unit_activations
    from wmtool.atomic import write_atomic
    from wmtool.classifier import Classifier
    from wmtool.data import Dataset, load_dataset, split_validation
    from wmtool.folders import inside, read_config, staged
    from wmtool.jobs import (AttackJob, AttackOutcome, EmbedJob, EmbedOutcome, Evidence, FingerprintJob,
                             FingerprintOutcome, Predictor, VerifyJob)
    from wmtool.keys import Key, NullRate, Task, load_key
    from wmtool.model_card import MAX_CLASSES, METADATA_KEY, ModelCard
    from wmtool.models import ModelSource, build_model, fresh_model_for, load_weights, state_shapes
    from wmtool.parameters import (PENALTY_OPTIONS, bit_positions, bits_outcome, choose_bits, clean_training,
                                   find_tensor, largest_weight, named_parameter, parameter_arrays, regenerate_bits,
                                   train_with_penalty)
    from wmtool.preprocessing import MAX_SIDE, PIL_RESAMPLING, RESAMPLING, Preprocessing
    from wmtool.progress import Progress
    from wmtool.representations import capture, snnl
    from wmtool.training import accuracy, batches, cross_entropy, fit, fit_supervised
    from wmtool.user_code import spec_from_config
    from wmtool.watermarks import (CARRIERS, POSITIONS, carrier_images, default_trigger_size, interleaved_batches,
                                   pick_class, reference_null_rate, stamp, trigger_corner)

_LAZY: dict[str, tuple[str, ...]] = {
    "alignment": ("align", "unit_activations"),
    "atomic": ("write_atomic",),
    "classifier": ("Classifier",),
    "data": ("Dataset", "load_dataset", "split_validation"),
    "folders": ("inside", "read_config", "staged"),
    "jobs": ("AttackJob", "AttackOutcome", "EmbedJob", "EmbedOutcome", "Evidence", "FingerprintJob",
             "FingerprintOutcome", "Predictor", "VerifyJob"),
    "keys": ("Key", "NullRate", "Task", "load_key"),
    "model_card": ("MAX_CLASSES", "METADATA_KEY", "ModelCard"),
    "models": ("ModelSource", "build_model", "fresh_model_for", "load_weights", "state_shapes"),
    "parameters": ("PENALTY_OPTIONS", "bit_positions", "bits_outcome", "choose_bits", "clean_training",
                   "find_tensor", "largest_weight", "named_parameter", "parameter_arrays", "regenerate_bits",
                   "train_with_penalty"),
    "preprocessing": ("MAX_SIDE", "PIL_RESAMPLING", "Preprocessing", "RESAMPLING"),
    "progress": ("Progress",),
    "representations": ("capture", "snnl"),
    "training": ("accuracy", "batches", "cross_entropy", "fit", "fit_supervised"),
    "user_code": ("spec_from_config",),
    "watermarks": ("CARRIERS", "POSITIONS", "carrier_images", "default_trigger_size", "interleaved_batches",
                   "pick_class", "reference_null_rate", "stamp", "trigger_corner"),
}
_MODULE_OF = {name: module for module, names in _LAZY.items() for name in names}

__all__ = sorted(["API_VERSION", "Architecture", "Attack", "Embedder", "Fingerprinter", "ModelFormat", "Option", "UserError",
                  "Verifier", "hookimpl", "json_object", "resolve", *_MODULE_OF])


def __getattr__(name: str) -> Any:
    """Import the module behind a lazily exported name on first use."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'wmtool.api' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"wmtool.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
