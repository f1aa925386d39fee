"""`sec-train eval --predictions` against independent implementations of the published protocols.

The references below are written from the rules of the DAVIS 2017 toolkit
(davis2017-evaluation: `davis.py`, `evaluation.py`, `metrics.py`, `utils.db_statistics`) and of
SA-V's / SeC's `sav_evaluator.py` (`VideoEvaluator`, `Evaluator.feed_frame`, the `scene_info`
slicing), with OpenCV's dilation, and share no code with `sec_train.eval`. Generated
ground truth and predictions are scored by both; the results agree to 1e-9.
"""

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image

from sec_train.eval import cli

cv2 = pytest.importorskip("cv2")

SHAPE = (90, 120)  # diagonal 150 px: a 2 px boundary tolerance


# ---------------------------------------------------------------- reference: the published rules
def ref_boundary(seg: np.ndarray) -> np.ndarray:
    """DAVIS `_seg2bmap`: a pixel differs from its east, south or south-east neighbour; on the
    last row only east counts, on the last column only south, the corner never."""
    seg = seg.astype(bool)
    b = np.zeros_like(seg)
    b[:-1, :-1] = (
        (seg[:-1, :-1] != seg[:-1, 1:]) | (seg[:-1, :-1] != seg[1:, :-1]) | (seg[:-1, :-1] != seg[1:, 1:])
    )
    b[-1, :-1] = seg[-1, :-1] != seg[-1, 1:]
    b[:-1, -1] = seg[:-1, -1] != seg[1:, -1]
    return b


def ref_f(pred: np.ndarray, gt: np.ndarray) -> float:
    radius = math.ceil(0.008 * math.hypot(*pred.shape))
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disk = (yy**2 + xx**2 <= radius**2).astype(np.uint8)  # skimage.morphology.disk
    fg, gb = ref_boundary(pred).astype(np.uint8), ref_boundary(gt).astype(np.uint8)
    n_fg, n_gt = fg.sum(), gb.sum()
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = (fg * cv2.dilate(gb, disk)).sum() / n_fg
        recall = (gb * cv2.dilate(fg, disk)).sum() / n_gt
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def ref_j(pred: np.ndarray, gt: np.ndarray) -> float:
    inter, total = int((pred & gt).sum()), int(pred.sum() + gt.sum())
    return 1.0 if total == 0 else inter / (total - inter)


def ref_statistics(values: list[float]) -> tuple[float, float, float]:
    """DAVIS `db_statistics`: mean, fraction above 0.5, first quarter minus last quarter."""
    v = np.asarray(values, dtype=float)
    edges = [int(round(x + 1e-10)) - 1 for x in np.linspace(1, len(v), 5)]
    first, last = v[edges[0] : edges[1] + 1], v[edges[3] : edges[4] + 1]
    return float(v.mean()), float((v > 0.5).mean()), float(first.mean() - last.mean())


def ref_summary(objects: list[tuple[list[float], list[float]]]) -> dict[str, float]:
    """The toolkit's global row: means over objects of each object's statistics."""
    j = np.array([ref_statistics(oj) for oj, _ in objects])
    f = np.array([ref_statistics(of) for _, of in objects])
    return {
        "J": j[:, 0].mean(), "J_recall": j[:, 1].mean(), "J_decay": j[:, 2].mean(),
        "F": f[:, 0].mean(), "F_recall": f[:, 1].mean(), "F_decay": f[:, 2].mean(),
        "J&F": (j[:, 0].mean() + f[:, 0].mean()) / 2, "num_objects": len(objects),
    }  # fmt: skip


def ref_davis(gt_root, pred_root, videos):
    """davis2017-evaluation, semi-supervised: objects 1..max of frame 0 (255 void -> 0), the
    annotated frames without the first and last, per-object statistics, means over objects."""
    objects = []
    for video in videos:
        files = sorted(p.name for p in (gt_root / video).iterdir())
        gt = [np.array(Image.open(gt_root / video / f)) for f in files]
        gt = [np.where(g == 255, 0, g) for g in gt]
        n = int(gt[0].max())
        gts = gt[1:-1]
        preds = [np.array(Image.open(pred_root / video / f)) for f in files[1:-1]]
        for obj in range(1, n + 1):
            objects.append(
                ([ref_j(p == obj, g == obj) for g, p in zip(gts, preds)],
                 [ref_f(p == obj, g == obj) for g, p in zip(gts, preds)])
            )  # fmt: skip
    return objects


