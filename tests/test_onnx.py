"""ONNX: the converter against onnxruntime on hand-built graphs over several opsets, torch exports,
the three third-party models, fine-tuning and re-export, and errors."""

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from wmtool.errors import UserError
from wmtool.model_card import ModelCard
from wmtool.models import ModelSource, build_model, load_model, save_model
from wmtool_plugins.onnx_format import to_onnx_bytes
from wmtool_plugins.onnx_graph import OnnxModule
from wmtool.plugins import get_registry

from conftest import SHARED

RNG = np.random.default_rng(0)


def graph(nodes, inputs, output_shape, opset, initializers=()):
    """A one-input, one-output model of ``nodes`` (input 'x', output 'y')."""
    (name, shape), = inputs.items()
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    return model


def compare(model, x, atol=1e-5):
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": x})[0]
    with torch.no_grad():
        got = OnnxModule(model)(torch.from_numpy(x)).numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=atol, rtol=1e-5)


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


N = helper.make_node
X4 = f32(2, 3, 7, 7)


@pytest.mark.parametrize("opset", [8, 11, 13, 17, 20])
def test_convolutions_pools_and_activations(opset):
    w = f32(4, 3, 3, 3)
    nodes = [
        N("Conv", ["x", "w", "b"], ["c"], pads=[1, 0, 2, 1], strides=[2, 1]),
        N("Relu", ["c"], ["r"]),
        N("MaxPool", ["r"], ["m"], kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 1, 1]),
        N("LeakyRelu", ["m"], ["l"], alpha=0.2),
        N("AveragePool", ["l"], ["a"], kernel_shape=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1),
        N("Sigmoid", ["a"], ["s"]),
        N("Tanh", ["s"], ["t"]),
        N("GlobalAveragePool", ["t"], ["y"]),
    ]
    compare(graph(nodes, {"x": [2, 3, 7, 7]}, None, opset, [("w", w), ("b", f32(4))]), X4)


@pytest.mark.parametrize("opset", [11, 17])
def test_same_padding_groups_and_transposed_convolution(opset):
    nodes = [
        N("Conv", ["x", "w"], ["c"], auto_pad="SAME_UPPER", group=3, strides=[2, 2], kernel_shape=[3, 3]),
        N("ConvTranspose", ["c", "wt", "bt"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]),
    ]
    compare(graph(nodes, {"x": [2, 3, 7, 7]}, None, opset,
                  [("w", f32(6, 1, 3, 3)), ("wt", f32(6, 2, 3, 3)), ("bt", f32(2))]), X4)


@pytest.mark.parametrize("opset", [8, 11, 13, 18])
def test_dense_layers_normalisation_and_softmax(opset):
    nodes = [
        N("BatchNormalization", ["x", "g", "b", "mu", "var"], ["n"], epsilon=1e-3),
        N("Flatten", ["n"], ["f"], axis=1),
        N("Gemm", ["f", "w", "c"], ["h"], transB=1, alpha=0.5, beta=2.0),
        N("MatMul", ["h", "m"], ["k"]),
        N("Add", ["k", "c2"], ["k2"]), N("Sub", ["k2", "c2"], ["k3"]),
        N("Mul", ["k3", "c2"], ["k4"]), N("Div", ["k4", "c3"], ["k5"]),
        N("Dropout", ["k5"], ["d"]), N("Identity", ["d"], ["i"]),
        N("Softmax", ["i"], ["sm"], axis=1), N("LogSoftmax", ["sm"], ["y"], axis=1),
    ]
    inits = [("g", f32(3)), ("b", f32(3)), ("mu", f32(3)), ("var", np.abs(f32(3)) + 0.5),
             ("w", f32(5, 147)), ("c", f32(5)), ("m", f32(5, 4)), ("c2", f32(4)), ("c3", np.abs(f32(4)) + 1)]
    compare(graph(nodes, {"x": [2, 3, 7, 7]}, None, opset, inits), X4)


