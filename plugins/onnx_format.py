"""Model format ``onnx``: ONNX files read with clear errors, queried black-box through onnxruntime,
converted to torch ops for training (architecture ``onnx``), and written back with wmtool's card."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from wmtool.api import (
    METADATA_KEY,
    Architecture,
    ModelCard,
    ModelFormat,
    ModelSource,
    Option,
    Preprocessing,
    UserError,
    hookimpl,
)

WMTOOL_API_VERSION = 1

EXPORT_OPSET = 17
PREPARE_BLOCK = 512
MAX_ONNX_BYTES = 2 * 2**30
PREPACK_LIMIT = 256 * 2**20  # above this, onnxruntime keeps no second, pre-packed copy of the weights


def read_onnx(path: str | Path) -> Any:
    """Parse and check an ONNX file, weights included — also weights stored beside it as external data (as
    torch's dynamo exporter writes them, ``model.onnx.data``), which onnx reads only from the model's own
    folder; a corrupt or non-ONNX file raises one :class:`UserError`."""
    import onnx

    model, _ = _checked(path, lambda p: (onnx.load(str(p)), None), onnx.checker.check_model)
    return model


def read_onnx_graph(path: str | Path) -> tuple[Any, bytes]:
    """Parse and check an ONNX file without loading its weights (see :mod:`wmtool_plugins.onnx_wire`): the model,
    whose initializers keep name, dtype and shape, and its serialized form for :class:`OnnxPredictor`."""
    import onnx
    from wmtool_plugins.onnx_wire import weightless_bytes

    def parse(p: Path) -> tuple[Any, bytes]:
        data = weightless_bytes(p)
        return onnx.ModelProto.FromString(data), data

    return _checked(path, parse, lambda model: onnx.checker.check_model(_structure(model)))


def _checked(path: str | Path, parse: Callable[[Path], tuple[Any, Any]], check: Callable[[Any], None]
             ) -> tuple[Any, Any]:
    """``parse(path)`` → (model, extra), refused in one line when the file is too large, does not parse,
    fails ``check`` or has no output."""
    path = Path(path)
    if path.stat().st_size > MAX_ONNX_BYTES:
        raise UserError(f"{path}: larger than 2 GiB; wmtool reads single-file ONNX models only")
    try:
        model, extra = parse(path)
        check(model)
    except Exception as exc:  # WireError, protobuf's DecodeError, onnx's ValidationError and others
        raise UserError(f"{path}: not a valid ONNX model ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
                        ) from None
    if not model.graph.output:
        raise UserError(f"{path}: the ONNX graph has no output")
    return model, extra


def _structure(model: Any) -> Any:
    """A copy of a weightless model for ``onnx.checker``: each initializer's data length checked against its
    shape, then the initializer declared as a graph input of that type instead (the checker would
    otherwise read every weight)."""
    import math

    import onnx
    from onnx import helper

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    declared = {value.name for value in copy.graph.input}
    for tensor in copy.graph.initializer:
        stored = {entry.key: entry.value for entry in tensor.external_data}
        if "length" in stored and tensor.data_type != onnx.TensorProto.STRING:
            expected = math.prod(tensor.dims) * helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
            if int(stored["length"]) != expected:
                raise ValueError(f"initializer {tensor.name} holds {stored['length']} bytes, its shape "
                                 f"{list(tensor.dims)} needs {expected}")
        if tensor.name not in declared:
            copy.graph.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, tensor.dims))
    del copy.graph.initializer[:]
    return copy


def _dims(value_info: Any) -> list[int | None]:
    return [d.dim_value if d.HasField("dim_value") else None for d in value_info.type.tensor_type.shape.dim]


def graph_input(model: Any) -> Any:
    """The graph's data input (the first input that is not an initializer)."""
    initialized = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initialized]
    if len(inputs) != 1:
        raise UserError(f"the ONNX graph has {len(inputs)} data inputs; wmtool handles classifiers with one")
    return inputs[0]


