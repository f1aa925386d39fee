"""Can the toy LVLM see the concept benchmark's identity cue? Probes on concept-cut keyframes.

    python launch/lvlm_probe.py linear                    # ridge probes on untrained features
    python launch/lvlm_probe.py supervised --steps 300    # fine-tune the whole LVLM on the cue
    python launch/lvlm_probe.py supervised --label dominant --steps 150   # an easy control
    python launch/lvlm_probe.py linear --lvlm runs/demo/toy_lvlm   # the demo's pretrained toy LVLM

Each example is SeC's inference input at a video's first cut: the keyframe (frame 0, the object
outlined) and the cut frame, as `SeCPropagator.concepts` builds it. The label is the object's
part colour (one of 6), or with `--label dominant` the keyframe's dominant colour channel.
`linear` fits ridge regressions on the `toy_concept` LVLM's concept (untrained, or with `--lvlm`
the output of `pretrain_toy_lvlm.py`), its `[SEG]` state, the keyframe's image tokens, and (as a
reference that the pixels hold the answer) a colour histogram of the keyframe. `supervised`
trains the whole LVLM and `text_hidden_fcs` with a linear head by cross-entropy. Both print held-out accuracy.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from tqdm import tqdm

from data_tools.synth import render_video
from sec_train.data.images import resize_image, to_chw
from sec_train.data.prompts import inference_prompt
from sec_train.infer.keyframes import KeyframeBank
from sec_train.model.build import build_sec_model
from sec_train.model.config import ModelConfig
from sec_train.model.sam2 import normalize_images
from sec_train.model.sec import SeCModel


def example(model: SeCModel, seed: int, label: str) -> tuple[torch.Tensor, int]:
    """The LVLM frames [2, 3, S, S] (outlined keyframe, cut frame) of one video and its label."""
    video = render_video("v", seed, frames=12, height=96, width=128, objects=1, concept_cut=True)
    mask = video.masks[0, 0]
    if label == "part":
        y = video.parts[0]
    else:
        y = int(np.argmax(video.frames[0].reshape(-1, 3).mean(0)))
    bank = KeyframeBank(model.lvlm_image_size)
    bank.add(0, video.frames[0], mask)
    frames = bank.images() + [resize_image(video.frames[video.cuts[0]], model.lvlm_image_size)]
    return torch.stack([to_chw(f) for f in frames]), y


def concepts(model: SeCModel, frames: torch.Tensor) -> torch.Tensor:
    """Concept embeddings [B, 256] of B examples' frames [B * 2, 3, S, S]."""
    ids = torch.tensor(inference_prompt(model.tokenizer, 2, model.num_image_tokens))
    batch = frames.shape[0] // 2
    ids = ids.expand(batch, -1)
    return model.concept_embedding(frames, ids, torch.ones_like(ids), torch.full((batch,), 2))


Examples = list[tuple[torch.Tensor, int]]


def ridge_accuracy(features: np.ndarray, labels: np.ndarray, train: int) -> float:
    """Held-out accuracy of a one-vs-all ridge regression fitted on the first `train` rows."""
    x = (features - features.mean(0)) / (features.std(0) + 1e-6)
    targets = np.eye(labels.max() + 1)[labels]
    w = np.linalg.solve(x[:train].T @ x[:train] + 10 * np.eye(x.shape[1]), x[:train].T @ targets[:train])
    return float((np.argmax(x[train:] @ w, 1) == labels[train:]).mean())


def linear(model: SeCModel, data: Examples, train: int) -> dict[str, float]:
    seg_states = []
    model.text_hidden_fcs[0].register_forward_hook(lambda m, args, out: seg_states.append(args[0][0]))
    rows: dict[str, list[np.ndarray]] = {"concept": [], "[SEG] state": [], "image tokens (mean)": []}
    histograms = []
    with torch.no_grad():
        for frames, _ in tqdm(data, desc="features"):
            rows["concept"].append(concepts(model, frames)[0].numpy())
            rows["[SEG] state"].append(seg_states[-1].float().numpy())
            pixels = normalize_images(frames[:1], torch.float32)
            tokens = model.lvlm.model.get_image_features(pixel_values=pixels)
            tokens = tokens if torch.is_tensor(tokens) else tokens.pooler_output
            rows["image tokens (mean)"].append(tokens.reshape(-1, tokens.shape[-1]).mean(0).numpy())
            rgb = frames[0].reshape(3, -1).T.float().numpy()
            histograms.append(np.histogramdd(rgb, bins=4, range=[(0, 256)] * 3)[0].ravel())
    rows["keyframe colour histogram 4x4x4"] = histograms
    labels = np.array([y for _, y in data])
    return {name: ridge_accuracy(np.array(values), labels, train) for name, values in rows.items()}


def supervised(model: SeCModel, data: Examples, train: int, steps: int, lr: float) -> None:
    head = torch.nn.Linear(256, int(max(y for _, y in data)) + 1)
    params = [*model.lvlm.parameters(), *model.text_hidden_fcs.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=lr)
    held_out = torch.cat([f for f, _ in data[train:]]), torch.tensor([y for _, y in data[train:]])
    rng = np.random.default_rng(0)
    model.train()
    for step in tqdm(range(1, steps + 1), desc="supervised"):
        pick = rng.integers(0, train, 16)
        frames, labels = torch.cat([data[i][0] for i in pick]), torch.tensor([data[i][1] for i in pick])
        loss = torch.nn.functional.cross_entropy(head(concepts(model, frames)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0 or step == steps:
            with torch.no_grad():
                accuracy = (head(concepts(model, held_out[0])).argmax(1) == held_out[1]).float().mean()
            tqdm.write(f"step {step}: loss {loss.item():.3f}, held-out accuracy {accuracy:.3f}")


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("probe", choices=("linear", "supervised"))
    parser.add_argument("--label", choices=("part", "dominant"), default="part")
    parser.add_argument("--videos", type=int, default=600, help="the last 100 are held out")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--lvlm", default="toy_concept", help="random toy_concept, or a directory from pretrain_toy_lvlm.py"
    )
    args = parser.parse_args()
    model = build_sec_model(ModelConfig(lvlm=args.lvlm))
    data = [example(model, 7000 + i, args.label) for i in tqdm(range(args.videos), desc="videos")]
    labels = np.array([y for _, y in data[-100:]])
    print(f"{len(data)} videos, label {args.label}: chance {np.bincount(labels).max() / len(labels):.2f}")
    if args.probe == "linear":
        for name, accuracy in linear(model, data, len(data) - 100).items():
            print(f"{name:>32}: held-out accuracy {accuracy:.3f}")
    else:
        supervised(model, data, len(data) - 100, args.steps, args.lr)


if __name__ == "__main__":
    main()
