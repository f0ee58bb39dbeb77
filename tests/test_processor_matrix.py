"""Image processors as the library applies them: for nine architectures made by transformers itself, each
with the image processor the library ships for it (resize by height/width or shortest edge, ConvNeXt's
crop_pct, centre crop, greyscale to RGB, RGB to BGR, rescale offset, EfficientNet's include_top,
normalisation, do_resize: false), wmtool's preprocessing of the same images must give the library's
``pixel_values`` and its accuracy must match the library's own pipeline within 0.3 points.

Each model is trained for a few seconds on the library's own pixel values of CIFAR-10 images (so that a
wrong step shows in its accuracy). ``python tests/test_processor_matrix.py`` prints the matrix recorded in
docs/results.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")

SHARED = Path(__file__).resolve().parents[2] / "shared"
CIFAR = SHARED / "data" / "cifar10-jpeg" / "test.npz"
VIT_LIKE = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


def _architectures() -> dict[str, "Callable[[], tuple]"]:
    """name → a maker of (model made by the library, processor of the library, what the processor exercises)."""
    t = transformers
    return {
        "resnet": lambda: (t.ResNetForImageClassification(t.ResNetConfig(
            num_channels=3, embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], num_labels=10)),
            t.ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=0.875),
            "shortest edge / crop_pct 0.875 (resize 36, crop 32), bicubic"),
        "vit": lambda: (t.ViTForImageClassification(t.ViTConfig(image_size=32, patch_size=8, num_labels=10, **VIT_LIKE)),
                t.ViTImageProcessor(size={"height": 32, "width": 32}), "height × width, bilinear"),
        "deit": lambda: (t.DeiTForImageClassification(t.DeiTConfig(image_size=32, patch_size=8, num_labels=10, **VIT_LIKE)),
                 t.DeiTImageProcessor(size={"height": 40, "width": 40}, crop_size={"height": 32, "width": 32}),
                 "resize 40 × 40, centre crop 32, bicubic"),
        "swin": lambda: (t.SwinForImageClassification(t.SwinConfig(
            image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2], window_size=4,
            num_labels=10)), t.ViTImageProcessor(size={"height": 32, "width": 32}, resample=3),
            "height × width, bicubic"),
        "convnext": lambda: (t.ConvNextForImageClassification(t.ConvNextConfig(
            hidden_sizes=[16, 32], depths=[1, 1], num_stages=2, patch_size=2, num_labels=10)),
            t.ConvNextImageProcessor(size={"shortest_edge": 24}, crop_pct=0.75),
            "shortest edge / crop_pct 0.75 (resize 32, crop 24)"),
        "beit": lambda: (t.BeitForImageClassification(t.BeitConfig(image_size=32, patch_size=8, num_labels=10,
                                                            use_mean_pooling=True, **VIT_LIKE)),
                 t.BeitImageProcessor(size={"height": 36, "width": 36}, do_center_crop=True,
                                      crop_size={"height": 32, "width": 32}),
                 "resize 36 × 36, centre crop 32"),
        "efficientnet": lambda: (t.EfficientNetForImageClassification(t.EfficientNetConfig(
            image_size=32, width_coefficient=0.25, depth_coefficient=0.25, hidden_dim=320, num_labels=10)),
            t.EfficientNetImageProcessor(size={"height": 32, "width": 32}, rescale_offset=True, rescale_factor=1 / 127.5,
                                         include_top=True),
            "rescale 1/127.5 with offset −1, include_top (÷ std twice)"),
        "mobilevit": lambda: (t.MobileViTForImageClassification(t.MobileViTConfig(
            image_size=32, hidden_sizes=[16, 16, 16], neck_hidden_sizes=[8, 8, 16, 16, 16, 16, 32],
            num_labels=10)), t.MobileViTImageProcessor(size={"shortest_edge": 36},
                                                       crop_size={"height": 32, "width": 32}),
            "shortest edge 36, centre crop 32, RGB → BGR, no normalisation"),
        "dinov2": lambda: (t.Dinov2ForImageClassification(t.Dinov2Config(image_size=32, patch_size=8, num_labels=10,
                                                                  **VIT_LIKE)),
                   t.BitImageProcessor(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32}),
                   "shortest edge 36, centre crop 32, convert to RGB, CLIP mean/std"),
        "resnet-any-size": lambda: (t.ResNetForImageClassification(t.ResNetConfig(
            num_channels=3, embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], num_labels=10)),
            t.ConvNextImageProcessor(do_resize=False), "do_resize: false (the data's own size)"),
    }


def _images(count: int, start: int) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 test images (uint8 NHWC RGB) and labels, in a fixed shuffled order (the file is sorted by class)."""
    archive = np.load(CIFAR)
    order = np.random.default_rng(0).permutation(len(archive["y"]))[start:start + count]
    return archive["x"][order], archive["y"][order].astype(np.int64)


