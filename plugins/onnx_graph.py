"""ONNX → trainable torch module: a graph module that runs the ONNX nodes with torch ops.

Every floating-point initializer becomes a trainable parameter, so a third-party ONNX classifier
can be fine-tuned and watermarked. Opsets 8–20 of the ops that convolutional classifiers and
transformer exports (ViT, DeiT, ConvNeXt, Swin, BERT-style; torch's TorchScript and dynamo exporters)
use are covered; a model with other ops is refused in one line naming every missing op.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wmtool.api import UserError

Op = Callable[["Node", list[Any]], list[Any]]
_OPS: dict[str, Op] = {}


class Node:
    """One ONNX node with its attributes decoded to Python values."""

    def __init__(self, proto: Any, opset: int):
        from onnx import helper

        self.op = proto.op_type
        self.name = proto.name or f"{proto.op_type}({', '.join(proto.output)})"
        self.inputs = list(proto.input)
        self.outputs = list(proto.output)
        self.opset = opset
        self.attrs = {a.name: helper.get_attribute_value(a) for a in proto.attribute}

    def attr(self, name: str, default: Any = None) -> Any:
        """An attribute, with bytes decoded to str."""
        value = self.attrs.get(name, default)
        return value.decode() if isinstance(value, bytes) else value


def op(*names: str) -> Callable[[Op], Op]:
    """Register the torch implementation of ONNX op types."""
    def wrap(function: Op) -> Op:
        for name in names:
            _OPS[name] = function
        return function
    return wrap


SUPPORTED_OPS = _OPS  # filled below; read-only outside this module


def _ints(tensor: Any) -> list[int]:
    return [int(v) for v in (tensor.tolist() if isinstance(tensor, torch.Tensor) else tensor)]


def _tensor(proto: Any) -> torch.Tensor:
    from onnx import numpy_helper

    return torch.from_numpy(np.array(numpy_helper.to_array(proto)))


def _spatial_padding(node: Node, x: torch.Tensor, kernel: list[int], strides: list[int], dilations: list[int]
                     ) -> list[int]:
    """ONNX pads [begin..., end...] after resolving auto_pad."""
    dims = len(kernel)
    auto = node.attr("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads_begin, pads_end = [], []
        for i in range(dims):
            size = x.shape[2 + i]
            out = math.ceil(size / strides[i])
            total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - size)
            small, large = total // 2, total - total // 2
            pads_begin.append(small if auto == "SAME_UPPER" else large)
            pads_end.append(large if auto == "SAME_UPPER" else small)
        return pads_begin + pads_end
    if auto == "VALID":
        return [0] * (2 * dims)
    return list(node.attr("pads", [0] * (2 * dims)))


def _torch_pad(pads: list[int]) -> list[int]:
    """ONNX [b1, b2, e1, e2] → F.pad's last-dimension-first [b2, e2, b1, e1]."""
    dims = len(pads) // 2
    out: list[int] = []
    for i in reversed(range(dims)):
        out += [pads[i], pads[i + dims]]
    return out


@op("Conv")
def _conv(node: Node, args: list[Any]) -> list[Any]:
    x, weight = args[0], args[1]
    bias = args[2] if len(args) > 2 else None
    kernel = list(node.attr("kernel_shape", weight.shape[2:]))
    dims = len(kernel)
    strides = list(node.attr("strides", [1] * dims))
    dilations = list(node.attr("dilations", [1] * dims))
    pads = _spatial_padding(node, x, kernel, strides, dilations)
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[dims]
    if pads[:dims] == pads[dims:]:
        return [conv(x, weight, bias, strides, pads[:dims], dilations, node.attr("group", 1))]
    return [conv(F.pad(x, _torch_pad(pads)), weight, bias, strides, 0, dilations, node.attr("group", 1))]