def ref_sav_object(gt_paths, pred_paths):
    """`Evaluator.feed_frame` + `conclude`: labels join once seen in GT or prediction; only
    labels of the GT are reported. Returns {label: (J per frame, F per frame)}."""
    seen, in_gt, values = set(), set(), {}
    for gp, pp in zip(gt_paths, pred_paths):
        gt, pred = np.array(Image.open(gp)), np.array(Image.open(pp))
        if gp.parent.name.isdigit() and len(gp.parent.name) == 3:  # per-object PNG: binary
            gt, pred = (gt > 0).astype(np.uint8), (pred > 0).astype(np.uint8)
        labels = set(np.unique(gt).tolist()) - {0}
        in_gt |= labels
        seen |= labels | (set(np.unique(pred).tolist()) - {0})
        for obj in seen:
            j, f = values.setdefault(obj, ([], []))
            j.append(ref_j(pred == obj, gt == obj))
            f.append(ref_f(pred == obj, gt == obj))
    return {obj: values[obj] for obj in in_gt}


def ref_sav(gt_root, pred_root, videos, skip=True, scene_info=None, test_name="overall"):
    """`VideoEvaluator.__call__` over the videos; returns the objects' (J, F) frame lists."""
    objects = []
    for video in videos:
        entries = sorted(p.name for p in (gt_root / video).iterdir())
        if all(e.endswith(".png") for e in entries):
            folders = [("", entries)]
        else:
            folders = [(e, sorted(p.name for p in (gt_root / video / e).iterdir())) for e in entries]
        found, skipped = [], False
        for folder, frames in folders:
            if scene_info is not None and test_name != "overall":
                span = scene_info.get(video, {}).get(test_name, [])
                if len(span) > 0:
                    init = frames[0]
                    frames = [
                        f for f in frames if f"{int(span[0]):05d}.png" <= f < f"{int(span[1]) + 1:05d}.png"
                    ]
                    if init not in frames:
                        frames = [init] + frames
                elif test_name != "first_segment":
                    skipped = True
                    break
            if skip:
                frames = frames[1:-1]
            gt_dir, pred_dir = gt_root / video / folder, pred_root / video / folder
            result = ref_sav_object([gt_dir / f for f in frames], [pred_dir / f for f in frames])
            found.extend(result[k] for k in sorted(result))
        if not skipped:
            objects.extend(found)
    return objects


# ---------------------------------------------------------------- generated data
def _blob(rng, shape=SHAPE) -> np.ndarray:
    cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
    ry, rx = rng.uniform(6, 25), rng.uniform(6, 30)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1  # touches the border at times


