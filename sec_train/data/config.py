"""The data part of a recipe: where the shards are, how clips and objects are sampled, how
frames are augmented, and how the streaming loader runs."""

from __future__ import annotations

from dataclasses import dataclass, field

from sec_train.schema import check


def _check_probabilities(obj: object, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(obj, name)
        check(0 <= value <= 1, name, value, "in [0, 1]")


@dataclass
class AugmentConfig:
    """Stage-1 augmentations, SAM 2's training transforms as SeC's stage 1 uses them.

    Flip, affine, resize, the first colour jitter and grayscale are drawn once per clip; the
    second (`frame_*`) colour jitter is drawn per frame.
    """

    hflip: float = 0.5
    """Probability of a horizontal flip."""
    degrees: float = 25.0
    """Random rotation range, +- degrees (>= 0)."""
    shear: float = 20.0
    """Random shear range, +- degrees (>= 0)."""
    brightness: float = 0.1
    """Per-clip colour jitter: brightness factor range 1 +- this, in [0, 1]."""
    contrast: float = 0.03
    """Per-clip colour jitter: contrast factor range, in [0, 1]."""
    saturation: float = 0.03
    """Per-clip colour jitter: saturation factor range, in [0, 1]."""
    grayscale: float = 0.05
    """Probability of turning the clip grayscale."""
    frame_brightness: float = 0.1
    """Per-frame colour jitter: brightness, in [0, 1]."""
    frame_contrast: float = 0.05
    """Per-frame colour jitter: contrast, in [0, 1]."""
    frame_saturation: float = 0.05
    """Per-frame colour jitter: saturation, in [0, 1]."""

    def __post_init__(self) -> None:
        check(self.degrees >= 0, "degrees", self.degrees, ">= 0")
        check(self.shear >= 0, "shear", self.shear, ">= 0")
        _check_probabilities(
            self,
            ("hflip", "brightness", "contrast", "saturation", "grayscale")
            + ("frame_brightness", "frame_contrast", "frame_saturation"),
        )


@dataclass
class Stage1Config:
    """Stage-1 clips: annotated frames of one video, the first prompted with GT masks."""

    num_frames: int = 30
    """Annotated frames per clip (>= 2: a prompted frame and one tracked)."""
    stride: int = 2
    """Annotated frames between two clip frames (>= 1)."""
    max_objects: int = 2
    """Objects per clip, among those visible on its first frame (>= 1)."""
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    """The clip's augmentations."""

    def __post_init__(self) -> None:
        check(self.num_frames >= 2, "num_frames", self.num_frames, ">= 2")
        check(self.stride >= 1, "stride", self.stride, ">= 1")
        check(self.max_objects >= 1, "max_objects", self.max_objects, ">= 1")


@dataclass
class Stage2Config:
    """Stage-2 examples, the SeC recipe: one object of one video per example."""

    min_context: int = 1
    """Fewest annotated frames before the target frame (>= 1)."""
    max_context: int = 15
    """Most annotated frames before the target frame (>= min_context)."""
    min_refs: int = 1
    """Fewest reference frames, among context frames where the object is visible (>= 1)."""
    max_refs: int = 7
    """Most reference frames, each drawn with the object's contour (>= min_refs)."""
    noise_prob: float = 0.5
    """Probability that other objects replace up to half of the middle references."""
    max_noise_objects: int = 2
    """Most other objects of the video used as such noise (>= 0)."""
    contour_thickness: int = 2
    """Pixel width of the contour drawn on reference frames (>= 1)."""
    obj_list: str | None = None
    """A "video_id obj_id" file (SA-V's `sav_video_obj_ids.txt`) restricting which objects are
    examples; None: every object."""

    def __post_init__(self) -> None:
        check(self.min_context >= 1, "min_context", self.min_context, ">= 1")
        check(self.max_context >= self.min_context, "max_context", self.max_context, ">= min_context")
        check(self.min_refs >= 1, "min_refs", self.min_refs, ">= 1")
        check(self.max_refs >= self.min_refs, "max_refs", self.max_refs, ">= min_refs")
        _check_probabilities(self, ("noise_prob",))
        check(self.max_noise_objects >= 0, "max_noise_objects", self.max_noise_objects, ">= 0")
        check(self.contour_thickness >= 1, "contour_thickness", self.contour_thickness, ">= 1")


@dataclass
class DataConfig:
    """Data for one training run.

    The loader splits shards by rank then by worker, shuffles shard order and keeps a
    shuffle buffer, all seeded per epoch. Bad samples are skipped and counted.
    """

    train: list[str] = field(default_factory=list)
    """Shard directories, each with the `index.json` that `sec-data` writes."""
    val: str | None = None
    """What periodic validation evaluates on: a DAVIS-style folder or a shard directory."""
    num_workers: int = 2
    """Loader worker processes per rank; 0 reads in the training process."""
    prefetch_factor: int = 2
    """Batches each worker prepares ahead (>= 1)."""
    shuffle_buffer: int = 32
    """Samples held for shuffling per worker (>= 1). It holds whole videos (tens of MB each at
    SA-V resolution): about num_workers x shuffle_buffer videos of memory per rank."""
    max_bad_fraction: float = 0.01
    """Once more than this fraction of the samples read are bad, the run stops."""
    stage1: Stage1Config = field(default_factory=Stage1Config)
    """Stage-1 clip sampling."""
    stage2: Stage2Config = field(default_factory=Stage2Config)
    """Stage-2 example sampling."""

    def __post_init__(self) -> None:
        check(self.num_workers >= 0, "num_workers", self.num_workers, ">= 0")
        check(self.prefetch_factor >= 1, "prefetch_factor", self.prefetch_factor, ">= 1")
        check(self.shuffle_buffer >= 1, "shuffle_buffer", self.shuffle_buffer, ">= 1")
        _check_probabilities(self, ("max_bad_fraction",))
