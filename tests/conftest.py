"""Shared pytest fixtures."""

from __future__ import annotations

import os

# Model hubs are unreachable here: fail fast instead of waiting on the network. huggingface_hub reads
# this at import time, so it is set before any test module imports transformers.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_colqwen2_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight ColQwen2 saved to disk once per session (load it with `page_encoder=str(path)`)."""
    from tests.tiny_models import build_tiny_colqwen2

    return build_tiny_colqwen2(tmp_path_factory.mktemp("tiny-colqwen2"))


@pytest.fixture(scope="session")
def text_encoder():
    """The real all-MiniLM-L6-v2 text encoder (offline package), loaded once per session."""
    from rag.encoders.text import load_text_encoder
    from rag.settings import Settings

    return load_text_encoder(Settings(text_encoder="sentence-transformers/all-MiniLM-L6-v2"))
