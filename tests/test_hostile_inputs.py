"""Hostile inputs, second round (docs/security.md): folders, ONNX graphs, keys, outputs and specs made to
break wmtool. Each ends in one ``error:`` line and exit code 2 (or the documented behaviour), runs
nothing, reads nothing outside the folder it was given, and is refused before allocating for an absurd
claim."""

from __future__ import annotations

import json
import os
import pickle
import resource
import shutil
from pathlib import Path

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")

from conftest import tiny_vit  # noqa: E402
from wmtool.keys import load_key  # noqa: E402

PROCESSOR = {"do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5], "image_std": [0.5],
             "image_processor_type": "ViTImageProcessor", "resample": 2, "rescale_factor": 1 / 255,
             "size": {"height": 8, "width": 8}}
CODE = "from pathlib import Path\nPath({marker!r}).write_text('ran')\n"


def one_line(result, *expected: str) -> str:
    """The refusal's message, checked to be one ``error:`` line with exit code 2 holding ``expected``."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr, result.exception)
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and message.startswith("error: ") and "Traceback" not in message, message
    for text in expected:
        assert text in message, message
    return message


@pytest.fixture(scope="module")
def vit(tmp_path_factory) -> Path:
    """A small ViT folder written by the library itself (random weights, digits' 1×8×8 task)."""
    folder = tmp_path_factory.mktemp("vit") / "vit"
    tiny_vit().save_pretrained(str(folder))
    (folder / "preprocessor_config.json").write_text(json.dumps(PROCESSOR))
    return folder


@pytest.fixture
def copy(vit, tmp_path):
    """A fresh copy of the ViT folder to damage, and a marker file that code must never create."""
    folder = tmp_path / "model"
    shutil.copytree(vit, folder)
    return folder, tmp_path / "PWNED"


def _edit(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


# --- transformers folders ------------------------------------------------------------------------------

@pytest.mark.parametrize("trust_flag", [False, True])
def test_custom_code_in_a_known_model_type_is_never_imported(cli, copy, trust_flag):
    folder, marker = copy
    (folder / "modeling_evil.py").write_text(CODE.format(marker=str(marker)))
    _edit(folder / "config.json", auto_map={"AutoModelForImageClassification": "modeling_evil.EvilModel"},
          **({"trust_remote_code": True} if trust_flag else {}))
    assert cli.json("accuracy", folder, "--data", "digits")["accuracy"] >= 0  # the library's own ViT class
    assert not marker.exists()


def test_custom_code_with_an_unknown_model_type_is_one_line(cli, copy):
    folder, marker = copy
    (folder / "modeling_evil.py").write_text(CODE.format(marker=str(marker)))
    _edit(folder / "config.json", model_type="evil", trust_remote_code=True,
          auto_map={"AutoConfig": "modeling_evil.C", "AutoModelForImageClassification": "modeling_evil.M"})
    one_line(cli("accuracy", folder, "--data", "digits", "--trust-code", expect=None),
             "model_type 'evil'", "never imports a folder's own code")
    assert not marker.exists()


def test_a_huge_config_is_refused_before_reading_it(cli, copy):
    folder, _ = copy
    config = json.loads((folder / "config.json").read_text())
    config["padding"] = "x" * (50 * 2**20)
    (folder / "config.json").write_text(json.dumps(config))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    one_line(cli("accuracy", folder, "--data", "digits", expect=None), "more than a config file holds")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 40 * 1024  # kB: the 50 MB never read


def test_a_deeply_nested_config_is_one_line(cli, copy):
    folder, _ = copy
    text = (folder / "config.json").read_text().rstrip()[:-1] + ', "deep": ' + "[" * 100_000 + "]" * 100_000 + "}"
    (folder / "config.json").write_text(text)
    one_line(cli("accuracy", folder, "--data", "digits", expect=None), "config.json")


def _sharded(folder: Path) -> dict:
    """Reshard the folder into two files and return its index."""
    tiny_vit().save_pretrained(str(folder), max_shard_size="40KB")
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    return index


@pytest.mark.parametrize("where", ["absolute", "dotdot", "symlink"])
def test_shard_paths_that_leave_the_folder_are_refused(cli, copy, tmp_path, where):
    folder, _ = copy
    (folder / "model.safetensors").unlink()
    index = _sharded(folder)
    first = sorted(set(index["weight_map"].values()))[0]
    outside = tmp_path / "outside.safetensors"
    shutil.copy(folder / first, outside)
    if where == "symlink":
        (folder / first).unlink()
        (folder / first).symlink_to(outside)
    else:
        name = str(outside) if where == "absolute" else f"../{outside.name}"
        index["weight_map"] = {k: (name if v == first else v) for k, v in index["weight_map"].items()}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    one_line(cli("accuracy", folder, "--data", "digits", expect=None), "only files inside")
    one_line(cli("inspect", folder, expect=None), "only files inside")


def test_a_symlinked_config_out_of_the_folder_is_refused(cli, copy, tmp_path):
    folder, _ = copy
    secret = tmp_path / "secret.json"
    secret.write_text((folder / "config.json").read_text())
    (folder / "config.json").unlink()
    (folder / "config.json").symlink_to(secret)
    one_line(cli("accuracy", folder, "--data", "digits", expect=None), "leads outside the folder given")


@pytest.mark.parametrize("ref", ["../../elsewhere", "/etc"])
def test_a_cache_refs_main_that_leaves_the_cache_is_refused(cli, vit, tmp_path, ref):
    cache = tmp_path / "models--someone--vit"
    shutil.copytree(vit, cache / "snapshots" / "abc")
    shutil.copytree(vit, tmp_path / "elsewhere")
    (cache / "refs").mkdir()
    (cache / "refs" / "main").write_text(ref)
    one_line(cli("accuracy", cache, "--data", "digits", expect=None), "refs/main")


def test_a_real_cache_with_links_into_its_blobs_opens(cli, vit, tmp_path):
    """As huggingface_hub lays it out: snapshot files are links to ../../blobs/<hash>."""
    cache = tmp_path / "models--someone--vit"
    (cache / "blobs").mkdir(parents=True)
    (cache / "snapshots" / "abc").mkdir(parents=True)
    for item in vit.iterdir():
        blob = cache / "blobs" / f"blob-{item.name}"
        shutil.copy(item, blob)
        (cache / "snapshots" / "abc" / item.name).symlink_to(Path("../../blobs") / blob.name)
    (cache / "refs").mkdir()
    (cache / "refs" / "main").write_text("abc")
    expected = cli.json("accuracy", vit, "--data", "digits")["accuracy"]
    assert cli.json("accuracy", cache, "--data", "digits")["accuracy"] == expected
    assert cli.json("accuracy", cache / "snapshots" / "abc", "--data", "digits")["accuracy"] == expected


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "unpickled"))


