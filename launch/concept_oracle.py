"""Can SAM 2's side learn to turn a known-good concept into the object's mask on a cut frame?

    python launch/concept_oracle.py --trained RUN [--concept part|seg] [--loss bce|sam2]
        [--videos 2000] [--held-out 256] [--steps 1500] [--lr 1e-3] [--seed 0]

Splits SeC's concept path on the concept benchmark (TRAIN.md, "The concept benchmark") in two.
It renders concept-cut videos of seeds no data set uses, encodes each one's cut frame with the
model's SAM 2 once, and trains, concept-only on those frames (batch 8, constant lr), `token_attn`,
the mask decoder and the concept's source:
- `part`: a learned embedding of the object's true part colour (a perfect concept);
- `seg`: a fresh `text_hidden_fcs` over the model's frozen LVLM's `[SEG]` states, read as SeC
  reads them on the first cut (frame 0 with the object outlined, then the cut frame, SeC's
  question).
Every `--every` steps it prints mean IoU on the held-out cut frames with each video's own
concept, a zero concept and another video's. Own above zero and other: SAM 2's side learns to
follow this concept, so a stage 2 that does not has a recipe problem; all equal: it cannot, at
this many steps. `--loss sam2` is the model's SAM 2 loss (`model.loss`), `bce` binary
cross-entropy + dice on the same high-resolution mask.
"""

from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from data_tools.synth import PART_COLORS, render_video
from sec_train.eval.concept import first_cut_concept
from sec_train.infer.propagate import PropagationConfig, SeCPropagator
from sec_train.infer.runtime import load_model
from sec_train.model.losses import dice_loss, mask_iou, multimask_losses
from sec_train.model.sec import SeCModel
from sec_train.model.token_attn import CONCEPT_DIM
from sec_train.model.tracker import FrameFeatures, FrameOutput

BATCH = 8
FIRST_SEED = 3_000_000  # above every seed `sec-data synth` and the LVLM pretraining draw here


@dataclass
class CutFrames:
    """V cut frames as the oracle trains on them."""

    features: FrameFeatures  # SAM 2's features, one column per frame
    masks: torch.Tensor  # bool [V, S, S]: the object, resized as SAM 2 resizes a mask
    parts: torch.Tensor  # long [V]: its part colour (`PART_COLORS` index)
    seg_states: torch.Tensor  # [V, h]: the LVLM's `[SEG]` state on the cut, as SeC reads it

    def __len__(self) -> int:
        return len(self.parts)

    def select(self, rows: torch.Tensor) -> FrameFeatures:
        levels = [level[:, rows] for level in self.features.levels]
        return FrameFeatures(levels, self.features.top_pos, self.features.image_pe)


@torch.no_grad()
def cut_frames(model: SeCModel, first: int, count: int) -> CutFrames:
    """Renders `count` concept-cut videos (seeds `first`...) and reads their cut frames."""
    propagator = SeCPropagator(model, PropagationConfig())
    seg_states: list[torch.Tensor] = []
    hook = model.text_hidden_fcs[0].register_forward_hook(lambda _, inputs, __: seg_states.append(inputs[0]))
    features, masks, parts = [], [], []
    try:
        for seed in tqdm(range(first, first + count), desc="cut frames"):
            video = render_video("o", seed, frames=12, height=96, width=128, objects=1, concept_cut=True)
            cut = video.cuts[0]
            first_cut_concept(propagator, video.frames[0], video.masks[0, 0], video.frames[cut])
            features.append(propagator._encode(video.frames[cut]))
            masks.append(propagator._prompt_masks(video.masks[cut, :1])[0] > 0.5)
            parts.append(video.parts[0])
    finally:
        hook.remove()
    levels = [torch.cat([f.levels[i] for f in features], 1) for i in range(len(features[0].levels))]
    return CutFrames(
        features=FrameFeatures(levels, features[0].top_pos, features[0].image_pe),
        masks=torch.stack(masks),
        parts=torch.tensor(parts),
        seg_states=torch.cat([s.reshape(-1, s.shape[-1]) for s in seg_states]),
    )


