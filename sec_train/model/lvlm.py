"""The LVLM of SeC: InternVL 2.5 (InternViT + MLP projector + Qwen2 LLM) as transformers builds it.

Three build paths, all returning `(InternVLForConditionalGeneration, tokenizer)`:

- `build_toy_lvlm()`: random weights at toy sizes (56 px frames, 4 image tokens per frame, a tiny
  Qwen2) with the toy tokenizer; builds in milliseconds on CPU, for tests and demos.
- `load_lvlm(path)`: a local HF-format InternVL directory and its tokenizer, with `[SEG]` added
  and the embeddings resized to hold it.
- `build_real_lvlm_meta()`: InternVL 2.5-4B dimensions on the meta device (shapes only), for
  benchmarks and state-dict key checks without any download.

InternVL and SAM 2 share ImageNet's mean/std, so frames of both are normalised on device by
`sec_train.model.sam2.normalize_images`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    InternVLConfig,
    InternVLForConditionalGeneration,
    InternVLVisionConfig,
    PreTrainedTokenizerBase,
    Qwen2Config,
)

from sec_train.model.tokenizer import build_toy_tokenizer, load_tokenizer
from sec_train.tokens import IMG_CONTEXT

VOCAB_MULTIPLE = 64  # embedding rows are padded to this, as tensor cores like it

# Toy sizes (image px; vision tower and LLM as width, layers, MLP width; the LLM's attention
# heads, half as many key/value heads): "toy" for unit tests (4 image tokens per frame, builds in
# milliseconds) and "toy_concept" for the concept benchmark (16 tokens per frame; its [SEG] state
# varies with the frames 17x more than the small toy's, but from random weights a toy stage 2
# does not teach it the benchmark's identity cue: launch/pretrain_toy_lvlm.py pretrains it,
# TRAIN.md "The concept benchmark"). 8 LLM heads, not 4: its pretraining left its plateau (the
# part named at chance) within 2,000 steps on 2 of 4 seeds, with 4 heads on 1 (TRAIN.md, "What
# stop 26 found").
TOY_SIZES = {
    "toy": {"image": 56, "vit": (32, 2, 64), "llm": (64, 2, 128), "llm_heads": 4},
    "toy_concept": {"image": 112, "vit": (64, 2, 128), "llm": (128, 2, 256), "llm_heads": 8},
}
PATCH_SIZE = 14  # InternViT's, toy and real
REAL_IMAGE_SIZE = 448
# InternVL 2.5's Qwen2.5 vocabulary (151,674 rows in InternVL2_5-4B) and its <IMG_CONTEXT> id.
REAL_VOCAB_SIZE = 151674
REAL_IMAGE_TOKEN_ID = 151667


def _padded(n: int) -> int:
    return -(-n // VOCAB_MULTIPLE) * VOCAB_MULTIPLE


def toy_lvlm_config(vocab_size: int, image_token_id: int, size: str = "toy") -> InternVLConfig:
    """A tiny InternVL: patch 14, pixel-shuffle 0.5 -> (image / 28)^2 tokens per frame.

    Args:
        size (`str`): a key of `TOY_SIZES`: "toy" (56 px, 4 tokens, widths 32 / 64) or
            "toy_concept" (112 px, 16 tokens, widths 64 / 128); width, layers and MLP width of
            the vision tower and of the LLM, and the LLM's attention heads.
    """
    sizes = TOY_SIZES[size]
    image = sizes["image"]
    (vit_width, vit_layers, vit_mlp), (llm_width, llm_layers, llm_mlp) = sizes["vit"], sizes["llm"]
    vision = InternVLVisionConfig(
        hidden_size=vit_width,
        num_hidden_layers=vit_layers,
        num_attention_heads=2,
        intermediate_size=vit_mlp,
        image_size=image,
        patch_size=PATCH_SIZE,
        attention_bias=True,
    )
    text = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=llm_width,
        intermediate_size=llm_mlp,
        num_hidden_layers=llm_layers,
        num_attention_heads=sizes["llm_heads"],
        num_key_value_heads=sizes["llm_heads"] // 2,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
    )
    return InternVLConfig(
        vision_config=vision.to_dict(),
        text_config=text.to_dict(),
        image_token_id=image_token_id,
        image_seq_length=(image // PATCH_SIZE // 2) ** 2,
        downsample_ratio=0.5,
        tie_word_embeddings=False,
    )


def real_lvlm_config() -> InternVLConfig:
    """InternVL 2.5-4B: InternViT-300M at 448 px (256 tokens per frame) + Qwen2.5-3B (hidden 2048)."""
    vision = InternVLVisionConfig(
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        image_size=REAL_IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        attention_bias=True,
        layer_scale_init_value=0.1,
    )
    text = Qwen2Config(
        vocab_size=REAL_VOCAB_SIZE,
        hidden_size=2048,
        intermediate_size=11008,
        num_hidden_layers=36,
        num_attention_heads=16,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        tie_word_embeddings=False,
    )
    return InternVLConfig(
        vision_config=vision.to_dict(),
        text_config=text.to_dict(),
        image_token_id=REAL_IMAGE_TOKEN_ID,
        image_seq_length=256,
        downsample_ratio=0.5,
        tie_word_embeddings=False,
    )


def build_toy_lvlm(size: str = "toy") -> tuple[InternVLForConditionalGeneration, PreTrainedTokenizerBase]:
    """Random toy InternVL of `size` ("toy" or "toy_concept", see `TOY_SIZES`) and the toy
    tokenizer (which already holds `[SEG]`)."""
    tokenizer = build_toy_tokenizer()
    config = toy_lvlm_config(_padded(len(tokenizer)), tokenizer.convert_tokens_to_ids(IMG_CONTEXT), size)
    return InternVLForConditionalGeneration(config).eval(), tokenizer


def build_real_lvlm_meta() -> InternVLForConditionalGeneration:
    """InternVL 2.5-4B shapes on the meta device: no memory, no weights, for key and size checks."""
    with torch.device("meta"):
        return InternVLForConditionalGeneration(real_lvlm_config()).eval()


def load_lvlm(
    path: str | Path, dtype: torch.dtype = torch.float32
) -> tuple[InternVLForConditionalGeneration, PreTrainedTokenizerBase]:
    """Loads a local HF-format InternVL directory and its tokenizer, adding `[SEG]` if missing.

    Args:
        path (`str` or `Path`): a directory written by `InternVLForConditionalGeneration.save_pretrained`
            (config.json, safetensors) that also holds the tokenizer files.
        dtype (`torch.dtype`): the dtype of the loaded weights.

    Returns:
        The model (embeddings grown to hold `[SEG]`, new rows initialised by transformers' mean
        resizing) and the tokenizer.
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not an InternVL model directory (no config.json)")
    tokenizer = load_tokenizer(path)
    model = InternVLForConditionalGeneration.from_pretrained(str(path), dtype=dtype).eval()
    image_token_id = tokenizer.convert_tokens_to_ids(IMG_CONTEXT)
    if model.config.image_token_id != image_token_id:
        raise ValueError(
            f"{path}: config image_token_id {model.config.image_token_id} is not the tokenizer's "
            f"{IMG_CONTEXT} id {image_token_id}"
        )
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=VOCAB_MULTIPLE)
    return model, tokenizer


def lvlm_image_size(model: InternVLForConditionalGeneration) -> int:
    """The square frame size the vision tower takes (56 toy, 448 real)."""
    return int(model.config.vision_config.image_size[0])


def image_tokens_per_frame(model: InternVLForConditionalGeneration) -> int:
    """`<IMG_CONTEXT>` tokens per frame: (size / patch * downsample_ratio)^2 (4 toy, 256 real)."""
    vision = model.config.vision_config
    side = vision.image_size[0] // vision.patch_size[0] * model.config.downsample_ratio
    return int(side) ** 2