def test_a_pickle_beside_broken_safetensors_is_never_unpickled(cli, copy):
    folder, marker = copy
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Exploit(str(marker))))
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])  # truncated
    one_line(cli("accuracy", folder, "--data", "digits", expect=None), "model.safetensors")
    (folder / "model.safetensors").unlink()
    one_line(cli("accuracy", folder, "--data", "digits", expect=None), "pickle")
    assert not marker.exists()


@pytest.mark.parametrize("change, expected", [
    ({"size": {"height": 10**6, "width": 10**6}}, "resize size must be two sizes from 1 to 8192"),
    ({"image_std": [0.0]}, "std values must be positive"),
    ({"image_std": [-0.5]}, "std values must be positive"),
    ({"image_mean": ["NaN"]}, "finite"),
])
def test_absurd_processor_values_are_one_line(cli, copy, change, expected):
    folder, _ = copy
    _edit(folder / "preprocessor_config.json", **change)
    one_line(cli("accuracy", folder, "--data", "digits", expect=None), expected)


def test_a_million_labels_are_refused_before_building_the_model(cli, copy):
    folder, _ = copy
    config = json.loads((folder / "config.json").read_text())
    _edit(folder / "config.json", id2label={str(i): f"c{i}" for i in range(10**6)},
          label2id={f"c{i}": i for i in range(10**6)})
    one_line(cli("accuracy", folder, "--data", "digits", expect=None), "more than a config file holds")  # 39 MB
    del config["id2label"], config["label2id"]
    (folder / "config.json").write_text(json.dumps({**config, "num_labels": 10**6}))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    one_line(cli("accuracy", folder, "--data", "digits", expect=None), "1000000", "2 to 100,000 classes")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024  # kB: no 1M-class model


