"""The data part of a recipe: where the shards are, how clips and objects are sampled, how
frames are augmented, and how the streaming loader runs."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class AugmentConfig:
    """Stage-1 augmentations, SAM 2's training transforms as SeC's stage 1 uses them.

    Flip, affine, resize, the first colour jitter and grayscale are drawn once per clip; the
    second (`frame_*`) colour jitter is drawn per frame.
    """

    hflip: float = 0.5
    degrees: float = 25.0
    shear: float = 20.0
    brightness: float = 0.1
    contrast: float = 0.03
    saturation: float = 0.03
    grayscale: float = 0.05
    frame_brightness: float = 0.1
    frame_contrast: float = 0.05
    frame_saturation: float = 0.05


@dataclass
class Stage1Config:
    """Stage-1 clips: `num_frames` annotated frames `stride` apart, up to `max_objects` objects
    visible on the clip's first frame (it gets their GT masks as prompt)."""

    num_frames: int = 30
    stride: int = 2
    max_objects: int = 2
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class Stage2Config:
    """Stage-2 examples, the SeC recipe: one object of one video per example.

    The target frame has `min_context`..`max_context` annotated frames before it; among those
    where the object is visible, `min_refs`..`max_refs` become reference frames with its contour
    drawn. With probability `noise_prob`, up to `max_noise_objects` other objects of the video
    replace up to half of the middle references. `obj_list` is an optional "video_id obj_id"
    file (SA-V's `sav_video_obj_ids.txt`) restricting which objects are examples.
    `cut_target_prob` (not in the SeC recipe, 0 keeps it) is the chance that the target is a
    scene-cut frame of the video (its shard header's `scene_cuts`) when it has one that can be,
    so a recipe on synthetic concept-cut videos trains where concepts matter.
    """

    min_context: int = 1
    max_context: int = 15
    min_refs: int = 1
    max_refs: int = 7
    noise_prob: float = 0.5
    max_noise_objects: int = 2
    contour_thickness: int = 2
    obj_list: str | None = None
    cut_target_prob: float = 0.0


@dataclass
class DataConfig:
    """Data for one training run.

    `train` lists shard directories (each with the `index.json` that `sec-data` writes); `val`
    is what periodic validation evaluates on (a DAVIS-style folder or a shard directory).
    The loader splits shards by rank then by worker, shuffles shard order and keeps a
    `shuffle_buffer`-sample buffer, all seeded per epoch. The buffer holds whole videos (tens of
    MB each at SA-V resolution): it costs about num_workers x shuffle_buffer videos of memory per
    rank. Bad samples are skipped and counted; once more than `max_bad_fraction` of the samples
    read are bad, the run stops.
    """

    train: list[str] = field(default_factory=list)
    val: str | None = None
    num_workers: int = 2
    prefetch_factor: int = 2
    shuffle_buffer: int = 32
    max_bad_fraction: float = 0.01
    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2: Stage2Config = field(default_factory=Stage2Config)
