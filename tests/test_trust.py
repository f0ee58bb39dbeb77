"""Trust: commitments, forged keys, determinism, interrupted writes."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from wmtool.errors import UserError
from wmtool.keys import commitment, load_key, save_key

TINY = {  # each scheme with settings that train in seconds on digits
    "backdoor": ("--epochs", 1),
    "ewe": ("--epochs", 1, "--clean-epochs", 1, "--fgsm-rounds", 1),
    "lsb": (),
    "sign": ("--epochs", 1),
    "correlation": ("--epochs", 1),
    "uchida": ("--epochs", 1),
    "capacity": ("--epochs", 1, "--carriers", 50),
    "ingrain": ("--epochs", 1, "--carriers", 50, "--ingrainer-epochs", 2),
}
MLP_SCHEMES = {"lsb", "sign", "correlation", "uchida", "capacity", "ingrain"}


def _adversarial(model_path, target: int, count: int = 60) -> np.ndarray:
    """Digits the clean model labels ``target`` after FGSM steps: what a forger would 'find' afterwards."""
    import torch

    from wmtool.data import load_dataset
    from wmtool.models import load_model
    from wmtool.plugins import get_registry

    model = load_model(model_path, get_registry()).eval()
    data = load_dataset("digits", "test", seed=0)
    x = torch.from_numpy(data.x[data.y != target][:count]).requires_grad_(True)
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(model(x), torch.full((len(x),), target))
        (grad,) = torch.autograd.grad(loss, x)
        x = (x - 0.02 * grad.sign()).clamp(0, 1).detach().requires_grad_(True)
    return x.detach().numpy()


def test_commitment_published_at_embedding_refuses_a_forged_key(cli, digits_models, tmp_path):
    marked, key_path, clean = digits_models["marked"], digits_models["key"], digits_models["clean"]
    original = load_key(key_path)
    published = commitment(original)
    assert cli.json("verify", "--key", key_path, marked, "--commitment", published)["claimed"]

    # a forger's key: adversarial examples of a clean model, all labelled 7, for the clean model
    inputs = _adversarial(clean, target=7)
    forged = dataclasses.replace(original, arrays={"inputs": inputs, "labels": np.full(len(inputs), 7)},
                                 model_sha256="0" * 64)
    forged_path = tmp_path / "forged.key.json"
    save_key(forged, forged_path)
    without = cli.json("verify", "--key", forged_path, clean, expect=None)
    assert without["claimed"]  # without a commitment the forgery would work: the check below matters
    refused = cli("verify", "--key", forged_path, clean, "--commitment", published, expect=2)
    assert "does not match the published commitment" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_embed_reports_the_keys_commitment(cli, digits_models, tmp_path):
    out, key = tmp_path / "m.safetensors", tmp_path / "m.key.json"
    report = cli.json("embed", "--scheme", "backdoor", digits_models["clean"], "--data", "digits", "-o", out,
                      "--key-out", key, "--epochs", 1)
    assert report["commitment"] == commitment(load_key(key))
    assert len(report["commitment"]) == 64


@pytest.mark.parametrize("scheme", ["ingrain", "sign"])
def test_swapped_seeded_watermark_is_refused(cli, digits_models, tmp_path, scheme):
    out, key_path = tmp_path / "m.safetensors", tmp_path / "m.key.json"
    cli("embed", "--scheme", scheme, "--arch", "mlp", "--arch-args", '{"width": 64}', "--data", "digits", "-o", out,
        "--key-out", key_path, *TINY[scheme])
    key = load_key(key_path)
    cli("verify", "--key", key_path, out, expect=None)  # the genuine key is accepted (claimed or not)
    arrays = dict(key.arrays)
    if scheme == "ingrain":
        arrays["inputs"] = _adversarial(digits_models["clean"], target=3, count=len(arrays["inputs"]))
        arrays["labels"] = np.full(len(arrays["inputs"]), 3)
    else:
        arrays["bits"] = 1 - arrays["bits"]
    save_key(dataclasses.replace(key, arrays=arrays), key_path, force=True)
    refused = cli("verify", "--key", key_path, out, expect=2)
    assert "is not what its seed generates" in refused.stderr


@pytest.mark.parametrize("scheme", sorted(TINY))
def test_same_seed_same_key_and_model(cli, tmp_path, digits_models, scheme):
    source = ("--arch", "mlp", "--arch-args", '{"width": 64}') if scheme in MLP_SCHEMES \
        else (digits_models["clean"],)
    results = []
    for run in (1, 2):
        out, key = tmp_path / f"{run}.safetensors", tmp_path / f"{run}.key.json"
        report = cli.json("embed", "--scheme", scheme, *source, "--data", "digits", "-o", out, "--key-out", key,
                          "--seed", 3, *TINY[scheme])
        results.append((report["sha256"], report["commitment"]))
    assert results[0] == results[1]


def _embed_process(tmp_path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "wmtool", "embed", "--scheme", "backdoor", "--arch", "ewe-cnn", "--data",
               "digits", "-o", str(tmp_path / "out.safetensors"), "--key-out", str(tmp_path / "out.key.json"),
               "--clean-epochs", "200", "--epochs", "1", "--quiet", *extra]
    # SIGINT back to its default in the child: a CI job started in the background inherits it ignored,
    # and Python then (rightly) leaves Ctrl-C ignored
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_killed_embed_leaves_no_file(tmp_path, how):
    process = _embed_process(tmp_path)
    time.sleep(6)  # well into training
    assert process.poll() is None
    process.send_signal(how)
    process.wait(timeout=180)
    assert sorted(os.listdir(tmp_path)) == []


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    from wmtool import atomic

    target = tmp_path / "model.safetensors"
    target.write_bytes(b"old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", broken_replace)
    with pytest.raises(UserError, match="cannot write .*: disk full"):  # one line for the user, not a traceback
        atomic.write_atomic(target, b"new and longer", force=True)
    assert target.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["model.safetensors"]


def test_key_is_private_and_verify_output_holds_no_secret(cli, digits_models):
    key_path = digits_models["key"]
    assert os.stat(key_path).st_mode & 0o077 == 0
    output = cli("verify", "--key", key_path, digits_models["marked"], "--json").stdout
    key = load_key(key_path)
    assert "zlib_base64" not in output and "inputs" not in output
    assert str(key.arrays["labels"].tolist()) not in output


def test_calibrate_stores_the_reference_null_rate_and_verify_uses_the_larger(cli, digits_models, tmp_path):
    import shutil

    from wmtool.models import file_sha256

    key_path = tmp_path / "key.json"
    shutil.copy(digits_models["key"], key_path)
    before = load_key(key_path)
    # a reference that answers the watermark often: the marked model's fine-tuned copy stands in for an
    # unlucky reference, so the calibrated rate must exceed the default
    leaky = tmp_path / "leaky.safetensors"
    cli("attack", "finetune", digits_models["marked"], "--data", "digits", "-o", leaky, "--epochs", 1)
    report = cli.json("calibrate", "--key", key_path, digits_models["clean"], leaky)
    after = load_key(key_path)
    assert [m["sha256"] for m in after.calibration["models"]] == [file_sha256(digits_models["clean"]),
                                                                  file_sha256(leaky)]
    assert report["rate"] > before.null.rate and after.null_rate() == report["rate"]
    assert commitment(after) == commitment(before)  # calibration does not change the claim
    verdict = cli.json("verify", "--key", key_path, digits_models["marked"], expect=None)
    assert verdict["null_rate"] == pytest.approx(report["rate"])
    refused = cli("calibrate", "--key", key_path, digits_models["marked"], expect=2)
    assert "is the marked model itself" in refused.stderr


def test_calibrate_takes_the_model_source_options(cli, digits_models, tmp_path):
    """A reference file that names no architecture is opened with --arch, as every command does."""
    from safetensors.torch import load_file, save_file

    bare = tmp_path / "bare.safetensors"
    save_file(load_file(str(digits_models["clean"])), str(bare))
    key_path = tmp_path / "key.json"
    key_path.write_bytes(digits_models["key"].read_bytes())
    refused = cli("calibrate", "--key", key_path, bare, expect=2)
    assert "names no architecture; pass --arch" in refused.stderr
    with_arch = cli.json("calibrate", "--key", key_path, bare, "--arch", "ewe-cnn")
    with_card = cli.json("calibrate", "--key", key_path, digits_models["clean"])
    assert with_arch["successes"] == with_card["successes"] and with_arch["trials"] == with_card["trials"] > 0


def test_a_folder_appears_whole_or_not_at_all(tmp_path):
    from wmtool.atomic import write_folder_atomic
    from wmtool.errors import UserError

    def fill(folder):
        (folder / "config.json").write_text("{}")
        (folder / "model.safetensors").write_bytes(b"x" * 100)

    def broken(folder):
        (folder / "config.json").write_text("{}")
        raise OSError("disk full")

    target = tmp_path / "model"
    with pytest.raises(UserError, match="disk full"):
        write_folder_atomic(target, broken)
    assert sorted(os.listdir(tmp_path)) == []  # no half folder, no temporary left
    write_folder_atomic(target, fill)
    with pytest.raises(UserError, match="exists; pass --force"):
        write_folder_atomic(target, fill)
    with pytest.raises(UserError, match="disk full"):
        write_folder_atomic(target, broken, force=True)
    assert sorted(os.listdir(target)) == ["config.json", "model.safetensors"]  # the old one kept whole
    write_folder_atomic(target, lambda folder: (folder / "new.json").write_text("{}"), force=True)
    assert sorted(os.listdir(tmp_path)) == ["model"] and sorted(os.listdir(target)) == ["new.json"]