@pytest.mark.parametrize("opset", [8, 11, 13, 17])
def test_shape_arithmetic_reshape_transpose_concat(opset):
    axes13 = opset >= 13
    unsq = N("Unsqueeze", ["g", "ax"], ["u"]) if axes13 else N("Unsqueeze", ["g"], ["u"], axes=[0])
    sq = N("Squeeze", ["e", "ax"], ["q"]) if axes13 else N("Squeeze", ["e"], ["q"], axes=[0])
    nodes = [
        N("Shape", ["x"], ["s"]),
        N("Constant", [], ["zero"], value=numpy_helper.from_array(np.array(0, dtype=np.int64))),
        N("Gather", ["s", "zero"], ["g"], axis=0),
        unsq,
        N("Constant", [], ["rest"], value=numpy_helper.from_array(np.array([-1], dtype=np.int64))),
        N("Concat", ["u", "rest"], ["shape"], axis=0),
        N("Reshape", ["x", "shape"], ["flat"]),
        N("Transpose", ["flat"], ["tr"], perm=[1, 0]),
        N("Transpose", ["tr"], ["back"]),
        N("Unsqueeze", ["back", "ax"], ["e"]) if axes13 else N("Unsqueeze", ["back"], ["e"], axes=[0]),
        sq,
        N("Concat", ["q", "q"], ["y"], axis=1),
    ]
    inits = [("ax", np.array([0], dtype=np.int64))] if axes13 else []
    compare(graph(nodes, {"x": [2, 3, 7, 7]}, None, opset, inits), X4)


@pytest.mark.parametrize("opset", [8, 11, 13, 19])
def test_pad_clip_slice_cast_constant_of_shape(opset):
    if opset >= 11:
        pad = N("Pad", ["x", "pads", "pv"], ["p"], mode="constant")
        clip = N("Clip", ["p", "lo", "hi"], ["c"])
        inits = [("pads", np.array([0, 0, 1, 2, 0, 0, 2, 1], dtype=np.int64)), ("pv", np.array(0.5, np.float32)),
                 ("lo", np.array(-0.5, np.float32)), ("hi", np.array(0.7, np.float32))]
    else:
        pad = N("Pad", ["x"], ["p"], pads=[0, 0, 1, 2, 0, 0, 2, 1], value=0.5)
        clip = N("Clip", ["p"], ["c"], min=-0.5, max=0.7)
        inits = []
    if opset >= 10:
        slicer = N("Slice", ["c", "st", "en", "axs", "stp"], ["sl"])
        inits += [("st", np.array([-1, 1], np.int64)), ("en", np.array([-9223372036854775807, 8], np.int64)),
                  ("axs", np.array([1, 2], np.int64)), ("stp", np.array([-1, 2], np.int64))]
    else:
        slicer = N("Slice", ["c"], ["sl"], starts=[0, 1], ends=[2, 8], axes=[1, 2])
    nodes = [pad, clip, slicer, N("Cast", ["sl"], ["int"], to=TensorProto.INT32),
             N("Cast", ["int"], ["back"], to=TensorProto.FLOAT)]
    if opset >= 9:  # ConstantOfShape appeared in opset 9
        nodes += [N("Shape", ["sl"], ["shape"]), N("ConstantOfShape", ["shape"], ["ones"],
                  value=numpy_helper.from_array(np.array([1.0], np.float32))), N("Add", ["back", "ones"], ["y"])]
    else:
        nodes += [N("Identity", ["back"], ["y"])]
    compare(graph(nodes, {"x": [2, 3, 7, 7]}, None, opset, inits), X4)


def test_reflect_padding():
    model = graph([N("Pad", ["x", "pads"], ["y"], mode="reflect")], {"x": [2, 3, 7, 7]}, None, 13,
                  [("pads", np.array([0, 0, 2, 1, 0, 0, 1, 2], dtype=np.int64))])
    compare(model, X4)


