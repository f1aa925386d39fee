"""`python -m sec_train.bench track [--json] [--frames 8] [--objects 1 3]`: per-frame video
inference of SeC's SAM 2 tracker against Meta's `sam2` `SAM2VideoPredictor` and transformers'
`Sam2VideoModel.propagate_in_video_iterator`, in one process.

All three run SAM 2.1-L (Meta's `sam2.1_hiera_l.yaml`, 1024 px) with the same random weights
(Meta's model, imported into transformers' layout by `sec-train import sam2`'s mapping), on the
same frames, in float32, from a mask prompt per object on frame 0; each encodes every frame
itself. A run's per-frame time is its whole propagation over `--frames` frames divided by the
frame count; runs alternate between the three and the fastest of `--rounds` is kept.
The last line is JSON: per-frame seconds and the ratios `ours_over_meta`,
`ours_over_transformers` (1 object) and `three_over_one` (ours, 3 objects over 1).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch
from tqdm import tqdm
from transformers import Sam2VideoModel
from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

from sec_train.convert.sam2 import plan_from_original
from sec_train.model.sam2 import real_sam2_config
from sec_train.model.tracker import Sam2Tracker

META_CONFIG = "configs/sam2.1/sam2.1_hiera_l.yaml"


def meta_predictor():
    """Meta's SAM 2.1-L video predictor from its own hydra config, random weights, eval mode."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    if not GlobalHydra.instance().is_initialized():
        initialize_config_module("sam2", version_base="1.2")
    cfg = compose(config_name=META_CONFIG)
    cfg.model._target_ = "sam2.sam2_video_predictor.SAM2VideoPredictor"
    torch.manual_seed(0)
    return instantiate(cfg.model, _recursive_=True).eval()


def transformers_model(meta: torch.nn.Module) -> Sam2VideoModel:
    """transformers' SAM 2.1-L holding Meta's weights, mapped as `sec-train import sam2` maps them."""
    config = real_sam2_config()
    state = meta.state_dict()
    model = Sam2VideoModel(config).eval()
    mapped = {
        step.target: step.apply([state[k] for k in step.sources])
        for step in plan_from_original(list(state), config)
    }
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"weight mapping: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model


def prompts(objects: int, size: int) -> torch.Tensor:
    """`objects` box masks [N, S, S] at different places."""
    masks = torch.zeros(objects, size, size, dtype=torch.bool)
    for i in range(objects):
        top, left = size // 8 + i * size // 4, size // 6 + i * size // 5
        masks[i, top : top + size // 4, left : left + size // 3] = True
    return masks


def run_meta(meta, frames: torch.Tensor, masks: torch.Tensor) -> None:
    from sam2 import sam2_video_predictor

    size = frames.shape[-1]
    sam2_video_predictor.load_video_frames = lambda **_: (frames, size, size)
    state = meta.init_state(video_path="unused")
    for i, mask in enumerate(masks):
        meta.add_new_mask(state, frame_idx=0, obj_id=i, mask=mask)
    for _ in meta.propagate_in_video(state):
        pass


def run_transformers(model: Sam2VideoModel, frames: torch.Tensor, masks: torch.Tensor) -> None:
    size = frames.shape[-1]
    session = Sam2VideoInferenceSession(
        video=frames, video_height=size, video_width=size, inference_device=frames.device, dtype=torch.float32
    )
    for i, mask in enumerate(masks):
        session.add_mask_inputs(session.obj_id_to_idx(i), 0, mask[None, None].float())
        session.obj_with_new_inputs.append(i)
    for _ in model.propagate_in_video_iterator(session, start_frame_idx=0):
        pass


def run_ours(tracker: Sam2Tracker, frames: torch.Tensor, masks: torch.Tensor) -> None:
    """Per frame: encode it, then track all objects on it (what `sec_train.infer` does)."""
    state = tracker.init_state(len(masks), len(frames))
    for t in range(len(frames)):
        features = tracker.encode_frames(frames[t : t + 1])
        tracker.track_frame(state, features, t, mask_prompt=masks if t == 0 else None)


def per_frame_s(fn: Callable[[], None], frames: int, device: str) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / frames


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sec_train.bench track", description=__doc__)
    parser.add_argument("--json", action="store_true", help="last line: the result as JSON")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the fastest is kept")
    parser.add_argument("--dry-run", action="store_true", help="print the settings as JSON, run nothing")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.dry_run:
        print(json.dumps({**vars(args), "meta_config": META_CONFIG}))
        return 0
    meta = meta_predictor()
    model = transformers_model(meta).to(args.device)
    meta.to(args.device)
    tracker = Sam2Tracker(model, memory_dtype=torch.bfloat16, mask_pointer_multimask=False)
    frames = torch.randn(args.frames, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    frames = frames.to(args.device)
    runs = {
        (name, n): (lambda fn=fn, impl=impl, n=n: fn(impl, frames, prompts(n, args.size)))
        for n in (1, 3)
        for name, fn, impl in (
            ("ours", run_ours, tracker),
            ("meta", run_meta, meta),
            ("transformers", run_transformers, model),
        )
    }
    best: dict[tuple[str, int], float] = {}
    for _ in tqdm(range(args.rounds), desc="bench track"):
        for key, fn in runs.items():
            seconds = per_frame_s(fn, args.frames, args.device)
            best[key] = min(best.get(key, float("inf")), seconds)
            # each run as it ends, so a run cut short still leaves its figures
            tqdm.write(f"{key[0]}, {key[1]} object(s): {seconds:.3f} s per frame")
    result = {
        "per_frame_s": {f"{name}_{n}obj": round(s, 4) for (name, n), s in best.items()},
        "ours_over_meta": best["ours", 1] / best["meta", 1],
        "ours_over_transformers": best["ours", 1] / best["transformers", 1],
        "three_over_one": best["ours", 3] / best["ours", 1],
        "ours_over_meta_3obj": best["ours", 3] / best["meta", 3],
        "ours_over_transformers_3obj": best["ours", 3] / best["transformers", 3],
        "targets": {"ours_over_meta": 1.0, "ours_over_transformers": 1.0, "three_over_one": 2.0},
        "device": args.device,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(result) if args.json else json.dumps(result, indent=1))
    return 0