def test_num_labels_that_disagrees_with_the_weights_is_one_line(cli, copy):
    folder, _ = copy
    _edit(folder / "config.json", id2label={str(i): str(i) for i in range(12)},
          label2id={str(i): i for i in range(12)})
    one_line(cli("accuracy", folder, "--data", "digits", expect=None), "states 12 classes", "has 10 outputs")


# --- timm folders -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def timm_folder(tmp_path_factory) -> Path:
    timm = pytest.importorskip("timm")
    import torch

    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=10, in_chans=1)
    folder = tmp_path_factory.mktemp("timm") / "resnet"
    timm.models.save_for_hf(model, str(folder), safe_serialization=True)
    config = json.loads((folder / "config.json").read_text())
    config["pretrained_cfg"].update(input_size=[1, 8, 8], mean=[0.5], std=[0.5])
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("change, expected", [
    ({"architecture": "no_such_net"}, "which timm does not register"),
    ({"architecture": "hf-hub:someone/resnet18"}, "which timm does not register"),
    ({"architecture": "local-dir:/etc"}, "which timm does not register"),
    ({"model_args": {"img_size": 10**6}}, "img_size"),
    ({"pretrained_cfg": {"input_size": [3, 10**5, 10**5]}}, "size must be two sizes from 1 to 8192"),
    ({"pretrained_cfg": {"input_size": [3000, 4000, 4000]}}, "more than wmtool feeds a model"),
])
def test_hostile_timm_configs_are_one_line(cli, timm_folder, tmp_path, change, expected):
    folder = tmp_path / "timm"
    shutil.copytree(timm_folder, folder)
    _edit(folder / "config.json", **change)
    one_line(cli("accuracy", folder, "--data", "digits", expect=None), expected)


# --- ONNX graphs --------------------------------------------------------------------------------------

def _onnx_model(nodes, inputs, outputs, initializers=(), opset=17, domains=()):
    from onnx import helper

    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                   *[helper.make_opsetid(d, 1) for d in domains]])


def _io(shape_in=(1, 1, 8, 8), shape_out=(1, 10)):
    from onnx import TensorProto, helper

    return ([helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape_in))],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape_out))])


def _linear(width: int = 64):
    """Flatten then a MatMul to 10 classes: the smallest classifier graph."""
    from onnx import helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((width, 10), np.float32), "w")
    return [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["y"])], [weight]


def _save_onnx(model, path: Path) -> Path:
    import onnx

    onnx.save(model, str(path))
    return path


def test_onnx_control_flow_is_named_and_refused_for_white_box_work(cli, tmp_path):
    from onnx import TensorProto, helper

    nodes, weights = _linear()
    branch = helper.make_graph([helper.make_node("Identity", ["f"], ["z"])], "b", [],
                               [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)])
    cond = helper.make_tensor("c", TensorProto.BOOL, [], [True])
    nodes = [nodes[0], helper.make_node("If", ["c"], ["g"], then_branch=branch, else_branch=branch),
             helper.make_node("MatMul", ["g", "w"], ["y"])]
    path = _save_onnx(_onnx_model(nodes, *_io(), initializers=[*weights, cond]), tmp_path / "if.onnx")
    one_line(cli("embed", "--scheme", "backdoor", path, "--data", "digits", "-o", tmp_path / "m.onnx",
                 "--key-out", tmp_path / "k.json", expect=None), "If")
    assert cli.json("accuracy", path, "--data", "digits")["accuracy"] >= 0  # black-box: onnxruntime runs it


