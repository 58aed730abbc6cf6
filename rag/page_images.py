"""Content-addressed store of rendered page images (WebP files under one root folder).

A key is the sha256 of the encoded file, so storing a page twice costs nothing and a key always
names the same picture. Keys are checked to be 64 hex digits before they touch the file system.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from pathlib import Path

from PIL import Image

MEDIA_TYPE = "image/webp"
_SUFFIX = ".webp"
_QUALITY = 85
# libwebp's effort level (0-6). Measured on 1191x1684 book pages (BENCHMARKS.md, "Indexing"): method 4
# took 230 ms/page, method 1 86 ms at the same quality setting and PSNR (49 vs 48.7 dB), files ~20 %
# larger. Page images are written once per page while indexing, so speed wins.
_METHOD = 1
_KEY = re.compile(r"[0-9a-f]{64}")
_THUMB_SIDES = range(16, 4097)


class PageImageStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def put(self, image: Image.Image) -> str:
        """Store `image` and return its key; storing the same image again is a no-op."""
        data = _encode(image, _QUALITY)
        key = hashlib.sha256(data).hexdigest()
        path = self.path(key)
        if not path.exists():
            _write_atomically(path, data)
        return key

    def path(self, key: str) -> Path:
        """Where the image of `key` lives (whether or not it exists)."""
        return self._path(self.root, key)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def open(self, key: str) -> Image.Image:
        """The stored image, fully loaded; `KeyError` when there is none."""
        return _load(self._existing(key))

    def thumbnail(self, key: str, max_side: int) -> bytes:
        """WebP bytes of the image scaled to fit `max_side` x `max_side`; cached on disk."""
        if max_side not in _THUMB_SIDES:
            raise ValueError(f"max_side must lie in {_THUMB_SIDES.start}..{_THUMB_SIDES.stop - 1}, got {max_side}")
        source = self._existing(key)
        cached = self._path(self._thumbs_root(max_side), key)
        if cached.is_file():
            return cached.read_bytes()
        image = _load(source)
        image.thumbnail((max_side, max_side))
        data = _encode(image, _QUALITY)
        _write_atomically(cached, data)
        return data

    def delete(self, key: str) -> None:
        """Remove the image and its thumbnails; a missing key is not an error."""
        self.path(key).unlink(missing_ok=True)
        thumbs = self.root / "thumbs"
        if thumbs.is_dir():
            for side_dir in thumbs.iterdir():
                self._path(side_dir, key).unlink(missing_ok=True)

    def _existing(self, key: str) -> Path:
        path = self.path(key)
        if not path.is_file():
            raise KeyError(key)
        return path

    def _thumbs_root(self, max_side: int) -> Path:
        return self.root / "thumbs" / str(max_side)  # not hex, so never mixed up with image folders

    @staticmethod
    def _path(root: Path, key: str) -> Path:
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise ValueError(f"invalid page image key {key!r}: expected 64 lowercase hex digits")
        return root / key[:2] / key[2:4] / f"{key}{_SUFFIX}"


def _encode(image: Image.Image, quality: int) -> bytes:
    if image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", quality=quality, method=_METHOD)
    return buffer.getvalue()


def _load(path: Path) -> Image.Image:
    image = Image.open(path)
    image.load()  # reads the pixels and closes the file
    return image


def _write_atomically(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder, so readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=_SUFFIX)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
