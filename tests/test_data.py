"""Dataset readers: digits, IDX (gzip, raw, torchvision layout), .npz, image folders, splits."""

import gzip
import struct

import numpy as np
import pytest

from wmtool.data import load_dataset, split_validation
from wmtool.errors import UserError

from conftest import SHARED


def write_idx(path, array, compress=True):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path, "wb") as handle:
            handle.write(data)
    else:
        path.write_bytes(data)


def make_idx_folder(folder, compress=True):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    suffix = ".gz" if compress else ""
    for prefix, count in (("train", 30), ("t10k", 10)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (count, 6, 6)), compress)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", np.arange(count) % 3, compress)


def test_digits_is_the_embedded_default_with_a_fixed_holdout():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert train.input_shape == (1, 8, 8) and train.num_classes == 10
    assert len(train) + len(test) == 1797 and abs(len(test) - 359) <= 1
    assert 0.0 <= train.x.min() and train.x.max() <= 1.0
    again = load_dataset("digits", "test", seed=123)
    np.testing.assert_array_equal(again.y, test.y)


def test_limit_and_validation_split_are_deterministic_by_seed():
    a = load_dataset("digits", "train", limit=100, seed=1)
    b = load_dataset("digits", "train", limit=100, seed=1)
    c = load_dataset("digits", "train", limit=100, seed=2)
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(a.x, c.x)
    train, val = split_validation(a, 0.2, seed=0)
    assert len(train) == 80 and len(val) == 20


@pytest.mark.parametrize("compress", [True, False])
def test_idx_folder(tmp_path, compress):
    make_idx_folder(tmp_path / "d", compress)
    train = load_dataset(str(tmp_path / "d"), "train")
    test = load_dataset(str(tmp_path / "d"), "test")
    assert train.x.shape == (30, 1, 6, 6) and test.x.shape == (10, 1, 6, 6) and train.num_classes == 3


def test_torchvision_raw_layout(tmp_path):
    make_idx_folder(tmp_path / "root" / "MNIST" / "raw")
    assert len(load_dataset(str(tmp_path / "root"), "train")) == 30


def test_truncated_idx_is_refused(tmp_path):
    make_idx_folder(tmp_path / "d", compress=False)
    path = tmp_path / "d" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(UserError, match="header declares"):
        load_dataset(str(tmp_path / "d"), "train")


def test_npz_layouts(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "hwc.npz", x=rng.integers(0, 256, (20, 5, 5, 3), dtype=np.uint8), y=np.arange(20) % 4)
    data = load_dataset(str(tmp_path / "hwc.npz"), "train")
    assert data.input_shape == (3, 5, 5) and data.num_classes == 4 and len(data) == 16
    np.savez(tmp_path / "split.npz", x_train=rng.random((8, 4, 4)), y_train=np.arange(8) % 2,
             x_test=rng.random((3, 4, 4)), y_test=np.arange(3) % 2)
    assert len(load_dataset(str(tmp_path / "split.npz"), "test")) == 3
    np.savez(tmp_path / "bad.npz", x=rng.random((4, 4, 4)) * 5, y=np.arange(4))
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        load_dataset(str(tmp_path / "bad.npz"))


def test_image_folder(tmp_path):
    from PIL import Image

    for label in ("cat", "dog"):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for index in range(5):
            Image.fromarray(np.full((7, 7), index * 40, dtype=np.uint8)).save(tmp_path / "imgs" / label / f"{index}.png")
    data = load_dataset(str(tmp_path / "imgs"), "train")
    assert data.classes == ("cat", "dog") and data.input_shape == (1, 7, 7) and len(data) == 8


def test_a_folder_that_is_no_dataset_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not a dataset"):
        load_dataset(str(tmp_path / "empty"))
    with pytest.raises(UserError, match="no such dataset"):
        load_dataset(str(tmp_path / "missing"))


@pytest.mark.skipif(not (SHARED / "data" / "mnist").is_dir(), reason="shared MNIST not present")
def test_real_mnist_reads_with_its_official_sizes():
    test = load_dataset(str(SHARED / "data" / "mnist"), "test")
    assert test.x.shape == (10000, 1, 28, 28) and test.num_classes == 10
    assert np.bincount(test.y).tolist()[:2] == [980, 1135]
