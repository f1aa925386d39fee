"""Streaming reader and shard writer: exact tensors back, shards split at the size limit."""

import json

import torch
from safetensors.torch import load_file, save_file

from sec_train.convert.streaming import ShardWriter, Step, TensorSource, run_plan


def test_reader_returns_every_dtype_and_shape_exactly(tmp_path):
    tensors = {
        "bf16": torch.randn(3, 5).to(torch.bfloat16),
        "f16": torch.randn(7).to(torch.float16),
        "f32": torch.randn(2, 3, 4),
        "i64": torch.arange(6).view(2, 3),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
    }
    save_file(tensors, str(tmp_path / "x.safetensors"), {"format": "pt"})
    source = TensorSource.from_safetensors(tmp_path / "x.safetensors")
    assert sorted(source) == sorted(tensors)
    for key, tensor in tensors.items():
        got = source.get(key)
        assert got.dtype == tensor.dtype and got.shape == tensor.shape, key
        assert torch.equal(got, tensor), key


def test_writer_splits_shards_and_indexes_them(tmp_path):
    tensors = {f"layer.{i}.weight": torch.full((256,), float(i)) for i in range(10)}  # 1 KiB each
    with ShardWriter(tmp_path / "out", max_shard_bytes=3000) as writer:
        for key, tensor in tensors.items():
            writer.add(key, tensor)
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert files == [f"model-{i:05d}-of-00004.safetensors" for i in range(1, 5)]
    assert index["metadata"]["total_size"] == 10 * 1024
    assert sum(len(load_file(str(tmp_path / "out" / f))) for f in files) == 10
    source = TensorSource.from_safetensors(tmp_path / "out")
    for key, tensor in tensors.items():
        assert torch.equal(source.get(key), tensor)


def test_slices_of_one_source_are_written_as_separate_tensors(tmp_path):
    save_file({"qkv": torch.arange(6.0)}, str(tmp_path / "x.safetensors"))
    source = TensorSource.from_safetensors(tmp_path / "x.safetensors")
    steps = [Step(name, ("qkv",), lambda ts, i=i: ts[0][2 * i : 2 * i + 2]) for i, name in enumerate("qkv")]
    with ShardWriter(tmp_path / "out", dtype=torch.bfloat16) as writer:
        run_plan(steps, source, writer)
    out = TensorSource.from_safetensors(tmp_path / "out")
    assert torch.equal(out.get("v"), torch.tensor([4.0, 5.0], dtype=torch.bfloat16))
