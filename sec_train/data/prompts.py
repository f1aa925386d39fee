"""Stage-2 prompts: SeC's paraphrased questions and `[SEG]` answers (`sec_train.tokens`) put in
the Qwen chat template with InternVL's image tokens, and tokenized."""

from __future__ import annotations

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from sec_train.data.collate import IGNORE_INDEX
from sec_train.tokens import ANSWERS, IMG_CONTEXT, IMG_END, IMG_START, QUESTIONS, SEG_TOKEN


def image_block(num_image_tokens: int) -> str:
    """One frame's placeholder: `<img>` + n x `<IMG_CONTEXT>` + `</img>`."""
    return IMG_START + IMG_CONTEXT * num_image_tokens + IMG_END


def user_message(num_frames: int, num_image_tokens: int, question: str) -> str:
    """The user turn: each frame on its own line, then the question."""
    frames = "".join(f"Frame{i + 1}: {image_block(num_image_tokens)}\n" for i in range(num_frames))
    return frames + question


def tokenize_conversation(
    tokenizer: PreTrainedTokenizerBase, user: str, answer: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, labels) of a one-turn chat; labels are -100 except on the answer and the
    `<|im_end|>` closing it, so the model learns to emit `[SEG]` and stop."""
    if SEG_TOKEN not in answer:
        raise ValueError(f"answer {answer!r} has no {SEG_TOKEN}")
    turn = [{"role": "user", "content": user}]
    prompt = tokenizer.apply_chat_template(turn, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(turn + [{"role": "assistant", "content": answer}], tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the prompt differently with and without the answer")
    completion = full[len(prompt) :].rstrip("\n")  # the newline after <|im_end|> is not learned
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    input_ids = torch.tensor(prompt_ids + completion_ids, dtype=torch.long)
    labels = torch.tensor([IGNORE_INDEX] * len(prompt_ids) + completion_ids, dtype=torch.long)
    return input_ids, labels


def training_prompt(
    tokenizer: PreTrainedTokenizerBase, num_frames: int, num_image_tokens: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random question and answer over `num_frames` frames, tokenized."""
    question = QUESTIONS[rng.integers(len(QUESTIONS))]
    answer = ANSWERS[rng.integers(len(ANSWERS))]
    return tokenize_conversation(tokenizer, user_message(num_frames, num_image_tokens, question), answer)
