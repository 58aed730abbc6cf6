"""Tiny random-weight ColPali-family models built offline, saved like real checkpoints.

They have the real architectures (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5, ModernVBert, PaliGemma and
Idefics3 backbones with colpali-engine's projection heads) at a toy size, a byte-level BPE tokenizer
trained here with each family's special tokens, and real image/video processors, so the project's
loading path (`from_pretrained` on a local folder) and its padding/NaN handling are exercised.
"""

from __future__ import annotations

import json
from pathlib import Path

import rag  # noqa: F401, I001  (first: installs the torchvision shim that colpali_engine needs)
import torch
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
from safetensors.torch import load_file, save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import ColPaliConfig, ColPaliForRetrieval
from transformers import ColPaliProcessor as HfColPaliProcessor
from transformers import (
    Idefics3Config,
    ModernVBertConfig,
    PaliGemmaConfig,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2VLConfig,
    Qwen2VLVideoProcessor,
    Qwen3_5Config,
    Qwen3VLConfig,
    Qwen3VLVideoProcessor,
)
from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil


QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]  # fmt: skip
# What Idefics3Processor (and ColModernVBert's, built on it) looks up: image-split markers for up to 6 x 6 tiles.
IDEFICS3_IMAGE_TOKENS = [
    "<fake_token_around_image>", "<image>", "<global-img>", "<end_of_utterance>",
    *(f"<row_{row}_col_{col}>" for row in range(1, 7) for col in range(1, 7)),
]  # fmt: skip
SMOLVLM_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *IDEFICS3_IMAGE_TOKENS]
MODERNVBERT_SPECIAL_TOKENS = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]", "<|begin_of_text|>", *IDEFICS3_IMAGE_TOKENS]
PALIGEMMA_SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<image>"]  # the processor adds <locNNNN>/<segNNN>
_CORPUS = [
    "Describe the image.",
    "Query: user assistant system",
    "Hematoxylin and eosin stain shows granulomas with caseous necrosis.",
    "What is the histology of squamous cell carcinoma?",
    "Reed-Sternberg cells in Hodgkin lymphoma.",
]
MAX_VISUAL_TOKENS = 64  # real checkpoints allow ~768 merged tokens per page
# Decoder / encoder and vision-tower sizes shared by the families (real ones: hidden 576-4096, 12-36 layers).
_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
# SigLIP-style towers (PaliGemma, Idefics3, ModernVBert) see square tiles of _TILE pixels in _PATCH-pixel patches.
_TILE, _PATCH = 32, 8
_SHUFFLE = 2  # Idefics3 / ModernVBert pixel shuffle (real: 4, on 512-pixel tiles of 16-pixel patches)


def bpe_tokenizer(special_tokens: list[str], padding_side: str = "left", **roles: str) -> PreTrainedTokenizerFast:
    """A byte-level BPE (at most 512 tokens) that keeps `special_tokens` whole, left-padded like the Col* processors.

    `roles` name the tokenizer's special tokens (eos_token=..., pad_token=...).
    """
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=special_tokens, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(_CORPUS * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, padding_side=padding_side, **roles)


def qwen_tokenizer() -> PreTrainedTokenizerFast:
    """The tiny BPE with the Qwen2-VL special tokens (shared by Qwen2-VL to Qwen3.5)."""
    return bpe_tokenizer(QWEN_SPECIAL_TOKENS, eos_token="<|im_end|>", pad_token="<|endoftext|>")


def _qwen_processors(patch_size: int = 14, video_processor_class=Qwen2VLVideoProcessor):
    """Qwen-style image and video processors capped at MAX_VISUAL_TOKENS merged (2 x 2 patch) tokens."""
    tile = patch_size * 2
    size = {"shortest_edge": 4 * tile * tile, "longest_edge": MAX_VISUAL_TOKENS * tile * tile}
    patches = dict(patch_size=patch_size, temporal_patch_size=2, merge_size=2)
    return Qwen2VLImageProcessorPil(**patches, size=size), video_processor_class(**patches, size=dict(size))


def _qwen_text_config(tokenizer: PreTrainedTokenizerFast, rope: dict | None = None, **overrides) -> dict:
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    return dict(
        vocab_size=len(tokenizer), **_TEXT, num_key_value_heads=2, max_position_embeddings=2048,
        # mrope sections sum to the rotary dim / 2 (head_dim 16 -> 8)
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3], **(rope or {})},
        bos_token_id=pad, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"), pad_token_id=pad,
    ) | overrides  # fmt: skip


def _ids(tokenizer: PreTrainedTokenizerFast, **tokens: str) -> dict:
    """Config fields set to token ids: _ids(tokenizer, pad_token_id="<pad>") -> {"pad_token_id": 0}."""
    return {name: tokenizer.convert_tokens_to_ids(token) for name, token in tokens.items()}


def _qwen_token_ids(tokenizer: PreTrainedTokenizerFast) -> dict:
    return _ids(
        tokenizer,
        image_token_id="<|image_pad|>",
        video_token_id="<|video_pad|>",
        vision_start_token_id="<|vision_start|>",
        vision_end_token_id="<|vision_end|>",
    )