def test_a_ten_thousand_node_chain_is_handled(cli, tmp_path):
    from onnx import helper

    nodes, weights = _linear()
    chain = [helper.make_node("Identity", [f"t{i}" if i else "x"], [f"t{i + 1}"]) for i in range(10_000)]
    nodes = [*chain, helper.make_node("Flatten", ["t10000"], ["f"]), nodes[1]]
    path = _save_onnx(_onnx_model(nodes, *_io(), initializers=weights), tmp_path / "chain.onnx")
    assert cli.json("accuracy", path, "--data", "digits", "--limit", 50)["accuracy"] >= 0
    result = cli("attack", "finetune", path, "--data", "digits", "--limit", 50, "--epochs", 1, "-o",
                 tmp_path / "t.onnx", expect=None)
    assert result.exit_code in (0, 2)  # converted, or refused in one line
    if result.exit_code == 2:
        one_line(result)


def test_an_initializer_claiming_a_trillion_elements_is_refused_before_allocating(cli, tmp_path):
    import onnx
    from onnx import TensorProto

    nodes, weights = _linear()
    model = _onnx_model(nodes, *_io(), initializers=weights)
    huge = onnx.TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[64, 10**12 // 64])
    huge.raw_data = b"\0" * 64
    del model.graph.initializer[:]
    model.graph.initializer.append(huge)
    path = _save_onnx(model, tmp_path / "huge.onnx")
    one_line(cli("accuracy", path, "--data", "digits", expect=None), str(path))  # alive: 4 TB were not allocated
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # after the imports of the first call
    for command in (("accuracy", path, "--data", "digits"),
                    ("embed", "--scheme", "backdoor", path, "--data", "digits", "-o", tmp_path / "m.onnx",
                     "--key-out", tmp_path / "k.json")):
        one_line(cli(*command, expect=None), str(path))
    assert "1,000,000,000,000" in cli("inspect", path).stdout  # inspect shows the claim, reading no weight
    # kB: embed imports torch (about 0.5 GB); the claim is 4 TB
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 1536 * 1024


def test_opset_one_and_a_custom_domain_op_are_one_line(cli, tmp_path):
    from onnx import helper

    nodes, weights = _linear()
    old = _save_onnx(_onnx_model(nodes, *_io(), initializers=weights, opset=1), tmp_path / "opset1.onnx")
    cli("accuracy", old, "--data", "digits")  # black-box: onnxruntime runs what it supports
    one_line(cli("embed", "--scheme", "backdoor", old, "--data", "digits", "-o", tmp_path / "m.onnx",
                 "--key-out", tmp_path / "k.json", expect=None), "opset 1")  # the converter takes 8 to 20
    custom = [nodes[0], helper.make_node("Evil", ["f", "w"], ["y"], domain="com.evil")]
    path = _save_onnx(_onnx_model(custom, *_io(), initializers=weights, domains=("com.evil",)),
                      tmp_path / "custom.onnx")
    one_line(cli("accuracy", path, "--data", "digits", expect=None), "com.evil")


def test_a_non_2d_output_is_one_line(cli, tmp_path):
    from onnx import helper

    nodes = [helper.make_node("Identity", ["x"], ["y"])]
    path = _save_onnx(_onnx_model(nodes, *_io(shape_out=(1, 1, 8, 8))), tmp_path / "image-out.onnx")
    one_line(cli("accuracy", path, "--data", "digits", expect=None), "output")


def test_external_data_outside_the_folder_is_refused(cli, tmp_path):
    from onnx import numpy_helper

    nodes, _ = _linear()
    weight = numpy_helper.from_array(np.ones((64, 10), np.float32), "w")
    model = _onnx_model(nodes, *_io(), initializers=[weight])
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.ones((64, 10), np.float32).tobytes())
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = 1  # EXTERNAL
    for key, value in (("location", f"../{secret.name}"), ("length", str(secret.stat().st_size))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    (tmp_path / "model").mkdir()
    path = _save_onnx(model, tmp_path / "model" / "external.onnx")
    one_line(cli("accuracy", path, "--data", "digits", expect=None))
    one_line(cli("embed", "--scheme", "backdoor", path, "--data", "digits", "-o", tmp_path / "m.onnx",
                 "--key-out", tmp_path / "k.json", expect=None))


def test_an_onnx_external_data_file_that_links_out_of_the_folder_is_refused(cli, tmp_path):
    from onnx import numpy_helper

    nodes, _ = _linear()
    model = _onnx_model(nodes, *_io(), initializers=[numpy_helper.from_array(np.ones((64, 10), np.float32), "w")])
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.ones((64, 10), np.float32).tobytes())
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = 1  # EXTERNAL
    for key, value in (("location", "weights.bin"), ("length", str(secret.stat().st_size))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").symlink_to(secret)
    path = _save_onnx(model, tmp_path / "model" / "linked.onnx")
    one_line(cli("embed", "--scheme", "backdoor", path, "--data", "digits", "-o", tmp_path / "m.onnx",
                 "--key-out", tmp_path / "k.json", expect=None))


# --- datasets -----------------------------------------------------------------------------------------

def test_a_dataset_image_that_links_out_of_the_folder_is_refused(cli, digits_models, tmp_path):
    from PIL import Image

    outside = tmp_path / "outside.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(outside)
    for label in ("0", "1"):
        (tmp_path / "data" / label).mkdir(parents=True)
        Image.fromarray(np.full((8, 8), 200, np.uint8)).save(tmp_path / "data" / label / "a.png")
    (tmp_path / "data" / "1" / "b.png").symlink_to(outside)
    one_line(cli("accuracy", digits_models["clean"], "--data", tmp_path / "data", expect=None),
             "leads outside the folder given")


def test_an_idx_file_that_links_out_of_the_folder_is_refused(cli, digits_models, tmp_path):
    mnist = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
    if not mnist.is_dir():
        pytest.skip("needs ../shared/data/mnist")
    (tmp_path / "idx").mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / "idx" / name).symlink_to(mnist / name)
    one_line(cli("accuracy", digits_models["clean"], "--data", tmp_path / "idx", expect=None), "leads outside")