@op("ConvTranspose")
def _conv_transpose(node: Node, args: list[Any]) -> list[Any]:
    x, weight = args[0], args[1]
    bias = args[2] if len(args) > 2 else None
    dims = weight.dim() - 2
    pads = list(node.attr("pads", [0] * (2 * dims)))
    if pads[:dims] != pads[dims:] or node.attr("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise UserError(f"ConvTranspose node {node.name}: asymmetric or automatic padding is not supported")
    function = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[dims]
    return [function(x, weight, bias, list(node.attr("strides", [1] * dims)), pads[:dims],
                     list(node.attr("output_padding", [0] * dims)), node.attr("group", 1),
                     list(node.attr("dilations", [1] * dims)))]


@op("Gemm")
def _gemm(node: Node, args: list[Any]) -> list[Any]:
    a, b = args[0], args[1]
    c = args[2] if len(args) > 2 else None
    alpha, beta = node.attr("alpha", 1.0), node.attr("beta", 1.0)
    if node.attr("transA", 0):
        a = a.transpose(0, 1)
    if alpha == 1.0 and beta == 1.0 and node.attr("transB", 0) and (c is None or c.dim() <= 1):
        return [F.linear(a, b, c)]  # the common exported case, one fused kernel
    if node.attr("transB", 0):
        b = b.transpose(0, 1)
    y = alpha * (a @ b) if alpha != 1.0 else a @ b
    if c is not None:
        y = y + (beta * c if beta != 1.0 else c)
    return [y]


op("MatMul")(lambda node, args: [torch.matmul(args[0], args[1])])
op("Add")(lambda node, args: [args[0] + args[1]])
op("Sub")(lambda node, args: [args[0] - args[1]])
op("Mul")(lambda node, args: [args[0] * args[1]])
op("Div")(lambda node, args: [args[0] / args[1] if args[0].is_floating_point() else
                              torch.div(args[0], args[1], rounding_mode="trunc")])
op("Relu")(lambda node, args: [torch.relu(args[0])])
op("LeakyRelu")(lambda node, args: [F.leaky_relu(args[0], node.attr("alpha", 0.01))])
op("Sigmoid")(lambda node, args: [torch.sigmoid(args[0])])
op("Tanh")(lambda node, args: [torch.tanh(args[0])])
op("Identity")(lambda node, args: [args[0]])
op("Dropout")(lambda node, args: [args[0], torch.ones_like(args[0], dtype=torch.bool)][:len(node.outputs)])
op("GlobalAveragePool")(lambda node, args: [args[0].mean(dim=tuple(range(2, args[0].dim())), keepdim=True)])
op("Concat")(lambda node, args: [torch.cat([a for a in args if a is not None], dim=node.attr("axis"))])


@op("Softmax", "LogSoftmax")
def _softmax(node: Node, args: list[Any]) -> list[Any]:
    x = args[0]
    function = torch.softmax if node.op == "Softmax" else torch.log_softmax
    if node.opset >= 13:
        return [function(x, dim=node.attr("axis", -1))]
    axis = node.attr("axis", 1) % x.dim()
    flat = x.reshape(int(np.prod(x.shape[:axis])), -1)
    return [function(flat, dim=1).reshape(x.shape)]


def _pool_args(node: Node, x: torch.Tensor) -> tuple[list[int], list[int], list[int]]:
    kernel = list(node.attr("kernel_shape"))
    dims = len(kernel)
    strides = list(node.attr("strides", [1] * dims))
    pads = _spatial_padding(node, x, kernel, strides, list(node.attr("dilations", [1] * dims)))
    return kernel, strides, pads


@op("MaxPool")
def _max_pool(node: Node, args: list[Any]) -> list[Any]:
    x = args[0]
    kernel, strides, pads = _pool_args(node, x)
    dims = len(kernel)
    pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[dims]
    dilations = list(node.attr("dilations", [1] * dims))
    ceil = bool(node.attr("ceil_mode", 0))
    if pads[:dims] == pads[dims:] and all(p <= k // 2 for p, k in zip(pads[:dims], kernel)):
        return [pool(x, kernel, strides, pads[:dims], dilations, ceil_mode=ceil)]
    return [pool(F.pad(x, _torch_pad(pads), value=float("-inf")), kernel, strides, 0, dilations, ceil_mode=ceil)]


@op("AveragePool")
def _average_pool(node: Node, args: list[Any]) -> list[Any]:
    x = args[0]
    kernel, strides, pads = _pool_args(node, x)
    dims = len(kernel)
    pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[dims]
    include = bool(node.attr("count_include_pad", 0))
    ceil = bool(node.attr("ceil_mode", 0))
    if pads[:dims] == pads[dims:] and all(p <= k // 2 for p, k in zip(pads[:dims], kernel)):
        return [pool(x, kernel, strides, pads[:dims], ceil_mode=ceil, count_include_pad=include)]
    if not include and any(pads):
        raise UserError(f"AveragePool node {node.name}: asymmetric padding without count_include_pad is not supported")
    return [pool(F.pad(x, _torch_pad(pads)), kernel, strides, 0, ceil_mode=ceil)]


@op("Flatten")
def _flatten(node: Node, args: list[Any]) -> list[Any]:
    x = args[0]
    axis = node.attr("axis", 1) % (x.dim() + 1) if x.dim() else 0
    return [x.reshape(int(np.prod(x.shape[:axis])), -1)]


@op("Reshape")
def _reshape(node: Node, args: list[Any]) -> list[Any]:
    x = args[0]
    shape = _ints(args[1]) if len(args) > 1 else list(node.attr("shape"))
    if not node.attr("allowzero", 0):
        shape = [x.shape[i] if v == 0 else v for i, v in enumerate(shape)]
    return [x.reshape(shape)]


@op("Transpose")
def _transpose(node: Node, args: list[Any]) -> list[Any]:
    x = args[0]
    return [x.permute(list(node.attr("perm", list(reversed(range(x.dim()))))))]


@op("BatchNormalization")
def _batch_norm(node: Node, args: list[Any]) -> list[Any]:
    x, scale, bias, mean, var = args[:5]
    shape = [1, -1] + [1] * (x.dim() - 2)
    normalised = (x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + node.attr("epsilon", 1e-5))
    return [normalised * scale.reshape(shape) + bias.reshape(shape)]


@op("Constant")
def _constant(node: Node, args: list[Any]) -> list[Any]:
    if "value" in node.attrs:
        return [_tensor(node.attrs["value"])]
    for name, dtype in (("value_float", torch.float32), ("value_floats", torch.float32),
                        ("value_int", torch.int64), ("value_ints", torch.int64)):
        if name in node.attrs:
            return [torch.tensor(node.attrs[name], dtype=dtype)]
    raise UserError(f"Constant node {node.name}: unsupported value kind {sorted(node.attrs)}")


@op("Shape")
def _shape(node: Node, args: list[Any]) -> list[Any]:
    shape = torch.tensor(list(args[0].shape), dtype=torch.int64)
    start, end = node.attr("start", 0), node.attr("end", None)
    return [shape[start:end]]


@op("Gather")
def _gather(node: Node, args: list[Any]) -> list[Any]:
    data, indices = args[0], args[1].long()
    axis = node.attr("axis", 0) % data.dim()
    flat = indices.reshape(-1) % data.shape[axis]
    picked = torch.index_select(data, axis, flat.to(data.device))
    return [picked.reshape(list(data.shape[:axis]) + list(indices.shape) + list(data.shape[axis + 1:]))]


def _axes(node: Node, args: list[Any]) -> list[int] | None:
    if node.opset >= 13 and len(args) > 1 and args[1] is not None:
        return _ints(args[1])
    axes = node.attr("axes")
    return list(axes) if axes is not None else None


@op("Unsqueeze")
def _unsqueeze(node: Node, args: list[Any]) -> list[Any]:
    x = args[0]
    axes = sorted(a % (x.dim() + len(_axes(node, args))) for a in _axes(node, args))
    for axis in axes:
        x = x.unsqueeze(axis)
    return [x]


@op("Squeeze")
def _squeeze(node: Node, args: list[Any]) -> list[Any]:
    x = args[0]
    axes = _axes(node, args)
    if axes is None:
        return [x.squeeze()]
    for axis in sorted((a % x.dim() for a in axes), reverse=True):
        x = x.squeeze(axis)
    return [x]


@op("Pad")
def _pad(node: Node, args: list[Any]) -> list[Any]:
    x = args[0]
    if node.opset >= 11:
        pads = _ints(args[1])
        value = float(args[2].reshape(-1)[0]) if len(args) > 2 and args[2] is not None and args[2].numel() else 0.0
        if len(args) > 3 and args[3] is not None:
            axes = [a % x.dim() for a in _ints(args[3])]
            full = [0] * (2 * x.dim())
            for i, axis in enumerate(axes):
                full[axis], full[axis + x.dim()] = pads[i], pads[i + len(axes)]
            pads = full
    else:
        pads, value = list(node.attr("pads")), float(node.attr("value", 0.0))
    mode = node.attr("mode", "constant")
    torch_mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}.get(mode)
    if torch_mode is None:
        raise UserError(f"Pad node {node.name}: mode {mode!r} is not supported")
    # F.pad pads trailing dimensions; drop leading all-zero pairs for the non-constant modes.
    spec = _torch_pad(pads)
    while torch_mode != "constant" and len(spec) > 2 and spec[-2:] == [0, 0]:
        spec = spec[:-2]
    return [F.pad(x, spec, mode=torch_mode, value=value) if torch_mode == "constant" else F.pad(x, spec, mode=torch_mode)]


@op("Clip")
def _clip(node: Node, args: list[Any]) -> list[Any]:
    if node.opset >= 11:
        low = args[1] if len(args) > 1 and args[1] is not None and args[1].numel() else None
        high = args[2] if len(args) > 2 and args[2] is not None and args[2].numel() else None
    else:
        low, high = node.attr("min"), node.attr("max")
    return [torch.clamp(args[0], min=low, max=high)]


_ONNX_DTYPES = {1: torch.float32, 2: torch.uint8, 3: torch.int8, 5: torch.int16, 6: torch.int32, 7: torch.int64,
                9: torch.bool, 10: torch.float16, 11: torch.float64}


@op("Cast")
def _cast(node: Node, args: list[Any]) -> list[Any]:
    dtype = _ONNX_DTYPES.get(node.attr("to"))
    if dtype is None:
        raise UserError(f"Cast node {node.name}: target type {node.attr('to')} is not supported")
    return [args[0].to(dtype)]


@op("ConstantOfShape")
def _constant_of_shape(node: Node, args: list[Any]) -> list[Any]:
    value = _tensor(node.attrs["value"]) if "value" in node.attrs else torch.zeros(1)
    return [torch.full(_ints(args[0]), value.reshape(-1)[0].item(), dtype=value.dtype, device=args[0].device)]


@op("Slice")
def _slice(node: Node, args: list[Any]) -> list[Any]:
    x = args[0]
    if node.opset >= 10:
        starts, ends = _ints(args[1]), _ints(args[2])
        axes = _ints(args[3]) if len(args) > 3 and args[3] is not None else list(range(len(starts)))
        steps = _ints(args[4]) if len(args) > 4 and args[4] is not None else [1] * len(starts)
    else:
        starts, ends = list(node.attr("starts")), list(node.attr("ends"))
        axes = list(node.attr("axes", range(len(starts))))
        steps = [1] * len(starts)
    index = [slice(None)] * x.dim()
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis %= x.dim()
        size = x.shape[axis]
        start = start + size if start < 0 else start
        end = end + size if end < 0 else end
        if step < 0:
            start, end = min(max(start, -1), size - 1), min(max(end, -1), size - 1)
            x = x.flip(axis)
            start, end, step = size - 1 - start, size - 1 - end, -step
        index[axis] = slice(min(max(start, 0), size), min(max(end, 0), size), step)
    return [x[tuple(index)]]


# Elementwise and comparison ops of transformer exports.
for _name, _function in {"Erf": torch.erf, "Sqrt": torch.sqrt, "Exp": torch.exp, "Log": torch.log, "Neg": torch.neg,
                         "Abs": torch.abs, "Reciprocal": torch.reciprocal, "Floor": torch.floor, "Ceil": torch.ceil,
                         "Sign": torch.sign, "Not": torch.logical_not, "IsNaN": torch.isnan, "Sin": torch.sin,
                         "Cos": torch.cos, "Softplus": F.softplus, "Mish": F.mish}.items():
    op(_name)(lambda node, args, f=_function: [f(args[0])])
for _name, _function in {"Pow": torch.pow, "Equal": torch.eq, "Less": torch.lt, "Greater": torch.gt,
                         "LessOrEqual": torch.le, "GreaterOrEqual": torch.ge, "And": torch.logical_and,
                         "Or": torch.logical_or, "Xor": torch.logical_xor}.items():
    op(_name)(lambda node, args, f=_function: [f(args[0], args[1])])
op("Where")(lambda node, args: [torch.where(args[0].bool(), args[1], args[2])])
op("Max")(lambda node, args: [_fold(torch.maximum, args)])
op("Min")(lambda node, args: [_fold(torch.minimum, args)])
op("Sum")(lambda node, args: [_fold(torch.add, args)])
op("Mod")(lambda node, args: [torch.fmod(args[0], args[1]) if node.attr("fmod", 0) else
                              torch.remainder(args[0], args[1])])
op("Einsum")(lambda node, args: [torch.einsum(node.attr("equation"), *args)])
op("HardSigmoid")(lambda node, args: [torch.clamp(node.attr("alpha", 0.2) * args[0] + node.attr("beta", 0.5), 0, 1)])
op("HardSwish")(lambda node, args: [F.hardswish(args[0])])
op("Elu")(lambda node, args: [F.elu(args[0], node.attr("alpha", 1.0))])


def _fold(function: Callable[[Any, Any], Any], args: list[Any]) -> Any:
    result = args[0]
    for other in args[1:]:
        result = function(result, other)
    return result


@op("Gelu")
def _gelu(node: Node, args: list[Any]) -> list[Any]:
    return [F.gelu(args[0], approximate="tanh" if node.attr("approximate", "none") == "tanh" else "none")]


@op("LayerNormalization")
def _layer_norm(node: Node, args: list[Any]) -> list[Any]:
    x, scale = args[0], args[1]
    bias = args[2] if len(args) > 2 else None
    axis = node.attr("axis", -1) % x.dim()
    y = F.layer_norm(x, tuple(x.shape[axis:]), scale.expand(x.shape[axis:]) if scale.dim() < x.dim() - axis else scale,
                     None if bias is None else bias.expand(x.shape[axis:]), node.attr("epsilon", 1e-5))
    return [y][:max(1, len(node.outputs))] + [None] * (len(node.outputs) - 1)


@op("Expand")
def _expand(node: Node, args: list[Any]) -> list[Any]:
    shape = torch.broadcast_shapes(tuple(args[0].shape), tuple(_ints(args[1])))
    return [args[0].expand(shape)]


@op("Range")
def _range(node: Node, args: list[Any]) -> list[Any]:
    start, limit, delta = (a.reshape(-1)[0] for a in args[:3])
    return [torch.arange(start.item(), limit.item(), delta.item(), dtype=args[0].dtype, device=args[0].device)]


@op("Tile")
def _tile(node: Node, args: list[Any]) -> list[Any]:
    return [args[0].repeat(*_ints(args[1]))]


def _reduce_axes(node: Node, args: list[Any]) -> list[int] | None:
    """A reduction's axes: an input from opset 18 (ReduceSum: 13), an attribute before; None: all."""
    from_input = node.opset >= (13 if node.op == "ReduceSum" else 18)
    axes = (_ints(args[1]) if len(args) > 1 and args[1] is not None and args[1].numel() else None) if from_input \
        else node.attr("axes")
    if axes is None and node.attr("noop_with_empty_axes", 0):
        return []
    return None if axes is None else list(axes)


@op("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2", "ReduceSumSquare")
def _reduce(node: Node, args: list[Any]) -> list[Any]:
    x, axes, keep = args[0], _reduce_axes(node, args), bool(node.attr("keepdims", 1))
    if axes == []:
        return [x]
    dims = tuple(a % x.dim() for a in axes) if axes is not None else tuple(range(x.dim()))
    if node.op == "ReduceMean":
        return [x.mean(dim=dims, keepdim=keep)]
    if node.op == "ReduceSum":
        return [x.sum(dim=dims, keepdim=keep)]
    if node.op == "ReduceSumSquare":
        return [(x * x).sum(dim=dims, keepdim=keep)]
    if node.op == "ReduceL2":
        return [(x * x).sum(dim=dims, keepdim=keep).sqrt()]
    if node.op == "ReduceProd":
        for dim in sorted(dims, reverse=True):
            x = x.prod(dim=dim, keepdim=keep)
        return [x]
    function = torch.amax if node.op == "ReduceMax" else torch.amin
    return [function(x, dim=dims, keepdim=keep)]


@op("Split")
def _split(node: Node, args: list[Any]) -> list[Any]:
    x, axis = args[0], node.attr("axis", 0) % args[0].dim()
    if node.opset >= 13 and len(args) > 1 and args[1] is not None:
        sizes = _ints(args[1])
    elif node.attr("split") is not None:
        sizes = list(node.attr("split"))
    else:
        parts = node.attr("num_outputs", len(node.outputs))
        size = -(-x.shape[axis] // parts)
        sizes = [min(size, x.shape[axis] - i * size) for i in range(parts)]
    return list(torch.split(x, sizes, dim=axis))


@op("Trilu")
def _trilu(node: Node, args: list[Any]) -> list[Any]:
    k = int(args[1].reshape(-1)[0]) if len(args) > 1 and args[1] is not None else 0
    return [torch.triu(args[0], k) if node.attr("upper", 1) else torch.tril(args[0], k)]


@op("CumSum")
def _cumsum(node: Node, args: list[Any]) -> list[Any]:
    x, axis = args[0], int(args[1].reshape(-1)[0])
    if node.attr("reverse", 0):
        x = x.flip(axis)
    y = torch.cumsum(x, axis)
    if node.attr("exclusive", 0):
        y = y - x
    return [y.flip(axis) if node.attr("reverse", 0) else y]


class OnnxModule(nn.Module):
    """Executes an ONNX graph with torch; floating-point initializers are trainable parameters."""

    def __init__(self, model: Any):
        super().__init__()
        self.proto = model
        graph = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
        if not 8 <= self.opset <= 20:
            raise UserError(f"ONNX opset {self.opset} is outside the supported range 8-20")
        self.nodes = [Node(proto, self.opset) for proto in graph.node]
        unsupported: dict[str, str] = {}
        for node in self.nodes:
            if node.op not in _OPS:
                unsupported.setdefault(node.op, node.name)
        if unsupported:
            named = ", ".join(f"{op} (node {name!r})" for op, name in sorted(unsupported.items()))
            raise UserError(f"unsupported ONNX op{'s' if len(unsupported) > 1 else ''} {named}; wmtool converts "
                            f"{len(_OPS)} ops ({', '.join(sorted(_OPS))})")
        self.params = nn.ParameterDict()
        self._names: dict[str, str] = {}
        for index, proto in enumerate(graph.initializer):
            tensor = _tensor(proto)
            key = f"t{index}"
            self._names[proto.name] = key
            if tensor.is_floating_point():
                self.params[key] = nn.Parameter(tensor.float())
            else:
                self.register_buffer(key, tensor)
        self._onnx_names = {key: name for name, key in self._names.items()}
        initialized = set(self._names)
        self.input_name = next(i.name for i in graph.input if i.name not in initialized)
        self.output_name = graph.output[0].name

    def to_onnx(self) -> Any:
        """The original ONNX model with the current parameter values as its initializers."""
        from onnx import numpy_helper

        model = type(self.proto)()
        model.CopyFrom(self.proto)
        for index, proto in enumerate(model.graph.initializer):
            value = self.tensor(proto.name).detach().cpu().numpy()
            proto.CopyFrom(numpy_helper.from_array(value.astype(numpy_helper.to_array(proto).dtype), proto.name))
        return model

    def file_name(self, tensor: str) -> str:
        """The ONNX initializer name of one of this module's tensors (``params.t3`` → the graph's name)."""
        key = tensor.removeprefix("params.")
        return self._onnx_names.get(key, tensor)

    def tensor(self, name: str) -> torch.Tensor:
        """An initializer by its ONNX name."""
        key = self._names[name]
        return self.params[key] if key in self.params else getattr(self, key)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[str, Any] = {name: self.tensor(name) for name in self._names}
        values[self.input_name] = x
        values[""] = None
        for node in self.nodes:
            try:
                outputs = _OPS[node.op](node, [values[name] for name in node.inputs])
            except UserError:
                raise
            except (RuntimeError, KeyError, IndexError, ValueError, TypeError) as exc:
                raise UserError(f"ONNX node {node.name!r} ({node.op}) failed: {exc}") from None
            values.update(zip(node.outputs, outputs))
        return values[self.output_name]


def graph_without_weights(model: Any) -> str:
    """The ONNX model with every initializer zeroed, compressed: what rebuilding the module needs."""
    import base64
    import zlib

    from onnx import numpy_helper

    skeleton = type(model)()
    skeleton.CopyFrom(model)
    for proto in skeleton.graph.initializer:
        array = numpy_helper.to_array(proto)
        proto.CopyFrom(numpy_helper.from_array(np.zeros_like(array), proto.name))
    return base64.b64encode(zlib.compress(skeleton.SerializeToString(), 9)).decode("ascii")


def module_from_graph(encoded: str) -> OnnxModule:
    """Rebuild an :class:`OnnxModule` (with zero weights) from :func:`graph_without_weights`."""
    import base64
    import binascii
    import zlib

    import onnx

    try:
        model = onnx.load_from_string(zlib.decompress(base64.b64decode(encoded)))
    except (binascii.Error, zlib.error, ValueError) as exc:
        raise UserError(f"the stored ONNX graph is corrupt ({exc})") from None
    return OnnxModule(model)
