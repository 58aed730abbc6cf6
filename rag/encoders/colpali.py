"""In-process page encoders: the ColPali-family models of colpali-engine (and transformers' own
`ColPaliForRetrieval`, the `-hf` checkpoints), run by torch in this process.

With sdpa attention, padded positions come out NaN; they are dropped before anything is stored.
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
from colpali_engine.models import (
    ColIdefics3,
    ColIdefics3Processor,
    ColModernVBert,
    ColModernVBertProcessor,
    ColPali,
    ColPaliProcessor,
    ColQwen2,
    ColQwen2_5,
    ColQwen2_5_Processor,
    ColQwen2Processor,
    ColQwen3,
    ColQwen3_5,
    ColQwen3_5Processor,
    ColQwen3Processor,
)
from PIL import Image
from transformers import ColPaliForRetrieval
from transformers import ColPaliProcessor as HfColPaliProcessor

from rag.encoders.devices import EncoderLoadError, model_revision, resolve_device, resolve_dtype
from rag.encoders.page import PageEncoder, describe_pooling
from rag.models import EncoderInfo
from rag.settings import RagSettings

__all__ = ["ColPaliEncoder", "detect_family", "load_colpali_encoder"]

logger = logging.getLogger(__name__)

# `auto` choices (README, "Choosing models"): a current ViDoRe leader on a GPU, the 250M ColModernVBERT on CPU.
GPU_DEFAULT = "TomoroAI/tomoro-colqwen3-embed-4b"
CPU_DEFAULT = "ModernVBERT/colmodernvbert"
_QUERY_BATCH = 32


@dataclass(frozen=True)
class Family:
    name: str
    model_cls: type
    processor_cls: type


FAMILIES = {
    "colqwen3.5": Family("colqwen3.5", ColQwen3_5, ColQwen3_5Processor),
    "colqwen3": Family("colqwen3", ColQwen3, ColQwen3Processor),
    "colqwen2.5": Family("colqwen2.5", ColQwen2_5, ColQwen2_5_Processor),
    "colqwen2": Family("colqwen2", ColQwen2, ColQwen2Processor),
    "colmodernvbert": Family("colmodernvbert", ColModernVBert, ColModernVBertProcessor),
    "colidefics3": Family("colidefics3", ColIdefics3, ColIdefics3Processor),
    "colpali": Family("colpali", ColPali, ColPaliProcessor),
    "colpali-hf": Family("colpali-hf", ColPaliForRetrieval, HfColPaliProcessor),  # transformers' port
}
# config.json `model_type` of the backbone -> family
_MODEL_TYPES = {
    "qwen3_5": "colqwen3.5",
    "qwen3_vl": "colqwen3",
    "qwen2_5_vl": "colqwen2.5",
    "qwen2_vl": "colqwen2",
    "modernvbert": "colmodernvbert",
    "idefics3": "colidefics3",
    "paligemma": "colpali",
    "colpali": "colpali-hf",
}
# substrings of a hub name (or an adapter's base model name), most specific first
_NAME_PATTERNS = [
    ("colqwen3.5", "colqwen3.5"),
    ("colqwen3_5", "colqwen3.5"),
    ("colqwen3", "colqwen3"),
    ("colqwen2.5", "colqwen2.5"),
    ("colqwen2_5", "colqwen2.5"),
    ("colqwen2", "colqwen2"),
    ("colmodernvbert", "colmodernvbert"),
    ("colsmol", "colidefics3"),
    ("colidefics3", "colidefics3"),
    ("colpali-v1.3-hf", "colpali-hf"),
    ("colpali-v1.2-hf", "colpali-hf"),
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


class ColPaliEncoder(PageEncoder):
    """A colpali-engine model and processor on a torch device."""

    def __init__(
        self, model: torch.nn.Module, processor: Any, info: EncoderInfo, device: str, settings: RagSettings
    ) -> None:
        super().__init__(info, settings)
        self.model = model
        self.processor = processor
        self.device = device
        self._batch_size = settings.page_batch_size

    def embed_images(self, images: list[Image.Image]) -> list[np.ndarray]:
        return self._embed(images, self.processor.process_images, self._batch_size)

    def embed_queries(self, texts: Sequence[str]) -> list[np.ndarray]:
        return self._embed(list(texts), self.processor.process_queries, _QUERY_BATCH)

    def _embed(self, items: list, process: Callable[[list], Any], batch_size: int) -> list[np.ndarray]:
        vectors: list[np.ndarray] = []
        for start in range(0, len(items), batch_size):
            batch = process(items[start : start + batch_size]).to(self.device)
            batch.pop("labels", None)  # transformers' ColPaliProcessor adds training labels
            with torch.inference_mode():
                output = self.model(**batch)
            embeddings = getattr(output, "embeddings", output)  # transformers' models return an output object
            vectors.extend(_unpad(embeddings, batch["attention_mask"]))
        return vectors


def _unpad(embeddings: torch.Tensor, attention_mask: torch.Tensor) -> list[np.ndarray]:
    """Keep the attended positions of each row of a padded batch, as normalised float32."""
    rows = []
    for embedding, mask in zip(embeddings, attention_mask.bool()):
        kept = F.normalize(embedding[mask].float(), dim=-1)  # re-normalise after bf16 rounding
        rows.append(kept.cpu().numpy())
    return rows


def load_colpali_encoder(settings: RagSettings) -> ColPaliEncoder | None:
    """The configured in-process page encoder; None if 'auto' and the default cannot be loaded.

    An explicitly named model that cannot be loaded raises EncoderLoadError.
    """
    name = settings.page_encoder
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


def _load(name: str, settings: RagSettings) -> ColPaliEncoder:
    family = detect_family(name)
    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    try:
        model = family.model_cls.from_pretrained(name, dtype=dtype, device_map=device).eval()
        processor = family.processor_cls.from_pretrained(name)
    except Exception as exc:  # hub, IO, PEFT and config errors come in many types; all mean "not loadable"
        raise EncoderLoadError(name, f"{type(exc).__name__}: {exc}") from exc
    local_dir = Path(name) if Path(name).is_dir() else None
    dim = getattr(model, "dim", None) or model.config.embedding_dim
    info = EncoderInfo(
        name=name,
        revision=model_revision(getattr(model.config, "_commit_hash", None), local_dir),
        dim=dim,
        pooling=describe_pooling(dim, settings),
        runtime="in process",
        input_format=f"{family.processor_cls.__module__.split('.')[0]} {family.processor_cls.__name__}",
    )
    return ColPaliEncoder(model, processor, info, device, settings)
