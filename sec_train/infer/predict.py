"""`sec-train predict`: segment a video from a first-frame mask with a trained SeC model.

    sec-train predict --checkpoint DIR --video FRAMES_DIR --mask FIRST.png --out OUT_DIR

writes `OUT_DIR/masks/<frame>.png` (palette PNGs, pixel = object id, as DAVIS stores them),
`OUT_DIR/overlays/<frame>.png` (the frame with the objects tinted and outlined) and
`OUT_DIR/summary.json` (frames, objects, scene changes, LVLM calls, post-processing, seconds).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sec_train.infer.overlay import save_overlay_png, save_palette_png
from sec_train.infer.propagate import RELEASED_FILL_HOLE_AREA, PropagationStats, SeCPropagator
from sec_train.infer.runtime import (
    add_model_arguments,
    autocast,
    load_model,
    propagation_config,
    resolve_device,
)
from sec_train.infer.video import Video, list_frames, read_id_png


def prompt_labels(path: Path) -> np.ndarray:
    """The first-frame mask as uint8 ids: a palette or greyscale PNG of ids (0 = background), or
    a binary 0/255 mask, which is one object with id 1."""
    labels = read_id_png(path)
    if set(np.unique(labels).tolist()) <= {0, 255}:
        labels = (labels > 0).astype(np.uint8)
    if not labels.any():
        raise ValueError(f"first-frame mask {path} is empty")
    return labels


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sec-train predict", description=__doc__.split("\n")[0])
    add_model_arguments(parser, fill_hole_area=RELEASED_FILL_HOLE_AREA)
    parser.add_argument("--video", required=True, help="folder of frames (.jpg/.png, in name order)")
    parser.add_argument(
        "--mask", required=True, help="first frame's mask PNG: object ids, or a 0/255 binary mask"
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--no-overlays", action="store_true", help="write the palette masks only")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    first_labels = prompt_labels(Path(args.mask))  # bad input fails before the model loads
    video = Video(Path(args.video).name, list(list_frames(args.video)), {0: lambda: first_labels})
    out = Path(args.out)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    if not args.no_overlays:
        (out / "overlays").mkdir(exist_ok=True)
    device = resolve_device(args.device)
    model = load_model(args.checkpoint, device)
    propagator = SeCPropagator(model, propagation_config(args, model))
    stats = PropagationStats()
    start = time.perf_counter()
    with autocast(device, args.dtype):
        for t, frame, labels in tqdm(
            propagator.run(video, stats), total=len(video), desc=video.name, unit="frame"
        ):
            name = video.frame_name(t)
            save_palette_png(labels, out / "masks" / f"{name}.png")
            if not args.no_overlays:
                save_overlay_png(frame, labels, out / "overlays" / f"{name}.png")
    seconds = time.perf_counter() - start
    summary = {
        "video": str(args.video),
        "frames": stats.num_frames,
        "objects": video.object_ids(),
        "concept_guidance": propagator.config.use_concept,
        "memory_selection": propagator.config.memory_selection,
        "fill_hole_area": propagator.config.fill_hole_area,
        "overlap": propagator.config.overlap,
        "scene_changes": stats.scene_changes,
        "lvlm_calls": stats.lvlm_calls,
        "seconds": round(seconds, 3),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"{stats.num_frames} frames, {len(summary['objects'])} objects, {stats.lvlm_calls} LVLM calls "
        f"(scene changes at {stats.scene_changes}), {seconds:.1f} s -> {out}"
    )
    return 0
