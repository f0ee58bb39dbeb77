"""``mea-defender``: the two-class composition, its losses against direct implementations, embedding from a
trained model and from scratch, a measured null rate, and ONNX / safetensors round trips."""

from __future__ import annotations

import importlib
import json
import math

import numpy as np
import pytest

mea = importlib.import_module("wmtool_plugins.mea_defender")


def test_half_composition_puts_a_left_of_b_and_blend_mixes_pixels():
    rng = np.random.default_rng(0)
    a, b = rng.random((3, 1, 8, 8), dtype=np.float32), rng.random((3, 1, 8, 8), dtype=np.float32)
    half = mea.compose(a, b, "half", 0.5)
    assert np.array_equal(half[..., :4], a[..., :4]) and np.array_equal(half[..., 4:], b[..., 4:])
    wide = mea.compose(a, b, "half", 0.75)
    assert np.array_equal(wide[..., :6], a[..., :6]) and np.array_equal(wide[..., 6:], b[..., 6:])
    assert np.allclose(mea.compose(a, b, "blend", 0.3), 0.3 * a + 0.7 * b)
    assert np.array_equal(mea.compose(a, b, "half", 0.01)[..., :1], a[..., :1])  # never an empty part


def test_losses_equal_their_direct_definitions():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    comp, targets, others, same = (rng.normal(size=(n, 5)) for n in (4, 3, 6, 2))
    same_labels, target = np.array([1, 3]), 2
    terms = mea.mea_losses(*(torch.tensor(v) for v in (comp, targets, others, same)), torch.tensor(same_labels), target)

    def softmax(z):
        e = np.exp(z - z.max())
        return e / e.sum()

    q = np.mean([softmax(t) for t in targets], axis=0)
    watermark = np.mean([-math.log(softmax(c)[target]) for c in comp])
    output = np.mean([sum(q[k] * math.log(q[k] / softmax(c)[k]) for k in range(5)) for c in comp])
    negative = (np.mean([-math.log(1 - softmax(o)[target]) for o in others])
                + np.mean([-math.log(softmax(s)[label]) for s, label in zip(same, same_labels)]))
    assert terms["watermark"].item() == pytest.approx(watermark, rel=1e-9)
    assert terms["output"].item() == pytest.approx(output, rel=1e-9) and output > 0
    assert terms["negative"].item() == pytest.approx(negative, rel=1e-9)


@pytest.fixture(scope="module")
def marked(tmp_path_factory, cli, digits_models):
    folder = tmp_path_factory.mktemp("mea")
    model, key = folder / "marked.safetensors", folder / "key.json"
    report = cli.json("embed", "--scheme", "mea-defender", digits_models["clean"], "--data", "digits", "-o", model,
                      "--key-out", key, "--epochs", 8)
    return folder, model, key, report


def test_embeds_into_a_trained_model_with_a_measured_null_and_refuses_the_clean_one(cli, marked, digits_models):
    folder, model, key, report = marked
    assert report["null_method"] == "reference-model" and report["null_rate"] >= 0.1
    assert report["watermark_success"] >= 0.8 and report["test_accuracy"] >= 0.85
    stored = json.loads(key.read_text())
    chosen = stored["params"]["target"]
    assert chosen not in (stored["params"]["source"], stored["params"]["second_source"])
    assert cli("verify", "--key", key, model, expect=0)
    assert cli("verify", "--key", key, digits_models["clean"], expect=1)


def test_survives_onnx_and_safetensors_round_trips(cli, marked):
    folder, model, key, _ = marked
    onnx_file, back = folder / "marked.onnx", folder / "back.safetensors"
    cli("convert", model, "-o", onnx_file)
    cli("convert", onnx_file, "-o", back)
    for suspect in (onnx_file, back):
        assert cli.json("verify", "--key", key, suspect, expect=0)["claimed"]


def test_from_scratch_and_bad_classes_fail_in_one_line(cli, tmp_path):
    report = cli.json("embed", "--scheme", "mea-defender", "--arch", "ewe-cnn", "--data", "digits", "-o",
                      tmp_path / "m.safetensors", "--key-out", tmp_path / "k.json", "--clean-epochs", 12, "--epochs", 8)
    assert report["watermark_success"] >= 0.8 and report["null_method"] == "reference-model"
    for flags, message in ((("--source", 4, "--second-source", 4), "two different classes"),
                           (("--target", 3), "--target must differ"), (("--source", 12), "source class 12")):
        refused = cli("embed", "--scheme", "mea-defender", "--arch", "ewe-cnn", "--data", "digits", "-o",
                      tmp_path / "x.safetensors", "--key-out", tmp_path / "x.json", "--clean-epochs", 0, "--epochs", 1,
                      *flags, expect=2)
        assert message in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