def test_unsupported_ops_are_all_named_with_a_node_each():
    model = graph([N("Hardmax", ["x"], ["h"], name="the_hardmax"), N("LpNormalization", ["h"], ["l"], name="lp"),
                   N("Hardmax", ["l"], ["y"], name="again")], {"x": [2, 3]}, None, 13)
    with pytest.raises(UserError, match=r"unsupported ONNX ops Hardmax \(node 'the_hardmax'\), LpNormalization "
                                        r"\(node 'lp'\); wmtool converts \d+ ops \(Abs, Add, "):
        OnnxModule(model)


@pytest.mark.parametrize("arch,args", [("ewe-cnn", {}), ("mlp", {"width": 32}), ("ingrain-cnn", {"fc_width": 16}),
                                       ("resnet18", {"width": 8})])
def test_torch_exports_run_in_onnxruntime_with_dynamic_batch(arch, args, tmp_path):
    torch.manual_seed(0)
    model = build_model(get_registry(), ModelCard(arch, (3, 16, 16), 10, args)).eval()
    path = tmp_path / "m.onnx"
    save_model(model, path, get_registry())
    exported = onnx.load(str(path))
    assert exported.opset_import[0].version >= 17 and not any(t.data_location for t in exported.graph.initializer)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        x = np.random.default_rng(batch).random((batch, 3, 16, 16), dtype=np.float32)
        expected = model.predict_logits(x)
        np.testing.assert_allclose(session.run(None, {session.get_inputs()[0].name: x})[0], expected, atol=1e-4)
    assert load_model(path, get_registry()).card.input_shape == (3, 16, 16)


MODELS = SHARED / "models"
needs_shared = pytest.mark.skipif(not MODELS.is_dir(), reason="shared models not present")


@needs_shared
@pytest.mark.parametrize("name,flags,data,split,expected", [
    ("mnist-8.onnx", ["--input-range", 255], "data/mnist", "test", 0.9890),
    ("mnist-canvas-cnn.onnx", ["--mean", 0.1307, "--std", 0.3081], "data/mnist", "test", 0.9949),
    ("cifar10-resnet20.onnx", ["--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225"],
     "data/cifar10-jpeg/test.npz", "all", 0.810),
])
def test_third_party_models_score_what_their_readme_says(cli, name, flags, data, split, expected):
    result = cli.json("accuracy", MODELS / name, "--data", SHARED / data, "--split", split, *flags)
    assert abs(result["accuracy"] - expected) <= 0.003 and result["n"] == 10000