class ConceptSource(nn.Module):
    """The concept [N, 256] of some cut frames: from their true part, or from their `[SEG]` states
    through a fresh copy of the model's `text_hidden_fcs`."""

    def __init__(self, kind: str, model: SeCModel):
        super().__init__()
        self.kind = kind
        if kind == "part":
            self.net = nn.Embedding(len(PART_COLORS), CONCEPT_DIM)
        else:
            self.net = copy.deepcopy(model.text_hidden_fcs)
            for layer in self.net.modules():
                if isinstance(layer, nn.Linear):
                    layer.reset_parameters()

    def forward(self, frames: CutFrames, rows: torch.Tensor) -> torch.Tensor:
        if self.kind == "part":
            return self.net(frames.parts[rows])
        return self.net(frames.seg_states[rows])


def concept_only(model: SeCModel, features: FrameFeatures, concept: torch.Tensor) -> FrameOutput:
    tracker = model.tracker
    state = tracker.init_state(len(concept))
    return tracker.track_frame(state, features, 0, concept=concept, use_memory=False, update_memory=False)


def mask_loss(out: FrameOutput, masks: torch.Tensor, model: SeCModel, kind: str) -> torch.Tensor:
    if kind == "sam2":
        return multimask_losses(
            out.high_res_multimasks, out.ious, out.object_score_logits, masks, model.config.loss
        )["loss"]
    logits, target = out.high_res_masks[:, 0].float(), masks.float()
    cross_entropy = F.binary_cross_entropy_with_logits(logits, target)
    return cross_entropy + dice_loss(logits.flatten(1), target.flatten(1)).mean()


@torch.no_grad()
def held_out_iou(model: SeCModel, frames: CutFrames, source: ConceptSource) -> dict[str, float]:
    """Mean IoU with each frame's own concept, a zero one and the next frame's."""
    rows = torch.arange(len(frames))
    own = source(frames, rows)
    tried = {"own": own, "zero": torch.zeros_like(own), "other": own.roll(1, 0)}
    scores = {}
    for name, concept in tried.items():
        logits = concept_only(model, frames.select(rows), concept).high_res_masks[:, 0]
        scores[name] = float(mask_iou(logits.flatten(1), frames.masks.flatten(1)).mean())
    return scores


def trainable_parts(model: SeCModel, source: ConceptSource) -> list[nn.Parameter]:
    """Only `token_attn`, the mask decoder and the concept source train."""
    model.requires_grad_(False)
    parts = [model.token_attn, model.sam2.mask_decoder, source]
    for part in parts:
        part.requires_grad_(True)
    return [p for part in parts for p in part.parameters()]


def train(
    model: SeCModel, source: ConceptSource, frames: CutFrames, held_out: CutFrames, args: argparse.Namespace
) -> list[dict[str, float]]:
    """Concept-only steps on `frames`, scored on `held_out` every `args.every` steps. The model
    stays in eval mode (no dropout), as the measurements in TRAIN.md ran."""
    params = trainable_parts(model, source)
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    rng = np.random.default_rng(args.seed)
    history = []
    for step in tqdm(range(1, args.steps + 1), desc="oracle"):
        rows = torch.from_numpy(rng.choice(len(frames), BATCH, replace=False))
        out = concept_only(model, frames.select(rows), source(frames, rows))
        loss = mask_loss(out, frames.masks[rows], model, args.loss)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if step % args.every == 0 or step == args.steps:
            history.append({"step": step, "loss": loss.item(), **held_out_iou(model, held_out, source)})
            tqdm.write(
                "  ".join(
                    f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in history[-1].items()
                )
            )
    return history


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--trained", required=True, help="a training run, checkpoint or model dir (stage 1 or 2)"
    )
    parser.add_argument("--concept", choices=("part", "seg"), default="seg")
    parser.add_argument("--loss", choices=("bce", "sam2"), default="bce")
    parser.add_argument("--videos", type=int, default=2000, help="training cut frames")
    parser.add_argument("--held-out", type=int, default=256)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0, help="seeds the concept source and the batches")
    args = parser.parse_args(argv)
    if args.videos < BATCH:
        parser.error(f"--videos must be at least the batch, {BATCH}")
    model = load_model(args.trained, torch.device("cpu"))
    frames = cut_frames(model, FIRST_SEED, args.videos)
    held_out = cut_frames(model, FIRST_SEED + args.videos, args.held_out)
    torch.manual_seed(args.seed)
    source = ConceptSource(args.concept, model)
    print(f"before: {held_out_iou(model, held_out, source)}")
    train(model, source, frames, held_out, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
