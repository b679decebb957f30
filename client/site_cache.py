"""A site's content-addressed cache: work done once, shared by the site's processes, kept across restarts.

Flower starts a process per message, so what a site decodes, preprocesses or crops is kept on disk
under ``<output_dir>/cache/<key[:2]>/<key>.axc``, named by a sha256 key of everything it depends on.
An entry is a header (magic ``AXC1``, the payload's length as 8 bytes little-endian, the payload's
sha256) and a payload of numpy arrays saved with ``np.savez`` and read without pickle, so an entry
can never run code. Writes go to a temporary file in the entry's folder and are renamed into place,
so a killed process never leaves a half entry under a final name; an entry that fails its check is
deleted, logged and rebuilt. The cache never leaves the site: only data loading reads it.

A small in-process layer (``Memory``) sits above it, for simulation's many messages in one process.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

logger = logging.getLogger("axilla.client")

SCHEMA = 2  # 2: DICOM decoding (MONOCHROME1 by the LUT range, US-region crop, a chosen frame). Bump when what an entry holds, or how it is computed, changes
_MAGIC = b"AXC1"
_HEADER = len(_MAGIC) + 8 + 32
Arrays = dict[str, np.ndarray]
T = TypeVar("T")


def cache_key(*parts: Any) -> str:
    """The sha256 key (hex) of JSON-serialisable parts, led by the cache schema version."""
    return hashlib.sha256(json.dumps([SCHEMA, *parts], separators=(",", ":")).encode()).hexdigest()


def file_stamp(path: Path | None) -> list[str | int] | None:
    """A file's path, size and mtime_ns (None for no file): what tells it is unchanged (pass resolved paths).

    A folder (a cine loop's frames) is stamped by a digest of every file's name, size and mtime_ns in it.
    """
    if path is None:
        return None
    if os.path.isdir(path):
        digest = hashlib.sha256()
        for entry in sorted(os.scandir(path), key=lambda e: e.name):
            if entry.is_file():
                stat = entry.stat()
                digest.update(f"{entry.name}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        return [str(path), "folder", digest.hexdigest()]
    stat = os.stat(path)
    return [str(path), stat.st_size, stat.st_mtime_ns]


class SiteCache:
    """The content-addressed store under a site's ``output_dir``."""

    def __init__(self, output_dir: Path) -> None:
        self.root = Path(output_dir) / "cache"

    def path(self, key: str) -> Path:
        """Where the entry of ``key`` lies."""
        return self.root / key[:2] / f"{key}.axc"

    def get(self, key: str) -> Arrays | None:
        """The arrays stored under ``key``; None if absent, or damaged (then deleted, with a warning)."""
        path = self.path(key)
        try:
            blob = path.read_bytes()
        except OSError:
            return None
        arrays = _decode(blob)
        if arrays is None:
            logger.warning("site cache: entry %s is truncated or corrupt; deleted, it is rebuilt", path)
            path.unlink(missing_ok=True)
        return arrays

    def put(self, key: str, arrays: Arrays) -> None:
        """Store ``arrays`` under ``key`` atomically; a failed write is logged, never fatal."""
        path = self.path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".axc")
            try:
                with os.fdopen(handle, "wb") as out:
                    out.write(_encode(arrays))
                os.replace(temp, path)
            finally:
                Path(temp).unlink(missing_ok=True)  # only left if the write failed
        except OSError as err:
            logger.warning("site cache: cannot write %s: %s", path, err)


def _encode(arrays: Arrays) -> bytes:
    """Header and npz payload of an entry."""
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    payload = buffer.getvalue()
    return _MAGIC + len(payload).to_bytes(8, "little") + hashlib.sha256(payload).digest() + payload


def _decode(blob: bytes) -> Arrays | None:
    """An entry's arrays if its header, length and digest check out, else None."""
    payload = blob[_HEADER:]
    length, digest = int.from_bytes(blob[len(_MAGIC) : len(_MAGIC) + 8], "little"), blob[len(_MAGIC) + 8 : _HEADER]
    if blob[: len(_MAGIC)] != _MAGIC or len(payload) != length or hashlib.sha256(payload).digest() != digest:
        return None
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):  # a well-formed header over a foreign payload
        return None


_LAYERS: list[Memory[Any]] = []


class Memory(Generic[T]):
    """An in-process layer over the disk cache: the newest ``size`` values, by content key."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: dict[str, T] = {}
        _LAYERS.append(self)

    def get(self, key: str) -> T | None:
        """The value kept under ``key``, if any."""
        return self.items.get(key)

    def put(self, key: str, value: T) -> None:
        """Keep ``value`` under ``key``, forgetting the oldest values beyond ``size``."""
        self.items[key] = value
        while len(self.items) > self.size:
            del self.items[next(iter(self.items))]


def clear_memory() -> None:
    """Forget every in-process layer (the disk cache stays)."""
    for layer in _LAYERS:
        layer.items.clear()
