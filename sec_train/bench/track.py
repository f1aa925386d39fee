"""`python -m sec_train.bench track [--json] [--frames 8] [--rounds 1] [--warmup 2] [--threads 2]`:
per-frame video inference of SeC's SAM 2 tracker against Meta's `sam2` `SAM2VideoPredictor` and
transformers' `Sam2VideoModel.propagate_in_video_iterator`, in one process.

All three run SAM 2.1-L (Meta's `sam2.1_hiera_l.yaml`, 1024 px) with the same random weights
(Meta's model, imported into transformers' layout by `sec-train import sam2`'s mapping), on the
same frames, in float32, from a mask prompt per object on frame 0, with 1 and with 3 objects.

A frame's time is everything an implementation does between handing out one frame's masks (at
the image size) and the next: encoding the frame's image (each encodes every frame once, itself),
memory attention, the mask decoder, the memory encoder; frame 0 also counts setting up the video
state and taking the mask prompts. The six runs (3 implementations x 1 and 3 objects) advance in
lockstep, one frame each in turn, so load from other processes falls on all of them alike. A
round's per-frame time is its total over `--frames` frames divided by the frame count; a warm-up
round of `--warmup` frames is not counted, and the median over `--rounds` rounds is reported, in
wall-clock and in process CPU seconds. The last line is JSON: per-frame seconds and the ratios
`ours_over_meta`, `ours_over_transformers` (1 object) and `three_over_one` (ours, 3 objects
over 1).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import Sam2VideoConfig, Sam2VideoModel
from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

from sec_train.convert.sam2 import plan_from_original
from sec_train.model.sam2 import real_sam2_config
from sec_train.model.tracker import Sam2Tracker

META_CONFIG = "configs/sam2.1/sam2.1_hiera_l.yaml"
TIMED = (
    "per frame: image encoding, memory attention, mask decoder and memory encoder of that frame;"
    " frame 0 adds state setup and the mask prompts; float32; median over rounds after a warm-up"
)

FrameSteps = Iterator[torch.Tensor]  # each frame's mask logits [N, S, S], at the image size


def meta_predictor() -> torch.nn.Module:
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


def transformers_model(meta: torch.nn.Module, config: Sam2VideoConfig | None = None) -> Sam2VideoModel:
    """transformers' SAM 2 (`config`, default SAM 2.1-L) holding Meta's weights, mapped as
    `sec-train import sam2` maps them."""
    config = config or real_sam2_config()
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


def meta_steps(meta: torch.nn.Module, frames: torch.Tensor, masks: torch.Tensor) -> FrameSteps:
    from sam2 import sam2_video_predictor

    size = frames.shape[-1]
    # Meta's predictor reads a video from disk; hand it the in-memory frames instead
    sam2_video_predictor.load_video_frames = lambda **_: (frames, size, size)
    state = meta.init_state(video_path="unused")
    for i, mask in enumerate(masks):
        meta.add_new_mask(state, frame_idx=0, obj_id=i, mask=mask)
    for _, _, masks in meta.propagate_in_video(state):
        yield masks[:, 0]


def transformers_steps(model: Sam2VideoModel, frames: torch.Tensor, masks: torch.Tensor) -> FrameSteps:
    size = frames.shape[-1]
    session = Sam2VideoInferenceSession(
        video=frames, video_height=size, video_width=size, inference_device=frames.device, dtype=torch.float32
    )
    for i, mask in enumerate(masks):
        session.add_mask_inputs(session.obj_id_to_idx(i), 0, mask[None, None].float())
        session.obj_with_new_inputs.append(i)
    for out in model.propagate_in_video_iterator(session, start_frame_idx=0):
        # to the image size, as Meta's predictor and the tracker hand their masks out
        yield F.interpolate(out.pred_masks, size=(size, size), mode="bilinear", align_corners=False)[:, 0]


def ours_steps(tracker: Sam2Tracker, frames: torch.Tensor, masks: torch.Tensor) -> FrameSteps:
    """Per frame: encode it, then track all objects on it (what `sec_train.infer` does)."""
    state = tracker.init_state(len(masks), len(frames))
    for t in range(len(frames)):
        features = tracker.encode_frames(frames[t : t + 1])
        out = tracker.track_frame(state, features, t, mask_prompt=masks if t == 0 else None)
        yield out.high_res_masks[:, 0]


def lockstep(
    runs: dict[str, Callable[[], FrameSteps]], frames: int, device: str
) -> dict[str, dict[str, float]]:
    """Advances every run one frame in turn, printing each frame's times as they come.

    Returns:
        `dict[str, dict[str, float]]`: per run, mean `wall` and process `cpu` seconds per frame.
    """
    steps = {name: make() for name, make in runs.items()}
    wall, cpu = dict.fromkeys(runs, 0.0), dict.fromkeys(runs, 0.0)
    with torch.inference_mode():
        for t in tqdm(range(frames), desc="frames", leave=False):
            line = []
            for name, step in steps.items():
                start_wall, start_cpu = time.perf_counter(), time.process_time()
                if next(step, StopIteration) is StopIteration:
                    raise RuntimeError(f"{name} gave {t} frames, expected {frames}")
                if device == "cuda":
                    torch.cuda.synchronize()
                step_wall, step_cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
                wall[name] += step_wall
                cpu[name] += step_cpu
                line.append(f"{name} {step_wall:.2f}/{step_cpu:.2f}")
            tqdm.write(f"  frame {t} (wall/CPU s): " + ", ".join(line))
    return {name: {"wall": wall[name] / frames, "cpu": cpu[name] / frames} for name in runs}


def ratios(per_frame: dict[str, float]) -> dict[str, float]:
    """The bench's ratios of per-frame times keyed `{impl}_{n}obj`."""
    return {
        "ours_over_meta": per_frame["ours_1obj"] / per_frame["meta_1obj"],
        "ours_over_transformers": per_frame["ours_1obj"] / per_frame["transformers_1obj"],
        "three_over_one": per_frame["ours_3obj"] / per_frame["ours_1obj"],
        "ours_over_meta_3obj": per_frame["ours_3obj"] / per_frame["meta_3obj"],
        "ours_over_transformers_3obj": per_frame["ours_3obj"] / per_frame["transformers_3obj"],
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sec_train.bench track", description=__doc__)
    parser.add_argument("--json", action="store_true", help="last line: the result as JSON")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument(
        "--rounds", type=int, default=1, help="timed rounds after the warm-up; the median is kept"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=2,
        help="frames of the untimed first round (2: every code path runs once)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--dry-run", action="store_true", help="print the settings as JSON, run nothing")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.dry_run:
        print(json.dumps({**vars(args), "meta_config": META_CONFIG}))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    meta = meta_predictor()
    model = transformers_model(meta).to(args.device)
    meta.to(args.device)
    tracker = Sam2Tracker(model, memory_dtype=torch.bfloat16, mask_pointer_multimask=False)
    size = model.image_size
    frames = torch.randn(args.frames, 3, size, size, generator=torch.Generator().manual_seed(0))
    frames = frames.to(args.device)
    impls = {
        "ours": (ours_steps, tracker),
        "meta": (meta_steps, meta),
        "transformers": (transformers_steps, model),
    }

    def runs(count: int) -> dict[str, Callable[[], FrameSteps]]:
        clip = frames[:count]
        return {
            f"{name}_{n}obj": (lambda fn=fn, impl=impl, n=n: fn(impl, clip, prompts(n, size).to(args.device)))
            for n in (1, 3)
            for name, (fn, impl) in impls.items()
        }

    warmup = min(args.warmup, args.frames)
    if warmup:
        tqdm.write(f"warm-up (not timed): {warmup} frames")
        lockstep(runs(warmup), warmup, args.device)
    rounds = []
    for r in range(args.rounds):
        tqdm.write(f"round {r + 1} of {args.rounds}: {args.frames} frames")
        rounds.append(lockstep(runs(args.frames), args.frames, args.device))
        # each round as it ends, so a run cut short still leaves its figures
        tqdm.write(f"round {r + 1}: " + ", ".join(f"{k} {s['wall']:.3f}" for k, s in rounds[-1].items()))
    median = {
        clock: {key: statistics.median(r[key][clock] for r in rounds) for key in rounds[0]}
        for clock in ("wall", "cpu")
    }
    result = {
        "per_frame_s": {key: round(s, 4) for key, s in median["wall"].items()},
        **ratios(median["wall"]),
        "targets": {"ours_over_meta": 1.0, "ours_over_transformers": 1.0, "three_over_one": 2.0},
        "timed": TIMED,
        # process CPU seconds: less sensitive to other processes' load than wall time
        "per_frame_cpu_s": {key: round(s, 4) for key, s in median["cpu"].items()},
        "cpu_time_ratios": ratios(median["cpu"]),
        "frames": args.frames,
        "rounds": args.rounds,
        "device": args.device,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(result) if args.json else json.dumps(result, indent=1))
    return 0
