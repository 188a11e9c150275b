"""CorrCLIP: the official goldens (tools/make_corrclip_golden.py), its parts (DBSCAN grouping, scope
mask, map correction), the region provider and the failure modes a broken wiring would show."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import ovdense
from conftest import GOLDENS, golden
from ovdense.features.regions import paint_regions
from ovdense.heads.corrclip import connected_components, merge_regions, scope_attention
from ovdense.registry import FEATURES, build
from ovdense.rules.region_mode import region_mode

CLIP_MEAN = np.array([122.771, 116.746, 104.094], dtype=np.float32).reshape(3, 1, 1)
CLIP_STD = np.array([68.501, 66.632, 70.323], dtype=np.float32).reshape(3, 1, 1)
#: The tiny official DINO of the CASS goldens, as a provider of its last block's q + k.
TINY_DINO = dict(type="timm_vit", model_name="vit_base_patch8_224.dino", pos_interp="dino", output="q+k",
                 model_kwargs=dict(embed_dim=128, depth=2, num_heads=2, mlp_ratio=2, img_size=112))
#: golden case -> (input, crop, stride, background threshold); see the tool's CASES.
CASES = {"slide": ("img", 112, 56, 0.0), "wide": ("img", 224, 112, 0.2), "square": ("crop", 112, 112, 0.0),
         "few_regions": ("img", 112, 56, 0.0)}
NAMES = ["bg", "bg2", "a", "b", "c", "d", "e"]


def tiny_dino():
    provider = build(FEATURES, TINY_DINO).eval()
    state = {k: torch.from_numpy(v).float() for k, v in np.load(GOLDENS / "cass_tiny_dino.npz").items()}
    provider.model.load_state_dict(state)
    return provider


def segmenter(backbone, regions_dir, crop, stride, threshold, head=None, correction=True):
    seg = ovdense.OVSegmenter(
        backbone=backbone, head=dict(type="corrclip", **(head or {})),
        features=dict(dino=TINY_DINO, regions=dict(type="regions", directory=str(regions_dir))),
        preprocess=dict(short_side=None), windows=dict(crop=crop, stride=stride, pad_to=56),
        decode=dict(logit_scale=40.0, background_threshold=threshold,
                    rules=[dict(type="region_mode")] if correction else []),
        device="cpu", text_encoder=dict(cache_dir=""))
    seg.features["dino"] = tiny_dino()
    ref = golden("corrclip")
    seg.set_classes([", ".join(NAMES[:2])] + NAMES[2:], background="first", embeddings=torch.from_numpy(ref["queries"]))
    return seg


def case_context(seg, golden_inputs, case, folder):
    ref = golden("corrclip")
    src = CASES[case][0]
    u8 = np.clip(np.rint(golden_inputs[src][0] * CLIP_STD + CLIP_MEAN), 0, 255).astype(np.uint8)
    x = (torch.from_numpy(u8).float() - torch.from_numpy(CLIP_MEAN)) / torch.from_numpy(CLIP_STD)
    path = folder / f"{case}.png"
    Image.fromarray(u8.transpose(1, 2, 0)).save(path)
    np.savez(folder / f"{case}.npz", instance_mask=ref[f"{case}_regions"].astype(np.int32))
    return seg.encode_normalized([x], raw=[torch.from_numpy(u8)], originals=[(u8.transpose(1, 2, 0), str(path))])[0]


@pytest.mark.parametrize("case", [c if c != "wide" else pytest.param(c, marks=pytest.mark.slow) for c in sorted(CASES)])
def test_corrclip_equals_the_official_golden(case, corrclip_backbone, golden_inputs, tmp_path):
    """Official ``predict`` on the tiny CLIP (12 blocks) and tiny DINO with region maps from files:
    the stitched logits to 1e-4 (measured 9.5e-7 at most), the probabilities after the background
    merge (4.6e-6), and the labels after the threshold and the map correction (identical)."""
    ref = golden("corrclip")
    _, crop, stride, threshold = CASES[case]
    seg = segmenter(corrclip_backbone, tmp_path, crop, stride, threshold)
    ctx = case_context(seg, golden_inputs, case, tmp_path)
    logits = seg.canvas_logits(ctx, seg.encoded_vocabulary)[:, ::3, ::3]  # the golden's subsample
    assert (logits - torch.from_numpy(ref[f"{case}_logits"])).abs().max() < 1e-4
    res = seg.predict(ctx, return_scores=True)
    assert np.abs(res.scores[:, ::3, ::3] - ref[f"{case}_probs"]).max() < 1e-4
    assert (res.label_map == ref[f"{case}_labels"]).mean() > 0.999
    assert len(np.unique(res.label_map)) >= 4  # the golden is not one label


def test_without_the_map_correction_the_labels_differ(corrclip_backbone, golden_inputs, tmp_path):
    ref = golden("corrclip")
    seg = segmenter(corrclip_backbone, tmp_path, 112, 56, 0.0, correction=False)
    ctx = case_context(seg, golden_inputs, "slide", tmp_path)
    assert (seg.predict(ctx).label_map != ref["slide_labels"]).mean() > 0.01


@pytest.mark.slow
def test_each_branch_moves_the_logits(corrclip_backbone, golden_inputs, tmp_path):
    """Broken wirings the golden test catches: without the semantic branch (beta 0), the spatial
    branch (alpha 0), the region merging or the official temperature the logits move well beyond
    the tolerance."""
    ref = golden("corrclip")
    seg = segmenter(corrclip_backbone, tmp_path, 112, 56, 0.0)
    expected = torch.from_numpy(ref["slide_logits"])
    for name, value in (("beta", 0.0), ("merge_eps", None), ("alpha", 0.0), ("tau", 1.0)):
        kept = getattr(seg.head, name)
        setattr(seg.head, name, value)
        ctx = case_context(seg, golden_inputs, "slide", tmp_path)
        setattr(seg.head, name, kept)
        assert (seg.canvas_logits(ctx, seg.encoded_vocabulary)[:, ::3, ::3] - expected).abs().max() > 1e-3, name


# ---------------------------------------------------------------------------------- parts
def test_connected_components_number_groups_by_their_first_member():
    """DBSCAN with min_samples=1 on a precomputed distance: connected components of
    ``distance <= eps``, labelled in the order of their smallest member (sklearn's order)."""
    adjacency = torch.zeros(7, 7, dtype=torch.bool)
    for a, b in [(0, 4), (4, 6), (2, 5)]:
        adjacency[a, b] = adjacency[b, a] = True
    adjacency |= torch.eye(7, dtype=torch.bool)
    assert connected_components(adjacency).tolist() == [0, 1, 2, 3, 0, 2, 0]
    chain = torch.eye(6, dtype=torch.bool) | torch.diag(torch.ones(5, dtype=torch.bool), 1) \
        | torch.diag(torch.ones(5, dtype=torch.bool), -1)
    assert connected_components(chain.flip(0).flip(1)).tolist() == [0] * 6


def test_merge_regions_groups_regions_with_close_mean_features():
    """Regions 3 and 9 carry the same DINO feature, 5 another: 3 and 9 merge into id 10000, 5 gets
    10001; the smallest id (0, unsegmented) is kept and left out of the grouping."""
    ids = torch.tensor([[0, 3, 3], [5, 5, 9], [0, 0, 9]])
    a, b, c = F.normalize(torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0.0, 0, 1]]), dim=1)
    feats = torch.stack([c, a, a, b, b, a, c, c, a])
    merged = merge_regions(ids, feats, eps=0.2)
    assert merged.tolist() == [[0, 10000, 10000], [10001, 10001, 10000], [0, 0, 10000]]
    assert torch.equal(merge_regions(torch.tensor([[0, 4], [4, 4]]), feats[:4], 0.2), torch.tensor([[0, 4], [4, 4]]))