def shared_inputs(name):
    from wmtool.data import load_dataset
    from wmtool.preprocessing import Preprocessing

    if name.startswith("cifar"):
        data = load_dataset(str(SHARED / "data/cifar10-jpeg/test.npz"), "all", limit=256, seed=0)
        prep = Preprocessing(1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    else:
        data = load_dataset(str(SHARED / "data/mnist"), "test", limit=256, seed=0)
        prep = Preprocessing(1.0, (0.1307,), (0.3081,)) if "canvas" in name else Preprocessing(1.0)
    return prep.apply(torch.from_numpy(data.x)).numpy()


@needs_shared
@pytest.mark.parametrize("name", ["mnist-8.onnx", "mnist-canvas-cnn.onnx", "cifar10-resnet20.onnx"])
def test_converted_logits_match_onnxruntime(name):
    x = shared_inputs(name)
    model = onnx.load(str(MODELS / name))
    session = onnxruntime.InferenceSession(str(MODELS / name), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    batch = session.get_inputs()[0].shape[0]
    expected = np.concatenate([session.run(None, {input_name: x[i:i + 1]})[0] for i in range(len(x))]) \
        if batch == 1 else session.run(None, {input_name: x})[0]
    with torch.no_grad():
        got = OnnxModule(model)(torch.from_numpy(x)).numpy()
    assert np.abs(got - expected).max() <= 1e-4


@needs_shared
@pytest.mark.parametrize("name,flags", [("mnist-8.onnx", ["--input-range", 255]),
                                        ("mnist-canvas-cnn.onnx", ["--mean", 0.1307, "--std", 0.3081])])
def test_mnist_models_fine_tune_and_re_export(cli, tmp_path, name, flags):
    from wmtool.data import load_dataset
    from wmtool.preprocessing import Preprocessing
    from wmtool.training import fit_supervised

    prep = Preprocessing(255.0) if "mnist-8" in name else Preprocessing(1.0, (0.1307,), (0.3081,))
    model = load_model(MODELS / name, get_registry(), ModelSource(preprocessing=prep))
    data = load_dataset(str(SHARED / "data/mnist"), "train", limit=2000, seed=0)
    rng = np.random.default_rng(0)
    flipped = (data.y + rng.integers(0, 2, len(data.y))) % 10  # a changed task, so the loss has room to fall
    losses = fit_supervised(model, data.x, flipped, epochs=3, batch_size=100, lr=1e-3, seed=0)
    assert losses[-1] < losses[0]
    out = tmp_path / "tuned.onnx"
    save_model(model, out, get_registry())
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = data.x[:8]
    fed = prep.apply(torch.from_numpy(x)).numpy()
    got = np.concatenate([session.run(None, {session.get_inputs()[0].name: fed[i:i + 1]})[0] for i in range(8)])
    np.testing.assert_allclose(got, model.predict_logits(x), atol=1e-3, rtol=1e-5)
    assert cli.json("accuracy", out, "--data", SHARED / "data/mnist", "--limit", 500)["n"] == 500


def one_line(result):
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


def test_bad_onnx_inputs_are_one_line_errors(cli, tmp_path):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 20)
    assert "not a valid ONNX model" in one_line(cli("accuracy", corrupt, expect=None))
    unsupported = tmp_path / "hardmax.onnx"
    onnx.save(graph([N("Hardmax", ["x"], ["y"], name="e")], {"x": [None, 1, 8, 8]}, [None, 10], 13), str(unsupported))
    assert "unsupported ONNX op Hardmax" in one_line(cli("embed", "--scheme", "backdoor", unsupported,
                                                     "-o", tmp_path / "o.onnx", expect=None))
    if MODELS.is_dir():
        assert "shape" in one_line(cli("accuracy", MODELS / "mnist-8.onnx", "--data", "digits", expect=None))


def test_convert_round_trip_keeps_predictions(cli, digits_models, tmp_path):
    as_onnx, back = tmp_path / "m.onnx", tmp_path / "back.safetensors"
    cli("convert", digits_models["marked"], "-o", as_onnx)
    cli("convert", as_onnx, "-o", back)
    original = cli.json("verify", "--key", digits_models["key"], digits_models["marked"])
    for converted in (as_onnx, back):
        verdict = cli.json("verify", "--key", digits_models["key"], converted)
        assert verdict["success_rate"] == original["success_rate"] and verdict["claimed"]
    assert cli.json("inspect", as_onnx)["card"]["arch"] == "ewe-cnn"
    assert cli.json("inspect", back)["card"]["arch"] == "onnx"
    assert cli.json("accuracy", back)["accuracy"] == cli.json("accuracy", digits_models["marked"])["accuracy"]


def test_black_box_extraction_of_an_onnx_victim(cli, digits_models, tmp_path):
    victim = tmp_path / "victim.onnx"
    cli("convert", digits_models["marked"], "-o", victim)
    default = cli.json("attack", "extract", victim, "-o", tmp_path / "d.safetensors", "--epochs", 1)
    assert default["details"]["student"] == "ewe-cnn"  # the card in the ONNX metadata names it
    bare = onnx.load(str(victim))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    assert "--student" in one_line(cli("attack", "extract", tmp_path / "bare.onnx", "-o", tmp_path / "x.onnx",
                                       expect=None))
    report = cli.json("attack", "extract", victim, "-o", tmp_path / "x.onnx", "--student", "mlp",
                      "--student-args", '{"width": 64}', "--epochs", 15, "--batch-size", 64)
    assert report["queries"] == 1438 and report["accuracy_after"] > 0.8
    assert cli.json("inspect", tmp_path / "x.onnx")["card"]["arch"] == "mlp"


@needs_shared
def test_embedding_into_a_zoo_onnx_model_end_to_end(cli, tmp_path):
    zoo, marked, key = MODELS / "mnist-8.onnx", tmp_path / "marked.onnx", tmp_path / "key.json"
    mnist = SHARED / "data" / "mnist"
    report = cli.json("embed", "--scheme", "backdoor", zoo, "--data", mnist, "--input-range", 255, "-o", marked,
                      "--key-out", key, "--epochs", 2, "--limit", 3000)
    assert report["watermark_success"] > 0.9 and report["test_accuracy"] > 0.9
    assert cli.json("inspect", marked)["card"]["preprocessing"]["input_range"] == 255
    assert cli.json("verify", "--key", key, marked, expect=0)["p_value"] < 0.01
    # The untouched zoo model has no wmtool metadata: verify feeds it with the key's preprocessing.
    assert not cli.json("verify", "--key", key, zoo, expect=1)["claimed"]


def test_models_that_output_probabilities(tmp_path):
    from wmtool_plugins.onnx_format import OnnxPredictor, card_of
    from wmtool.preprocessing import Preprocessing

    w = f32(16, 3)
    model = graph([N("Flatten", ["x"], ["f"]), N("MatMul", ["f", "w"], ["z"]), N("Softmax", ["z"], ["y"], axis=1)],
                  {"x": [None, 1, 4, 4]}, [None, 3], 13, [("w", w)])
    predictor = OnnxPredictor(tmp_path / "p.onnx", model, card_of(model, "p.onnx", preprocessing=Preprocessing()))
    x = np.random.default_rng(0).random((6, 1, 4, 4), dtype=np.float32)
    logits = x.reshape(6, 16) @ w
    expected = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(predictor.predict_logits(x), expected, atol=1e-5)
    assert predictor.outputs_probabilities and (predictor.predict(x) == logits.argmax(1)).all()


@pytest.mark.parametrize("name", ["mnist-8.onnx", "cifar10-resnet20.onnx"])
def test_weightless_reading_keeps_the_graph_and_answers_alike(tmp_path, name):
    """The graph read without its weights names the same initializers (dtype, shape) as onnx.load, holds far
    only the small tensors' bytes, and onnxruntime fed the weightless form (reading the weights from the file
    itself) answers exactly as with the full model."""
    from wmtool_plugins.onnx_format import OnnxPredictor, card_of, read_onnx, read_onnx_graph
    from wmtool_plugins.onnx_wire import INLINE_LIMIT
    from wmtool.preprocessing import Preprocessing

    path = SHARED / "models" / name
    full = read_onnx(path)
    weightless, serialized = read_onnx_graph(path)
    assert [(t.name, t.data_type, list(t.dims)) for t in weightless.graph.initializer] == \
        [(t.name, t.data_type, list(t.dims)) for t in full.graph.initializer]
    large = sum(len(t.raw_data) for t in full.graph.initializer if len(t.raw_data) >= INLINE_LIMIT)
    assert len(serialized) <= path.stat().st_size - large + 100 * len(full.graph.initializer)
    card = card_of(full, path, preprocessing=Preprocessing())
    x = RNG.random((2, *card.input_shape), dtype=np.float32)
    lean = OnnxPredictor(path, weightless, card, serialized=serialized)
    np.testing.assert_array_equal(lean.predict_logits(x), OnnxPredictor(path, full, card).predict_logits(x))


def test_weightless_reading_refuses_an_initializer_shorter_than_its_shape(tmp_path):
    from wmtool_plugins.onnx_format import read_onnx_graph

    w = f32(16, 3000)  # large enough to be read in place
    model = graph([N("Flatten", ["x"], ["f"]), N("MatMul", ["f", "w"], ["y"])], {"x": [None, 1, 4, 4]},
                  [None, 3000], 13, [("w", w)])
    model.graph.initializer[0].dims[1] = 3001
    path = tmp_path / "short.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(UserError, match="initializer w holds 192000 bytes"):
        read_onnx_graph(path)


def test_a_float16_safetensors_file_loads_into_a_float32_architecture(tmp_path):
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    model = build_model(get_registry(), ModelCard("mlp", (1, 8, 8), 10, {"width": 16}))
    path = tmp_path / "m.safetensors"
    save_model(model, path, get_registry())
    half = {k: v.half() for k, v in load_file(str(path)).items()}
    from wmtool_plugins.safetensors_format import read_header

    save_file(half, str(tmp_path / "h.safetensors"), metadata=read_header(path)[1])
    loaded = load_model(tmp_path / "h.safetensors", get_registry())
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.rand(4, 1, 8, 8)
    torch.testing.assert_close(loaded.eval()(x), model.eval()(x), atol=2e-2, rtol=0)


@pytest.mark.parametrize("attack,options", [
    ("extract", []),
    ("distill", ["--temperature", 5]),
    ("disentangle", ["--ood-data", SHARED / "data" / "fashion-mnist"]),
])
def test_black_box_attacks_on_a_third_party_onnx_victim(cli, tmp_path, attack, options):
    """Each black-box attack steals the third-party MNIST CNN (its own normalisation given as flags) from
    its answers on 2,000 images: one query per image, a student well above chance."""
    out = tmp_path / "student.safetensors"
    report = cli.json("attack", attack, MODELS / "mnist-canvas-cnn.onnx", "--data", SHARED / "data" / "mnist",
                      "--limit", 2000, "--mean", 0.1307, "--std", 0.3081, "--student", "ewe-cnn", "--epochs", 5,
                      "--batch-size", 64,
                      "-o", out, *options)
    assert report["queries"] == 2000 and report["accuracy_before"] > 0.99
    assert report["accuracy_after"] > 0.85, report


def test_auto_device_runs_onnx_on_the_cpu_provider_beside_a_cuda_torch(cli, digits_models, tmp_path, monkeypatch):
    """A CUDA torch with the CPU build of onnxruntime (the GPU machine's usual state): ``auto`` answers from
    onnxruntime's CPU provider, an explicit ``--device cuda`` names what is missing."""
    path = tmp_path / "clean.onnx"
    cli("convert", digits_models["clean"], "-o", path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert cli.json("accuracy", path, "--data", "digits")["accuracy"] > 0.8
    refused = cli("accuracy", path, "--data", "digits", "--device", "cuda", expect=2).stderr
    assert "onnxruntime has no CUDA provider" in refused


def test_black_box_commands_on_onnx_never_import_torch(cli, digits_models, tmp_path):
    """`accuracy`, `verify` and `inspect` of an ONNX model run in one fresh process without torch."""
    import json
    import subprocess
    import sys

    marked = tmp_path / "marked.onnx"
    cli("convert", digits_models["marked"], "-o", marked)
    code = "\n".join([
        "import json, sys",
        "from wmtool.cli import app",
        f"runs = [['accuracy', {str(marked)!r}, '--json'], ['verify', '--key', {str(digits_models['key'])!r},"
        f" {str(marked)!r}, '--json'], ['inspect', {str(marked)!r}, '--json']]",
        "codes = [app(args, standalone_mode=False) for args in runs]",
        "print(json.dumps({'codes': codes, 'torch': 'torch' in sys.modules}))",
    ])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = done.stdout.strip().splitlines()
    assert json.loads(lines[1])["claimed"] and json.loads(lines[2])["format"] == "onnx"
    assert json.loads(lines[-1]) == {"codes": [0, 0, 0], "torch": False}