def _palette_png(labels: np.ndarray, path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    image.putpalette([v for i in range(256) for v in (i * 37 % 256, i * 91 % 256, i * 53 % 256)])
    image.save(path)


def _perturb(rng, mask: np.ndarray) -> np.ndarray:
    """A prediction: the mask shifted a little, with a random blob added or cut, sometimes lost."""
    roll = rng.integers(-4, 5, size=2)
    out = np.roll(mask, tuple(roll), axis=(0, 1))
    if rng.random() < 0.3:
        out = out ^ _blob(rng)
    if rng.random() < 0.1:
        out[:] = False
    return out


def make_palette(tmp_path, rng, videos=3, frames=9, void=True, late_object=False):
    """GT palette folders (objects 1..3, a void border, optionally an object appearing at
    frame 3) and predictions, some of which have objects missing on some frames."""
    gt_root, pred_root = tmp_path / "gt" / "Annotations", tmp_path / "pred"
    (tmp_path / "gt" / "JPEGImages").mkdir(parents=True)
    for v in range(videos):
        objects = {k: _blob(rng) for k in (1, 2, 3)}
        for t in range(frames):
            gt = np.zeros(SHAPE, dtype=np.uint8)
            pred = np.zeros(SHAPE, dtype=np.uint8)
            for k, mask in objects.items():
                moved = np.roll(mask, (t, 2 * t), axis=(0, 1))
                if k == 3 and late_object and t < 3:
                    continue
                gt[moved] = k
                pred[_perturb(rng, moved)] = k
            if void:
                edge = np.zeros(SHAPE, bool)
                edge[:, :2] = True
                gt[edge & (gt > 0)] = 255
            _palette_png(gt, gt_root / f"v{v}" / f"{t:05d}.png")
            _palette_png(pred, pred_root / f"v{v}" / f"{t:05d}.png")
    return tmp_path / "gt", pred_root


def make_per_object(tmp_path, rng, videos=3, frames=10):
    """SA-V layout: `<video>/<obj:03d>/<frame>.png` every 4th frame, object 001 empty on its
    first frames (appears later), predictions as 0/1 palette PNGs."""
    gt_root, pred_root = tmp_path / "gt" / "Annotations_6fps", tmp_path / "pred"
    (tmp_path / "gt" / "JPEGImages_24fps").mkdir(parents=True)
    for v in range(videos):
        for k in range(3):
            mask = _blob(rng)
            for t in range(0, 4 * frames, 4):
                moved = np.roll(mask, (t // 2, t), axis=(0, 1))
                gt = moved if not (k == 1 and t < 8) else np.zeros(SHAPE, bool)
                _palette_png(gt.astype(np.uint8) * 255, gt_root / f"sav_{v}" / f"{k:03d}" / f"{t:05d}.png")
                _palette_png(_perturb(rng, moved), pred_root / f"sav_{v}" / f"{k:03d}" / f"{t:05d}.png")
    return tmp_path / "gt", pred_root


def run_eval(capsys, *argv) -> dict:
    assert cli.main([*map(str, argv), "--json", "--no-report"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def assert_matches(result: dict, expected: dict) -> None:
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-9, rel=0), key


# ---------------------------------------------------------------- tests
def test_davis_protocol_equals_the_davis_toolkit(tmp_path, capsys):
    rng = np.random.default_rng(0)
    gt, pred = make_palette(tmp_path, rng, videos=3, frames=13)
    result = run_eval(capsys, "--predictions", pred, "--data", gt)
    expected = ref_summary(ref_davis(gt / "Annotations", pred, ["v0", "v1", "v2"]))
    assert expected["J"] < 0.95 and expected["J_decay"] != 0  # the data exercises the metrics
    assert_matches(result, expected)
    assert result["num_objects"] == 9


def test_davis_csv_files_are_the_toolkits(tmp_path, capsys):
    gt, pred = make_palette(tmp_path, np.random.default_rng(1), videos=2, frames=5)
    result = run_eval(capsys, "--predictions", pred, "--data", gt, "--out", tmp_path / "res")
    with (tmp_path / "res" / "global_results-all.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"]
    assert float(rows[1][0]) == pytest.approx(result["J&F"], abs=5e-4)
    assert float(rows[1][3]) == pytest.approx(result["J_decay"], abs=5e-4)
    with (tmp_path / "res" / "per-sequence_results-all.csv").open() as f:
        per_sequence = list(csv.reader(f))
    assert per_sequence[0] == ["Sequence", "J-Mean", "F-Mean"]
    assert [row[0] for row in per_sequence[1:]] == [f"v{v}_{k}" for v in (0, 1) for k in (1, 2, 3)]
    j = result["videos"]["v1"]["objects"]["2"]["j"]
    assert float(per_sequence[5][1]) == pytest.approx(j, abs=5e-4)


def test_davis_protocol_rejects_labels_beyond_the_first_frame_and_missing_frames(tmp_path, capsys):
    gt, pred = make_palette(tmp_path, np.random.default_rng(2), videos=1, frames=4)
    labels = np.array(Image.open(pred / "v0" / "00002.png"))
    labels[0, 0] = 4
    _palette_png(labels, pred / "v0" / "00002.png")
    with pytest.raises(ValueError, match="v0 frame 00002: predicted label 4, but the first frame has 3"):
        cli.main(["--predictions", str(pred), "--data", str(gt)])
    (pred / "v0" / "00001.png").unlink()
    with pytest.raises(FileNotFoundError, match="00001.png is missing"):
        cli.main(["--predictions", str(pred), "--data", str(gt)])


def test_sav_protocol_on_per_object_pngs_equals_sav_evaluator(tmp_path, capsys):
    rng = np.random.default_rng(3)
    gt, pred = make_per_object(tmp_path, rng)
    videos = ["sav_0", "sav_1", "sav_2"]
    for skip in (True, False):
        flag = [] if skip else ["--do-not-skip-first-and-last-frame"]
        # the annotation folder itself, as sav_evaluator's --gt_root takes it
        result = run_eval(capsys, "--predictions", pred, "--data", gt / "Annotations_6fps", *flag)
        objects = ref_sav(gt / "Annotations_6fps", pred, videos, skip=skip)
        assert_matches(result, ref_summary(objects))
    assert result["num_objects"] == 9
    # object 001 is scored from its first frame in GT or prediction on, not on the empty start
    assert len(result["videos"]["sav_0"]["objects"]) == 3


def test_sav_protocol_on_palettes_scores_objects_from_their_first_appearance(tmp_path, capsys):
    gt, pred = make_palette(
        tmp_path, np.random.default_rng(4), videos=2, frames=8, void=False, late_object=True
    )
    result = run_eval(capsys, "--predictions", pred, "--data", gt, "--protocol", "sav")
    assert_matches(result, ref_summary(ref_sav(gt / "Annotations", pred, ["v0", "v1"])))


def test_secvos_segments_equal_sav_evaluator_slicing(tmp_path, capsys):
    gt, pred = make_per_object(tmp_path, np.random.default_rng(5), frames=12)
    scene_info = {
        "sav_0": {"first_segment": [0, 15], "second_segment": [16, 31], "remain_segments": [32, 44]},
        "sav_1": {"first_segment": [0, 23], "second_segment": [24, 44]},  # no third segment
    }  # sav_2 has no entry: scored whole in the first segment, left out of the others
    (tmp_path / "scene_info.json").write_text(json.dumps(scene_info))
    result = run_eval(
        capsys, "--predictions", pred, "--data", gt, "--scene-info", tmp_path / "scene_info.json"
    )
    root, videos = gt / "Annotations_6fps", ["sav_0", "sav_1", "sav_2"]
    assert_matches(result, ref_summary(ref_sav(root, pred, videos)))
    for segment, count in (("first_segment", 9), ("second_segment", 6), ("remain_segments", 3)):
        expected = ref_summary(ref_sav(root, pred, videos, False, scene_info, segment))
        assert_matches(result["segments"][segment], expected)
        assert result["segments"][segment]["num_objects"] == count


def test_strict_names_the_videos_without_predictions(tmp_path, capsys):
    gt, pred = make_per_object(tmp_path, np.random.default_rng(6), videos=3, frames=4)
    for k in range(3):
        for png in (pred / "sav_1" / f"{k:03d}").iterdir():
            png.unlink()
        (pred / "sav_1" / f"{k:03d}").rmdir()
    (pred / "sav_1").rmdir()
    with pytest.raises(ValueError, match=r"without predictions in .*pred: \['sav_1'\]"):
        cli.main(["--predictions", str(pred), "--data", str(gt), "--strict"])
    # not strict: the videos with predictions are scored, as sav_evaluator does
    result = run_eval(capsys, "--predictions", pred, "--data", gt)
    assert sorted(result["videos"]) == ["sav_0", "sav_2"]
    assert_matches(result, ref_summary(ref_sav(gt / "Annotations_6fps", pred, ["sav_0", "sav_2"])))