def test_scope_attention_keeps_regions_apart_and_gates_the_unsegmented_pixels():
    sim = torch.tensor([[1.0, 0.9, 0.1, 0.8], [0.9, 1.0, 0.2, 0.1], [0.1, 0.2, 1.0, 0.3], [0.8, 0.1, 0.3, 1.0]])
    ids = torch.tensor([0, 10, 10, 20])
    attn = scope_attention(sim, ids, tau=4.0)
    mean = sim.mean()
    allowed = torch.tensor([[s > mean for s in row] for row in sim.tolist()])
    allowed[1:, 1:] = torch.tensor([[True, True, False], [True, True, False], [False, False, True]])
    allowed[0, 0] = bool(sim[0, 0] > mean)
    expected = (sim * 4).masked_fill(~allowed, float("-inf")).softmax(-1)
    torch.testing.assert_close(attn, expected)
    assert attn[1, 3] == 0 and attn[3, 1] == 0 and attn[0, 2] == 0  # other region; below the mean


def test_region_mode_takes_each_regions_mode_and_leaves_the_lowest_id():
    labels = torch.tensor([[1, 2, 2], [3, 2, 1], [4, 4, 5]])
    regions = torch.tensor([[0, 7, 7], [7, 7, 3], [3, 3, 0]])
    # id 0: kept; id 7: labels 2,2,3,2 -> 2; id 3: labels 1,4,4 -> 4
    assert region_mode(labels, regions).tolist() == [[1, 2, 2], [2, 2, 4], [4, 4, 5]]
    tie = region_mode(torch.tensor([[5, 1], [1, 5]]), torch.tensor([[2, 2], [2, 2]]))
    assert tie.tolist() == [[5, 1], [1, 5]]  # one id: the "unsegmented" one, untouched
    tie = region_mode(torch.tensor([[5, 1, 0]]), torch.tensor([[0, 2, 2]]))
    assert tie.tolist() == [[5, 0, 0]]  # a tie goes to the smallest label (torch.mode)
    assert region_mode(torch.tensor([[-1, -1, 3]]), torch.tensor([[0, 1, 1]])).tolist() == [[-1, -1, -1]]


