"""Pre-trains the toy LVLM to name the outlined object's part, as InternVL arrives able to see.

    python launch/pretrain_toy_lvlm.py OUT_DIR [--videos 2000] [--steps 2000] [--seed 0]
        [--init PRETRAINED_DIR] [--inference-form 0.5]

SeC's stage 2 starts from a pretrained InternVL whose features already describe an outlined
object; a toy InternVL trained from random weights for the few hundred steps of a toy stage 2
cannot learn to see the concept benchmark's identity cue (TRAIN.md, "The concept benchmark").
This gives the toy what pretraining gives the real one. Each example is the input SeC's LVLM gets
on a concept-cut video (`sec-data synth --concept-cut`): 1-3 keyframes before the cut with the
object outlined, then a frame to segment from anywhere in the video, and one of SeC's questions.
The answer is SeC's inference answer with the object's part colour named right after `[SEG]` ("It
is [SEG]red."), so the LLM learns to describe the outlined object at the position the concept is
read from. No space: in the toy tokenizer " red", " yellow", " cyan" and " white" all start with
the space token, and the `[SEG]` state, which predicts the token after it, then had to tell only
3 groups of colours apart (TRAIN.md, "What stop 26 found"); `seg_answers` checks that each
name's first token is its own. SeC asks in two forms: training gives the answer as the
assistant's turn, inference appends it to the question inside the user turn and reads `[SEG]`
there (`sec_train.data.prompts`); an LVLM pretrained on the first form alone names 0.20 of parts
right in the second, so `--inference-form` asks that fraction of examples in SeC's inference form
(`launch/toy_lvlm` continues the first-form pretraining with half of each, `--init`; TRAIN.md,
"What stop 28 found"). The loss is the LLM's next-token loss on the answer; at the end the script
prints the fraction of held-out examples whose part it names right after `[SEG]` (greedy, every
token), on any frame and on the cut frame, in either form. The result is an HF-format InternVL
directory with its tokenizer, which `model.lvlm=OUT_DIR` loads through `load_lvlm`, as a real
checkpoint.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from transformers import InternVLForConditionalGeneration, PreTrainedTokenizerBase

from data_tools.synth import PART_COLOR_NAMES, SynthVideo, render_video
from sec_train.data.collate import IGNORE_INDEX
from sec_train.data.images import resize_image, to_chw
from sec_train.data.prompts import inference_tokens, training_tokens
from sec_train.infer.keyframes import KeyframeBank
from sec_train.model.lvlm import build_toy_lvlm, image_tokens_per_frame, load_lvlm, lvlm_image_size
from sec_train.model.sam2 import normalize_images
from sec_train.tokens import INFERENCE_ANSWER, QUESTIONS, SEG_TOKEN

BATCH = 16
MAX_KEYFRAMES = 3
# what the script reports at the end: (where, cut_target_prob, inference_form_prob)
ANSWER_CHECKS = (
    ("any frame", 0.0, 0.0),
    ("the cut frame", 1.0, 0.0),
    ("the cut frame, in SeC's inference form", 1.0, 1.0),
)


def pretraining_video(seed: int, index: int) -> SynthVideo:
    """A concept-cut video as the demo draws them, from seeds no demo data set uses."""
    seed = 1_000_000 * (seed + 1) + index
    return render_video(f"p{index}", seed, frames=12, height=96, width=128, objects=1, concept_cut=True)


def held_out_video(seed: int, index: int) -> SynthVideo:
    """A video of seeds the pretraining never draws (it draws far fewer than 500,000)."""
    return pretraining_video(seed, 500_000 + index)


class LvlmViews:
    """The videos' frames as the LVLM sees them (uint8 [3, size, size]), outlined as keyframes or
    plain as targets, each drawn and resized once: a step draws ~50 of them."""

    def __init__(self, videos: list[SynthVideo], size: int):
        self.videos, self.size = videos, size
        self._views: dict[tuple[int, int, bool], torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.videos)

    def view(self, index: int, t: int, outlined: bool) -> torch.Tensor:
        key = (index, t, outlined)
        if key not in self._views:
            video = self.videos[index]
            if outlined:  # drawn as SeC's keyframe bank draws it
                bank = KeyframeBank(self.size, max_size=1)
                bank.add(t, video.frames[t], video.masks[t, 0])
                image = bank.images()[0]
            else:
                image = resize_image(video.frames[t], self.size)
            self._views[key] = to_chw(image)
        return self._views[key]

    def frames(self, index: int, keyframes: list[int], target: int) -> torch.Tensor:
        """uint8 [K + 1, 3, size, size]: the keyframes with object 1 outlined, then the target frame."""
        views = [self.view(index, t, outlined=True) for t in keyframes] + [self.view(index, target, False)]
        return torch.stack(views)


def seg_answers(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """The answer naming each part colour (`PART_COLOR_NAMES` order), checked so that the token
    the `[SEG]` state predicts, the name's first, differs between colours."""
    answers = [INFERENCE_ANSWER.replace(SEG_TOKEN, SEG_TOKEN + name) for name in PART_COLOR_NAMES]
    after_seg = []
    for answer in answers:
        tokens = tokenizer.tokenize(answer)
        after_seg.append(tokens[tokens.index(SEG_TOKEN) + 1])
    if len(set(after_seg)) != len(answers):
        raise ValueError(f"the part names' first tokens after {SEG_TOKEN} are not distinct: {after_seg}")
    return answers


