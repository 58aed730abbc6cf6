"""Free space on the disk that holds a path (the path need not exist yet)."""

from __future__ import annotations

import shutil
from pathlib import Path


def free_mib(path: Path) -> float:
    """MiB free on the disk of `path`, or of its nearest existing parent."""
    existing = Path(path)
    while not existing.exists():
        existing = existing.parent
    return shutil.disk_usage(existing).free / 2**20
