"""Files named by the sha256 of their content, under one root folder (page images, page words).

Storing the same content twice costs nothing and a key always names the same bytes. Keys are
checked to be 64 hex digits before they touch the file system; files are written atomically, so a
reader never sees a partial one and a crash leaves at most an unreferenced temporary file.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

_KEY = re.compile(r"[0-9a-f]{64}")


class ContentFiles:
    def __init__(self, root: Path, suffix: str, what: str) -> None:
        self.root = Path(root)
        self.suffix = suffix
        self.what = what  # names the files in errors: "page image"

    def put(self, data: bytes) -> str:
        """Store `data` and return its key; storing the same bytes again is a no-op."""
        key = hashlib.sha256(data).hexdigest()
        path = self.path(key)
        if not path.exists():
            write_atomically(path, data)
        return key

    def path(self, key: str, root: Path | None = None) -> Path:
        """Where the file of `key` lives under `root` (this store's by default), whether or not it exists."""
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise ValueError(f"invalid {self.what} key {key!r}: expected 64 lowercase hex digits")
        return (root or self.root) / key[:2] / key[2:4] / f"{key}{self.suffix}"

    def existing(self, key: str) -> Path:
        """The path of a stored key; `KeyError` when there is none."""
        path = self.path(key)
        if not path.is_file():
            raise KeyError(key)
        return path

    def read(self, key: str) -> bytes:
        return self.existing(key).read_bytes()


def write_atomically(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder, then rename over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
