"""Atomic file writes: a temporary file in the destination folder, then a rename."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from wmtool.errors import UserError


def refuse_existing(paths: list[Path] | tuple[Path, ...], force: bool) -> None:
    """Refuse to overwrite an existing output without ``force`` (called before any work, and again at writing)."""
    for path in paths:
        path = Path(path)
        if path.exists() and not (path.is_file() or path.is_dir()):
            raise UserError(f"{path} is not a file or folder (a device or pipe?); wmtool writes outputs as files")
        if path.exists() and not force:
            raise UserError(f"{path} exists; pass --force to overwrite it")


def write_atomic(path: str | Path, data: bytes, *, private: bool = False, force: bool = False) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part.

    ``private`` creates the file readable by its owner only (key files). Without ``force`` an
    existing file is left alone and a :class:`UserError` is raised.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"cannot write {path}: folder {folder} does not exist")
    refuse_existing([path], force)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600 if private else 0o644)
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):  # a full disk, a quota: the old file stays as it was
            raise UserError(f"cannot write {path}: {exc.strerror or exc} (any file there is unchanged)") from None
        raise
    return path


def write_folder_atomic(path: str | Path, fill: Callable[[Path], None], *, force: bool = False) -> Path:
    """Write a folder so that readers see the old one or the whole new one: ``fill`` writes into a
    temporary folder beside ``path``, which is then renamed into place (an old folder is replaced only
    with ``force``, and removed after the rename)."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"cannot write {path}: folder {parent} does not exist")
    refuse_existing([path], force)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=parent))
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    old = None
    try:
        fill(tmp)
        tmp.chmod(0o755)
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=parent))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not path.exists():
            os.replace(old / path.name, path)
        if isinstance(exc, OSError):
            raise UserError(f"cannot write {path}: {exc.strerror or exc} (any folder there is unchanged)") from None
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return path
