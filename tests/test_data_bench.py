"""The data benchmark runs end to end at toy sizes and prints its rates and ratios as JSON."""

import json

from sec_train.bench.__main__ import main as bench


def test_data_bench_prints_rates_and_ratios(tmp_path, capsys):
    toy = {"videos": 1, "frames": 24, "scale": 1, "rounds": 1, "samples": 2, "lvlm-size": 28, "sam-size": 32}
    args = ["--json", "--data", str(tmp_path), "--image-tokens", "2"]
    args += [item for key, value in toy.items() for item in (f"--{key}", str(value))]
    assert bench(["data", *args]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["samples_per_s"]) == {"loader", "baseline", "jpeg_bound"}
    assert all(rate > 0 for rate in result["samples_per_s"].values())
    assert result["loader_over_baseline"] > 0 and result["loader_over_jpeg_bound"] > 0
    assert (tmp_path / "shards" / "index.json").is_file()  # --data keeps the set for the next run
