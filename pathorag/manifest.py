"""Book manifests: a JSON list of books (or `{"books": [...]}`) to index with their metadata.

Each entry: `{file, title, edition, isbn, license, organ_systems, sha256}`; only `file` is required.
`file` is resolved relative to the manifest; `sha256`, when given, must match the file.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the manifest or the book file."""


class ManifestBook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: str = Field(min_length=1, description="PDF path, relative to the manifest (or absolute).")
    title: str = ""
    edition: str = ""
    isbn: str = ""
    license: str = ""
    organ_systems: list[str] = Field(default_factory=list)
    sha256: str | None = Field(None, description="sha256 of the PDF (64 hex digits); checked before indexing.")
    path: Path | None = Field(None, exclude=True, description="The resolved file (set by `load_manifest`).")

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        value = value.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", value):
            raise ValueError("sha256 must be 64 hexadecimal digits")
        return value

    @property
    def edition_with_isbn(self) -> str:
        """The edition as stored (book records have no ISBN field): '10th, ISBN 978-...'."""
        return ", ".join(part for part in (self.edition, f"ISBN {self.isbn}" if self.isbn else "") if part)


class _Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    books: list[ManifestBook] = Field(min_length=1)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_manifest(path: Path, verify: bool = True) -> list[ManifestBook]:
    """Read and validate a manifest; resolve each `file`; check that it exists and its checksum."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"manifest {path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ManifestError(f"manifest {path}: not readable JSON ({error})") from None
    try:
        books = _Manifest.model_validate({"books": raw} if isinstance(raw, list) else raw).books
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in error.errors(include_url=False)
        )
        raise ManifestError(f"manifest {path}: {problems}") from None
    for book in books:
        file = Path(book.file).expanduser()
        book.path = file if file.is_absolute() else (path.parent / file).resolve()
        if verify:
            verify_book(book, path)
    return books


def verify_book(book: ManifestBook, manifest: Path | None = None) -> None:
    where = f" (manifest {manifest})" if manifest else ""
    if book.path is None or not book.path.is_file():
        raise ManifestError(f"{book.file}: no such file, looked for {book.path}{where}")
    if book.sha256:
        actual = sha256_of(book.path)
        if actual != book.sha256:
            raise ManifestError(
                f"{book.file}: sha256 mismatch{where}: the manifest says {book.sha256}, the file has {actual}"
            )