def draw_batch(
    views: LvlmViews,
    rng: np.random.Generator,
    tokenizer: PreTrainedTokenizerBase,
    tokens: int,
    cut_target_prob: float = 0.0,
    inference_form_prob: float = 0.0,
) -> dict[str, torch.Tensor]:
    """BATCH examples with the same number of frames, each asking on its video's first cut frame
    with probability `cut_target_prob`, else on any frame, and with probability
    `inference_form_prob` in the form SeC's inference asks (the answer inside the user turn), else
    in its training form (the answer as the assistant's); prompts right-padded."""
    keyframes = int(rng.integers(1, MAX_KEYFRAMES + 1))
    answers = seg_answers(tokenizer)
    frames, ids, labels = [], [], []
    for index in rng.integers(0, len(views), BATCH):
        video = views.videos[index]
        before_cut = range(1, video.cuts[0])
        extra = sorted(rng.choice(before_cut, min(keyframes - 1, len(before_cut)), replace=False).tolist())
        chosen = [0, *extra] + [0] * (keyframes - 1 - len(extra))  # short pre-cut segments repeat frame 0
        on_cut = rng.random() < cut_target_prob
        target = video.cuts[0] if on_cut else int(rng.integers(0, len(video.frames)))
        frames.append(views.frames(index, chosen, target))
        answer = answers[video.parts[0]]
        if inference_form_prob > 0 and rng.random() < inference_form_prob:
            input_ids, label = inference_tokens(tokenizer, keyframes + 1, tokens, answer)
        else:
            question = QUESTIONS[rng.integers(len(QUESTIONS))]
            input_ids, label = training_tokens(tokenizer, keyframes + 1, tokens, question, answer)
        ids.append(input_ids)
        labels.append(label)
    length = max(len(i) for i in ids)

    def padded(rows: list[torch.Tensor], value: int) -> torch.Tensor:
        return torch.stack([torch.cat([row, row.new_full((length - len(row),), value)]) for row in rows])

    return {
        "pixel_values": normalize_images(torch.cat(frames), torch.float32),
        "input_ids": padded(ids, tokenizer.pad_token_id),
        "attention_mask": torch.stack([torch.arange(length) < len(i) for i in ids]).long(),
        "labels": padded(labels, IGNORE_INDEX),
    }


@torch.no_grad()
def answer_accuracy(
    model: InternVLForConditionalGeneration,
    tokenizer: PreTrainedTokenizerBase,
    size: int,
    tokens: int,
    seed: int,
    cut_target_prob: float,
    inference_form_prob: float = 0.0,
    batches: int = 8,
) -> float:
    """Fraction of held-out examples (videos the pretraining never drew; asking on the cut frame
    with probability `cut_target_prob`, in SeC's inference form with `inference_form_prob`) whose
    answer after `[SEG]`, the part's name, is the model's greedy next-token choice at every
    position: what the `[SEG]` state says, given the answer up to it as SeC's inference gives it."""
    views = LvlmViews([held_out_video(seed, i) for i in range(BATCH * batches)], size)
    rng = np.random.default_rng(seed + 1)
    right = []
    for _ in range(batches):
        batch = draw_batch(views, rng, tokenizer, tokens, cut_target_prob, inference_form_prob)
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).logits
        labels = batch["labels"][:, 1:]
        seg = (batch["input_ids"] == tokenizer.convert_tokens_to_ids(SEG_TOKEN)).int().argmax(1, keepdim=True)
        after_seg = torch.arange(labels.shape[1]) >= seg  # predictions of the tokens after [SEG]
        wrong = (logits[:, :-1].argmax(-1) != labels) & (labels != IGNORE_INDEX) & after_seg
        right.append(~wrong.any(1))
    return torch.cat(right).float().mean().item()


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("out", type=Path, help="directory for the pretrained toy InternVL and its tokenizer")
    parser.add_argument("--videos", type=int, default=2000, help="concept-cut videos to draw examples from")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0, help="seeds the weights, the videos and the draws")
    parser.add_argument("--init", type=Path, help="continue from this pretrained toy LVLM directory")
    parser.add_argument(
        "--inference-form",
        type=float,
        default=0.0,
        help="fraction of examples with the answer inside the user turn, where SeC's inference reads [SEG]",
    )
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    model, tokenizer = load_lvlm(args.init) if args.init else build_toy_lvlm("toy_concept")
    size, tokens = lvlm_image_size(model), image_tokens_per_frame(model)
    videos = [pretraining_video(args.seed, i) for i in tqdm(range(args.videos), desc="videos")]
    views = LvlmViews(videos, size)
    rng = np.random.default_rng(args.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    warmup = max(1, args.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + np.cos(np.pi * step / args.steps))
    )
    model.train()
    progress = tqdm(range(args.steps), desc="pretrain toy LVLM")
    for _ in progress:
        batch = draw_batch(views, rng, tokenizer, tokens, inference_form_prob=args.inference_form)
        loss = model(**batch, use_cache=False).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        progress.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    for where, on_cut, form in ANSWER_CHECKS:
        accuracy = answer_accuracy(model, tokenizer, size, tokens, args.seed, on_cut, form)
        print(f"held-out answers named right, asked on {where}: {accuracy:.3f}")
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    print(f"pretrained toy LVLM: {args.out}")


if __name__ == "__main__":
    main()