# --- keys ---------------------------------------------------------------------------------------------

def _resigned(key_path: Path, tmp_path: Path, **arrays) -> Path:
    """The key with other arrays and a valid checksum: what someone handing over a key can write."""
    import dataclasses

    from wmtool.keys import save_key

    key = load_key(key_path)
    forged = dataclasses.replace(key, arrays={**key.arrays, **arrays})
    out = tmp_path / "other.key.json"
    save_key(forged, out, force=True)
    return out


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_key_images_holding_nan_or_inf_are_one_line(cli, digits_models, tmp_path, value):
    inputs = load_key(digits_models["key"]).arrays["inputs"].copy()
    inputs[0, 0, 0, 0] = value
    key = _resigned(digits_models["key"], tmp_path, inputs=inputs)
    one_line(cli("verify", "--key", key, digits_models["marked"], expect=None), "NaN or infinite")


def test_key_images_that_do_not_fit_the_model_are_one_line(cli, digits_models, tmp_path):
    inputs = np.zeros((20, 3, 5, 5), np.float32)
    key = _resigned(digits_models["key"], tmp_path, inputs=inputs,
                    labels=np.zeros(20, np.int64))
    one_line(cli("verify", "--key", key, digits_models["marked"], expect=None), "shape")


# --- outputs ------------------------------------------------------------------------------------------

