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
    """Stage-1 clips, as SAM 2's training loader builds them for SeC: annotated frames of one
    video, the first prompted with GT masks.

    The pool is every `stride`-th annotated frame of the video. With `shuffle` (the official
    `shuffle: true`) the pool is put in random order, so a clip is `num_frames` random frames in
    random order; without it a clip is `num_frames` consecutive pool frames in time order. The
    clip's first frame shows at least one object.
    """

    num_frames: int = 30
    """Annotated frames per clip (>= 2: a prompted frame and one tracked)."""
    stride: int = 2
    """The pool is every `stride`-th annotated frame (>= 1)."""
    max_objects: int = 2
    """Objects per clip, among those visible on its first frame (>= 1)."""
    shuffle: bool = True
    """Random pool frames in random order (the official loader); False: consecutive pool frames
    in time order."""
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    """The clip's augmentations."""

    def __post_init__(self) -> None:
        check(self.num_frames >= 2, "num_frames", self.num_frames, ">= 2")
        check(self.stride >= 1, "stride", self.stride, ">= 1")
        check(self.max_objects >= 1, "max_objects", self.max_objects, ">= 1")


@dataclass
class Stage2Config:
    """Stage-2 examples, the SeC recipe as the official `SegJSONDataset` draws it: one object of
    one video per example.

    A start frame shows the object and the target lies `min_context`..`max_context` annotated
    frames after it; `min_refs`..`max_refs` of the object's other visible frames, anywhere in the
    video and in random order, become reference frames with its contour drawn at the frame's
    resolution. With `add_noise`, 0..`max_noise_objects` other objects (uniformly many) give
    outlined frames of their own that replace up to half of the references after the first.
    """

    min_context: int = 1
    """Fewest annotated frames from the start frame, where the object is visible, to the target
    (>= 1)."""
    max_context: int = 15
    """Most annotated frames from the start frame to the target (>= min_context; the official 16
    SAM frames: 15)."""
    min_refs: int = 1
    """Fewest reference frames, among the object's other visible frames (>= 1; fewer when the
    object shows on fewer frames)."""
    max_refs: int = 7
    """Most reference frames, each drawn with the object's contour (>= min_refs)."""
    add_noise: bool = True
    """Other objects' outlined frames replace some references (the official `add_noise`)."""
    max_noise_objects: int = 2
    """Most other objects of the video used as such noise (>= 0)."""
    contour_thickness: int = 2
    """Pixel width of the contour drawn on reference frames (>= 1)."""
    obj_list: str | None = None
    """A "video_id obj_id" file (SA-V's `sav_video_obj_ids.txt`) restricting which objects are
    examples; None: every object."""
    cut_target_prob: float = 0.0
    """Chance that the target is a scene-cut frame (the shard header's `scene_cuts`) when the
    video has one that can be; not in SeC's recipe (0 keeps its draw). For synthetic concept-cut
    videos, where the official draw rarely lands where a concept is needed."""
    refs_before_target: bool = False
    """References only from frames before the target, as inference's keyframe bank holds them
    (the official draw takes them anywhere, so after a cut they can show the object's new look);
    all of them when none is before. Not in SeC's recipe."""

    def __post_init__(self) -> None:
        check(self.min_context >= 1, "min_context", self.min_context, ">= 1")
        check(self.max_context >= self.min_context, "max_context", self.max_context, ">= min_context")
        check(self.min_refs >= 1, "min_refs", self.min_refs, ">= 1")
        check(self.max_refs >= self.min_refs, "max_refs", self.max_refs, ">= min_refs")
        _check_probabilities(self, ("cut_target_prob",))
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
