"""Reference-image mode: prototypes pooled exactly, fused into the queries, saved and checked,
and used through the segmenter and the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ovdense.references import ReferencePrototypes, class_name, pool_prototypes
from test_contracts import tiny_segmenter


def _halves(h=48, w=64):
    """An image of two flat colours (left / right) and its label map (class 1 left, 2 right)."""
    image = np.zeros((h, w, 3), np.uint8)
    image[:, : w // 2] = (200, 30, 40)
    image[:, w // 2:] = (20, 60, 210)
    labels = np.full((h, w), 2, np.int64)
    labels[:, : w // 2] = 1
    return image, labels


def reference_pool(ctx, labels, k):
    """Prototypes written from the definition: every feature cell of every window takes the label
    of the canvas pixel nearest-neighbour resizing maps it to (padding: none), means per class."""
    canvas = F.interpolate(torch.from_numpy(labels)[None, None].float(), size=ctx.resized_size, mode="nearest")[0, 0]
    left, _, top, _ = ctx.pad
    sums, counts = torch.zeros(k, ctx.features.shape[1]), torch.zeros(k)
    for n, (y1, y2, x1, x2) in enumerate(ctx.boxes):
        feats = ctx.features[n]
        h, w = feats.shape[-2:]
        hp, wp = ctx.window_size
        for i in range(h):
            for j in range(w):
                py, px = int(np.floor(i * hp / h)), int(np.floor(j * wp / w))
                y, x = py - top, px - left
                if 0 <= y < y2 - y1 and 0 <= x < x2 - x1:
                    c = int(canvas[y1 + y, x1 + x])
                    if 0 <= c < k:
                        sums[c] += feats[:, i, j]
                        counts[c] += 1
    return F.normalize(sums, dim=1), counts


@pytest.mark.parametrize("windows", [dict(crop=32, stride=16), dict(crop=32, stride=24, pad_to=48), dict(crop=0)])
def test_prototypes_are_the_class_means_of_the_feature_cells(tiny_backbone, windows):
    seg = tiny_segmenter(tiny_backbone, windows=windows)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    labels = rng.integers(0, 4, (50, 70))
    labels[:10] = 255                                             # unlabelled rows
    ctx = seg.encode_image(image)
    refs = pool_prototypes([ctx], [labels], ["bg", "a", "b", "c"])
    expected, counts = reference_pool(ctx, labels, 4)
    present = torch.nonzero(counts > 0).flatten()
    assert refs.class_names == tuple(["bg", "a", "b", "c"][i] for i in present.tolist())
    np.testing.assert_array_equal(refs.counts, counts[present].numpy().astype(np.int64))
    torch.testing.assert_close(refs.prototypes, expected[present], atol=1e-6, rtol=0)


def test_fuse_mixes_every_query_of_a_referenced_class_and_nothing_else(tiny_backbone):
    seg = tiny_segmenter(tiny_backbone)
    enc = seg.encode_vocabulary(["cat, kitten", "dog", "car"], embeddings=F.normalize(torch.randn(4, 32), dim=1))
    p_cat, p_car = F.normalize(torch.randn(2, 32), dim=1)
    refs = ReferencePrototypes(("car", "cat"), torch.stack([p_car, p_cat]), np.array([3, 4]))
    fused = refs.fuse(enc, 0.25)
    t = enc.text
    torch.testing.assert_close(fused.text[0], 0.75 * t[0] + 0.25 * p_cat)    # cat
    torch.testing.assert_close(fused.text[1], 0.75 * t[1] + 0.25 * p_cat)    # kitten (a synonym of cat)
    torch.testing.assert_close(fused.text[2], t[2])                          # dog: no reference
    torch.testing.assert_close(fused.text[3], 0.75 * t[3] + 0.25 * p_car)
    assert refs.fuse(enc, 0.0).text.equal(enc.text)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        refs.fuse(enc, 1.5)
    with pytest.raises(ValueError, match="16-d, the text 32-d"):
        ReferencePrototypes(("cat",), torch.randn(1, 16), np.array([1])).fuse(enc)
    assert class_name("grass, lawn") == "grass" and class_name(["dog", "puppy"]) == "dog"


def test_references_classify_what_they_show_and_round_trip(tiny_backbone, tmp_path):
    """With weight 1 the queries are the prototypes: the image the references came from is labelled
    as its label map (a random CLIP reads nothing from the text); a saved file gives the same
    result; the file is refused by a segmenter with another head."""
    image, labels = _halves()
    seg = tiny_segmenter(tiny_backbone, windows=dict(crop=0))
    seg.set_classes(["bg", "red thing", "blue thing"], embeddings=F.normalize(torch.randn(3, 32), dim=1))
    text_only = seg.predict(image).label_map
    refs = seg.add_references([image], [labels], ["bg", "red thing", "blue thing"], weight=1.0)
    assert refs.class_names == ("red thing", "blue thing") and refs.images == 1
    got = seg.predict(image).label_map
    assert (got == labels).mean() > 0.95 > (text_only == labels).mean()
    path = str(tmp_path / "refs.npz")
    refs.save(path)
    other = tiny_segmenter(tiny_backbone, windows=dict(crop=0))
    other.set_classes(["bg", "red thing", "blue thing"], embeddings=seg._default.text)
    other.set_references(path, weight=1.0)
    np.testing.assert_array_equal(other.predict(image).label_map, got)
    loaded = ReferencePrototypes.load(path)
    assert loaded.class_names == refs.class_names and torch.equal(loaded.prototypes, refs.prototypes)
    naclip = tiny_segmenter(tiny_backbone, head="naclip", windows=dict(crop=0))
    with pytest.raises(ValueError, match="another head"):
        naclip.set_references(path)
    seg.set_references(None)
    np.testing.assert_array_equal(seg.predict(image).label_map, text_only)


def test_references_accumulate_and_files_are_checked(tiny_backbone, tmp_path):
    image, labels = _halves()
    seg = tiny_segmenter(tiny_backbone, windows=dict(crop=0))
    first = seg.add_references([image], [labels], ["bg", "a", "b"])
    both = seg.add_references([image[:, ::-1].copy()], [labels[:, ::-1].copy()], ["bg", "a", "b"])
    assert both.images == 2 and list(both.counts) == [2 * c for c in first.counts]
    assert seg.add_references([image], [labels], ["bg", "a", "b"], replace=True).images == 1
    with pytest.raises(ValueError, match=r"label map of shape \(4, 4\), expected the image's \(48, 64\)"):
        seg.add_references([image], [np.zeros((4, 4), np.int64)], ["a"])
    with pytest.raises(ValueError, match="label no pixel"):
        seg.add_references([image], [np.full((48, 64), 255)], ["a"])
    with pytest.raises(FileNotFoundError, match="no such reference file"):
        ReferencePrototypes.load(str(tmp_path / "none.npz"))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not an ovdense reference file"):
        ReferencePrototypes.load(str(tmp_path / "bad.npz"))


def test_cli_add_references_then_segment_with_them(tmp_path, capsys):
    from ovdense.assets import asset_path
    from ovdense.cli import main

    image, labels = _halves()
    refs_img, refs_lab, photos = tmp_path / "ri", tmp_path / "rl", tmp_path / "photos"
    for d in (refs_img, refs_lab, photos):
        d.mkdir()
    Image.fromarray(image).save(refs_img / "one.png")
    Image.fromarray(labels.astype(np.uint8)).save(refs_lab / "one.png")
    Image.fromarray(image).save(photos / "same.png")
    config = tmp_path / "tiny.py"
    clip = asset_path("synth_clip", "synth-vit-tiny.json"), asset_path("synth_clip", "synth_clip.pt")
    config.write_text(f"backbone = dict(clip_model={clip[0]!r}, pretrained={clip[1]!r}, weights_format='open_clip')\n"
                      "head = dict(type='maskclip')\npreprocess = dict(short_side=None)\nwindows = dict(crop=0)\n"
                      "decode = dict(logit_scale=40.0)\ntext_encoder = dict(templates='simple', cache_dir='')\n")
    common = ["--config", str(config), "--device", "cpu", "--classes", "red thing", "blue thing",
              "--background", "sky"]
    out_file = tmp_path / "refs.npz"
    assert main(["add-references", str(refs_img), str(refs_lab), *common, "-o", str(out_file)]) == 0
    assert "2 class prototypes from 1 images" in capsys.readouterr().out
    run = tmp_path / "run"
    assert main(["segment", str(photos), *common, "--out", str(run), "--quiet", "--references", str(out_file),
                 "--reference-weight", "1"]) == 0
    label = np.array(Image.open(run / "labels" / "same.png.png"))
    assert (label == labels).mean() > 0.95
    record = json.loads((run / "run.json").read_text())
    assert record["config"]["references"]["weight"] == 1.0 and len(record["config"]["references"]["sha256"]) == 64
    # a missing label map and a weight without references are one-line errors
    Image.fromarray(image).save(refs_img / "two.png")
    assert main(["add-references", str(refs_img), str(refs_lab), *common, "-o", str(out_file)]) == 2
    assert "two.png: no label map for reference image" in capsys.readouterr().err
    assert main(["segment", str(photos), *common, "--out", str(tmp_path / "r2"), "--reference-weight", "0.3"]) == 2
    assert "--reference-weight needs --references" in capsys.readouterr().err
