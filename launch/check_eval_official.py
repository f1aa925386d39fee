"""`sec-train eval --predictions` against the official evaluators' own code, run as they are.

    git clone https://github.com/davisvideochallenge/davis2017-evaluation
    git clone https://github.com/OpenIXCLab/SeC
    python launch/check_eval_official.py --davis-toolkit davis2017-evaluation --sec-repo SeC

Generates ground truth and predictions (the generators of tests/test_eval_protocols.py), scores
them with davis2017-evaluation's `DAVISEvaluation` (semi-supervised), with SeC's
`vos_evaluation/utils/sav_benchmark.py` (SA-V per-object layout, first/last frames skipped and
not, and the three SeCVOS segments), and with `sec-train eval`, and prints the largest
difference in J, F, J&F (and for DAVIS recall and decay). Needs opencv and scipy (the `dev`
extra); without scikit-image, a numpy `disk` stands in for `skimage.morphology.disk`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sec_train.eval import cli  # noqa: E402
from tests.test_eval_protocols import make_palette, make_per_object  # noqa: E402

SCENES = {
    "sav_0": {"first_segment": [0, 15], "second_segment": [16, 31], "remain_segments": [32, 44]},
    "sav_1": {"first_segment": [0, 23], "second_segment": [24, 44]},
}


def _disk_stand_in() -> None:
    """`skimage.morphology.disk(r)`: the points with y^2 + x^2 <= r^2, as uint8."""
    try:
        import skimage.morphology  # noqa: F401
    except ImportError:
        morphology = types.ModuleType("skimage.morphology")

        def disk(radius):
            r = int(radius)
            yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
            return (yy**2 + xx**2 <= r**2).astype(np.uint8)

        morphology.disk = disk
        sys.modules["skimage"] = types.ModuleType("skimage")
        sys.modules["skimage.morphology"] = morphology


def ours(*argv) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert cli.main([*map(str, argv), "--json", "--no-report"]) == 0
    return json.loads(out.getvalue().strip().splitlines()[-1])


def davis_root(gt: Path, tmp: Path) -> Path:
    """The generated palette ground truth as the toolkit wants it: 480p/, JPEGs, val.txt."""
    root = tmp / "DAVIS"
    (root / "Annotations").mkdir(parents=True)
    shutil.move(str(gt / "Annotations"), str(root / "Annotations" / "480p"))
    videos = sorted(p.name for p in (root / "Annotations" / "480p").iterdir())
    for video in videos:
        (root / "JPEGImages" / "480p" / video).mkdir(parents=True)
        for png in (root / "Annotations" / "480p" / video).iterdir():
            Image.new("RGB", (8, 8)).save(root / "JPEGImages" / "480p" / video / f"{png.stem}.jpg")
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(videos) + "\n")
    return root


def check_davis(rng, tmp: Path, frames: int) -> float:
    from davis2017.evaluation import DAVISEvaluation

    gt, pred = make_palette(tmp, rng, videos=4, frames=frames)
    root = davis_root(gt, tmp)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        m = DAVISEvaluation(str(root), "semi-supervised", "val").evaluate(str(pred))
    official = {
        f"{k}{s}": float(np.mean(m[k][c]))
        for k in "JF"
        for s, c in (("", "M"), ("_recall", "R"), ("_decay", "D"))
    }
    official["J&F"] = (official["J"] + official["F"]) / 2
    got = ours("--predictions", pred, "--data", root, "--subset", "val")
    return max(abs(got[k] - v) for k, v in official.items())


def _sav(gt: Path, pred: Path, strict: bool, **kwargs) -> tuple[float, float, float]:
    from vos_evaluation.utils.sav_benchmark import benchmark

    with contextlib.redirect_stdout(io.StringIO()):
        jf, j, f, _ = benchmark([str(gt)], [str(pred)], strict, 1, verbose=False, **kwargs)
    return jf[0] / 100, j[0] / 100, f[0] / 100  # the official prints percentages


def _gap(scores: dict, official: tuple[float, float, float]) -> float:
    return max(abs(scores[k] - v) for k, v in zip(("J&F", "J", "F"), official))


def check_sav(rng, tmp: Path) -> float:
    gt, pred = make_per_object(tmp, rng, videos=3, frames=12)
    annotations = gt / "Annotations_6fps"
    (tmp / "scene_info.json").write_text(json.dumps(SCENES))
    gaps = []
    for skip in (True, False):
        flag = [] if skip else ["--do-not-skip-first-and-last-frame"]
        got = ours("--predictions", pred, "--data", annotations, "--strict", *flag)
        gaps.append(_gap(got, _sav(annotations, pred, True, skip_first_and_last=skip)))
    got = ours("--predictions", pred, "--data", annotations, "--scene-info", tmp / "scene_info.json")
    for segment in ("first_segment", "second_segment", "remain_segments"):
        official = _sav(
            annotations, pred, False, skip_first_and_last=False, scene_info=SCENES, test_name=segment
        )
        gaps.append(_gap(got["segments"][segment], official))
    return max(gaps)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--davis-toolkit", required=True, help="a davis2017-evaluation checkout")
    parser.add_argument("--sec-repo", required=True, help="an OpenIXCLab/SeC checkout")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    sys.path[:0] = [str(Path(args.davis_toolkit).resolve()), str(Path(args.sec_repo).resolve())]
    _disk_stand_in()
    worst = 0.0
    for seed in range(args.seeds):
        rng = np.random.default_rng(100 + seed)
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            davis, sav = check_davis(rng, Path(a), frames=11 + seed), check_sav(rng, Path(b))
        print(
            f"seed {seed}: DAVIS toolkit max |difference| {davis:.1e}; sav_evaluator (SA-V, SeCVOS) {sav:.1e}"
        )
        worst = max(worst, davis, sav)
    print(f"largest difference: {worst:.1e}")
    return 0 if worst < 1e-9 else 1


if __name__ == "__main__":
    sys.exit(main())