def _library_pixels(processor, images: np.ndarray):
    """The library's own pipeline: its processor on PIL images."""
    from PIL import Image

    pictures = [Image.fromarray(image, mode="L" if image.ndim == 2 else "RGB") for image in images]
    return processor(images=pictures, return_tensors="pt")["pixel_values"]


def _train(model, pixels, labels, epochs: int) -> None:
    """A few epochs of Adam on the library's pixel values: enough for a wrong preprocessing to show."""
    import torch

    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        for index in torch.randperm(len(labels), generator=torch.Generator().manual_seed(0)).split(64):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(pixel_values=pixels[index]).logits, labels[index]).backward()
            optimizer.step()
    model.eval()


def measure(name: str, root: Path, cli, train_count: int = 2000, test_count: int = 1000, epochs: int = 4) -> dict:
    """Make, train and save one architecture; compare wmtool with the library on held-out images."""
    import torch

    from wmtool.data import load_dataset
    from wmtool.models import load_model
    from wmtool.plugins import get_registry

    torch.manual_seed(0)
    model, processor, exercised = _architectures()[name]()
    train_x, train_y = _images(train_count, 0)
    _train(model, _library_pixels(processor, train_x), torch.from_numpy(train_y), epochs)
    folder = root / name
    model.save_pretrained(str(folder))
    processor.save_pretrained(str(folder))
    test_x, test_y = _images(test_count, 5000)
    data = root / f"{name}-test.npz"
    np.savez(data, x=test_x, y=test_y)
    with torch.no_grad():
        library_pixels = _library_pixels(processor, test_x)
        library = model(pixel_values=library_pixels).logits.argmax(1).numpy()
    ours = cli.json("accuracy", folder, "--data", data, "--split", "all")["accuracy"]
    opened = load_model(folder, get_registry()).eval()
    canonical = load_dataset(str(data), "all")
    ours_pixels = opened.card.preprocessing.apply(torch.from_numpy(canonical.x))
    with torch.no_grad():
        agreement = float((opened.net(ours_pixels).argmax(1).numpy() == library).mean())
    return {"architecture": name, "class": type(model).__name__, "processor": type(processor).__name__,
            "exercised": exercised, "library": float((library == test_y).mean()), "wmtool": ours,
            "agreement": agreement, "max_pixel_difference": float((ours_pixels - library_pixels).abs().max()),
            "pixel_scale": float(library_pixels.abs().max())}


@pytest.fixture(scope="module")
def matrix_root(tmp_path_factory) -> Path:
    if not CIFAR.is_file():
        pytest.skip("needs ../shared/data/cifar10-jpeg")
    return tmp_path_factory.mktemp("processors")


