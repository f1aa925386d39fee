"""Tokenizers: the toy one built locally, and the real InternVL one with `[SEG]` added.

The toy tokenizer is a byte-level BPE trained in a few milliseconds on a fixed corpus, so it
is identical on every machine and needs no download. It carries the same special tokens as
InternVL 2.5's Qwen tokenizer plus `[SEG]`, so prompts are built by one code path for both.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from sec_train.tokens import (
    ANSWERS,
    END_OF_TEXT,
    IM_END,
    IM_START,
    IMG_CONTEXT,
    IMG_END,
    IMG_START,
    QUESTIONS,
    SEG_TOKEN,
    SPECIAL_TOKENS,
)

# Qwen's chat template, as InternVL 2.5 uses it.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# What the toy corpus adds to the stage-2 questions and answers (sec_train/tokens.py) it trains on.
_TOY_CORPUS_EXTRA = [
    "system user assistant You are a helpful assistant that segments objects in videos.",
    "the a an of in on to and is it that this with for from by at as frame frames image images",
    "0123456789 .,;:!?'\"()[]{}<>-_/\\|@#$%^&*+=~` \n\t",
]
TOY_VOCAB_SIZE = 512


def build_toy_tokenizer() -> PreTrainedTokenizerFast:
    """A deterministic byte-level BPE tokenizer with InternVL's special tokens and `[SEG]`."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TOY_VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([*QUESTIONS, *ANSWERS, *_TOY_CORPUS_EXTRA], trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=END_OF_TEXT,
        extra_special_tokens=SPECIAL_TOKENS[1:],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """Loads a saved tokenizer (InternVL's or ours) and makes sure `[SEG]` is in it."""
    tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    add_seg_token(tokenizer)
    return tokenizer


def add_seg_token(tokenizer: PreTrainedTokenizerBase) -> int:
    """Adds `[SEG]` as a special token if it is missing; returns its id."""
    if SEG_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [SEG_TOKEN]})
    vocab = tokenizer.get_vocab()
    missing = [t for t in (IMG_START, IMG_END, IMG_CONTEXT, IM_START, IM_END) if t not in vocab]
    if missing:
        raise ValueError(f"tokenizer {tokenizer.name_or_path!r} lacks InternVL special tokens {missing}")
    return tokenizer.convert_tokens_to_ids(SEG_TOKEN)