def card_of(model: Any, path: str | Path, *, preprocessing: Preprocessing | None = None,
            task: ModelCard | None = None) -> ModelCard:
    """The model's card: wmtool's metadata if present, else read off the graph.

    ``preprocessing`` (the user's flags) overrides what is stored; without either, a key's or
    dataset's ``task`` supplies it, else none (identity).
    """
    stored = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY in stored:
        card = ModelCard.from_json(stored[METADATA_KEY], str(path))
    else:
        prep = preprocessing or (task.preprocessing if task is not None else Preprocessing())
        dims = _dims(graph_input(model))
        if len(dims) < 2:
            raise UserError(f"{path}: the ONNX input has shape {dims}; expected a batch of images")
        shape = dims[1:]
        if prep.layout == "NHWC" and len(shape) == 3:
            shape = [shape[2], shape[0], shape[1]]
        if any(v is None for v in shape):
            if task is None:
                raise UserError(f"{path}: the ONNX input shape {dims} has free dimensions; give --data")
            shape = list(task.input_shape)
        outputs = _dims(model.graph.output[0])
        classes = outputs[-1] if outputs and outputs[-1] else (task.num_classes if task else None)
        if not classes or classes < 2:
            raise UserError(f"{path}: cannot tell the number of classes from the output shape {outputs}")
        card = ModelCard("onnx", tuple(shape), int(classes), preprocessing=prep,
                         classes=task.classes if task is not None and task.num_classes == classes else None)
    if preprocessing is not None:
        card = dataclasses.replace(card, preprocessing=preprocessing)
    return card


def providers_for(device: str) -> list[str]:
    """onnxruntime execution providers for ``--device`` (auto: CUDA when onnxruntime-gpu sees a GPU)."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    if device in ("cuda", "auto") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise UserError("--device cuda: onnxruntime has no CUDA provider (install wmtool[gpu], i.e. onnxruntime-gpu)")
    return ["CPUExecutionProvider"]


class OnnxPredictor:
    """A black-box ONNX classifier: canonical images in, logits out, through onnxruntime."""

    def __init__(self, path: str | Path, model: Any, card: ModelCard, device: str = "cpu", batch_size: int = 512,
                 serialized: bytes | None = None):
        """``model`` as parsed; ``serialized``, when given, is its weightless form from :func:`read_onnx_graph`
        (onnxruntime then reads the weights from ``path`` itself)."""
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        if serialized is not None:
            options.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                             str(Path(path).resolve().parent))
            if Path(path).stat().st_size > PREPACK_LIMIT:
                options.add_session_config_entry("session.disable_prepacking", "1")
        try:
            self.session = onnxruntime.InferenceSession(serialized or model.SerializeToString(), options,
                                                        providers=providers_for(device))
        except UserError:
            raise
        except Exception as exc:
            raise UserError(f"{path}: onnxruntime cannot run this model ({str(exc).splitlines()[0][:200]})") from None
        self.path, self.card, self.proto = Path(path), card, model
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        self.output_name = self.session.get_outputs()[0].name
        self.batch_size = 1 if first.shape and first.shape[0] == 1 else min(batch_size, PREPARE_BLOCK)
        self.outputs_probabilities: bool | None = None

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self.card.preprocessing.apply(np.asarray(x, dtype=np.float32)))

    def predict_logits(self, x: np.ndarray) -> np.ndarray:
        """Logits (log-probabilities when the model outputs probabilities) for canonical images."""
        expected = tuple(self.card.input_shape)
        if not self.card.preprocessing.accepts(tuple(x.shape[1:]), expected):
            raise UserError(f"{self.path}: the model takes inputs of shape {expected}, the data has {x.shape[1:]}")
        if len(x) == 0:
            return np.zeros((0, self.card.num_classes), dtype=np.float32)
        run, names, feed_name = self.session.run, [self.output_name], self.input_name
        outputs = []
        for start in range(0, len(x), PREPARE_BLOCK):
            block = self._prepare(x[start:start + PREPARE_BLOCK])
            outputs += [run(names, {feed_name: block[i:i + self.batch_size]})[0]
                        for i in range(0, len(block), self.batch_size)]
        scores = np.concatenate(outputs).reshape(len(x), -1).astype(np.float32, copy=False)
        if self.outputs_probabilities is None:
            self.outputs_probabilities = bool(scores.min() >= 0 and np.allclose(scores.sum(axis=1), 1, atol=1e-3))
        return np.log(np.clip(scores, 1e-30, None)) if self.outputs_probabilities else scores

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted class indices for canonical images."""
        return self.predict_logits(x).argmax(axis=1)

    def parameter_arrays(self) -> dict[str, np.ndarray]:
        """The graph's initializers as numpy arrays (a weightless graph's are read from its folder)."""
        from onnx import numpy_helper

        folder = str(self.path.resolve().parent)
        return {t.name: numpy_helper.to_array(t, folder) for t in self.proto.graph.initializer}


