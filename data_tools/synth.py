"""Procedural videos: textured shapes moving over a textured background.

Each object keeps its shape, colours and stripe texture for the whole video, so its identity is
learnable; it moves and bounces, is occluded by objects in front of it, may leave the scene for
a while and come back, and at a scene cut the background, the camera zoom and every object's
position change at once (objects reappear elsewhere). `render_video` returns frames and
per-object masks; the writers store them as DAVIS-style folders, shards or SA-V-style mp4 +
`_manual.json`.
"""

from __future__ import annotations

import argparse
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_util
from tqdm import tqdm

from data_tools.video import require_av
from sec_train.data.format import DEFAULT_SHARD_BYTES, ShardWriter, make_sample, mask_to_rle, write_index
from sec_train.types import VideoSample

SHAPES = ("ellipse", "rectangle", "diamond")
# Colours of the stable part: saturated and far apart, and none is the outline's green. Each
# channel sits mid-way in a 32-wide bin, so render noise (std 4) leaves binned colours alone.
PART_COLORS = np.array(
    [(240, 16, 16), (16, 48, 240), (240, 208, 16), (208, 48, 208), (16, 208, 240), (240, 240, 240)], float
)
PART_COLOR_NAMES = ("red", "blue", "yellow", "magenta", "cyan", "white")
PART_RADIUS = 0.7  # of the body's smaller half axis


@dataclass
class SynthObject:
    """An object's fixed appearance and its motion state."""

    shape: str
    radius: float  # half size in pixels, before zoom
    aspect: float
    colors: tuple[np.ndarray, np.ndarray]  # base and stripe colours
    stripe: np.ndarray  # stripe wave vector (cycles per pixel in x, y)
    pos: np.ndarray
    vel: np.ndarray
    hidden: range  # frames where the object has left the scene
    part: int | None = None  # PART_COLORS index of the stable centre disc's colour


