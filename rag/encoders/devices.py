"""What the encoders share when loading a model: device and dtype choice, revisions, load errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class EncoderLoadError(RuntimeError):
    """A configured encoder model could not be loaded (missing weights, unknown family, offline hub...)."""

    def __init__(self, model: str, reason: str) -> None:
        super().__init__(f"cannot load encoder model {model!r}: {reason}")
        self.model = model
        self.reason = reason


def resolve_device(setting: str) -> str:
    """'auto' -> cuda, else mps, else cpu; an explicit device is taken as given."""
    if setting != "auto":
        return setting
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(setting: str, device: str) -> torch.dtype:
    """'auto' -> bfloat16 on CUDA, float32 elsewhere (bf16 matmuls are slow or missing on CPU/MPS)."""
    if setting == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return _DTYPES[setting]


def model_revision(commit_hash: str | None, model_dir: Path | None) -> str:
    """The hub commit a model was loaded from, else a short hash of its local config files."""
    if commit_hash:
        return commit_hash
    if model_dir is None or not model_dir.is_dir():
        return ""
    digest = hashlib.sha256()
    for name in ("config.json", "adapter_config.json", "modules.json"):
        path = model_dir / name
        if path.is_file():
            digest.update(path.read_bytes())
    return "sha256:" + digest.hexdigest()[:16]