@pytest.mark.parametrize("name", list(_architectures()))
def test_wmtool_matches_the_librarys_own_pipeline(cli, matrix_root, name):
    row = measure(name, matrix_root, cli, train_count=1000, test_count=600, epochs=2)
    assert abs(row["wmtool"] - row["library"]) <= 0.003, json.dumps(row)
    assert row["agreement"] >= 0.99, row
    # the same pixels: 8-bit images resized as 8-bit pictures, as the library resizes them
    assert row["max_pixel_difference"] <= 1e-4 * row["pixel_scale"], json.dumps(row)


@pytest.mark.parametrize("name", ["resnet", "mobilevit", "dinov2"])
def test_the_same_preprocessing_runs_in_numpy_for_onnx(cli, matrix_root, name):
    """Converted to ONNX, the card travels in its metadata and wmtool preprocesses in numpy (PIL's 8-bit
    resize, crop, channel flip) for onnxruntime: the same accuracy as the folder."""
    row = measure(name, matrix_root / "onnx", cli, train_count=500, test_count=300, epochs=1)
    folder, data = matrix_root / "onnx" / name, matrix_root / "onnx" / f"{name}-test.npz"
    cli("convert", folder, "-o", matrix_root / f"{name}.onnx")
    converted = cli.json("accuracy", matrix_root / f"{name}.onnx", "--data", data, "--split", "all")["accuracy"]
    assert abs(converted - row["library"]) <= 0.003 and abs(converted - row["wmtool"]) <= 0.003, (converted, row)


def test_greyscale_data_is_converted_to_rgb_as_the_processor_says(cli, matrix_root):
    """DINOv2's processor converts greyscale to RGB; wmtool feeds 1-channel data to the 3-channel model."""
    import torch

    folder = matrix_root / "dinov2-grey"
    model, processor, _ = _architectures()["dinov2"]()
    model.save_pretrained(str(folder))
    processor.save_pretrained(str(folder))
    from wmtool.data import load_dataset

    digits = load_dataset("digits", "test")
    grey = np.round(digits.x[:, 0] * 255).astype(np.uint8)
    with torch.no_grad():
        library = (model.eval()(pixel_values=_library_pixels(processor, grey)).logits.argmax(1).numpy()
                   == digits.y).mean()
    ours = cli.json("accuracy", folder, "--data", "digits")["accuracy"]
    assert abs(ours - library) <= 0.003
    vit = matrix_root / "vit-rgb-only"
    vit_model, vit_processor, _ = _architectures()["vit"]()
    vit_model.save_pretrained(str(vit))
    vit_processor.save_pretrained(str(vit))
    refused = cli("accuracy", vit, "--data", "digits", expect=2).stderr  # its processor converts nothing
    assert "expects inputs of shape (3, 32, 32)" in refused


def test_a_processor_without_resize_takes_the_datas_own_size(cli, matrix_root):
    folder = matrix_root / "any-size"
    model, processor, _ = _architectures()["resnet-any-size"]()
    model.save_pretrained(str(folder))
    processor.save_pretrained(str(folder))
    card = cli.json("inspect", folder)["card"]
    assert card["preprocessing"]["any_size"] is True
    data = matrix_root / "wide.npz"
    x, y = _images(50, 0)
    np.savez(data, x=np.concatenate([x, x[:, :, :8]], axis=2), y=y)  # 32 × 40 images
    assert 0 <= cli.json("accuracy", folder, "--data", data, "--split", "all")["accuracy"] <= 1


if __name__ == "__main__":  # the matrix of docs/results.md
    import tempfile

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import Cli

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in _architectures():
            rows.append(measure(name, Path(folder), Cli()))
            print(json.dumps(rows[-1]), file=sys.stderr)
    print("| architecture | processor | exercised | library accuracy | wmtool accuracy | same prediction | "
          "max pixel difference |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['class']} | {row['processor']} | {row['exercised']} | {row['library']:.3f} | "
              f"{row['wmtool']:.3f} | {row['agreement']:.3f} | {row['max_pixel_difference']:.4f} "
              f"(of {row['pixel_scale']:.2f}) |")
