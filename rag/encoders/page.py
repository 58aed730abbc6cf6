"""Page-image encoder: ColPali-family late-interaction multivectors via colpali-engine.

Every page, query and query image becomes an (n, dim) float32 array of L2-normalised rows, with
padded positions removed (with sdpa attention they come out NaN, and they must not be stored).
`PageEncoder.fde` encodes pages and queries for the first candidate stage of the visual search
(`rag.encoders.multivector`); the layout of those candidate vectors is part of the recorded info.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch
import torch.nn.functional as F
from colpali_engine.compression.token_pooling import HierarchicalTokenPooler
from colpali_engine.models import (
    ColIdefics3,
    ColIdefics3Processor,
    ColPali,
    ColPaliProcessor,
    ColQwen2,
    ColQwen2_5,
    ColQwen2_5_Processor,
    ColQwen2Processor,
)
from PIL import Image

from rag.encoders.devices import EncoderLoadError, model_revision, resolve_device, resolve_dtype
from rag.encoders.layout import describe_visual_layout
from rag.encoders.multivector import FixedDimensionalEncoder
from rag.models import EncoderInfo
from rag.settings import Settings

__all__ = ["EncoderLoadError", "PageEncoder", "detect_family", "load_page_encoder"]

logger = logging.getLogger(__name__)

GPU_DEFAULT = "vidore/colqwen2.5-v0.2"
CPU_DEFAULT = "vidore/colSmol-256M"
_QUERY_BATCH = 32


@dataclass(frozen=True)
class Family:
    name: str
    model_cls: type
    processor_cls: type


FAMILIES = {
    "colqwen2.5": Family("colqwen2.5", ColQwen2_5, ColQwen2_5_Processor),
    "colqwen2": Family("colqwen2", ColQwen2, ColQwen2Processor),
    "colidefics3": Family("colidefics3", ColIdefics3, ColIdefics3Processor),
    "colpali": Family("colpali", ColPali, ColPaliProcessor),
}
# config.json `model_type` of the backbone -> family
_MODEL_TYPES = {"qwen2_5_vl": "colqwen2.5", "qwen2_vl": "colqwen2", "idefics3": "colidefics3", "paligemma": "colpali"}
# substrings of a hub name (or an adapter's base model name), most specific first
_NAME_PATTERNS = [
    ("colqwen2.5", "colqwen2.5"),
    ("colqwen2_5", "colqwen2.5"),
    ("colqwen2", "colqwen2"),
    ("colsmol", "colidefics3"),
    ("colidefics3", "colidefics3"),
    ("colpali", "colpali"),
]


def detect_family(model: str) -> Family:
    """The family of a local model folder (from its config) or of a hub name (from the name)."""
    path = Path(model)
    if (path / "config.json").is_file():
        model_type = json.loads((path / "config.json").read_text()).get("model_type", "")
        if model_type in _MODEL_TYPES:
            return FAMILIES[_MODEL_TYPES[model_type]]
    if (path / "adapter_config.json").is_file():  # a PEFT adapter: its base model names the family
        base = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path", "")
        return detect_family(base)
    lowered = model.lower()
    for pattern, family in _NAME_PATTERNS:
        if pattern in lowered:
            return FAMILIES[family]
    raise EncoderLoadError(model, f"not a known page-encoder family (one of: {', '.join(FAMILIES)})")


class PageEncoder:
    """Embeds page images, text queries and query images into late-interaction multivectors."""

    def __init__(
        self, model: torch.nn.Module, processor: Any, info: EncoderInfo, device: str, settings: Settings
    ) -> None:
        self.model = model
        self.processor = processor
        self.info = info
        self.device = device
        self._batch_size = settings.page_batch_size
        self._pool_factor = settings.token_pooling_factor
        self._pooler = HierarchicalTokenPooler() if self._pool_factor > 1 else None
        self.fde = FixedDimensionalEncoder(info.dim)  # pages' and queries' FDEs (candidate search)

    def embed_pages(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        """One (n_i, dim) array per page, token-pooled when `token_pooling_factor` > 1."""
        vectors = self._embed(list(images), self.processor.process_images, self._batch_size)
        return self._token_pool(vectors) if self._pooler else vectors

    def embed_queries(self, texts: Sequence[str]) -> list[np.ndarray]:
        """One (n_i, dim) array per text query."""
        return self._embed(list(texts), self.processor.process_queries, _QUERY_BATCH)

    def embed_query_images(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        """A user's image embedded as a page is, for MaxSim against pages (never token-pooled)."""
        return self._embed(list(images), self.processor.process_images, self._batch_size)

    def _embed(self, items: list, process: Callable[[list], Any], batch_size: int) -> list[np.ndarray]:
        vectors: list[np.ndarray] = []
        for start in range(0, len(items), batch_size):
            batch = process(items[start : start + batch_size]).to(self.device)
            with torch.inference_mode():
                embeddings = self.model(**batch)
            vectors.extend(_unpad(embeddings, batch["attention_mask"]))
        return vectors

    def _token_pool(self, vectors: list[np.ndarray]) -> list[np.ndarray]:
        pooled = self._pooler.pool_embeddings(
            [torch.from_numpy(v) for v in vectors], pool_factor=self._pool_factor
        )
        return [F.normalize(p.float(), dim=-1).numpy() for p in pooled]


