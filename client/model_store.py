"""Models a site holds between messages (the pipeline's segmenters), content-addressed by their digest.

The server sends a model once per site and refers to it by digest afterwards. Each model is kept
at ``<output_dir>/cache/models/<digest>.npz`` (plain arrays, no pickle), written atomically and
checked against its digest when read, so a corrupt file is never used.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord

from protocol.messages import array_digest

logger = logging.getLogger("axilla.client")

_MEMORY: dict[Path, ArrayRecord] = {}  # models read in this process (a site worker serves many messages), by file
_MEMORY_SIZE = 8


class MissingModelError(LookupError):
    """A message refers to a model this site does not hold."""


class ModelStore:
    """The held models of one site, under its ``output_dir``."""

    def __init__(self, output_dir: Path) -> None:
        self.folder = Path(output_dir) / "cache" / "models"

    def _path(self, digest: str) -> Path:
        return self.folder / f"{digest}.npz"

    def put(self, digest: str, record: ArrayRecord) -> None:
        """Keep a received model, after checking that it is the one its digest names."""
        if array_digest(record) != digest:
            raise ValueError(f"the model sent as {digest} does not have that digest")
        if self._path(digest).is_file():
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.folder, suffix=".partial", delete=False) as handle:
            np.savez(handle, **{f"{i:05d}": record[key].numpy() for i, key in enumerate(record)}, __keys__=np.array(list(record)))
        os.replace(handle.name, self._path(digest))

    def get(self, digest: str) -> ArrayRecord:
        """A held model; ``MissingModelError`` if it is absent or its file does not match its digest."""
        path = self._path(digest)
        if path in _MEMORY and path.is_file():
            return _MEMORY[path]
        try:
            with np.load(path, allow_pickle=False) as data:
                keys = [str(k) for k in data["__keys__"]]
                record = ArrayRecord({key: Array(data[f"{i:05d}"]) for i, key in enumerate(keys)})
        except (OSError, ValueError, KeyError) as err:
            if path.exists():
                logger.warning("held model %s is unreadable (%s); it must be sent again", path, err)
                path.unlink(missing_ok=True)
            raise MissingModelError(f"model {digest} is not held at this site") from None
        if array_digest(record) != digest:
            logger.warning("held model %s does not match its digest; it must be sent again", path)
            path.unlink(missing_ok=True)
            raise MissingModelError(f"model {digest} is not held at this site")
        while len(_MEMORY) >= _MEMORY_SIZE:
            del _MEMORY[next(iter(_MEMORY))]
        _MEMORY[path] = record
        return record
