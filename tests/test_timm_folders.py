"""timm folders as timm's hub export writes them: a real ViT at a non-default image size (timm's
``model_args``), briefly trained, opened, marked, written back as a folder timm loads, and verified."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

try:
    import timm
except ImportError:
    if os.environ.get("CI"):
        raise RuntimeError("CI must install timm (the README's test command does, through the timm extra)")
    pytest.skip("timm is not installed", allow_module_level=True)

from wmtool.data import load_dataset  # noqa: E402

DIGITS = {"mean": (0.5,), "std": (0.5,)}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A timm ViT for digits' 1×8×8 images (img_size 8, patch 4, not the default 224), trained a few
    seconds with timm's own model in a plain loop, exported with timm's save_for_hf."""
    import torch

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=8, patch_size=4, in_chans=1,
                              num_classes=10, embed_dim=32, depth=2, num_heads=2)
    model.pretrained_cfg = {**model.pretrained_cfg, **DIGITS, "input_size": (1, 8, 8)}
    data = load_dataset("digits", "train")
    x, y = (torch.from_numpy(data.x) - 0.5) / 0.5, torch.from_numpy(data.y)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(12):
        for index in torch.randperm(len(y), generator=torch.Generator().manual_seed(0)).split(64):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x[index]), y[index]).backward()
            optimizer.step()
    out = tmp_path_factory.mktemp("timm") / "vit"
    timm.models.save_for_hf(model.eval(), str(out), safe_serialization=True,
                            model_args={"img_size": 8, "patch_size": 4, "in_chans": 1, "num_classes": 10,
                                        "embed_dim": 32, "depth": 2, "num_heads": 2},
                            model_config={"label_names": [f"digit {i}" for i in range(10)]})
    return out


def _timm_accuracy(path: Path, data=None) -> float:
    """What timm's own pipeline gives: the folder's model and its evaluation transform (resize, centre crop,
    normalisation) on the images as 8-bit pictures."""
    import torch
    from PIL import Image

    model = timm.create_model(f"local-dir:{path}", pretrained=True).eval()
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    test = data or load_dataset("digits", "test")
    pictures = [Image.fromarray(np.round(image[0] * 255).astype(np.uint8), mode="L") for image in test.x]
    with torch.no_grad():
        predicted = model(torch.stack([transform(picture) for picture in pictures])).argmax(1).numpy()
    return float((predicted == test.y).mean())


def test_the_card_comes_from_the_folder(cli, folder):
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "vit_tiny_patch16_224" and config["model_args"]["img_size"] in (8, [8, 8])
    card = cli.json("inspect", folder)["card"]
    assert card["arch"] == "timm" and card["input_shape"] == [1, 8, 8] and card["num_classes"] == 10
    assert card["classes"][3] == "digit 3" and card["preprocessing"]["mean"] == [0.5]


def test_accuracy_without_flags_matches_timms_own(cli, folder):
    ours = cli.json("accuracy", folder, "--data", "digits")["accuracy"]
    assert ours > 0.5 and abs(ours - _timm_accuracy(folder)) <= 0.003


@pytest.mark.parametrize("scheme, options", [("backdoor", ("--epochs", 2, "--lr", "3e-3")),
                                             ("sign", ("--epochs", 3, "--bits", 64))])
def test_mark_to_a_folder_timm_loads_and_verify(cli, folder, tmp_path, scheme, options):
    marked, key = tmp_path / "marked", tmp_path / "key.json"
    made = cli.json("embed", "--scheme", scheme, folder, "--data", "digits", "-o", marked, "--key-out", key, *options)
    assert made["test_accuracy"] > 0.5
    reloaded = timm.create_model(f"local-dir:{marked}", pretrained=True)
    assert reloaded.patch_embed.img_size == (8, 8)
    assert np.isclose(_timm_accuracy(marked), cli.json("accuracy", marked, "--data", "digits")["accuracy"], atol=0.003)
    assert cli.json("verify", "--key", key, marked)["claimed"]
    assert not cli.json("verify", "--key", key, folder, expect=1)["claimed"]


@pytest.mark.parametrize("crop_mode", ["center", "squash"])
def test_timms_centre_crop_is_applied_as_its_eval_transform_does(cli, tmp_path, crop_mode):
    """A CIFAR-sized timm ResNet whose pretrained_cfg asks for crop_pct 0.875 (resize to 36, crop 32): wmtool's
    pixels and predictions are timm's own transform's, on real CIFAR-10 images."""
    import torch
    from PIL import Image

    from wmtool.models import load_model
    from wmtool.plugins import get_registry

    cifar = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg" / "test.npz"
    if not cifar.is_file():
        pytest.skip("needs ../shared/data/cifar10-jpeg")
    torch.manual_seed(0)
    model = timm.create_model("resnet10t", pretrained=False, num_classes=10)
    model.pretrained_cfg = {**model.pretrained_cfg, "input_size": (3, 32, 32), "crop_pct": 0.875,
                            "crop_mode": crop_mode, "interpolation": "bicubic"}
    out = tmp_path / "resnet"
    timm.models.save_for_hf(model.eval(), str(out), safe_serialization=True)
    archive = np.load(cifar)
    order = np.random.default_rng(0).permutation(len(archive["y"]))[:200]
    np.savez(tmp_path / "cifar.npz", x=archive["x"][order], y=archive["y"][order].astype(np.int64))
    card = cli.json("inspect", out)["card"]["preprocessing"]
    assert card["crop"] == [32, 32] and (card.get("shortest_edge") == 36 or card.get("size") == [36, 36])

    reloaded = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=reloaded))
    theirs = torch.stack([transform(Image.fromarray(image)) for image in archive["x"][order]])
    data = load_dataset(str(tmp_path / "cifar.npz"), "all")
    opened = load_model(out, get_registry()).eval()
    ours = opened.card.preprocessing.apply(torch.from_numpy(data.x))
    assert ours.shape == theirs.shape == (200, 3, 32, 32)
    # timm resizes with PIL, wmtool's torch path with torchvision's 8-bit kernels: 2/255 apart at most (0.034 seen)
    assert (ours - theirs).abs().max() < 0.02 * theirs.abs().max()
    with torch.no_grad():
        assert (reloaded(ours).argmax(1) == reloaded(theirs).argmax(1)).float().mean() >= 0.99
