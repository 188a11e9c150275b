"""Reference-image mode on synthetic world v2 (SYNTHETIC): tiny CLIP v2, maskclip.

``tools/synthetic_references_eval.py`` makes README's table (30 scenes: maskclip 0.165 text only,
0.212 / 0.217 with one reference per class at weight 0.5 / 1.0, 0.029 with permuted labels). This
test runs the same code on the first 10 held-out scenes, where it measured 0.134, 0.231 / 0.237 and
0.030; the floors sit between: prototypes pooled from the wrong cells, or not fused, fall below them.
"""
import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tools", "synthetic_references_eval.py")


@pytest.mark.slow
def test_one_reference_per_class_beats_text_and_permuted_labels_hurt():
    import torch

    torch.set_num_threads(2)
    spec = importlib.util.spec_from_file_location("synthetic_references_eval", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = mod.evaluate(("maskclip",), (1,), n=10, progress=False)["maskclip"]
    text = rows["text only"]
    assert rows["1 shot(s), weight 0.5"] > text + 0.06, rows
    assert rows["1 shot(s), weight 1.0"] > text + 0.06, rows
    assert rows["1 shot(s), permuted labels (control)"] < text - 0.05, rows
