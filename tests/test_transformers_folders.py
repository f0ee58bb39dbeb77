"""Hugging Face transformers folders as their users keep them: real folders written by the library's own
``save_pretrained`` (random or briefly trained weights, never fetched), opened, marked, written back as
folders the library loads, and verified."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

try:
    import transformers
except ImportError:
    if os.environ.get("CI"):
        raise RuntimeError("CI must install transformers (the README's test command does, through the test extra)")
    pytest.skip("transformers is not installed", allow_module_level=True)

from conftest import SMALL_TRANSFORMER as SMALL  # noqa: E402
from conftest import tiny_vit  # noqa: E402
from wmtool.data import load_dataset  # noqa: E402

DIGIT_LABELS = {i: f"digit {i}" for i in range(10)}


def _processor_config(size: int, mean: float, std: float) -> dict:
    return {"do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [mean], "image_std": [std],
            "image_processor_type": "ViTImageProcessor", "resample": 2, "rescale_factor": 1 / 255,
            "size": {"height": size, "width": size}}


def _save(model, folder: Path, processor: dict | None = None, **options) -> Path:
    model.save_pretrained(str(folder), **options)
    if processor is not None:
        (folder / "preprocessor_config.json").write_text(json.dumps(processor))
    return folder


def _vit_trained_at(side: int):
    """A ViT for side × side images, trained a few seconds on digits resized to that size (bilinear, as
    its processor will resize them)."""
    import torch

    torch.manual_seed(1)
    model = transformers.ViTForImageClassification(transformers.ViTConfig(
        image_size=side, patch_size=side // 2, num_channels=1, num_labels=10, **SMALL))
    data = load_dataset("digits", "train")
    x = torch.nn.functional.interpolate(torch.from_numpy(data.x), size=(side, side), mode="bilinear",
                                        antialias=True, align_corners=False)
    x, y = (x - 0.5) / 0.5, torch.from_numpy(data.y)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(12):
        for index in torch.randperm(len(y), generator=torch.Generator().manual_seed(1)).split(64):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(pixel_values=x[index]).logits, y[index]).backward()
            optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def folders(tmp_path_factory, trained_vit) -> dict[str, Path]:
    """Real transformers folders: a trained ViT (single file and sharded, and as a Hugging Face cache
    folder), a ResNet and a ConvNeXt with random weights, a 5-class ViT, a BERT text classifier, and a
    folder holding only a pickle."""
    transformers.utils.logging.disable_progress_bar()
    root = tmp_path_factory.mktemp("hf")
    trained = trained_vit
    made = {"vit": _save(trained, root / "vit", _processor_config(8, 0.5, 0.5)),
            "sharded": _save(trained, root / "sharded", _processor_config(8, 0.5, 0.5), max_shard_size="40KB")}
    snapshot = root / "models--someone--digits-vit" / "snapshots" / "abc123"
    shutil.copytree(made["vit"], snapshot)
    (root / "models--someone--digits-vit" / "refs").mkdir()
    (root / "models--someone--digits-vit" / "refs" / "main").write_text("abc123")
    made["cache"] = root / "models--someone--digits-vit"
    resnet = transformers.ResNetForImageClassification(transformers.ResNetConfig(
        num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=10))
    made["resnet"] = _save(resnet, root / "resnet", _processor_config(8, 0.5, 0.5))
    convnext = transformers.ConvNextForImageClassification(transformers.ConvNextConfig(
        num_channels=1, hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, num_labels=10, patch_size=2))
    made["convnext"] = _save(convnext, root / "convnext", _processor_config(8, 0.5, 0.5))
    made["five"] = _save(tiny_vit(num_labels=5), root / "five", _processor_config(8, 0.5, 0.5))
    made["resized"] = _save(_vit_trained_at(16), root / "resized", _processor_config(16, 0.5, 0.5))
    rgb = transformers.ViTForImageClassification(transformers.ViTConfig(image_size=8, patch_size=4, num_channels=3,
                                                                        num_labels=10, **SMALL))
    made["rgb"] = _save(rgb, root / "rgb", _processor_config(8, 0.5, 0.5))
    bert = transformers.BertForSequenceClassification(transformers.BertConfig(vocab_size=50, **SMALL))
    made["bert"] = _save(bert, root / "bert")
    pickled = root / "pickled"
    pickled.mkdir()
    shutil.copy(made["vit"] / "config.json", pickled)
    (pickled / "pytorch_model.bin").write_bytes(b"not opened")
    made["pickled"] = pickled
    return made


def _library_accuracy(folder: Path) -> float:
    """What the library's own pipeline gives on digits' test split: its image processor on the images
    (as 8-bit greyscale pictures), its model on the result."""
    import torch
    from PIL import Image

    test = load_dataset("digits", "test")
    processor = transformers.AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)
    model = transformers.AutoModelForImageClassification.from_pretrained(str(folder), local_files_only=True).eval()
    images = [Image.fromarray(np.round(image[0] * 255).astype(np.uint8), mode="L") for image in test.x]
    batch = processor(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        predicted = model(pixel_values=batch).logits.argmax(1).numpy()
    return float((predicted == test.y).mean())


def test_inspect_reads_the_card_from_the_folder(cli, folders):
    info = cli.json("inspect", folders["vit"])
    assert info["format"] == "transformers"
    card = info["card"]
    assert card["input_shape"] == [1, 8, 8] and card["num_classes"] == 10
    assert card["classes"] == [f"digit {i}" for i in range(10)]
    assert card["preprocessing"]["mean"] == [0.5] and card["preprocessing"]["std"] == [0.5]
    assert "vit.embeddings.patch_embeddings.projection.weight" in info["tensors"]
    assert cli.json("inspect", folders["sharded"])["tensors"] == info["tensors"]
    assert cli.json("inspect", folders["cache"])["card"] == card


@pytest.mark.parametrize("name", ["vit", "sharded", "cache"])
def test_accuracy_without_flags_matches_the_librarys_own_pipeline(cli, folders, name):
    ours = cli.json("accuracy", folders[name], "--data", "digits")["accuracy"]
    assert ours > 0.5  # briefly trained: far above chance
    assert abs(ours - _library_accuracy(folders["vit"])) <= 0.003


@pytest.mark.parametrize("name", ["resnet", "convnext"])
def test_random_weight_folders_open_and_match_the_library(cli, folders, name):
    ours = cli.json("accuracy", folders[name], "--data", "digits")["accuracy"]
    assert abs(ours - _library_accuracy(folders[name])) <= 0.003


@pytest.mark.parametrize("scheme, options", [("backdoor", ("--epochs", 2, "--lr", "3e-3")),
                                             ("sign", ("--epochs", 3, "--bits", 64))])
def test_mark_to_a_folder_load_it_with_the_library_and_verify(cli, folders, tmp_path, scheme, options):
    source = folders["sharded"]
    marked, key = tmp_path / "marked", tmp_path / "key.json"
    made = cli.json("embed", "--scheme", scheme, source, "--data", "digits", "-o", marked, "--key-out", key, *options)
    assert made["test_accuracy"] > 0.5
    assert sorted(p.name for p in marked.iterdir()) == sorted(p.name for p in source.iterdir())  # sharded alike
    reloaded = transformers.AutoModelForImageClassification.from_pretrained(str(marked), local_files_only=True)
    assert type(reloaded).__name__ == "ViTForImageClassification"
    from safetensors import safe_open

    for shard in marked.glob("*.safetensors"):
        with safe_open(str(shard), "pt") as handle:
            metadata = handle.metadata()
        assert metadata["format"] == "pt" and json.loads(metadata["wmtool"])["arch"] == "transformers"
    assert cli.json("verify", "--key", key, marked)["claimed"]
    assert not cli.json("verify", "--key", key, source, expect=1)["claimed"]
    single = tmp_path / "marked.safetensors"
    cli("convert", marked, "-o", single)
    assert cli.json("verify", "--key", key, single, expect=None)["success_rate"] == \
        cli.json("verify", "--key", key, marked)["success_rate"]


def test_folder_output_is_refused_for_a_model_no_folder_format_writes(cli, digits_models, tmp_path):
    refused = cli("convert", digits_models["clean"], "-o", tmp_path / "out", expect=2)
    assert "no folder format writes this model (architecture ewe-cnn" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_a_text_classifier_is_one_line(cli, folders):
    refused = cli("accuracy", folders["bert"], "--data", "digits", expect=2)
    assert refused.stderr.strip() == (f"error: {folders['bert']}: a text classifier (BertForSequenceClassification):"
                                      " image data cannot feed it; wmtool reads image classifiers "
                                      "(…ForImageClassification)")


def test_a_five_class_folder_on_ten_class_data_is_one_line_before_any_training(cli, folders, tmp_path):
    refused = cli("embed", "--scheme", "backdoor", folders["five"], "--data", "digits", "-o", tmp_path / "m",
                  expect=2)
    assert refused.stderr.strip() == "error: the model has 5 classes, digits:train has labels up to 9"
    assert not (tmp_path / "m").exists()


def test_a_pickle_only_folder_is_refused_with_how_to_convert(cli, folders):
    refused = cli("accuracy", folders["pickled"], "--data", "digits", expect=2)
    assert "pytorch_model.bin" in refused.stderr and "save_pretrained" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


FIXTURE = Path(__file__).parent / "fixtures" / "vit-transformers4"


def test_a_folder_written_by_transformers_4_opens_is_marked_and_written_back(cli, tmp_path):
    """tests/fixtures/vit-transformers4 was made once with transformers 4.57 (see its MADE_BY.txt)."""
    assert json.loads((FIXTURE / "config.json").read_text())["transformers_version"].startswith("4.")
    assert cli.json("inspect", FIXTURE)["card"]["input_shape"] == [1, 8, 8]
    ours = cli.json("accuracy", FIXTURE, "--data", "digits")["accuracy"]
    assert abs(ours - _library_accuracy(FIXTURE)) <= 0.003
    marked, key = tmp_path / "marked", tmp_path / "key.json"
    cli("embed", "--scheme", "sign", FIXTURE, "--data", "digits", "-o", marked, "--key-out", key, "--epochs", 3,
        "--bits", 64)
    reloaded = transformers.AutoModelForImageClassification.from_pretrained(str(marked), local_files_only=True)
    assert reloaded.config.id2label[3] == "digit 3"
    assert cli.json("verify", "--key", key, marked)["claimed"]
    assert not cli.json("verify", "--key", key, FIXTURE, expect=1)["claimed"]


def test_images_of_another_size_are_resized_as_the_processor_does(cli, folders, tmp_path):
    card = cli.json("inspect", folders["resized"])["card"]
    assert card["input_shape"] == [1, 16, 16] and card["preprocessing"]["size"] == [16, 16]
    ours = cli.json("accuracy", folders["resized"], "--data", "digits")["accuracy"]
    assert ours > 0.5 and abs(ours - _library_accuracy(folders["resized"])) <= 0.003
    marked, key = tmp_path / "marked", tmp_path / "key.json"
    cli("embed", "--scheme", "backdoor", folders["resized"], "--data", "digits", "-o", marked, "--key-out", key,
        "--epochs", 2, "--lr", "3e-3")
    assert cli.json("verify", "--key", key, marked)["claimed"]
    as_onnx = tmp_path / "marked.onnx"
    cli("convert", marked, "-o", as_onnx)  # the card's resize travels; onnxruntime gets resized images
    assert cli.json("verify", "--key", key, as_onnx)["success_rate"] == cli.json("verify", "--key", key, marked)[
        "success_rate"]


def test_another_channel_count_is_one_line(cli, folders):
    refused = cli("accuracy", folders["rgb"], "--data", "digits", expect=2)
    assert refused.stderr.strip() == ("error: " + str(folders["rgb"]) + " expects inputs of shape (3, 8, 8) (it "
                                      "resizes images, but not their channel count), digits:test has (1, 8, 8)")


@pytest.mark.parametrize("name", ["resnet", "convnext"])
def test_convolutional_folders_are_marked_into_folders_too(cli, folders, tmp_path, name):
    """lsb writes its bits into the weights' lowest mantissa bits: claimed only if the folder written back
    holds the marked weights bit for bit."""
    marked, key = tmp_path / "marked", tmp_path / "key.json"
    cli("embed", "--scheme", "lsb", folders[name], "--data", "digits", "-o", marked, "--key-out", key, "--bits", 256)
    reloaded = transformers.AutoModelForImageClassification.from_pretrained(str(marked), local_files_only=True)
    assert type(reloaded).__name__ == json.loads((folders[name] / "config.json").read_text())["architectures"][0]
    assert cli.json("verify", "--key", key, marked)["claimed"]
    assert not cli.json("verify", "--key", key, folders[name], expect=1)["claimed"]


def test_a_folder_is_fingerprinted_and_its_copies_verified(cli, folders, digits_models, tmp_path):
    key = tmp_path / "fp.json"
    made = cli.json("fingerprint", folders["vit"], "-o", key, "--method", "ipguard", "--count", 60, "--steps", 50,
                    "--reference", folders["resnet"], "--reference", folders["convnext"])
    assert made["null_rate"] < 0.6
    assert cli.json("verify", "--key", key, folders["sharded"])["success_rate"] == 1.0  # the same weights, sharded
    assert cli.json("verify", "--key", key, folders["cache"])["claimed"]
    assert not cli.json("verify", "--key", key, digits_models["clean"], expect=1)["claimed"]
