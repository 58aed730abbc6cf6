"""Uploaded PDFs onto disk for the indexing jobs: a safe file name, the PDF signature, the size limit."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from fastapi import UploadFile

from server.errors import ApiError


def safe_file_name(name: str | None) -> str:
    base = Path((name or "").replace("\\", "/")).name
    base = re.sub(r"[^A-Za-z0-9._ -]", "_", base).strip(" .")[:120]
    if not base:
        base = "upload"
    return base if base.lower().endswith(".pdf") else base + ".pdf"


def save_upload(upload: UploadFile, target: Path, limit: int) -> None:
    """Write the upload to `target` (400 if it is not a PDF or empty, 413 over `limit` bytes); blocks."""
    target.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    try:
        with target.open("wb") as out:
            first = True
            while chunk := upload.file.read(1 << 20):
                if first and not chunk.startswith(b"%PDF-"):
                    raise ApiError(400, "the file is not a PDF")
                first = False
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, f"file larger than {limit} bytes", "request_too_large")
                out.write(chunk)
        if size == 0:
            raise ApiError(400, "the file is empty")
    except BaseException:
        shutil.rmtree(target.parent, ignore_errors=True)
        raise
