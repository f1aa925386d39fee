"""Pictures of an evaluation: J&F per video, and each object's J frame by frame.

`OUT/report/jf_per_video.png` ranks the videos by J&F; `OUT/report/j_over_time/<video>.png`
draws one panel per object with its J on every scored frame, dashed lines at the scene changes
and triangles at the frames where the LVLM was called (when a model's run recorded them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sec_train.eval.score import Results, VideoScores

DPI = 100
MAX_BARS = 200  # past this the bar chart shows the worst videos: a taller one is not read


def _pyplot():
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(
            "the report pictures need matplotlib: pip install 'sec-train[eval]', or pass --no-report"
        ) from err

    matplotlib.use("Agg")  # files only: no display on a cluster node
    import matplotlib.pyplot as plt

    return plt


def _frame_number(name: str, fallback: int) -> int:
    return int(name) if name.isdigit() else fallback


def plot_jf_per_video(results: Results, path: Path) -> None:
    """Horizontal bars of J&F per video, worst at the top (the `MAX_BARS` worst), the dataset
    mean as a line."""
    plt = _pyplot()
    rows = results.as_json()
    ranked = sorted(rows["videos"].items(), key=lambda item: item[1]["J&F"])
    videos = ranked[:MAX_BARS]
    height = max(4.0, 0.28 * len(videos) + 1.5)
    fig, ax = plt.subplots(figsize=(11, height), dpi=DPI)
    ax.barh([name for name, _ in videos], [row["J&F"] for _, row in videos], color="#4c72b0")
    ax.axvline(rows["J&F"], color="#c44e52", linestyle="--", label=f"mean J&F {rows['J&F']:.3f}")
    ax.set_xlim(0, 1)
    ax.set_xlabel("J&F")
    ax.invert_yaxis()
    ax.legend(loc="lower right")
    shown = f"the {len(videos)} worst of {len(ranked)}" if len(videos) < len(ranked) else str(len(ranked))
    ax.set_title(f"J&F per video ({shown} videos, {int(rows['num_objects'])} objects)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_j_over_time(video: VideoScores, path: Path) -> None:
    """One panel per object: J on each scored frame, scene changes and LVLM calls marked."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(
        len(video.tracks), 1, figsize=(12, 2.4 * len(video.tracks) + 0.8), dpi=DPI, sharex=True, squeeze=False
    )
    cuts = [_frame_number(f, -1) for f in video.scene_changes]
    calls = [_frame_number(f, -1) for f in video.lvlm_frames]
    for row, (ax, track) in enumerate(zip(axes[:, 0], video.tracks)):
        x = [_frame_number(f, i) for i, f in enumerate(track.frames)]
        ax.plot(x, track.j, marker=".", color="#4c72b0", label="J")
        for i, cut in enumerate(cuts):
            ax.axvline(cut, color="#dd8452", linestyle="--", label="scene change" if i == 0 else None)
        if calls:
            ax.plot(calls, np.full(len(calls), 1.04), "v", color="#c44e52", label="LVLM call", clip_on=False)
        ax.set_ylim(0, 1.08)
        ax.set_ylabel(f"J, object {track.name}")
        ax.set_title(f"{video.name} object {track.name}: mean J {np.mean(track.j):.3f}", fontsize=10)
        if row == 0:
            ax.legend(loc="lower left", fontsize=8)
    axes[-1, 0].set_xlabel("frame")
    axes[-1, 0].xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(results: Results, out: Path) -> Path:
    """Both pictures under `out/report/`; returns that folder."""
    folder = out / "report"
    (folder / "j_over_time").mkdir(parents=True, exist_ok=True)
    plot_jf_per_video(results, folder / "jf_per_video.png")
    for video in results.videos:
        plot_j_over_time(video, folder / "j_over_time" / f"{video.name}.png")
    return folder
