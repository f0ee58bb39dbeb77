"""``obfuscate`` keeps every output while changing the parameters; the ``bits`` verifier's alignment undoes
it: a W:* key fails on the obfuscated model's raw tensor and succeeds after alignment, and independent
models stay unclaimed."""

from __future__ import annotations

import numpy as np
import pytest

from wmtool.alignment import align
from wmtool.plugins import get_registry

torch = pytest.importorskip("torch")
MLP = ("--arch", "mlp", "--arch-args", '{"width": 64}')


def test_alignment_recovers_a_permuted_rescaled_padded_tensor():
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(6, 5)).astype(np.float32)
    anchor_in, anchor_out = rng.random((64, 5)), rng.normal(size=(64, 6))
    rows, columns = rng.permutation(6), rng.permutation(5)
    a, b = rng.uniform(0.25, 4, 6), rng.uniform(0.25, 4, 5)
    # the suspect: unit i of the suspect is unit rows[i] of the marked model, times a[i]; one dummy input unit
    suspect = weight[rows][:, columns] * a[:, None] / b[None, :]
    suspect = np.concatenate([suspect, rng.normal(size=(6, 1))], axis=1).astype(np.float32)
    suspect_out = anchor_out[:, rows] * a
    suspect_in = np.concatenate([anchor_in[:, columns] * b, rng.random((64, 1))], axis=1)
    aligned, moved = align(suspect, suspect_in, suspect_out, anchor_in, anchor_out)
    assert np.allclose(aligned, weight, rtol=2e-3, atol=1e-4)  # scales read at the anchors' float16 precision
    assert moved["units_moved"] > 0 and moved["units"] == 11


@pytest.fixture(scope="module")
def signed(tmp_path_factory, cli):
    folder = tmp_path_factory.mktemp("obf")
    clean, marked, key = folder / "clean.safetensors", folder / "marked.safetensors", folder / "key.json"
    cli("train", *MLP, "--data", "digits", "-o", clean, "--epochs", 25)
    cli("embed", "--scheme", "sign", clean, "--data", "digits", "-o", marked, "--key-out", key, "--epochs", 30)
    return folder, clean, marked, key


def test_obfuscation_keeps_every_output_and_changes_the_parameters(cli, signed):
    import wmtool

    folder, _, marked, _ = signed
    for flags, suffix in ((("--dummy", 0), "safetensors"), (("--dummy", 5), "safetensors"), (("--dummy", 3), "onnx")):
        out = folder / f"obf{flags[1]}.{suffix}"
        cli("attack", "obfuscate", marked, "--data", "digits", "-o", out, *flags, "--force")
        x = np.random.default_rng(1).random((200, 1, 8, 8), dtype=np.float32)
        before, after = wmtool.open_model(marked), wmtool.open_model(out)
        logits = before.predict_logits(x)
        assert np.allclose(after.predict_logits(x), logits, atol=1e-5 * max(1.0, float(np.abs(logits).max())))
    params_before = wmtool.open_model(marked).parameter_arrays()
    params_after = wmtool.open_model(folder / "obf0.safetensors").parameter_arrays()
    assert not np.allclose(params_before["hidden.1.weight"], params_after["hidden.1.weight"])
    assert "--dummy" in cli("attack", "obfuscate", "--help").stdout


def test_bits_fail_on_the_raw_tensor_and_succeed_after_alignment(cli, signed, tmp_path):
    import wmtool
    from wmtool.keys import load_key

    folder, clean, marked, key = signed
    obfuscated = folder / "obf-verify.safetensors"
    cli("attack", "obfuscate", marked, "--data", "digits", "-o", obfuscated, "--dummy", 4, "--force")
    loaded = load_key(key)
    decode = get_registry().get("embedder", "sign").decode
    raw = wmtool.open_model(marked).parameter_arrays()["hidden.1.weight"]
    assert np.mean(decode(raw, loaded) == loaded.array("bits")) > 0.75  # the marked model, read as it stands
    moved = wmtool.open_model(obfuscated).parameter_arrays()["hidden.1.weight"][:64, :64]
    assert abs(np.mean(decode(moved, loaded) == loaded.array("bits")) - 0.5) < 0.06  # chance without alignment
    report = cli.json("verify", "--key", key, obfuscated, expect=0)
    assert report["claimed"] and report["details"]["aligned"] and report["details"]["units_moved"] > 100
    assert report["success_rate"] > 0.7
    other = tmp_path / "other.safetensors"  # an independent model, aligned just the same, is not claimed
    cli("train", *MLP, "--data", "digits", "-o", other, "--epochs", 25, "--seed", 7)
    assert not cli.json("verify", "--key", key, other, expect=1)["claimed"]


def test_a_model_with_no_rewritable_layer_fails_in_one_line(cli, tmp_path):
    model = tmp_path / "r.safetensors"
    cli("train", "--arch", "resnet18", "--arch-args", '{"width": 4}', "--data", "digits", "-o", model, "--epochs", 1)
    refused = cli("attack", "obfuscate", model, "--data", "digits", "-o", tmp_path / "o.safetensors", expect=2)
    assert "no hidden layer followed by a ReLU" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
