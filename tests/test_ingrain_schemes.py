"""The ingrain paper's schemes: W:LSB, W:SGN, W:COR, W:STA (white-box bits) and P:CAP, P:ING (carriers)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy.stats import binom

from wmtool.watermarks import CARRIERS, carrier_images
from wmtool.plugins import get_registry


def decode(scheme: str, weight: np.ndarray, job) -> np.ndarray:
    """The bits scheme ``scheme`` reads back from ``weight``, through the decoder it registered."""
    return get_registry().get("embedder", scheme).decode(weight, job.key)

MLP = ("--arch", "mlp", "--arch-args", '{"width": 128}')


@pytest.fixture(scope="module")
def mlps(tmp_path_factory, cli):
    """Two independently trained clean MLPs on digits."""
    folder = tmp_path_factory.mktemp("mlp")
    paths = []
    for seed in (0, 1):
        path = folder / f"clean{seed}.safetensors"
        cli("train", *MLP, "--data", "digits", "-o", path, "--epochs", 25, "--seed", seed)
        paths.append(path)
    return folder, paths


@pytest.mark.parametrize("scheme", ["lsb", "sign", "correlation", "uchida"])
def test_white_box_schemes_embed_verify_and_refuse_a_clean_model(cli, mlps, scheme):
    folder, (clean, other) = mlps
    marked, key = folder / f"{scheme}.safetensors", folder / f"{scheme}.json"
    epochs = () if scheme == "lsb" else ("--epochs", 30)  # digits has 12 batches an epoch
    embedded = cli.json("embed", "--scheme", scheme, clean, "--data", "digits", "-o", marked, "--key-out", key,
                        *epochs, "--force")
    assert embedded["test_accuracy"] > 0.9
    mine = cli.json("verify", "--key", key, marked)
    assert mine["claimed"] and mine["details"]["bit_accuracy"] >= (1.0 if scheme == "lsb" else 0.75)
    assert mine["null_rate"] == 0.5
    stranger = cli.json("verify", "--key", key, other, expect=1)
    assert not stranger["claimed"] and abs(stranger["success_rate"] - 0.5) < 0.1


def test_bit_decoders_read_known_bits():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, 64).astype(np.uint8)
    positions = np.arange(0, 128, 2)
    arrays = {"bits": bits, "positions": positions, "projection": np.eye(64, 16, dtype=np.float32)}
    job = SimpleNamespace(key=SimpleNamespace(array=arrays.__getitem__))
    weight = rng.standard_normal((8, 16)).astype(np.float32)
    flat = weight.reshape(-1)
    flat[positions] = np.where(bits == 1, 1.0, -1.0) * np.abs(flat[positions])
    assert (decode("sign", weight, job) == bits).all()
    assert (decode("correlation", weight, job) == (flat[positions] > flat[positions].mean())).all()
    ints = flat.view(np.uint32)
    ints[positions] = (ints[positions] & ~np.uint32(1)) | bits
    assert (decode("lsb", weight, job) == bits).all()
    mean = weight.mean(0)  # the projection rows pick single columns: bit j = [mean_j > 0] for j < 16
    assert (decode("uchida", weight, job)[:16] == (mean > 0)).all()


def test_bits_false_claim_rate_is_alpha():
    """Random keys against one fixed clean weight: the share claimed at α = 0.01 stays near α."""
    weight = np.random.default_rng(1).standard_normal((64, 64)).astype(np.float32)
    claimed = 0
    for seed in range(300):
        rng = np.random.default_rng(seed)
        arrays = {"bits": rng.integers(0, 2, 256).astype(np.uint8),
                  "positions": np.sort(rng.choice(weight.size, 256, replace=False)),
                  "projection": rng.standard_normal((256, 64)).astype(np.float32)}
        job = SimpleNamespace(key=SimpleNamespace(array=arrays.__getitem__))
        for decoder in ("lsb", "sign", "correlation", "uchida"):
            matches = int((decode(decoder, weight, job) == arrays["bits"]).sum())
            claimed += binom.sf(matches - 1, 256, 0.5) < 0.01
    assert claimed / 1200 < 0.025


def test_rounding_erases_lsb_but_not_the_sign_bits(cli, mlps, tmp_path):
    folder, (clean, _) = mlps
    for scheme, epochs in (("lsb", ()), ("sign", ("--epochs", 5))):
        marked, key = tmp_path / f"{scheme}.safetensors", tmp_path / f"{scheme}.json"
        cli("embed", "--scheme", scheme, clean, "--data", "digits", "-o", marked, "--key-out", key, *epochs)
        rounded = tmp_path / f"{scheme}-rounded.safetensors"
        cli("attack", "round", marked, "--data", "digits", "-o", rounded, "--digits", 2)
        verdict = cli.json("verify", "--key", key, rounded, expect=None)
        if scheme == "lsb":
            assert verdict["details"]["normalised"] < 0.15 and not verdict["claimed"]
        else:
            assert verdict["claimed"]


def test_bits_verifier_reads_an_onnx_suspect(cli, mlps, tmp_path):
    folder, (clean, _) = mlps
    marked, key = tmp_path / "sign.safetensors", tmp_path / "sign.json"
    cli("embed", "--scheme", "sign", clean, "--data", "digits", "-o", marked, "--key-out", key, "--epochs", 5)
    exported = tmp_path / "sign.onnx"
    cli("convert", marked, "-o", exported)
    from_file = cli.json("verify", "--key", key, marked)
    from_onnx = cli.json("verify", "--key", key, exported)
    assert from_onnx["claimed"] and from_onnx["successes"] == from_file["successes"]


def test_bits_verifier_names_a_mismatched_architecture(cli, mlps, tmp_path, digits_models):
    folder, (clean, _) = mlps
    marked, key = tmp_path / "sign.safetensors", tmp_path / "sign.json"
    cli("embed", "--scheme", "sign", clean, "--data", "digits", "-o", marked, "--key-out", key, "--epochs", 1)
    message = cli("verify", "--key", key, digits_models["clean"], expect=2).stderr
    assert "layers do not match" in message and len(message.strip().splitlines()) == 1


@pytest.mark.parametrize("scheme", ["capacity", "ingrain"])
def test_carrier_schemes_embed_verify_and_refuse_a_clean_model(cli, mlps, scheme, tmp_path):
    _, (clean, _) = mlps
    marked, key = tmp_path / f"{scheme}.safetensors", tmp_path / f"{scheme}.json"
    extra = ("--ingrainer-epochs", 60) if scheme == "ingrain" else ()
    embedded = cli.json("embed", "--scheme", scheme, *MLP, "--data", "digits", "-o", marked, "--key-out", key,
                        "--carriers", 100, "--epochs", 40, *extra)
    assert embedded["test_accuracy"] > 0.85
    mine = cli.json("verify", "--key", key, marked)
    # normalised 0.29-0.33 over seeds 0-2 on the CPU (100 random labels memorised through dropout 0.5)
    assert mine["claimed"] and mine["details"]["normalised"] > 0.2 and mine["null_rate"] == pytest.approx(0.1)
    assert not cli.json("verify", "--key", key, clean, expect=1)["claimed"]


@pytest.mark.parametrize("kind", CARRIERS)
def test_carriers_are_seeded_images_in_range(kind):
    first = carrier_images(kind, 20, (1, 28, 28), np.random.default_rng(3))
    again = carrier_images(kind, 20, (1, 28, 28), np.random.default_rng(3))
    assert first.shape == (20, 1, 28, 28) and first.dtype == np.float32
    assert (first == again).all() and first.min() >= 0 and first.max() <= 1
    if kind == "random-walk":  # a walk of H·W steps from the centre touches a connected blob of pixels
        touched = (first > 0).reshape(20, -1).sum(1)
        assert (touched > 28).all() and (touched < 28 * 28 / 2).all()


def test_bits_claim_needs_the_minimum_accuracy_as_well_as_significance(cli, mlps, tmp_path):
    """53% of 3,000 bits is significant (p ≈ 5e-4) but below the 0.55 decision threshold: no claim."""
    import dataclasses

    from safetensors.numpy import load_file

    from wmtool.keys import load_key, save_key

    _, (clean, _) = mlps
    marked, key_path = tmp_path / "sign.safetensors", tmp_path / "sign.json"
    cli("embed", "--scheme", "sign", clean, "--data", "digits", "-o", marked, "--key-out", key_path, "--epochs", 1)
    key = load_key(key_path)
    weight = load_file(str(clean))[key.params["tensor"]]
    found = (weight.reshape(-1)[key.array("positions")] > 0).astype(np.uint8)
    bits = found.copy()
    bits[: round(0.47 * len(bits))] ^= 1  # 53% agree with the clean model's signs
    params = {k: v for k, v in key.params.items() if k != "seed"}  # a key without a seed is not regenerated
    save_key(dataclasses.replace(key, params=params, arrays={**key.arrays, "bits": bits}), key_path, force=True)
    verdict = cli.json("verify", "--key", key_path, clean, expect=1)
    assert verdict["p_value"] < 0.01 and verdict["success_rate"] == pytest.approx(0.53, abs=0.001)
    assert not verdict["claimed"]
    # the bits verifier's own option reaches it from the command line, both ways
    assert cli.json("verify", "--key", key_path, clean, "--min-accuracy", 0.52)["claimed"]
    marked_verdict = cli.json("verify", "--key", key_path, marked, expect=None)
    stricter = cli.json("verify", "--key", key_path, marked, "--min-accuracy", 0.99, expect=1)
    assert stricter["success_rate"] == marked_verdict["success_rate"] < 0.99 and not stricter["claimed"]
    listed = cli("verify", "--key", key_path, "--help").stdout
    assert "--min-accuracy" in listed and "verifier bits" in listed


def test_the_ingrainer_trains_with_its_own_optimizer_or_else_the_classifiers(monkeypatch):
    import wmtool_plugins.ingrain as ingrain

    class Net:
        def to(self, device):
            return self

        def predict_logits(self, x):
            return np.zeros((len(x), 10), dtype=np.float32)

    seen = []
    monkeypatch.setattr(ingrain, "fresh_model_for", lambda card, registry: Net())
    monkeypatch.setattr(ingrain, "fit_supervised",
                        lambda net, x, y, **kw: seen.append((kw["optimizer"], kw["lr"], kw["optimizer_options"])))
    base = {"ingrainer_epochs": 1, "batch_size": 8, "optimizer": "adam", "lr": 1e-3}
    for own in ({"ingrainer_optimizer": None, "ingrainer_lr": None},
                {"ingrainer_optimizer": "adadelta", "ingrainer_lr": 0.1}):
        job = SimpleNamespace(params={**base, **own}, seed=0, model=SimpleNamespace(card=None), registry=None,
                              device="cpu", progress=None, data=SimpleNamespace(x=np.zeros((4, 1, 8, 8))))
        soft = ingrain.ingrainer_outputs(job, np.zeros((2, 1, 8, 8)), np.zeros(2, dtype=np.int64))
        assert soft.shape == (4, 10) and np.allclose(soft, 0.1)
    assert seen == [("adam", 1e-3, {}), ("adadelta", 0.1, {"rho": 0.95, "eps": 1e-8})]