@dataclass
class SynthVideo:
    """Rendered frames uint8 [T, H, W, 3] and masks bool [T, K, H, W] (K objects, ids 1..K)."""

    name: str
    frames: np.ndarray
    masks: np.ndarray
    cuts: list[int]
    parts: list[int]  # per object, its part's index into PART_COLORS (empty without parts)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth random texture: low-frequency noise upsampled, tinted with two colours."""
    coarse = rng.random((h // 16 + 2, w // 16 + 2))
    ys = np.linspace(0, coarse.shape[0] - 1.001, h)
    xs = np.linspace(0, coarse.shape[1] - 1.001, w)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    c = coarse
    smooth = (
        c[y0][:, x0] * (1 - fy) * (1 - fx)
        + c[y0 + 1][:, x0] * fy * (1 - fx)
        + c[y0][:, x0 + 1] * (1 - fy) * fx
        + c[y0 + 1][:, x0 + 1] * fy * fx
    )
    low, high = rng.uniform(20, 120, 3), rng.uniform(120, 235, 3)
    return low + smooth[..., None] * (high - low)


def _new_object(rng: np.random.Generator, h: int, w: int, frames: int, can_hide: bool) -> SynthObject:
    radius = rng.uniform(0.12, 0.22) * min(h, w)
    hidden = range(0)
    if can_hide and frames >= 8:
        start = int(rng.integers(frames // 4, frames // 2))
        hidden = range(start, start + int(rng.integers(2, max(3, frames // 4))))
    angle = rng.uniform(0, np.pi)
    return SynthObject(
        shape=SHAPES[int(rng.integers(len(SHAPES)))],
        radius=radius,
        aspect=rng.uniform(0.6, 1.4),
        colors=(rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)),
        stripe=np.array([np.cos(angle), np.sin(angle)]) * rng.uniform(0.08, 0.2),
        pos=rng.uniform([radius, radius], [w - radius, h - radius]),
        vel=rng.uniform(-1, 1, 2) * min(h, w) * 0.03,
        hidden=hidden,
    )


def _shape_mask(
    obj: SynthObject, zoom: float, xx: np.ndarray, yy: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The object's mask and its local coordinates (dx, dy) at its current position, given the
    pixel coordinate grids `xx`, `yy`."""
    dx, dy = xx - np.float32(obj.pos[0]), yy - np.float32(obj.pos[1])
    rx, ry = obj.radius * zoom * obj.aspect, obj.radius * zoom / obj.aspect
    u, v = dx / rx, dy / ry
    if obj.shape == "ellipse":
        inside = u * u + v * v <= 1
    elif obj.shape == "rectangle":
        inside = (np.abs(u) <= 0.8) & (np.abs(v) <= 0.8)
    else:
        inside = np.abs(u) + np.abs(v) <= 1
    return inside, dx, dy


def _paint(
    image: np.ndarray, obj: SynthObject, zoom: float, inside: np.ndarray, dx: np.ndarray, dy: np.ndarray
) -> None:
    stripes = np.sin(2 * np.pi * (dx * obj.stripe[0] + dy * obj.stripe[1])) > 0
    base, stripe = obj.colors
    image[inside & ~stripes] = base
    image[inside & stripes] = stripe
    if obj.part is not None:
        radius = PART_RADIUS * obj.radius * zoom * min(obj.aspect, 1 / obj.aspect)
        image[inside & (dx * dx + dy * dy <= radius * radius)] = PART_COLORS[obj.part]


def _new_look(rng: np.random.Generator, old: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, ...]:
    """New body colours, each far from both old ones, and a new stripe wave vector."""
    colors = []
    for _ in range(2):
        color = rng.uniform(0, 255, 3)
        while min(np.abs(color - c).sum() for c in old) < 200:
            color = rng.uniform(0, 255, 3)
        colors.append(color)
    angle = rng.uniform(0, np.pi)
    return colors[0], colors[1], np.array([np.cos(angle), np.sin(angle)]) * rng.uniform(0.08, 0.2)


def _concept_cut(
    rng: np.random.Generator, objs: list[SynthObject], distractors: int, free_parts: list[int]
) -> list:
    """Restyles every object's body at a cut and returns the distractors: each wears one object's
    old body on another shape class, with a part colour no one else in the video wears."""
    new = []
    for i in range(distractors):
        source = objs[i % len(objs)]
        other = [s for s in SHAPES if s != source.shape]
        new.append(
            SynthObject(
                shape=other[int(rng.integers(len(other)))],
                radius=source.radius * rng.uniform(0.9, 1.1),
                aspect=rng.uniform(0.6, 1.4),
                colors=source.colors,
                stripe=source.stripe.copy(),
                pos=np.zeros(2),
                vel=source.vel.copy(),  # side by side with it: they never collide
                hidden=range(0),
                part=free_parts[i],
            )
        )
    for obj in objs:
        *colors, obj.stripe = _new_look(rng, obj.colors)
        obj.colors = tuple(colors)
    return new


def _give_parts(rng: np.random.Generator, objs: list[SynthObject]) -> list[int]:
    """Gives each object a distinct part colour; returns the ones left (`PART_COLORS` indices) for
    the distractors."""
    if len(objs) > len(PART_COLORS):
        raise ValueError(f"{len(objs)} objects with parts, but only {len(PART_COLORS)} part colours")
    colors = [int(i) for i in rng.permutation(len(PART_COLORS))]
    for obj, color in zip(objs, colors):
        obj.part = color
    return colors[len(objs) :]


def _spread_positions(rng: np.random.Generator, count: int, h: int, w: int) -> list[np.ndarray]:
    """`count` positions in the middle of the frame, in separate vertical bands, shuffled."""
    bands = rng.permutation(count)
    return [
        np.array([(0.2 + 0.6 * (b + rng.uniform(0.3, 0.7)) / count) * w, rng.uniform(0.3, 0.7) * h])
        for b in bands
    ]


def _step(obj: SynthObject, h: int, w: int) -> None:
    obj.pos = obj.pos + obj.vel
    for axis, limit in ((0, w), (1, h)):
        if not 0 <= obj.pos[axis] <= limit:
            obj.vel[axis] = -obj.vel[axis]
            obj.pos[axis] = np.clip(obj.pos[axis], 0, limit)


def render_video(
    name: str,
    seed: int,
    *,
    frames: int = 24,
    height: int = 120,
    width: int = 160,
    objects: int = 3,
    scene_cut: bool = True,
    concept_cut: bool = False,
    distractors: int = 1,
    bystanders: int = 0,
    parts: bool = False,
    still: bool = False,
) -> SynthVideo:
    """Renders one video; deterministic given `seed`.

    Objects are drawn back to front in a fixed depth order, so a mask is the object's shape minus
    what the objects in front of it cover. With `scene_cut`, one cut happens in the middle half.
    With `concept_cut` (implies a cut), objects wear a stable part, change their body's look at
    the cut, and `distractors` unannotated objects in their old look appear behind them there;
    objects then never leave the scene, so each segment shows them, and `bystanders` unannotated
    objects with their own look are in view all along (so that tracking must pick the object).
    `parts` gives objects their stable part without the restyling: ordinary videos of the same
    objects, which a pixel-level tracker learns from. With `still`, objects stand still and stay
    in view (with `scene_cut=False` every frame shows one scene, up to render noise): a tracker
    can tell apart the objects of such a clip only by what its memory says it was prompted with.
    """
    rng = np.random.default_rng(seed)
    objs = [
        _new_object(rng, height, width, frames, can_hide=i == 0 and not (concept_cut or still))
        for i in range(objects)
    ]
    if still:
        for obj in objs:
            obj.vel[:] = 0
    cut = -1
    if (scene_cut or concept_cut) and frames >= 4:
        cut = int(rng.integers(frames // 4, 3 * frames // 4 + 1))
    background, zoom = _background(rng, height, width), 1.0
    images = np.zeros((frames, height, width, 3), np.uint8)
    masks = np.zeros((frames, objects, height, width), bool)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    # unannotated, drawn behind the objects: bystanders from the start, distractors from the cut
    bystander_objs = [
        _new_object(rng, height, width, frames, can_hide=False)
        for _ in range(bystanders if concept_cut else 0)
    ]
    extras = list(bystander_objs)
    free_parts = _give_parts(rng, objs + bystander_objs) if concept_cut or parts else []
    if concept_cut and distractors > len(free_parts):
        raise ValueError(f"{distractors} distractors need part colours: only {len(free_parts)} are left")
    for t in range(frames):
        if t == cut:  # camera and scene change: new background, zoom and positions
            background, zoom = _background(rng, height, width), rng.uniform(0.7, 1.3)
            if concept_cut:  # apart, so that neither hides the other
                extras = bystander_objs + _concept_cut(rng, objs, distractors, free_parts)
                spread = _spread_positions(rng, len(extras) + len(objs), height, width)
                for obj, pos in zip(extras + objs, spread):
                    obj.pos = pos
            else:
                for obj in objs:
                    obj.pos = rng.uniform([0.2 * width, 0.2 * height], [0.8 * width, 0.8 * height])
        canvas = background.copy()
        for obj in extras:
            _step(obj, height, width)
            inside, dx, dy = _shape_mask(obj, zoom, xx, yy)
            _paint(canvas, obj, zoom, inside, dx, dy)
        for k, obj in enumerate(objs):  # back to front
            _step(obj, height, width)
            if t in obj.hidden:
                continue
            inside, dx, dy = _shape_mask(obj, zoom, xx, yy)
            _paint(canvas, obj, zoom, inside, dx, dy)
            masks[t, :k] &= ~inside
            masks[t, k] = inside
        noise = rng.normal(0, 4, canvas.shape)
        images[t] = np.clip(canvas + noise, 0, 255).astype(np.uint8)
    object_parts = [o.part for o in objs if o.part is not None]
    cuts = [cut] if cut >= 0 else []
    return SynthVideo(name=name, frames=images, masks=masks, cuts=cuts, parts=object_parts)


# DAVIS's palette for the first objects (0 = background); the rest are grey levels.
_PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128, 128, 0, 128, 0, 128, 128]


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    """uint8 [H, W, 3] -> JPEG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def label_map(masks: np.ndarray) -> np.ndarray:
    """bool [K, H, W] disjoint masks -> uint8 [H, W] with object k as value k + 1."""
    labels = np.zeros(masks.shape[1:], np.uint8)
    for k, mask in enumerate(masks):
        labels[mask] = k + 1
    return labels


def write_davis(video: SynthVideo, root: Path, jpegs: list[bytes]) -> None:
    """`root/JPEGImages/<name>/00000.jpg` and `root/Annotations/<name>/00000.png` (palette)."""
    image_dir, mask_dir = root / "JPEGImages" / video.name, root / "Annotations" / video.name
    image_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    palette = _PALETTE + [v for g in range(7, 256) for v in (g, g, g)]
    for t, jpeg in enumerate(jpegs):
        (image_dir / f"{t:05d}.jpg").write_bytes(jpeg)
        png = Image.fromarray(label_map(video.masks[t]), mode="P")
        png.putpalette(palette[: 256 * 3])
        png.save(mask_dir / f"{t:05d}.png")


def video_sample(video: SynthVideo, jpegs: list[bytes]) -> VideoSample:
    """The shard sample of a rendered video (every frame annotated); its header's `scene_cuts`
    lists the cut frames, which `sec-train eval` scores separately."""
    k = video.masks.shape[1]
    sample = make_sample(
        video.name,
        source="synth",
        video=video.name,
        height=video.frames.shape[1],
        width=video.frames.shape[2],
        fps=24.0,
        frame_indices=list(range(len(jpegs))),
        object_ids=list(range(1, k + 1)),
        frames=jpegs,
        masks=[[mask_to_rle(m) for m in frame_masks] for frame_masks in video.masks],
    )
    sample.header["scene_cuts"] = list(video.cuts)
    return sample


def write_sav(video: SynthVideo, root: Path, every: int = 4, fps: int = 24, scale: int = 1) -> None:
    """SA-V style: `root/<name>.mp4` with every frame and `root/<name>_manual.json` whose
    `masklet` holds, for every `every`-th frame, one COCO RLE per object. `scale` upsamples
    frames (bilinear) and masks (nearest) one at a time, for SA-V-sized videos rendered cheaply."""
    av = require_av()
    root.mkdir(parents=True, exist_ok=True)
    t, h, w = video.frames.shape[0], video.frames.shape[1] * scale, video.frames.shape[2] * scale
    with av.open(str(root / f"{video.name}.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for frame in video.frames:
            frame = np.asarray(Image.fromarray(frame).resize((w, h), Image.BILINEAR))
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    masklet = []
    for i in range(0, t, every):
        masks = video.masks[i].repeat(scale, axis=1).repeat(scale, axis=2)
        encoded = mask_util.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
        masklet.append([{"size": r["size"], "counts": r["counts"].decode("ascii")} for r in encoded])
    manual = {
        "video_id": video.name,
        "video_frame_count": t,
        "video_height": h,
        "video_width": w,
        "masklet": masklet,
        "masklet_id": list(range(video.masks.shape[1])),
        "masklet_num": video.masks.shape[1],
    }
    (root / f"{video.name}_manual.json").write_text(json.dumps(manual))


def synthesize(
    out: str | Path,
    videos: int,
    *,
    seed: int = 0,
    sav: bool = False,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    **render,
) -> dict:
    """Renders `videos` videos into `out/` (DAVIS-style folders, `scene_info.json`), `out/shards/`
    (with index) and, with `sav`, `out/sav/` (mp4 + `_manual.json`). Returns the shard index."""
    out = Path(out)
    writer = ShardWriter(out / "shards", "synth", shard_bytes)
    scene_info = {}
    for index in tqdm(range(videos), desc="synth", unit="video"):
        video = render_video(f"synth{index:05d}", seed * 100_003 + index, **render)
        jpegs = [encode_jpeg(frame) for frame in video.frames]
        write_davis(video, out, jpegs)
        writer.write(video_sample(video, jpegs))
        scene_info[video.name] = scene_segments(video)
        if sav:
            write_sav(video, out / "sav")
    (out / "scene_info.json").write_text(json.dumps(scene_info, indent=1))
    return write_index(out / "shards", writer.close())


def scene_segments(video: SynthVideo) -> dict[str, list[int]]:
    """SeCVOS's `scene_info` entry of a video: `first_segment` up to its cut, `second_segment`
    from it on (the first frame to the last without a cut)."""
    last = len(video.frames) - 1
    if not video.cuts:
        return {"first_segment": [0, last]}
    return {"first_segment": [0, video.cuts[0] - 1], "second_segment": [video.cuts[0], last]}


def main(argv: list[str]) -> int:
    """`sec-data synth --out DIR --videos N [...]`."""
    parser = argparse.ArgumentParser(prog="sec-data synth", description=__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--videos", type=int, required=True)
    parser.add_argument("--frames", type=int, default=24, help="frames per video")
    parser.add_argument("--size", default="160x120", help="WIDTHxHEIGHT")
    parser.add_argument("--objects", type=int, default=3, help="objects per video")
    parser.add_argument("--seed", type=int, default=0, help="use another seed for held-out videos")
    parser.add_argument("--no-scene-cuts", action="store_true")
    parser.add_argument(
        "--concept-cut",
        action="store_true",
        help="at the cut, objects change their look but keep shape and centre part; distractors "
        "in their old look appear (a task SAM 2's pixel memory fails and a concept solves)",
    )
    parser.add_argument("--distractors", type=int, default=1, help="distractors per --concept-cut")
    parser.add_argument(
        "--bystanders", type=int, default=0, help="--concept-cut: unannotated objects in view all along"
    )
    parser.add_argument(
        "--parts",
        action="store_true",
        help="objects wear --concept-cut's stable part, without its restyling (ordinary "
        "videos of the same objects, for stage 1)",
    )
    parser.add_argument(
        "--still",
        action="store_true",
        help="objects stand still (with --no-scene-cuts: one scene in every frame), so only memory "
        "tells them apart: the warm-up that teaches a tracker from scratch to read its memory",
    )
    parser.add_argument("--sav", action="store_true", help="also write SA-V style mp4 + _manual.json")
    parser.add_argument("--shard-size", type=float, default=DEFAULT_SHARD_BYTES / 1e9, help="GB per shard")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    index = synthesize(
        args.out,
        args.videos,
        seed=args.seed,
        sav=args.sav,
        shard_bytes=int(args.shard_size * 1e9),
        frames=args.frames,
        height=height,
        width=width,
        objects=args.objects,
        scene_cut=not args.no_scene_cuts,
        concept_cut=args.concept_cut,
        distractors=args.distractors,
        bystanders=args.bystanders,
        parts=args.parts,
        still=args.still,
    )
    print(f"{args.out}: {index['samples']} videos, {index['objects']} objects, {index['frames']} frames")
    return 0
