"""Local datasets as canonical images (floats in [0, 1], NCHW): digits, IDX folders, .npz, image folders."""

from __future__ import annotations

import gzip
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from wmtool.errors import UserError

Split = Literal["train", "test", "all"]
HOLDOUT_SEED = 0
HOLDOUT_FRACTION = 0.2
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
_IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass
class Dataset:
    """Images ``x`` (float32, N×C×H×W, in [0, 1]) with integer labels ``y`` in [0, num_classes)."""

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    name: str
    classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.x.ndim != 4 or len(self.x) != len(self.y):
            raise UserError(f"{self.name}: images must be N×C×H×W with one label each")
        if len(self.y) and (self.y.min() < 0 or self.y.max() >= self.num_classes):
            raise UserError(f"{self.name}: labels must lie in 0..{self.num_classes - 1}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one image (C, H, W)."""
        return tuple(int(v) for v in self.x.shape[1:])

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: np.ndarray, name: str | None = None) -> "Dataset":
        """The samples at ``index``."""
        return Dataset(self.x[index], self.y[index], self.num_classes, name or self.name, self.classes)


def load_dataset(spec: str, split: Split = "train", *, limit: int | None = None, seed: int = 0) -> Dataset:
    """Load ``spec``: ``digits``, an IDX folder, a ``.npz`` file or an image folder (one subfolder per class).

    Sources with no test split hold out a fixed, seed-independent 20% as ``test``; ``all`` is every
    sample of the source (both splits). ``limit`` keeps that many samples chosen at random by ``seed``.
    """
    if split not in ("train", "test", "all"):
        raise UserError(f"unknown split {split!r}; use train, test or all")
    if spec == "digits":
        data = _holdout(_digits(), split)
    else:
        path = Path(spec)
        if not path.exists():
            raise UserError(f"{spec}: no such dataset (give 'digits', an IDX folder, a .npz file or an image folder)")
        if path.is_file() and path.suffix == ".npz":
            data = _npz(path, split)
        elif path.is_dir() and _idx_folder(path) is not None:
            data = _idx(_idx_folder(path), split)
        elif path.is_dir() and _class_folders(path):
            data = _holdout(_image_folder(path), split)
        else:
            raise UserError(
                f"{spec}: not a dataset (expected an IDX folder with train-/t10k-*-ubyte[.gz] files, "
                "a .npz file with x and y, or a folder of class subfolders of images)"
            )
    if limit is not None:
        if limit < 1:
            raise UserError(f"--limit must be positive, got {limit}")
        if limit < len(data):
            data = data.subset(np.sort(np.random.default_rng(seed).permutation(len(data))[:limit]))
    return data


