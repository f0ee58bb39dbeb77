"""`wmtool evaluate`: specs checked before any training, cells cached by content in a SQLite store, a run
killed with SIGKILL resumes without recomputing finished cells, and the report in every format."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "benchmarks" / "specs" / "digits-smoke.toml"


def _spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", [
    ("seeds = [0]\nbogus = 1\n[model]\narch = 'mlp'\n[data]\nowner = 'digits'\n[schemes.backdoor]\n",
     "unknown field(s) bogus"),
    ("[model]\narch = 'mlp'\n[data]\nowner = 'digits'\n[schemes.backdoor]\nepochs = 'three'\n",
     "[schemes.backdoor]: --epochs expects INTEGER, got 'three'"),
    ("[model]\narch = 'mlp'\n[data]\nowner = 'digits'\n[schemes.backdoor]\n[attacks.prune]\nrate = [0.2, 1.5]\n",
     "[attacks.prune]: --rate"),
    ("[model]\narch = 'nonet'\n[data]\nowner = 'digits'\n[schemes.backdoor]\n", "unknown architecture 'nonet'"),
    ("[model]\narch = 'mlp'\n[data]\nowner = 'digits'\n", "[schemes] names no scheme"),
    ("seeds = '4-x'\n[model]\narch = 'mlp'\n[data]\nowner = 'digits'\n[schemes.backdoor]\n", "seeds"),
    ("[model]\narch = 'mlp'\n[data]\nowner = 'digits'\n[schemes.nothing]\n", "unknown embedder 'nothing'"),
    ("[model]\narch = 'mlp'\n[data]\nowner = 'digits'\nattacker = 'nowhere.npz'\n[schemes.backdoor]\n",
     "[data] attacker = 'nowhere.npz': no such dataset"),
    ("[model]\narch = 'mlp'\n[data]\nowner = 'digits'\nowner_share = 1.5\n[schemes.backdoor]\n",
     "[data] owner_share must lie in (0, 1], got 1.5"),
])
def test_a_bad_spec_fails_before_any_training_naming_the_field(cli, tmp_path, text, message):
    refused = cli("evaluate", "--spec", _spec(tmp_path, text), "--out", tmp_path / "store", expect=2)
    assert message in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "store").exists()


def _matrix(cli, store: Path) -> dict:
    return cli.json("evaluate", "report", store)


def _sweep(cli, *args) -> tuple[list[dict], dict]:
    """Run a sweep with --json: a line per finished cell, then the summary."""
    lines = [json.loads(line) for line in cli("evaluate", *args, "--json").stdout.splitlines()]
    return lines[:-1], lines[-1]["summary"]


def test_smoke_sweep_report_formats_and_plots(cli, tmp_path):
    store = tmp_path / "store"
    finished, summary = _sweep(cli, "--spec", SMOKE, "--out", store)
    assert summary["failed"] == 0 and summary["computed"] == summary["cells"] == len(finished)
    assert {line["kind"] for line in finished} == {"train", "embed", "attack", "verify"}
    again, rerun = _sweep(cli, "--spec", SMOKE, "--out", store)
    assert again == [] and rerun == {**summary, "computed": 0, "cached": summary["cells"]}
    found = _matrix(cli, store)
    cells = {(c["scheme"], c["attack"]): c for c in found["cells"]}
    assert len(cells) == 3 * (4 * 2 + 1) and all(c["n"] == 3 for c in cells.values())
    assert cells[("backdoor", "none")]["claimed"] == 3  # a marked model is claimed on every seed
    assert cells[("lsb", "none")]["watermark_success"]["mean"] == 1.0
    assert cells[("lsb", "round digits=1")]["claimed"] == 0  # rounding erases the lowest mantissa bits
    assert set(found["false_claims"]) == {"backdoor", "lsb", "sign"}
    assert all(fc["n"] == 6 and fc["claimed"] == 0 for fc in found["false_claims"].values())
    rows = list(csv.DictReader(io.StringIO(cli("evaluate", "report", store, "--format", "csv").stdout)))
    assert len(rows) == len(cells) and {r["claimed"] for r in rows} <= {"0", "1", "2", "3"}
    markdown = cli("evaluate", "report", store, "--format", "markdown").stdout
    assert markdown.startswith("| scheme | none | finetune epochs=1 |") and "claimed 3/3" in markdown
    plotted = cli.json("evaluate", "report", store, "--plot", tmp_path / "plots")["plots"]
    assert {Path(p).name for p in plotted} >= {"strength-prune-rate.png", "accuracy-vs-watermark.png",
                                               "queries-needed.png"}
    assert [needed < 20 for _, needed in cells[("backdoor", "none")]["queries_needed"]] == [True] * 3
    assert all(Path(p).read_bytes()[:4] == b"\x89PNG" for p in plotted)


def _computed_keys(store: Path) -> dict[str, float]:
    with sqlite3.connect(store / "results.sqlite") as db:
        return dict(db.execute("SELECT key, finished FROM cells").fetchall())


def test_killed_with_sigkill_it_resumes_without_recomputing(cli, tmp_path):
    whole, store = tmp_path / "whole", tmp_path / "killed"
    cli("evaluate", "--spec", SMOKE, "--out", whole, "--quiet")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    process = subprocess.Popen([sys.executable, "-m", "wmtool", "evaluate", "--spec", str(SMOKE), "--out", str(store),
                                "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 120
    total = len(_computed_keys(whole))
    while time.time() < deadline:  # kill it halfway
        time.sleep(0.2)
        if (store / "results.sqlite").exists() and len(_computed_keys(store)) >= total // 2:
            break
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    before = _computed_keys(store)
    assert 0 < len(before) < total
    _, resumed = _sweep(cli, "--spec", SMOKE, "--out", store)
    after = _computed_keys(store)
    assert resumed["cached"] == len(before) and resumed["computed"] == total - len(before)
    assert {key: after[key] for key in before} == before  # finished cells were not computed again
    assert _matrix(cli, store) == _matrix(cli, whole)


def test_two_workers_give_the_same_rows_as_one(cli, tmp_path):
    spec = _spec(tmp_path, "seeds = [0, 1]\nreferences = 1\n[model]\narch = 'mlp'\narch_args = { width = 32 }\n"
                           "epochs = 5\n[data]\nowner = 'digits'\n[schemes.sign]\nepochs = 2\nbits = 64\n"
                           "[attacks.prune]\nrate = [0.5]\n[[chains]]\nsteps = ['prune', 'round']\n")
    cli("evaluate", "--spec", spec, "--out", tmp_path / "one", "--quiet")
    cli("evaluate", "--spec", spec, "--out", tmp_path / "two", "--jobs", 2, "--quiet")
    one, two = _matrix(cli, tmp_path / "one"), _matrix(cli, tmp_path / "two")
    assert one == two and {c["attack"] for c in one["cells"]} == {"none", "prune rate=0.5", "prune → round"}


def test_a_failing_cell_is_recorded_and_the_sweep_goes_on(cli, tmp_path):
    spec = _spec(tmp_path, "references = 0\n[model]\narch = 'mlp'\narch_args = { width = 32 }\nepochs = 3\n"
                           "[data]\nowner = 'digits'\n[schemes.sign]\nbits = 100000\n[schemes.lsb]\nbits = 64\n")
    _, summary = _sweep(cli, "--spec", spec, "--out", tmp_path / "s")
    assert summary["failed"] == 2  # sign's embedding (too many bits) and its verification
    cells = {c["scheme"]: c for c in _matrix(cli, tmp_path / "s")["cells"]}
    assert cells["sign"]["n"] == 0 and "needs embed cell" in cells["sign"]["failed"][0]
    assert cells["lsb"]["claimed"] == 1


def test_a_local_ray_with_two_cpus_gives_the_same_rows(cli, tmp_path):
    if not os.environ.get("CI"):  # CI installs the ray extra; elsewhere it may be missing
        pytest.importorskip("ray")
    spec = _spec(tmp_path, "seeds = [0, 1]\nreferences = 1\n[model]\narch = 'mlp'\narch_args = { width = 32 }\n"
                           "epochs = 5\n[data]\nowner = 'digits'\n[schemes.lsb]\nbits = 64\n"
                           "[attacks.round]\ndigits = [1, 4]\n")
    cli("evaluate", "--spec", spec, "--out", tmp_path / "local", "--quiet")
    _, summary = _sweep(cli, "--spec", spec, "--out", tmp_path / "ray", "--backend", "ray", "--jobs", 2)
    assert summary["failed"] == 0 and summary["computed"] == summary["cells"]
    assert _matrix(cli, tmp_path / "ray") == _matrix(cli, tmp_path / "local")


def test_schemes_can_train_their_marked_model_from_scratch(cli, tmp_path):
    spec = _spec(tmp_path, "references = 1\n[model]\narch = 'mlp'\narch_args = { width = 32 }\nepochs = 3\n"
                           "embed_into = 'scratch'\n[data]\nowner = 'digits'\n[schemes.backdoor]\nclean_epochs = 40\n"
                           "epochs = 5\nbatch_size = 32\n")
    finished, summary = _sweep(cli, "--spec", spec, "--out", tmp_path / "s")
    kinds = sorted(line["kind"] for line in finished)
    assert kinds == ["embed", "train", "verify", "verify"]  # the reference trains; the victim is the embedding
    cells = {c["attack"]: c for c in _matrix(cli, tmp_path / "s")["cells"]}
    assert cells["none"]["claimed"] == 1 and cells["none"]["accuracy"]["mean"] > 0.8
    refused = cli("evaluate", "--spec", _spec(tmp_path, "[model]\npath = 'm.safetensors'\nembed_into = 'scratch'\n"
                                                        "[data]\nowner = 'digits'\n[schemes.backdoor]\n"),
                  "--out", tmp_path / "t", expect=2)
    assert "embed_into = \"scratch\" needs arch" in refused.stderr


def test_reference_models_of_other_architectures_join_the_false_claim_column(cli, tmp_path):
    spec = _spec(tmp_path, "seeds = [0]\nreferences = 1\n[[reference_models]]\narch = 'mlp'\narch_args = { width = 16 }\n"
                           "epochs = 2\ncount = 2\n[model]\narch = 'ewe-cnn'\nepochs = 3\n[data]\nowner = 'digits'\n"
                           "[schemes.backdoor]\nepochs = 1\n")
    finished, _ = _sweep(cli, "--spec", spec, "--out", tmp_path / "s")
    trained = [line for line in finished if line["kind"] == "train"]
    assert len(trained) == 1 + 1 + 2  # the victim, one reference like it, two of another architecture
    assert _matrix(cli, tmp_path / "s")["false_claims"]["backdoor"]["n"] == 3
    refused = cli("evaluate", "--spec", _spec(tmp_path, "[[reference_models]]\narch = 'mlp'\ncolour = 'red'\n"
                                                        "[model]\narch = 'mlp'\n[data]\nowner = 'digits'\n"
                                                        "[schemes.backdoor]\n"), "--out", tmp_path / "t", expect=2)
    assert "reference_models[0] takes arch (required), arch_args, epochs and count" in refused.stderr


def test_reference_models_given_as_files_open_with_the_source_fields_of_the_spec(cli, tmp_path, digits_models):
    onnx_file = tmp_path / "clean.onnx"
    cli("convert", digits_models["clean"], "-o", onnx_file)
    spec = _spec(tmp_path, f"seeds = [0]\nreferences = 0\n[model]\npath = '{digits_models['clean']}'\n"
                           f"[[reference_models]]\npath = '{onnx_file}'\n"
                           f"[[reference_models]]\npath = '{onnx_file}'\nmean = [0.9]\nstd = 0.1\n"
                           "[data]\nowner = 'digits'\n[schemes.backdoor]\nepochs = 1\n")
    finished, _ = _sweep(cli, "--spec", spec, "--out", tmp_path / "s")
    references = sorted((line for line in finished if line["kind"] == "verify" and line["role"].startswith("reference")),
                        key=lambda line: line["accuracy"])
    assert len(references) == 2
    # the same clean file, opened as it states and normalised as the spec says (mean 0.9, std 0.1)
    assert references[1]["accuracy"] > 0.85 and references[0]["accuracy"] < references[1]["accuracy"] - 0.2
    assert _matrix(cli, tmp_path / "s")["false_claims"]["backdoor"] == {**_matrix(cli, tmp_path / "s")[
        "false_claims"]["backdoor"], "n": 2, "claimed": 0}
    refused = cli("evaluate", "--spec", _spec(tmp_path, f"[[reference_models]]\npath = '{onnx_file}'\ncount = 2\n"
                                                        "[model]\narch = 'mlp'\n[data]\nowner = 'digits'\n"
                                                        "[schemes.backdoor]\n"), "--out", tmp_path / "t", expect=2)
    assert "reference_models[0] with path takes arch, arch_args, input_range, mean, std, layout" in refused.stderr
    refused = cli("evaluate", "--spec", _spec(tmp_path, f"[[reference_models]]\npath = '{onnx_file}'\nmean = 'grey'\n"
                                                        "[model]\narch = 'mlp'\n[data]\nowner = 'digits'\n"
                                                        "[schemes.backdoor]\n"), "--out", tmp_path / "t", expect=2)
    assert "reference_models[0]: mean takes numbers, got 'grey'" in refused.stderr
