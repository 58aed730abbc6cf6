"""Page-image encoders: ColPali-family late-interaction multivectors, in process or served.

Every page, query and query image becomes an (n, dim) float32 array of L2-normalised rows, with
padded positions removed. Two backends give them:

- `rag.encoders.colpali`: the model runs in this process through colpali-engine (default);
- `rag.encoders.served`: a vLLM server running the model with `--runner pooling` is called over
  HTTP (`PATHORAG_PAGE_ENCODER_URL`), so pathorag itself needs no GPU and encoders scale out.

`PageEncoder.fde` encodes pages and queries for the first candidate stage of the visual search
(`rag.encoders.multivector`); the layout of those candidate vectors is part of the recorded info.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from colpali_engine.compression.token_pooling import HierarchicalTokenPooler
from PIL import Image

from rag.encoders.devices import EncoderLoadError
from rag.encoders.layout import describe_visual_layout
from rag.encoders.multivector import FixedDimensionalEncoder
from rag.models import EncoderInfo
from rag.settings import RagSettings

__all__ = ["EncoderLoadError", "PageEncoder", "describe_pooling", "load_page_encoder"]


class PageEncoder(ABC):
    """Embeds page images, text queries and query images into late-interaction multivectors."""

    def __init__(self, info: EncoderInfo, settings: RagSettings) -> None:
        self.info = info
        self._pool_factor = settings.token_pooling_factor
        self._pooler = HierarchicalTokenPooler() if self._pool_factor > 1 else None
        self.fde = FixedDimensionalEncoder(info.dim)  # pages' and queries' FDEs (candidate search)

    def embed_pages(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        """One (n_i, dim) array per page, token-pooled when `token_pooling_factor` > 1."""
        vectors = self.embed_images(list(images))
        return self._token_pool(vectors) if self._pooler else vectors

    def embed_query_images(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        """A user's image embedded as a page is, for MaxSim against pages (never token-pooled)."""
        return self.embed_images(list(images))

    @abstractmethod
    def embed_images(self, images: list[Image.Image]) -> list[np.ndarray]:
        """One (n_i, dim) array of unit rows per image, as the model encodes a page."""

    @abstractmethod
    def embed_queries(self, texts: Sequence[str]) -> list[np.ndarray]:
        """One (n_i, dim) array of unit rows per text query."""

    def _token_pool(self, vectors: list[np.ndarray]) -> list[np.ndarray]:
        pooled = self._pooler.pool_embeddings([torch.from_numpy(v) for v in vectors], pool_factor=self._pool_factor)
        return [F.normalize(p.float(), dim=-1).numpy() for p in pooled]


def describe_pooling(dim: int, settings: RagSettings) -> str:
    """How page vectors are pooled and laid out; part of the recorded encoder info."""
    pooling = "multivector, MaxSim"
    if settings.token_pooling_factor > 1:
        pooling += f"; hierarchical token pooling x{settings.token_pooling_factor}"
    return pooling + "; " + describe_visual_layout(dim)


def load_page_encoder(settings: RagSettings) -> PageEncoder | None:
    """The configured page encoder: served when `page_encoder_url` is set, else in process.

    None if it is 'none', or 'auto' in process and the default cannot be loaded; an explicitly
    named model that cannot be loaded, or an encoder server that cannot be used, raises EncoderLoadError.
    """
    if settings.page_encoder == "none":
        return None
    if settings.page_encoder_url:
        from rag.encoders.served import load_served_page_encoder

        return load_served_page_encoder(settings)
    from rag.encoders.colpali import load_colpali_encoder

    return load_colpali_encoder(settings)
