"""Stage-2 prompts: SeC's questions and `[SEG]` answers, tokenized exactly as the official code
tokenizes them.

Both official paths use xtuner's `qwen_chat` template (`xtuner/utils/templates.py`; SeC's copy
`inference/templates.py:51-58`) with no system block. The user turn is the frames' image blocks
(`<img>` + n x `<IMG_CONTEXT>` + `</img>`) joined by newlines, with the question right after the
last block.
- Training (`training/sec/dataloaders/sec_seg_dataset.py:167-200`, `encode_fn.py:49-83`): the
  instruction, then the answer + `<|im_end|>` (labelled), then the separator `\\n` (not labelled),
  each tokenized on its own.
- Inference (`inference/modeling_sec.py:687-700`): `It is [SEG].` appended to the question inside
  the user turn, then `<|im_start|>assistant\\n`; the concept is read at `[SEG]`.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from sec_train.data.collate import IGNORE_INDEX
from sec_train.tokens import (
    ANSWERS,
    IMG_CONTEXT,
    IMG_END,
    IMG_START,
    INFERENCE_ANSWER,
    INFERENCE_QUESTION,
    QUESTIONS,
    SEG_TOKEN,
)

# xtuner's qwen_chat template: INSTRUCTION, SUFFIX (the end of an answer, learned) and SEP
INSTRUCTION = "<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n"
SUFFIX = "<|im_end|>"
SEP = "\n"


def image_block(num_image_tokens: int) -> str:
    """One frame's placeholder: `<img>` + n x `<IMG_CONTEXT>` + `</img>`."""
    return IMG_START + IMG_CONTEXT * num_image_tokens + IMG_END


def user_text(num_frames: int, num_image_tokens: int, question: str) -> str:
    """The user turn's text: the frames' blocks joined by newlines, the question right after."""
    return "\n".join([image_block(num_image_tokens)] * num_frames) + question


def _encode(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def training_tokens(
    tokenizer: PreTrainedTokenizerBase, num_frames: int, num_image_tokens: int, question: str, answer: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, labels) of one training sample; labels are -100 except on the answer and the
    `<|im_end|>` closing it, so the model learns to emit `[SEG]` and stop."""
    if SEG_TOKEN not in answer:
        raise ValueError(f"answer {answer!r} has no {SEG_TOKEN}")
    prompt = _encode(tokenizer, INSTRUCTION.format(input=user_text(num_frames, num_image_tokens, question)))
    output, sep = _encode(tokenizer, answer + SUFFIX), _encode(tokenizer, SEP)
    input_ids = torch.tensor(prompt + output + sep, dtype=torch.long)
    labels = torch.tensor([IGNORE_INDEX] * len(prompt) + output + [IGNORE_INDEX] * len(sep), dtype=torch.long)
    return input_ids, labels


def training_prompt(
    tokenizer: PreTrainedTokenizerBase, num_frames: int, num_image_tokens: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random question and answer over `num_frames` frames, tokenized."""
    question = QUESTIONS[rng.integers(len(QUESTIONS))]
    answer = ANSWERS[rng.integers(len(ANSWERS))]
    return training_tokens(tokenizer, num_frames, num_image_tokens, question, answer)


def inference_prompt(
    tokenizer: PreTrainedTokenizerBase, num_frames: int, num_image_tokens: int
) -> torch.Tensor:
    """The input_ids SeC's inference asks the LVLM for a concept with."""
    return inference_tokens(tokenizer, num_frames, num_image_tokens)[0]


def inference_tokens(
    tokenizer: PreTrainedTokenizerBase, num_frames: int, num_image_tokens: int, answer: str = INFERENCE_ANSWER
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, labels) of SeC's inference prompt with `answer` appended to the question inside
    the user turn; labels are -100 except on the answer, so that a model can learn to read `[SEG]`
    where inference reads it (`launch/pretrain_toy_lvlm.py`)."""
    text = user_text(num_frames, num_image_tokens, INFERENCE_QUESTION + answer)
    ids = _encode(tokenizer, INSTRUCTION.format(input=text))
    end = len(ids) - len(_encode(tokenizer, INSTRUCTION.split("{input}")[1]))
    start = end - len(_encode(tokenizer, answer))
    if tokenizer.decode(ids[start:end]) != answer:
        raise ValueError(f"{answer!r} does not tokenize on its own inside the inference prompt")
    labels = [IGNORE_INDEX] * start + ids[start:end] + [IGNORE_INDEX] * (len(ids) - end)
    return torch.tensor(ids, dtype=torch.long), torch.tensor(labels, dtype=torch.long)