@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_output_onto_dev_full_is_one_line_and_the_device_is_untouched(cli, digits_models):
    for target in ("/dev/full", "/dev/null"):
        one_line(cli("convert", digits_models["clean"], "-o", target, "--force", expect=None), "not a file or folder")
        assert Path(target).is_char_device()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_output_into_a_read_only_folder_is_one_line(cli, digits_models, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        one_line(cli("convert", digits_models["clean"], "-o", folder / "x.onnx", expect=None))
    finally:
        folder.chmod(0o755)


def test_a_write_that_fails_leaves_the_old_output(cli, digits_models, tmp_path, monkeypatch):
    out = tmp_path / "old.safetensors"
    out.write_bytes(b"old model")
    import wmtool.atomic

    def failing_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(wmtool.atomic.os, "fsync", failing_fsync)
    one_line(cli("convert", digits_models["clean"], "-o", out, "--force", expect=None), "No space left",
             "unchanged")
    assert out.read_bytes() == b"old model"
    assert [p.name for p in tmp_path.iterdir()] == ["old.safetensors"]  # no partial file left behind


def test_an_existing_folder_output_survives(cli, vit, tmp_path):
    out = tmp_path / "existing"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    one_line(cli("convert", vit, "-o", out, expect=None), "exists")
    assert (out / "keep.txt").read_text() == "mine"


# --- evaluate specs -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("seeds = '0-100000000'\n", "names 100,000,001 seeds; a sweep takes 1 to 1,000"),
    ("references = 10000000\n", "references must be an integer from 0 to 100"),
    ("alpha = 5\n", "alpha"),
])
def test_evaluate_specs_with_absurd_values_fail_before_any_work(cli, tmp_path, text, expected):
    spec = tmp_path / "spec.toml"
    spec.write_text(text + "[model]\narch = 'mlp'\narch_args = { width = 16 }\nepochs = 1\n[data]\nowner = 'digits'\n"
                           "[schemes.lsb]\nbits = 64\n")
    one_line(cli("evaluate", "--spec", spec, "--out", tmp_path / "s", expect=None), expected)
    assert not (tmp_path / "s" / "results.sqlite").exists()


def _open_store(folder: str, barrier, outcomes) -> None:
    from wmtool.store import Store

    barrier.wait()  # every process opens the new store at the same moment
    try:
        Store(folder)
        outcomes.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the test
        outcomes.put(f"{type(exc).__name__}: {exc}")


def test_sweeps_opening_a_new_store_at_the_same_moment_all_open_it(tmp_path):
    """SQLite does not wait while another connection switches the journal mode; before the store retried,
    about one process in twenty failed here with "database is locked" (measured: 12 of 240)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    outcomes = context.Queue()
    for round_ in range(30):
        barrier = context.Barrier(4)
        processes = [context.Process(target=_open_store, args=(str(tmp_path / f"s{round_}"), barrier, outcomes))
                     for _ in range(4)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=120)
    assert [outcomes.get(timeout=10) for _ in range(120)] == ["ok"] * 120


def test_two_sweeps_on_one_store_at_once_never_clash(cli, tmp_path):
    """docs/evaluate.md: the first row for a cell wins, so two sweeps into one store give the rows of one."""
    import subprocess
    import sys

    spec = tmp_path / "spec.toml"
    spec.write_text("seeds = [0, 1]\nreferences = 0\n[model]\narch = 'mlp'\narch_args = { width = 16 }\nepochs = 1\n"
                    "[data]\nowner = 'digits'\n[schemes.lsb]\nbits = 64\n[attacks.prune]\nrate = [0.2, 0.5]\n")
    command = [sys.executable, "-m", "wmtool", "evaluate", "--spec", str(spec), "--out", str(tmp_path / "both"),
               "--quiet", "--json"]
    running = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = [process.communicate(timeout=300) for process in running]
    assert [process.returncode for process in running] == [0, 0], outcomes
    cli("evaluate", "--spec", spec, "--out", tmp_path / "one", "--quiet")
    both = json.loads(cli("evaluate", "report", tmp_path / "both", "--json").stdout)
    one = json.loads(cli("evaluate", "report", tmp_path / "one", "--json").stdout)
    assert both == one and len(both["cells"]) == 3, (both, one)
    import sqlite3

    counts = []
    for store in ("both", "one"):
        with sqlite3.connect(tmp_path / store / "results.sqlite") as db:
            counts.append(db.execute("SELECT COUNT(*), COUNT(DISTINCT key), SUM(status = 'ok') FROM cells").fetchone())
    assert counts[0] == counts[1] and len(set(counts[0])) == 1  # each cell once, all finished