def test_paint_regions_paints_the_larger_masks_over_the_smaller():
    masks = np.zeros((3, 4, 4), dtype=bool)
    masks[0, :2, :2] = True        # area 4
    masks[1, :, :] = True          # area 16
    masks[2, 3, 3] = True          # area 1
    assert paint_regions(masks).tolist() == [[3] * 4] * 4  # CorrCLIP: sorted by area, later wins
    masks[1] = False
    painted = paint_regions(masks)  # the empty mask sorts first and paints nothing
    assert painted[0, 0] == 3 and painted[3, 3] == 2 and painted[2, 2] == 0


def test_region_files_are_checked(tmp_path, corrclip_backbone):
    provider = build(FEATURES, dict(type="regions", directory=str(tmp_path)))
    with pytest.raises(FileNotFoundError, match="no region map for image"):
        provider.read(tmp_path / "a.jpg", (4, 4))
    np.savez(tmp_path / "a.npz", instance_mask=np.zeros((3, 4), dtype=np.int32))
    with pytest.raises(ValueError, match=r"a.npz: region map of shape \(3, 4\), expected the image's \(4, 4\)"):
        provider.read(tmp_path / "a.jpg", (4, 4))
    np.savez(tmp_path / "b.npz", other=np.zeros((4, 4), dtype=np.int32))
    with pytest.raises(ValueError, match="no array 'instance_mask'"):
        provider.read(tmp_path / "b.jpg", (4, 4))
    with pytest.raises(ValueError, match="exactly one of"):
        build(FEATURES, dict(type="regions"))
    with pytest.raises(ValueError, match="reads a semantic result"):
        build(FEATURES, dict(type="regions", proposals=dict(type="connected_components")))


def test_segment_cli_reads_region_maps_and_reports_a_missing_one(tmp_path, capsys):
    """``ovdense segment`` with a CorrCLIP config: images with a region map are segmented (the map
    correction makes every region one label); an image without one fails on its own, with one line
    naming the missing file, and the run goes on."""
    from conftest import TINY_CONFIG
    from ovdense.cli import main

    images, regions, out = tmp_path / "images", tmp_path / "regions", tmp_path / "out"
    images.mkdir()
    regions.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(images / "a.png")
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(images / "b.png")
    ids = np.zeros((48, 64), np.int32)
    ids[5:30, 10:50], ids[32:, :20] = 4, 9
    np.savez(regions / "a.npz", instance_mask=ids)
    config = tmp_path / "corrclip_tiny.py"
    config.write_text(
        f"backbone = dict(clip_model={str(TINY_CONFIG)!r}, pretrained=None)\n"
        "head = dict(type='corrclip')\n"
        "features = dict(dino=dict(type='timm_vit', model_name='vit_small_patch8_224', output='q+k',\n"
        "                          model_kwargs=dict(depth=2, embed_dim=32, num_heads=2)),\n"
        f"                regions=dict(type='regions', directory={str(regions)!r}))\n"
        "preprocess = dict(short_side=None)\nwindows = dict(crop=32, stride=16)\n"
        "decode = dict(logit_scale=40.0, rules=[dict(type='region_mode')])\ntext_encoder = dict(templates='simple')\n")
    code = main(["segment", str(images), "--config", str(config), "--classes", "cat", "dog", "car", "--out", str(out),
                 "--device", "cpu", "--quiet"])
    assert code == 0  # as for unreadable images: the run completes and lists the failure
    label = np.array(Image.open(out / "labels" / "a.png.png"))
    assert len(np.unique(label[5:30, 10:50])) == 1 and len(np.unique(label[32:, :20])) == 1
    run = json.loads((out / "run.json").read_text())
    assert run["done"] == 1 and [os.path.basename(f["path"]) for f in run["failed"]] == ["b.png"]
    err = capsys.readouterr().err
    assert "b.npz: no region map for image" in err and "Traceback" not in err


def test_benchmark_compares_with_the_official_style_computation():
    """``ovdense benchmark --corrclip``'s baseline computes what the head computes (same logits and
    labels), so its timings compare equal outputs."""
    from conftest import TINY_CONFIG
    from ovdense.bench.benchmark import TINY_VFM
    from ovdense.bench.corrclip import benchmark_corrclip, format_corrclip

    info = benchmark_corrclip(str(TINY_CONFIG), None, size=(60, 80), regions=12, tiny_dino=TINY_VFM)
    assert info["max_logit_diff"] < 1e-5 and info["labels_equal"] == 1.0
    assert info["windows"] == 2 and info["regions"] > 5
    assert {"clip_prefix", "dino_qk", "head", "predict"} <= set(info["ovdense_ms"])
    assert "speedup" in format_corrclip(info)