def _qwen3_vision_config(**extra) -> dict:
    """Qwen3-VL / Qwen3.5 vision tower: 16-pixel patches, learned position grid (16 x 16) plus 2D rope."""
    return dict(
        **_VISION, out_hidden_size=_TEXT["hidden_size"], patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
        num_position_embeddings=256, **extra,
    )  # fmt: skip


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


def build_tiny_colqwen3(out_dir: Path) -> Path:
    """A random ColQwen3 (Qwen3-VL: deepstack vision features, interleaved mrope) saved to `out_dir`.

    colpali-engine fixes ColQwen3's projection at 320 dims, so its tokens are 320-d, not 128-d.
    """
    torch.manual_seed(0)
    tokenizer = qwen_tokenizer()
    config = Qwen3VLConfig(
        text_config=_qwen_text_config(tokenizer, rope={"mrope_interleaved": True}, head_dim=16),
        vision_config=_qwen3_vision_config(deepstack_visual_indexes=[0]),
        **_qwen_token_ids(tokenizer),
    )
    image_processor, video_processor = _qwen_processors(16, Qwen3VLVideoProcessor)
    processor = ColQwen3Processor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor
    )
    return _save(ColQwen3(config), processor, Path(out_dir))


def build_tiny_colqwen3_5(out_dir: Path) -> Path:
    """A random ColQwen3.5 (one gated-delta-net linear-attention layer, one gated full-attention layer).

    Qwen3.5 rotates a quarter of each head (head_dim 32 -> rotary dim 8, mrope sections sum to 4).
    """
    torch.manual_seed(0)
    tokenizer = qwen_tokenizer()
    text_config = _qwen_text_config(
        tokenizer, rope={"mrope_section": [2, 1, 1], "mrope_interleaved": True, "partial_rotary_factor": 0.25},
        head_dim=32, layer_types=["linear_attention", "full_attention"], linear_conv_kernel_dim=4,
        linear_key_head_dim=16, linear_value_head_dim=16, linear_num_key_heads=2, linear_num_value_heads=4,
    )  # fmt: skip
    config = Qwen3_5Config(
        text_config=text_config, vision_config=_qwen3_vision_config(), **_qwen_token_ids(tokenizer)
    )
    image_processor, video_processor = _qwen_processors(16, Qwen3VLVideoProcessor)
    processor = ColQwen3_5Processor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor
    )
    return _save(ColQwen3_5(config), processor, Path(out_dir))


def _siglip_vision_config(**extra) -> dict:
    return dict(**_VISION, image_size=_TILE, patch_size=_PATCH) | extra


