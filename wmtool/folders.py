"""Reading a model folder as untrusted input: names that stay inside it, bounded JSON, and a staging
folder that shows a library only the files wmtool checked.

A folder's own files may name other files (a shard index, a cache's ``refs/main``); a hostile folder
names ``/etc/passwd``, ``../../secret`` or a symlink out of it. :func:`inside` resolves a name and
refuses any that leaves the folder. A library given the folder itself could also read files wmtool
never looked at (custom code, an adapter config naming another model), so :func:`staged` hands it a
private folder holding links to the checked files only.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from wmtool.errors import UserError

MAX_JSON_BYTES = 8 * 2**20
"""The largest config file read (transformers and timm configs are a few kB; ``id2label`` of 100,000
classes is about 3 MB)."""

MAX_JSON_DEPTH = 64


def root_of(folder: Path) -> Path:
    """The folder a model's files must lie in: the folder given, or for a snapshot of a Hugging Face cache
    (``models--org--name/snapshots/<hash>``, whose files link to the cache's ``blobs/``) the cache folder."""
    if folder.parent.name == "snapshots" and (folder.parent.parent / "blobs").is_dir():
        return folder.parent.parent
    return folder


def inside(folder: Path, name: str, what: str, root: Path | None = None) -> Path:
    """``folder / name`` resolved (symlinks followed), refused when ``name`` is absolute, holds ``..``, or
    resolves outside ``root`` (default: :func:`root_of` the folder)."""
    if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts or "\0" in name:
        raise UserError(f"{what} names {name!r}: only files inside the folder given are read")
    resolved = (folder / name).resolve()
    if not resolved.is_relative_to((root or root_of(folder)).resolve()):
        raise UserError(f"{what} names {name!r}, which leads outside the folder given (to {resolved}); "
                        "only files inside it are read")
    return resolved


def _depth(value: Any, limit: int) -> int:
    """The nesting depth of a parsed JSON value (stops counting past ``limit``)."""
    depth, level = 0, [value]
    while level and depth <= limit:
        depth += 1
        level = [child for item in level if isinstance(item, (dict, list))
                 for child in (item.values() if isinstance(item, dict) else item)]
    return depth


def read_config(path: Path, what: str | None = None) -> dict[str, Any]:
    """A JSON object file of at most :data:`MAX_JSON_BYTES` and :data:`MAX_JSON_DEPTH` levels, or one
    clear error (the size is checked before reading)."""
    what = what or str(path)
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise UserError(f"{what}: {size:,} bytes, more than a config file holds (at most {MAX_JSON_BYTES:,})")
        data = json.loads(path.read_bytes())
    except UserError:
        raise
    except RecursionError:
        raise UserError(f"{what}: JSON nested too deeply") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{what}: unreadable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{what}: not a JSON object")
    if _depth(data, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise UserError(f"{what}: JSON nested more than {MAX_JSON_DEPTH} levels deep")
    return data


@contextmanager
def staged(files: dict[str, Path]) -> Iterator[Path]:
    """A private temporary folder holding, under each name, a link to its checked file (a copy where the
    file system has no links): what a library may read of a model folder, and nothing else."""
    folder = Path(tempfile.mkdtemp(prefix="wmtool-staged-"))
    try:
        for name, target in files.items():
            destination = folder / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.symlink(target, destination)
            except OSError:
                shutil.copyfile(target, destination)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
