"""Bad input is skipped, counted and logged by shard and key; too much of it stops the run."""

import logging

import pytest

from data_tools.synth import synthesize
from sec_train.data.config import DataConfig, Stage1Config
from sec_train.data.format import ShardWriter, decode_record, iter_records, read_index, write_index
from sec_train.data.loader import build_loader
from sec_train.model.tokenizer import build_toy_tokenizer


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory):
    src = tmp_path_factory.mktemp("src")
    synthesize(src, 6, frames=8, height=32, width=40, objects=2)
    info = read_index(src / "shards")["shards"][0]
    samples = [decode_record(r, "") for r in iter_records(src / "shards" / info["name"])]
    jpeg, rle, invisible, short, good1, good2 = samples
    jpeg.frames = [b"\xff\xd8 not a jpeg"] * len(jpeg.frames)
    for row in rle.masks:
        for m in row:
            if m is not None:
                m["size"] = [16, 16]
    invisible.header["object_ids"].append(9)  # an object with no mask anywhere
    invisible.header["visible"]["9"] = []
    for row in invisible.masks:
        row.append(None)
    short.frames, short.masks = short.frames[:2], short.masks[:2]
    short.header["frame_indices"] = short.header["frame_indices"][:2]
    short.header["visible"] = {k: [p for p in v if p < 2] for k, v in short.header["visible"].items()}
    out = tmp_path_factory.mktemp("bad")
    first, second = ShardWriter(out, "a"), ShardWriter(out, "b")
    for s in (jpeg, rle, invisible, short):
        first.write(s)
    for s in (good1, good2):
        second.write(s)
    infos = first.close() + second.close()
    truncated = out / infos[1]["name"]
    truncated.write_bytes(truncated.read_bytes()[: infos[1]["bytes"] * 3 // 4])  # cuts into good2
    write_index(out, infos)
    return out


def _run(bad_dir, mode, max_bad_fraction):
    cfg = DataConfig(
        train=[str(bad_dir)],
        num_workers=0,
        max_bad_fraction=max_bad_fraction,
        stage1=Stage1Config(num_frames=4, stride=2),
    )
    sizes = dict(lvlm_image_size=28, sam_image_size=32, num_image_tokens=2)
    loader = build_loader(cfg, mode=mode, tokenizer=build_toy_tokenizer(), batch_size=2, **sizes)
    return loader, [k for batch in loader for k in batch.keys]


def test_stage2_skips_and_counts_each_bad_object(bad_dir, caplog):
    with caplog.at_level(logging.WARNING):
        loader, keys = _run(bad_dir, "concept_only", 0.9)
    # two frames are enough for stage 2, so the short video (synth00003) still gives examples
    assert sorted(keys) == [f"synth0000{v}/{o}" for v in (2, 3, 4) for o in (1, 2)]
    # 2 + 2 objects with broken frames / RLEs, the never-visible object, 1 sample lost to truncation
    assert loader.skipped == 6 and loader.seen == 12
    log = caplog.text
    assert "a-000.tar key synth00000" in log and "a-000.tar key synth00001" in log
    assert "key synth00002 object 9" in log and "never visible" in log
    assert "b-000.tar" in log and "unreadable" in log


def test_stage1_skips_a_video_shorter_than_the_clip(bad_dir, caplog):
    with caplog.at_level(logging.WARNING):
        loader, keys = _run(bad_dir, "stage1", 0.9)
    assert sorted(keys) == ["synth00002", "synth00004"]
    assert loader.skipped == 4 and "synth00003" in caplog.text
    assert "1 at stride 2, a clip needs 4" in caplog.text


def test_too_many_bad_samples_stop_the_run(bad_dir):
    with pytest.raises(RuntimeError, match="max_bad_fraction"):
        _run(bad_dir, "stage1", 0.1)