def _unpad(embeddings: torch.Tensor, attention_mask: torch.Tensor) -> list[np.ndarray]:
    """Keep the attended positions of each row of a padded batch, as normalised float32."""
    rows = []
    for embedding, mask in zip(embeddings, attention_mask.bool()):
        kept = F.normalize(embedding[mask].float(), dim=-1)  # re-normalise after bf16 rounding
        rows.append(kept.cpu().numpy())
    return rows


def load_page_encoder(settings: Settings) -> PageEncoder | None:
    """The configured page encoder; None if it is 'none', or 'auto' and the default cannot be loaded.

    An explicitly named model that cannot be loaded raises EncoderLoadError.
    """
    name = settings.page_encoder
    if name == "none":
        return None
    if name != "auto":
        return _load(name, settings)
    device = resolve_device(settings.device)
    auto_name = GPU_DEFAULT if device.startswith("cuda") else CPU_DEFAULT
    try:
        if not _hub_reachable() and not _in_hub_cache(auto_name):
            # Fail at once: the hub client would otherwise retry for about a minute.
            raise EncoderLoadError(auto_name, "not in the local model cache and the model hub is unreachable")
        return _load(auto_name, settings)
    except EncoderLoadError as exc:
        logger.warning(
            "Visual channel off: the default page encoder could not be loaded (%s). "
            "Pages are indexed and searched by text only; set PATHORAG_PAGE_ENCODER to a model "
            "name or local path to enable it, or to 'none' to silence this warning.",
            exc,
        )
        return None


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    try:
        httpx.head(constants.ENDPOINT, timeout=timeout_s)
    except httpx.HTTPError:
        return False
    return True


def _in_hub_cache(name: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(name, "config.json"), str) or isinstance(
        try_to_load_from_cache(name, "adapter_config.json"), str
    )


def _load(name: str, settings: Settings) -> PageEncoder:
    family = detect_family(name)
    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    try:
        model = family.model_cls.from_pretrained(name, dtype=dtype, device_map=device).eval()
        processor = family.processor_cls.from_pretrained(name)
    except Exception as exc:  # hub, IO, PEFT and config errors come in many types; all mean "not loadable"
        raise EncoderLoadError(name, f"{type(exc).__name__}: {exc}") from exc
    local_dir = Path(name) if Path(name).is_dir() else None
    pooling = "multivector, MaxSim"
    if settings.token_pooling_factor > 1:
        pooling += f"; hierarchical token pooling x{settings.token_pooling_factor}"
    pooling += "; " + describe_visual_layout(model.dim)
    info = EncoderInfo(
        name=name,
        revision=model_revision(getattr(model.config, "_commit_hash", None), local_dir),
        dim=model.dim,
        pooling=pooling,
    )
    return PageEncoder(model, processor, info, device, settings)
