"""`sec-train predict`: segment a video from a first-frame mask with a trained SeC model.

    sec-train predict --checkpoint DIR --video FRAMES_DIR --mask FIRST.png --out OUT_DIR
    sec-train predict --checkpoint DIR --video ROOT/JPEGImages/V --mask ROOT/Annotations/V --out OUT_DIR

`--mask` is the first frame's mask, or a video's annotation folder in its dataset's layout
(palette `<frame>.png`, or SA-V/SeCVOS per-object `<obj>/<frame>.png`), each object prompted
on its first annotated frame. Writes the masks in that layout under `OUT_DIR/masks/<video>/`
(palette PNGs, pixel = object id, as DAVIS stores them; or `<obj>/<frame>.png` 0/1 masks),
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

from sec_train.infer.overlay import save_overlay_png, write_prediction
from sec_train.infer.propagate import RELEASED_FILL_HOLE_AREA, PropagationStats, SeCPropagator
from sec_train.infer.runtime import (
    add_model_arguments,
    autocast,
    load_model,
    propagation_config,
    resolve_device,
)
from sec_train.infer.video import Video, davis_video, list_frames, per_object_video, read_id_png


def prompt_labels(path: Path) -> np.ndarray:
    """The first-frame mask as uint8 ids: a palette or greyscale PNG of ids (0 = background), or
    a binary 0/255 mask, which is one object with id 1."""
    labels = read_id_png(path)
    if set(np.unique(labels).tolist()) <= {0, 255}:
        labels = (labels > 0).astype(np.uint8)
    if not labels.any():
        raise ValueError(f"first-frame mask {path} is empty")
    return labels


def prompt_video(frames: Path, mask: Path) -> Video:
    """The video to segment: its frames with the first-frame mask, or with the annotations of a
    palette or per-object annotation folder."""
    if not mask.is_dir():
        first_labels = prompt_labels(mask)
        return Video(frames.name, list(list_frames(frames)), {0: lambda: first_labels})
    per_object = any(p.is_dir() for p in mask.iterdir())
    video = (per_object_video if per_object else davis_video)(frames, mask)
    video.prompts()  # an annotation folder without any object fails before the model loads
    return video


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sec-train predict", description=__doc__.split("\n")[0])
    add_model_arguments(parser, fill_hole_area=RELEASED_FILL_HOLE_AREA)
    parser.add_argument("--video", required=True, help="folder of frames (.jpg/.png, in name order)")
    parser.add_argument(
        "--mask",
        required=True,
        help="first frame's mask PNG (object ids, or a 0/255 binary mask), or an annotation folder",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--no-overlays", action="store_true", help="write the palette masks only")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    video = prompt_video(Path(args.video), Path(args.mask))  # bad input fails before the model loads
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
            write_prediction(out / "masks", video, t, labels)
            if not args.no_overlays:
                save_overlay_png(frame, labels, out / "overlays" / f"{video.frame_name(t)}.png")
    seconds = time.perf_counter() - start
    summary = {
        "video": str(args.video),
        "frames": stats.num_frames,
        "objects": [video.object_names.get(i, i) for i in video.object_ids()],  # per-object: folder names
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
