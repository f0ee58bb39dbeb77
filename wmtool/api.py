"""The plugin API: everything a wmtool plugin may import and rely on, in one module.

A plugin module implements one or more hooks of :mod:`wmtool.hookspecs` with :data:`hookimpl` and
registers :class:`Embedder`, :class:`Attack`, :class:`Verifier` or :class:`Architecture` objects.
Names not exported here are internal and may change without notice. A plugin module may declare
``WMTOOL_API_VERSION = 1``; wmtool refuses (with one warning line) a plugin declaring another version.
"""

from wmtool import hookimpl
from wmtool.api_version import API_VERSION
from wmtool.data import Dataset, load_dataset, split_validation
from wmtool.errors import UserError
from wmtool.jobs import AttackJob, AttackOutcome, EmbedJob, EmbedOutcome, Evidence, Predictor, VerifyJob
from wmtool.keys import Key, NullRate, Task
from wmtool.model_card import ModelCard
from wmtool.models import Classifier, build_model, fresh_model_for
from wmtool.options import Option, json_object, resolve
from wmtool.parameters import (PENALTY_OPTIONS, bit_positions, bits_outcome, choose_bits, clean_training, find_tensor,
                               largest_weight, named_parameter, parameter_arrays, regenerate_bits,
                               train_with_penalty)
from wmtool.preprocessing import Preprocessing
from wmtool.progress import Progress
from wmtool.registry import Architecture, Attack, Embedder, Verifier
from wmtool.representations import capture, snnl
from wmtool.training import accuracy, batches, cross_entropy, fit, fit_supervised
from wmtool.watermarks import (CARRIERS, POSITIONS, carrier_images, default_trigger_size, interleaved_batches,
                               pick_class, reference_null_rate, stamp, trigger_corner)

__all__ = [
    "API_VERSION", "CARRIERS", "PENALTY_OPTIONS", "bit_positions", "bits_outcome", "clean_training", "regenerate_bits", "choose_bits", "carrier_images", "find_tensor",
    "largest_weight", "named_parameter", "parameter_arrays", "train_with_penalty", "Architecture", "Attack", "AttackJob", "AttackOutcome", "Classifier", "Dataset", "EmbedJob",
    "EmbedOutcome", "Embedder", "Evidence", "Key", "ModelCard", "NullRate", "Option", "POSITIONS", "Predictor",
    "Preprocessing", "Progress", "Task", "UserError", "Verifier", "VerifyJob", "accuracy", "batches",
    "build_model", "capture", "cross_entropy", "fresh_model_for", "default_trigger_size", "fit", "fit_supervised", "hookimpl",
    "interleaved_batches", "json_object", "load_dataset", "pick_class", "reference_null_rate", "resolve", "snnl", "split_validation", "stamp",
    "trigger_corner",
]
