"""Images in and out of the agent: checked decoding of user uploads, pixel budgets, data URLs."""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from agent.errors import AgentInputError

ImageInput = bytes | str | Path | Image.Image


class ImageInputError(AgentInputError):
    """A user image that cannot be used (the message says which and why)."""


class ImageTooLargeError(ImageInputError):
    """A user image over a size limit: too many bytes or too many pixels (a 413 to an HTTP client)."""


def load_user_image(source: ImageInput, max_bytes: int, max_pixels: int, name: str = "image") -> Image.Image:
    """Decode an uploaded image to RGB, refusing files that are too big, not images, or decompression bombs."""
    if isinstance(source, Image.Image):
        _check_pixels(source.size, max_pixels, name)
        return source.convert("RGB")
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            if path.stat().st_size > max_bytes:
                raise ImageTooLargeError(f"{name}: file larger than {max_bytes} bytes")
            data = path.read_bytes()
        except OSError as error:
            raise ImageInputError(f"{name}: cannot read {path} ({error.strerror or error})") from None
    else:
        data = source
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"{name}: file larger than {max_bytes} bytes")
    try:
        with Image.open(io.BytesIO(data)) as image:
            # The header gives the size before any pixel is decoded: refuse bombs before they expand.
            _check_pixels(image.size, max_pixels, name)
            image.load()
            return image.convert("RGB")
    except ImageInputError:
        raise
    except Image.DecompressionBombError:
        raise ImageTooLargeError(f"{name}: image has too many pixels") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise ImageInputError(f"{name}: not a readable image ({type(error).__name__})") from None


def _check_pixels(size: tuple[int, int], max_pixels: int, name: str) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageTooLargeError(f"{name}: {width}x{height} pixels exceeds the limit of {max_pixels} pixels")
    if width < 1 or height < 1:
        raise ImageInputError(f"{name}: empty image")


def fit_pixels(image: Image.Image, max_pixels: int) -> Image.Image:
    """The image scaled down (aspect kept) to at most `max_pixels`; unchanged when already small enough."""
    width, height = image.size
    if width * height <= max_pixels:
        return image
    scale = math.sqrt(max_pixels / (width * height))
    size = (max(1, math.floor(width * scale)), max(1, math.floor(height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def jpeg_bytes(image: Image.Image, max_pixels: int) -> bytes:
    """The image as JPEG within the pixel budget."""
    image = fit_pixels(image, max_pixels)
    if image.mode != "RGB":
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=88)
    return buffer.getvalue()


def data_url(image: Image.Image, max_pixels: int) -> str:
    """A JPEG data URL of the image within the pixel budget (what OpenAI-compatible servers accept)."""
    return "data:image/jpeg;base64," + base64.b64encode(jpeg_bytes(image, max_pixels)).decode("ascii")
