"""The benchmark tool runs end to end, and the fast path equals the reference-style baseline."""
from __future__ import annotations

import json

from ovdense.cli import main
from conftest import TINY_CONFIG


def test_benchmark_fast_path_equals_plain_baseline(tmp_path):
    out = tmp_path / "bench"
    assert main(["benchmark", "--clip-model", str(TINY_CONFIG), "--pretrained", "none", "--size", "120x90",
                 "--repeats", "1", "--device", "cpu", "--out", str(out)]) == 0
    info = json.loads((out / "benchmark.json").read_text())
    assert [r["head"] for r in info["rows"]] == ["vanilla", "maskclip", "sclip", "clearclip", "naclip"]
    for row in info["rows"]:
        assert row["labels_identical"], row["head"]
        assert row["max_logit_diff"] < 1e-4, row
        assert row["images_per_s"] > 0 and row["text_ms_cached"] < row["text_ms_cold"]
    table = (out / "benchmark.md").read_text()
    assert "| sclip | 6 |" in table  # 90x120 -> 336x448: 2 x 3 windows of 224
