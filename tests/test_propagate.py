"""SeC propagation end to end on the toy model: SAM 2 only, and with the LVLM on scene changes."""

import io
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from sec_train.eval import cli, evaluate
from sec_train.infer import predict
from sec_train.infer.propagate import PropagationConfig, PropagationStats, SeCPropagator, compose_labels
from sec_train.infer.scene import SceneChangeDetector, resize_bilinear
from sec_train.infer.video import Video
from sec_train.model.build import build_sec_model
from sec_train.model.config import ModelConfig
from sec_train.tokens import INFERENCE_QUESTION

CUTS = [4, 7]  # frames where the synthetic video cuts to a new scene


def _background(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return resize_bilinear(rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8), 128)[:72, :96].copy()


def _jpeg(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def synthetic_video(num_frames: int = 9) -> Video:
    """Two squares drifting right over a background that changes at `CUTS`."""
    frames, first_labels = [], None
    for t in range(num_frames):
        scene = sum(t >= c for c in CUTS)
        frame = _background(scene)
        labels = np.zeros(frame.shape[:2], dtype=np.uint8)
        labels[10:30, 10 + t : 30 + t] = 2
        labels[40:65, 50 + t : 70 + t] = 5
        frame[labels == 2] = (250, 40, 40)
        frame[labels == 5] = (40, 40, 250)
        frames.append(_jpeg(frame))
        first_labels = labels if t == 0 else first_labels
    return Video("synthetic", frames, {0: lambda: first_labels})


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_sec_model(ModelConfig(mode="fused"))


class _Recorder:
    """Wraps a callable and keeps its arguments and results."""

    def __init__(self, fn):
        self.fn, self.calls, self.results = fn, [], []

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        self.results.append(self.fn(*args, **kwargs))
        return self.results[-1]


def _run(model, monkeypatch, use_concept: bool):
    concept = _Recorder(model.concept_embedding)
    track = _Recorder(model.tracker.track_frame)
    monkeypatch.setattr(model, "concept_embedding", concept)
    monkeypatch.setattr(model.tracker, "track_frame", track)
    stats = PropagationStats()
    video = synthetic_video()
    outputs = list(SeCPropagator(model, PropagationConfig(use_concept=use_concept)).run(video, stats))
    monkeypatch.undo()
    return outputs, stats, concept, track


def test_sam2_only_tracks_every_frame_without_the_lvlm(model, monkeypatch):
    outputs, stats, concept, track = _run(model, monkeypatch, use_concept=False)
    assert [t for t, _, _ in outputs] == list(range(9))
    assert all(labels.shape == (72, 96) and labels.dtype == np.uint8 for _, _, labels in outputs)
    assert set(np.unique(np.stack([labels for _, _, labels in outputs]))) <= {0, 2, 5}
    assert concept.calls == [] and stats.lvlm_calls == 0 and stats.scene_changes == []
    assert all(kwargs.get("concept") is None for _, kwargs in track.calls)
    assert "mask_prompt" in track.calls[0][1] and track.calls[0][1]["mask_prompt"].shape == (2, 128, 128)


def test_sec_calls_the_lvlm_exactly_on_scene_changes(model, monkeypatch):
    outputs, stats, concept, track = _run(model, monkeypatch, use_concept=True)
    assert stats.scene_changes == CUTS and stats.lvlm_frames == CUTS and stats.lvlm_calls == 2
    assert len(concept.calls) == 2  # one batched call per scene change, both objects at once
    with_concept = [args[2] for args, kwargs in track.calls if kwargs.get("concept") is not None]
    assert with_concept == CUTS
    assert all(result.shape == (2, 256) for result in concept.results)
    # first call: each object's bank holds the first frame, plus the current frame
    images, input_ids, attention_mask, frames_per_sample = concept.calls[0][0]
    assert frames_per_sample.tolist() == [2, 2] and images.shape == (4, 3, 56, 56)
    assert INFERENCE_QUESTION in model.tokenizer.decode(input_ids[0][attention_mask[0].bool()])


def test_bank_grows_only_with_confident_non_empty_frames(model, monkeypatch):
    outputs, stats, concept, track = _run(model, monkeypatch, use_concept=True)
    first_cut = track.results[CUTS[0]]
    masks = SeCPropagator._video_logits(first_cut, (72, 96)) > 0
    joined = [bool(masks[i].any()) and float(first_cut.object_score_logits[i, 0]) > 1 for i in range(2)]
    frames_per_sample = concept.calls[1][0][3]
    assert frames_per_sample.tolist() == [2 + j for j in joined]


def test_concept_changes_only_the_scene_change_frames(model, monkeypatch):
    _, _, _, plain = _run(model, monkeypatch, use_concept=False)
    _, _, _, sec = _run(model, monkeypatch, use_concept=True)
    for t in range(1, CUTS[0]):
        torch.testing.assert_close(sec.results[t].mask_logits, plain.results[t].mask_logits)
    assert not torch.allclose(sec.results[CUTS[0]].mask_logits, plain.results[CUTS[0]].mask_logits)


def test_shared_scene_changes_and_features_are_computed_once_and_reused(model, monkeypatch):
    """A second propagator sharing `scene_changes` and `frame_features` reads the first one's
    instead of running the detector and the image encoder, with the same LVLM calls and masks;
    SAM 2 only leaves the scene changes untouched."""
    shared: dict[str, list[int]] = {}
    plain = list(SeCPropagator(model, PropagationConfig(use_concept=False), shared).run(synthetic_video()))
    assert shared == {} and len(plain) == 9
    config, features = PropagationConfig(use_concept=True), {}
    first_stats, second_stats = PropagationStats(), PropagationStats()
    first = list(SeCPropagator(model, config, shared, features).run(synthetic_video(), first_stats))
    assert shared == {"synthetic": CUTS} and set(features) == {("synthetic", t) for t in range(9)}
    monkeypatch.setattr(SceneChangeDetector, "update", lambda *_: pytest.fail("detector ran again"))
    monkeypatch.setattr(SeCPropagator, "_encode", lambda *_: pytest.fail("encoder ran again"))
    second = list(SeCPropagator(model, config, shared, features).run(synthetic_video(), second_stats))
    assert second_stats.scene_changes == CUTS and second_stats.lvlm_frames == CUTS
    for (_, _, a), (_, _, b) in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_compose_labels_lower_id_wins_overlaps():
    left, right = np.zeros((4, 4), dtype=bool), np.zeros((4, 4), dtype=bool)
    left[:, :3], right[:, 1:] = True, True
    labels = compose_labels({7: left, 3: right}, (4, 4))
    assert labels[0].tolist() == [7, 3, 3, 3]


def test_an_object_first_annotated_later_is_prompted_there(model, monkeypatch):
    video = synthetic_video()
    first = video.labels(0)
    video.annotations = {0: lambda: np.where(first == 2, 2, 0).astype(np.uint8), 2: lambda: first}
    concept = _Recorder(model.concept_embedding)
    track = _Recorder(model.tracker.track_frame)
    monkeypatch.setattr(model, "concept_embedding", concept)
    monkeypatch.setattr(model.tracker, "track_frame", track)
    outputs = list(SeCPropagator(model).run(video))
    prompted = [
        (args[2], kwargs["mask_prompt"].shape[0]) for args, kwargs in track.calls if "mask_prompt" in kwargs
    ]
    assert prompted == [(0, 1), (2, 1)]  # object 2 on frame 0, object 5 on frame 2
    assert all(5 not in labels for _, _, labels in outputs[:2])
    labels = outputs[2][2]  # the prompt frame yields the prompt, under the lower id's prediction
    np.testing.assert_array_equal(labels == 5, (first == 5) & (labels != 2))
    # one LVLM call per cut for both objects: each bank holds its prompt frame
    assert [c[0][3].tolist() for c in concept.calls][:1] == [[2, 2]]


def test_mismatched_frame_sizes_are_an_error(model):
    video = synthetic_video(2)
    video.frames[1] = _jpeg(np.zeros((10, 10, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="synthetic: frame 1"):
        list(SeCPropagator(model, PropagationConfig(use_concept=False)).run(video))


def test_defaults_are_the_released_predictor(model, monkeypatch):
    """Reliable memory and filled holes in SeC inference and `predict`; `eval` and validation
    leave holes as SeC's VOS inference script does."""
    _, _, _, track = _run(model, monkeypatch, use_concept=False)
    assert {args[0].memory_selection for args, _ in track.calls} == {"reliable"}
    logits = torch.full((1, 1, 32, 32), 4.0)
    logits[0, 0, 10:12, 10:14] = -3.0  # an 8-px hole
    upsampled = SeCPropagator._video_logits(SimpleNamespace(mask_logits=logits), (64, 64))
    assert (upsampled > 0).all()
    assert not (SeCPropagator._video_logits(SimpleNamespace(mask_logits=logits), (64, 64), 0) > 0).all()
    argv = ["--checkpoint", "c", "--video", "v", "--mask", "m", "--out", "o"]
    assert predict._parser().parse_args(argv).fill_hole_area == 8
    assert cli._parser().parse_args(["--checkpoint", "c", "--data", "d"]).fill_hole_area == 0
    assert evaluate.EVAL_FILL_HOLE_AREA == 0
