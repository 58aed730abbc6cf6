"""Tiny random-weight ColPali-family models built offline, saved like real checkpoints.

They have the real architectures (Qwen2-VL / Qwen2.5-VL backbones, 128-d projection) at a toy
size, a byte-level BPE tokenizer trained here, and real image/video processors, so the project's
loading path (`from_pretrained` on a local folder) and its padding/NaN handling are exercised.
"""

from __future__ import annotations

from pathlib import Path

import rag  # noqa: F401, I001  (first: installs the torchvision shim that colpali_engine needs)
import torch
from colpali_engine.models import ColQwen2, ColQwen2_5, ColQwen2_5_Processor, ColQwen2Processor
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2VLConfig, Qwen2VLVideoProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil


QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]  # fmt: skip
_CORPUS = [
    "Describe the image.",
    "Query: user assistant system",
    "Hematoxylin and eosin stain shows granulomas with caseous necrosis.",
    "What is the histology of squamous cell carcinoma?",
    "Reed-Sternberg cells in Hodgkin lymphoma.",
]
MAX_VISUAL_TOKENS = 64  # real checkpoints allow ~768 merged tokens per page


def qwen_tokenizer() -> PreTrainedTokenizerFast:
    """A 512-token byte-level BPE with the Qwen2-VL special tokens, left-padded like ColQwen."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=QWEN_SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(_CORPUS * 20, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>", padding_side="left"
    )


def _qwen_processors() -> tuple[Qwen2VLImageProcessorPil, Qwen2VLVideoProcessor]:
    size = {"shortest_edge": 56 * 56, "longest_edge": MAX_VISUAL_TOKENS * 28 * 28}
    patches = dict(patch_size=14, temporal_patch_size=2, merge_size=2)
    return Qwen2VLImageProcessorPil(**patches, size=size), Qwen2VLVideoProcessor(**patches, size=dict(size))


def _qwen_text_config(tokenizer: PreTrainedTokenizerFast) -> dict:
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    return dict(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        # mrope sections sum to head_dim / 2 = 8
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
        bos_token_id=pad, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"), pad_token_id=pad,
    )  # fmt: skip


def _qwen_token_ids(tokenizer: PreTrainedTokenizerFast) -> dict:
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN_SPECIAL_TOKENS}
    return dict(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )


def build_tiny_colqwen2(out_dir: Path) -> Path:
    """A random ColQwen2 (hidden 64, 2 layers, 2-block vision tower) saved to `out_dir`."""
    torch.manual_seed(0)
    tokenizer = qwen_tokenizer()
    config = Qwen2VLConfig(
        text_config=_qwen_text_config(tokenizer),
        vision_config=dict(
            depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2,
            patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
        ),
        **_qwen_token_ids(tokenizer),
    )  # fmt: skip
    image_processor, video_processor = _qwen_processors()
    processor = ColQwen2Processor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor
    )
    return _save(ColQwen2(config), processor, Path(out_dir))


def build_tiny_colqwen2_5(out_dir: Path) -> Path:
    """A random ColQwen2.5 (windowed vision tower, one full-attention block) saved to `out_dir`."""
    torch.manual_seed(0)
    tokenizer = qwen_tokenizer()
    config = Qwen2_5_VLConfig(
        text_config=_qwen_text_config(tokenizer),
        vision_config=dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
            patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[1],
        ),
        **_qwen_token_ids(tokenizer),
    )  # fmt: skip
    image_processor, video_processor = _qwen_processors()
    processor = ColQwen2_5_Processor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor
    )
    return _save(ColQwen2_5(config), processor, Path(out_dir))


def _save(model: torch.nn.Module, processor, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
