"""`sec-data convert sav|davis|ytvos|mose|custom ... --out DIR`: datasets -> shards."""

from __future__ import annotations

import argparse

from data_tools.convert_custom import (
    BinaryJob,
    binary_jobs,
    coco_jobs,
    custom_palette_jobs,
    load_binary_video,
    load_coco_video,
)
from data_tools.convert_palette import load_palette_video, palette_jobs
from data_tools.convert_sav import load_sav_video, sav_jobs, sav_release_jobs
from data_tools.pipeline import convert_videos
from sec_train.data.format import DEFAULT_SHARD_BYTES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sec-data convert", description=__doc__)
    sub = parser.add_subparsers(dest="dataset", required=True)
    sav = sub.add_parser("sav", help="SA-V: the release tree (sav_train, sav_val, sav_test) or mp4 + json")
    sav.add_argument("--root", help="sav_train/ (or one sav_NNN/), sav_val/ or sav_test/ as downloaded")
    sav.add_argument("--videos", help="folder of <video>.mp4 (instead of --root)")
    sav.add_argument("--annotations", help="folder of <video>_manual.json (instead of --root)")
    sav.add_argument("--obj-list", help="'video_id obj_id' lines: convert only these videos")
    sav.add_argument("--jpeg-quality", type=int, default=90)
    for name in ("davis", "ytvos", "mose"):
        palette = sub.add_parser(name, help=f"{name} palette-PNG annotations")
        palette.add_argument("--root", required=True)
        palette.add_argument("--split", required=True, help="e.g. train, val")
    custom = sub.add_parser("custom", help="frame folders with PNG masks, or a COCO-style video JSON")
    custom.add_argument("--root", help="folder with JPEGImages/ and Annotations/")
    custom.add_argument("--layout", choices=["palette", "binary"], default="palette")
    custom.add_argument("--coco", help="a YouTube-VIS style JSON (instead of --root)")
    custom.add_argument("--images", help="folder the JSON's file_names are relative to")
    for p in sub.choices.values():
        p.add_argument("--out", required=True, help="shard directory to write")
        p.add_argument("--workers", type=int, default=4, help="worker processes")
        p.add_argument("--shard-size", type=float, default=DEFAULT_SHARD_BYTES / 1e9, help="GB per shard")
        p.add_argument("--chunk-videos", type=int, default=64, help="videos per resumable chunk")
    return parser


def _jobs_and_loader(args: argparse.Namespace):
    if args.dataset == "sav":
        if args.root:
            jobs = sav_release_jobs(args.root, args.obj_list, args.jpeg_quality)
            return jobs, load_binary_video if isinstance(jobs[0], BinaryJob) else load_sav_video
        if not (args.videos and args.annotations):
            raise SystemExit("sec-data convert sav needs --root, or --videos and --annotations")
        return sav_jobs(args.videos, args.annotations, args.obj_list, args.jpeg_quality), load_sav_video
    if args.dataset in ("davis", "ytvos", "mose"):
        return palette_jobs(args.dataset, args.root, args.split), load_palette_video
    if args.coco:
        if not args.images:
            raise SystemExit("sec-data convert custom --coco needs --images")
        return coco_jobs(args.coco, args.images), load_coco_video
    if not args.root:
        raise SystemExit("sec-data convert custom needs --root or --coco")
    if args.layout == "binary":
        return binary_jobs(args.root), load_binary_video
    return custom_palette_jobs(args.root), load_palette_video


def main(argv: list[str]) -> int:
    """Runs one conversion; returns 1 if some videos could not be converted."""
    args = _parser().parse_args(argv)
    jobs, load = _jobs_and_loader(args)
    index = convert_videos(
        jobs,
        load,
        args.out,
        prefix=args.dataset,
        workers=args.workers,
        shard_bytes=int(args.shard_size * 1e9),
        chunk_videos=args.chunk_videos,
    )
    print(f"{args.out}: {len(index['shards'])} shards, {index['samples']} videos, {index['objects']} objects")
    for failed in index["failed"]:
        print(f"failed: {failed['video']}: {failed['error']}")
    return 1 if index["failed"] else 0