def to_onnx_bytes(model: Any) -> bytes:
    """A :class:`~wmtool.models.Classifier` as one ONNX file (opset ≥ 17, dynamic batch), card in metadata."""
    import onnx
    import torch
    from wmtool_plugins.onnx_graph import OnnxModule

    net = model.net
    if isinstance(net, OnnxModule):
        proto = net.to_onnx()
    else:
        import io

        buffer = io.BytesIO()
        was_training = net.training
        net.eval()
        dummy = torch.zeros(2, *model.card.input_shape, device=next(net.parameters()).device)
        dummy = model.card.preprocessing.apply(dummy)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (dummy,), buffer, opset_version=EXPORT_OPSET, dynamo=False,
                              input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        net.train(was_training)
        proto = onnx.load_from_string(buffer.getvalue())
    del proto.metadata_props[:]
    card = model.card
    if card.arch == "onnx":
        card = dataclasses.replace(card, arch_args={})
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(card.to_json())
    return proto.SerializeToString()


def load(path: Path, registry: Any, source: ModelSource, task: ModelCard | None) -> Any:
    """The graph as a trainable torch module (architecture ``onnx``, the weightless graph in its arguments)."""
    from wmtool_plugins.onnx_graph import OnnxModule, graph_without_weights

    from wmtool.api import Classifier

    proto = read_onnx(path)
    card = card_of(proto, path, preprocessing=source.preprocessing, task=task)
    card = dataclasses.replace(card, arch="onnx", arch_args={"graph": graph_without_weights(proto)})
    return Classifier(OnnxModule(proto), card)


def predictor(path: Path, registry: Any, source: ModelSource, task: ModelCard | None, device: str) -> OnnxPredictor:
    """The model queried through onnxruntime, its weights read once by onnxruntime itself."""
    proto, serialized = read_onnx_graph(path)
    return OnnxPredictor(path, proto, card_of(proto, path, preprocessing=source.preprocessing, task=task), device,
                         serialized=serialized)


def save(model: Any, path: Path, registry: Any) -> bytes:
    """The model as ONNX bytes."""
    return to_onnx_bytes(model)


def _shape(info: Any) -> list[Any]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in info.type.tensor_type.shape.dim]


def describe(path: Path) -> dict[str, Any]:
    """Opset, input, outputs, ops, initializers and card, read without the weights."""
    from onnx import helper

    model, _ = read_onnx_graph(path)
    stored = {p.key: p.value for p in model.metadata_props}
    card = ModelCard.from_json(stored[METADATA_KEY], str(path)).to_json() if METADATA_KEY in stored else None
    if card and card["arch"] == "onnx":
        card["arch_args"] = {}  # the stored graph itself is not for reading
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    data_input = {"name": graph_input(model).name, "shape": _shape(graph_input(model))}
    outputs = [{"name": o.name, "shape": _shape(o)} for o in model.graph.output]
    ops = sorted({node.op_type for node in model.graph.node})
    notes = [f"opset {opset}; input {data_input['name']} {data_input['shape']}; outputs "
             + ", ".join(f"{o['name']} {o['shape']}" for o in outputs), "ops: " + ", ".join(ops)]
    if card is None:
        notes.append("no wmtool metadata: state the preprocessing (--input-range, --mean, --std, --layout) on the "
                     "commands")
    return {"format": "onnx", "opset": opset, "input": data_input, "outputs": outputs, "ops": ops,
            "tensors": {t.name: {"dtype": helper.tensor_dtype_to_np_dtype(t.data_type).name, "shape": list(t.dims)}
                        for t in model.graph.initializer},
            "card": card, "notes": notes}


def _graph_module(input_shape: tuple[int, ...], num_classes: int, graph: str | None = None) -> Any:
    """The torch module of a stored ONNX graph."""
    from wmtool_plugins.onnx_graph import module_from_graph

    if not graph:
        raise UserError("architecture onnx is built from an ONNX file; give the .onnx file instead")
    return module_from_graph(graph)


@hookimpl
def register_model_formats(register):
    """Register the ``onnx`` format."""
    register(ModelFormat("onnx", "an .onnx file: queried through onnxruntime, trained as torch ops",
                         (".onnx",), load, describe, save, predictor=predictor))


@hookimpl
def register_architectures(register):
    """Register ``onnx``, the architecture of a graph imported from an ONNX file."""
    register(Architecture(
        "onnx", "a graph imported from an ONNX file, run with torch ops (built by wmtool from the file)",
        _graph_module,
        options=(Option("graph", str, None, "the ONNX graph, weights zeroed, zlib+base64 (written by wmtool)"),),
        from_file=True,
    ))