def split_validation(data: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Split ``data`` into (train, validation) deterministically by ``seed``."""
    order = np.random.default_rng(seed).permutation(len(data))
    cut = int(round(len(data) * (1 - fraction)))
    return data.subset(np.sort(order[:cut])), data.subset(np.sort(order[cut:]), f"{data.name} (validation)")


def _holdout(data: Dataset, split: Split) -> Dataset:
    """The fixed train or test part of a source that has no test split of its own."""
    if split == "all":
        return data
    order = np.random.default_rng(HOLDOUT_SEED).permutation(len(data))
    cut = int(round(len(data) * (1 - HOLDOUT_FRACTION)))
    index = order[:cut] if split == "train" else order[cut:]
    return data.subset(np.sort(index), f"{data.name}:{split}")


def _digits() -> Dataset:
    """scikit-learn's bundled 8×8 handwritten digits (1,797 images), the embedded default."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    return Dataset(x, bunch.target.astype(np.int64), 10, "digits", tuple(str(v) for v in range(10)))


def _idx_folder(path: Path) -> Path | None:
    """The folder holding the IDX files: ``path`` itself, ``path/raw`` or ``path/MNIST/raw`` (torchvision)."""
    for candidate in (path, path / "raw", path / "MNIST" / "raw", path / "FashionMNIST" / "raw"):
        if _find_idx(candidate, _IDX_NAMES["train"][0]) or _find_idx(candidate, _IDX_NAMES["test"][0]):
            return candidate
    return None


def _find_idx(folder: Path, stem: str) -> Path | None:
    """The IDX file of ``stem`` in ``folder`` (gzipped or not), refused if it links out of the folder."""
    from wmtool.folders import inside

    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return inside(folder, name, str(folder), root=folder)
    return None


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (gzip or raw) of unsigned bytes into an array of its declared shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as exc:
        raise UserError(f"{path}: unreadable IDX file ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UserError(f"{path}: not an IDX file of unsigned bytes (bad magic number)")
    dims = raw[3]
    if dims < 1 or len(raw) < 4 + 4 * dims:
        raise UserError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{dims}I", raw[4:4 + 4 * dims])
    count = int(np.prod(shape, dtype=np.int64))
    if len(raw) - 4 - 4 * dims != count:
        raise UserError(f"{path}: IDX data holds {len(raw) - 4 - 4 * dims} bytes, header declares {count}")
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def _idx(folder: Path, split: Split) -> Dataset:
    if split == "all":
        train, test = _idx(folder, "train"), _idx(folder, "test")
        return Dataset(np.concatenate([train.x, test.x]), np.concatenate([train.y, test.y]),
                       max(train.num_classes, test.num_classes), f"{folder.name}:all")
    images_stem, labels_stem = _IDX_NAMES[split]
    images_path, labels_path = _find_idx(folder, images_stem), _find_idx(folder, labels_stem)
    if images_path is None or labels_path is None:
        raise UserError(f"{folder}: no {split} split ({images_stem}[.gz] and {labels_stem}[.gz])")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise UserError(f"{folder}: {split} images and labels do not match ({images.shape} vs {labels.shape})")
    num_classes = int(labels.max()) + 1 if len(labels) else 0
    x = (images.astype(np.float32) / 255.0)[:, None, :, :]
    return Dataset(x, labels.astype(np.int64), max(num_classes, 2), f"{folder.name}:{split}")


def _to_nchw(x: np.ndarray, source: str) -> np.ndarray:
    """Images as float32 NCHW in [0, 1] from N×H×W, N×H×W×C or N×C×H×W, bytes or floats."""
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        x = x.transpose(0, 3, 1, 2)
    elif x.ndim != 4:
        raise UserError(f"{source}: images must have 3 or 4 dimensions, got shape {x.shape}")
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise UserError(f"{source}: images contain NaN or infinite values")
    if x.size and (x.min() < 0 or x.max() > 1):
        raise UserError(f"{source}: float images must lie in [0, 1] (store bytes for 0-255 pixels)")
    return x


def _npz(path: Path, split: Split) -> Dataset:
    """A ``.npz`` with ``x`` and ``y`` (or ``x_train``/``y_train`` and ``x_test``/``y_test``)."""
    try:
        archive = np.load(path, allow_pickle=False)
        names = set(archive.files)
        if split == "all" and {"x_train", "x_test", "y_train", "y_test"} <= names:
            x = np.concatenate([archive["x_train"], archive["x_test"]])
            y = np.concatenate([archive["y_train"], archive["y_test"]])
            has_splits = True
        elif {f"x_{split}", f"y_{split}"} <= names:
            x, y = archive[f"x_{split}"], archive[f"y_{split}"]
            has_splits = True
        elif {"x", "y"} <= names:
            x, y = archive["x"], archive["y"]
            has_splits = False
        else:
            raise UserError(f"{path}: a .npz dataset needs arrays x and y (or x_train/y_train, x_test/y_test)")
    except (OSError, ValueError, EOFError) as exc:
        raise UserError(f"{path}: unreadable .npz file ({exc})") from None
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"{path}: labels y must be a 1-D integer array")
    if len(y) and y.min() < 0:
        raise UserError(f"{path}: labels must not be negative")
    data = Dataset(_to_nchw(x, str(path)), y.astype(np.int64), max(int(y.max()) + 1 if len(y) else 2, 2), path.name)
    return data if has_splits else _holdout(data, split)


def _class_folders(path: Path) -> list[Path]:
    return sorted(child for child in path.iterdir() if child.is_dir() and not child.name.startswith("."))


def _image_folder(path: Path) -> Dataset:
    """A folder with one subfolder of images per class (classes in sorted order)."""
    from PIL import Image, UnidentifiedImageError

    from wmtool.folders import inside

    folders = _class_folders(path)
    images, labels, mode, size = [], [], None, None
    for label, folder in enumerate(folders):
        for file in sorted(folder.iterdir()):
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            file = inside(path, f"{folder.name}/{file.name}", str(path), root=path)  # no link out of the dataset
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error", Image.DecompressionBombWarning)  # PIL's limit, as an error
                    with Image.open(file) as image:
                        mode = mode or ("L" if image.mode in ("1", "L", "P", "I", "I;16") else "RGB")
                        pixels = np.asarray(image.convert(mode))
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
                raise UserError(f"{file}: refused, too many pixels for an image of a dataset ({exc})") from None
            except (OSError, UnidentifiedImageError) as exc:
                raise UserError(f"{file}: unreadable image ({exc})") from None
            size = size or pixels.shape
            if pixels.shape != size:
                raise UserError(f"{file}: size {pixels.shape} differs from the others' {size}")
            images.append(pixels)
            labels.append(label)
    if not images:
        raise UserError(f"{path}: no images in its class subfolders")
    return Dataset(_to_nchw(np.stack(images), str(path)), np.array(labels, dtype=np.int64), max(len(folders), 2),
                   path.name, tuple(folder.name for folder in folders))