def _idefics3_processor(processor_class, tokenizer: PreTrainedTokenizerFast):
    """An Idefics3-style processor (ColIdefics3, ColModernVBert) that splits a page into up to 2 x 2 tiles of
    _TILE pixels plus a downscaled global image, each _SHUFFLE-pixel-shuffled to 4 image tokens."""
    image_processor = Idefics3ImageProcessorPil(
        do_image_splitting=True, size={"longest_edge": 2 * _TILE}, max_image_size={"longest_edge": _TILE}
    )
    image_seq_len = (_TILE // _PATCH) ** 2 // _SHUFFLE**2
    return processor_class(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=image_seq_len)


def build_tiny_colmodernvbert(out_dir: Path) -> Path:
    """A random ColModernVBert (SigLIP tower, pixel shuffle 2, 2-layer ModernBERT encoder) saved to `out_dir`.

    A portrait page gives 2 x 2 tiles + the global image, 4 image tokens each.
    """
    torch.manual_seed(0)
    tokenizer = bpe_tokenizer(
        MODERNVBERT_SPECIAL_TOKENS, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
        pad_token="[PAD]", mask_token="[MASK]", bos_token="<|begin_of_text|>", eos_token="<end_of_utterance>",
    )  # fmt: skip
    processor = _idefics3_processor(ColModernVBertProcessor, tokenizer)
    text_config = dict(
        model_type="modernbert", vocab_size=len(tokenizer), **_TEXT, local_attention=16,
        layer_types=["full_attention", "sliding_attention"],
        **_ids(tokenizer, pad_token_id="[PAD]", bos_token_id="[CLS]", cls_token_id="[CLS]",
               eos_token_id="[SEP]", sep_token_id="[SEP]"),
    )  # fmt: skip
    config = ModernVBertConfig(
        text_config=text_config,
        vision_config=_siglip_vision_config(model_type="siglip_vision_model"),
        image_token_id=processor.image_token_id,
        pixel_shuffle_factor=_SHUFFLE,
    )
    return _save(ColModernVBert(config), processor, Path(out_dir))


def build_tiny_colpali(out_dir: Path) -> Path:
    """A random ColPali (PaliGemma: SigLIP tower on a 64 x 64 page, 2-layer Gemma) saved to `out_dir`.

    Every page is resized to one square image: 64 image tokens.
    """
    torch.manual_seed(0)
    tokenizer = bpe_tokenizer(
        PALIGEMMA_SPECIAL_TOKENS, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>"
    )
    image_size = 2 * _TILE
    image_processor = SiglipImageProcessorPil(
        size={"height": image_size, "width": image_size}, image_seq_length=(image_size // _PATCH) ** 2
    )
    processor = ColPaliProcessor(image_processor=image_processor, tokenizer=tokenizer)  # adds <loc>/<seg> tokens
    vocab_size = len(processor.tokenizer)
    config = PaliGemmaConfig(
        text_config=dict(
            model_type="gemma", vocab_size=vocab_size, **_TEXT, num_key_value_heads=1, head_dim=16,
            **_ids(tokenizer, pad_token_id="<pad>", eos_token_id="<eos>", bos_token_id="<bos>"),
        ),
        vision_config=_siglip_vision_config(model_type="siglip_vision_model", image_size=image_size,
                                            vision_use_head=False),
        image_token_index=processor.image_token_id, vocab_size=vocab_size,
        projection_dim=_TEXT["hidden_size"], hidden_size=_TEXT["hidden_size"],
    )  # fmt: skip
    return _save(ColPali(config), processor, Path(out_dir))


def build_tiny_colpali_hf(out_dir: Path) -> Path:
    """A random transformers `ColPaliForRetrieval` (the `-hf` checkpoints) that vLLM's pooling runner serves too.

    What vLLM 0.32 (CPU) needs beyond what transformers does: attention heads of 32 (its CPU kernels
    take 32, 64, 80...), a literal "\\n" token (its PaliGemma prompt ends with one), `architectures`
    in config.json, and the SigLIP weights under `vision_tower.vision_model.` as the published
    checkpoints have them. The projection bias stays zero: vLLM 0.32 drops it (see BENCHMARKS.md).
    """
    torch.manual_seed(0)
    tokenizer = bpe_tokenizer(
        PALIGEMMA_SPECIAL_TOKENS, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>",
        padding_side="right",
    )  # fmt: skip
    tokenizer.add_tokens([AddedToken("\n", normalized=False, special=False)])
    image_size = 2 * _TILE
    image_processor = SiglipImageProcessorPil(
        size={"height": image_size, "width": image_size}, image_seq_length=(image_size // _PATCH) ** 2
    )
    processor = HfColPaliProcessor(image_processor=image_processor, tokenizer=tokenizer)
    vocab_size = len(processor.tokenizer)
    vlm = PaliGemmaConfig(
        text_config=dict(
            model_type="gemma", vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=1, head_dim=32,
            **_ids(processor.tokenizer, pad_token_id="<pad>", eos_token_id="<eos>", bos_token_id="<bos>"),
        ),
        vision_config=_siglip_vision_config(model_type="siglip_vision_model", image_size=image_size,
                                            vision_use_head=False),
        image_token_index=processor.image_token_id, vocab_size=vocab_size, projection_dim=64, hidden_size=64,
    )  # fmt: skip
    out_dir = _save(ColPaliForRetrieval(ColPaliConfig(vlm_config=vlm, embedding_dim=128)), processor, Path(out_dir))
    config = json.loads((out_dir / "config.json").read_text())
    (out_dir / "config.json").write_text(json.dumps(config | {"architectures": ["ColPaliForRetrieval"]}, indent=2))
    weights = out_dir / "model.safetensors"
    legacy = "vlm.vision_tower.vision_model."
    state = {
        (legacy + name.removeprefix("vlm.vision_tower.") if name.startswith("vlm.vision_tower.")
         and not name.startswith(legacy) else name): tensor
        for name, tensor in load_file(weights).items()
    }  # fmt: skip
    save_file(state, weights, metadata={"format": "pt"})
    return out_dir


def build_tiny_colidefics3(out_dir: Path) -> Path:
    """A random ColIdefics3 / ColSmol (Idefics3: SigLIP-style tower, pixel shuffle 2, 2-layer Llama).

    A portrait page gives 2 x 2 tiles + the global image, 4 image tokens each.
    """
    torch.manual_seed(0)
    tokenizer = bpe_tokenizer(
        SMOLVLM_SPECIAL_TOKENS, bos_token="<|im_start|>", eos_token="<end_of_utterance>",
        pad_token="<|im_end|>", unk_token="<|endoftext|>",
    )  # fmt: skip
    processor = _idefics3_processor(ColIdefics3Processor, tokenizer)
    ids = _ids(tokenizer, pad_token_id="<|im_end|>", bos_token_id="<|im_start|>", eos_token_id="<end_of_utterance>")
    config = Idefics3Config(
        text_config=dict(model_type="llama", vocab_size=len(tokenizer), **_TEXT, num_key_value_heads=2, **ids),
        vision_config=_siglip_vision_config(),
        image_token_id=processor.image_token_id,
        scale_factor=_SHUFFLE,
        pad_token_id=ids["pad_token_id"],
    )
    return _save(ColIdefics3(config), processor, Path(out_dir))


def _save(model: torch.nn.Module, processor, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
