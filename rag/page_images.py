"""Content-addressed store of rendered page images and figure crops (WebP files under one root
folder), with their thumbnails cached on disk; crops of a page image by fractions of its sides."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from rag.content_files import ContentFiles, write_atomically

MEDIA_TYPE = "image/webp"
_QUALITY = 85
# libwebp's effort level (0-6). Measured on 1191x1684 book pages (BENCHMARKS.md, "Indexing"): method 4
# took 230 ms/page, method 1 86 ms at the same quality setting and PSNR (49 vs 48.7 dB), files ~20 %
# larger. Page images are written once per page while indexing, so speed wins.
_METHOD = 1
_THUMB_SIDES = range(16, 4097)


class PageImageStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._files = ContentFiles(self.root, ".webp", "page image")

    def put(self, image: Image.Image) -> str:
        """Store `image` and return its key; storing the same image again is a no-op."""
        return self._files.put(encode_webp(image))

    def path(self, key: str) -> Path:
        """Where the image of `key` lives (whether or not it exists)."""
        return self._files.path(key)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def open(self, key: str) -> Image.Image:
        """The stored image, fully loaded; `KeyError` when there is none."""
        return _load(self._files.existing(key))

    def thumbnail(self, key: str, max_side: int) -> bytes:
        """WebP bytes of the image scaled to fit `max_side` x `max_side`; cached on disk."""
        if max_side not in _THUMB_SIDES:
            raise ValueError(f"max_side must lie in {_THUMB_SIDES.start}..{_THUMB_SIDES.stop - 1}, got {max_side}")
        source = self._files.existing(key)
        cached = self._files.path(key, self._thumbs_root(max_side))
        if cached.is_file():
            return cached.read_bytes()
        image = _load(source)
        image.thumbnail((max_side, max_side))
        data = encode_webp(image)
        write_atomically(cached, data)
        return data

    def delete(self, key: str) -> None:
        """Remove the image and its thumbnails; a missing key is not an error."""
        self.path(key).unlink(missing_ok=True)
        thumbs = self.root / "thumbs"
        if thumbs.is_dir():
            for side_dir in thumbs.iterdir():
                self._files.path(key, side_dir).unlink(missing_ok=True)

    def _thumbs_root(self, max_side: int) -> Path:
        return self.root / "thumbs" / str(max_side)  # not hex, so never mixed up with image folders


def crop_fraction(image: Image.Image, box: list[float]) -> Image.Image:
    """The region `box` = [left, top, right, bottom] in 0..1 fractions of the image (the zoom tool)."""
    if len(box) != 4:
        raise ValueError("a crop box has four numbers: left, top, right, bottom")
    left, top, right, bottom = (min(1.0, max(0.0, float(v))) for v in box)
    if right - left < 0.02 or bottom - top < 0.02:
        raise ValueError("a crop box must be at least 2% of the page wide and high")
    width, height = image.size
    return image.crop((round(left * width), round(top * height), round(right * width), round(bottom * height)))


def encode_webp(image: Image.Image) -> bytes:
    if image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", quality=_QUALITY, method=_METHOD)
    return buffer.getvalue()


def _load(path: Path) -> Image.Image:
    image = Image.open(path)
    image.load()  # reads the pixels and closes the file
    return image
