"""SAM inside ovdense: building from local weights, one embedding per image shared by every
stage, prompted masks equal to SamPredictor's, SAM voting, phrases (tiny SAM fixture, SYNTHETIC)."""
import os

import numpy as np
import pytest
import torch

pytest.importorskip("segment_anything")

import ovdense  # noqa: E402
from ovdense.sam import build_sam, embed_image, predict_masks, upscale_masks  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "synthetic", "sam_detect_world_v2.py")
SAM_DIR = os.path.join(ROOT, "tests", "fixtures", "synth_sam")
SAM_SPEC = dict(type="sam", model_config=os.path.join(SAM_DIR, "model.json"),
                checkpoint=os.path.join(SAM_DIR, "synth_sam.pt"))


@pytest.fixture(scope="module")
def seg():
    return ovdense.OVSegmenter.from_config(CONFIG, device="cpu")


@pytest.fixture(scope="module")
def scene():
    from ovdense.synthetic import WorldV2

    w = WorldV2(seed=0)
    return w.sample(w.indices("eval", 1, 3)[0])


def test_build_sam_refuses_bad_weights_in_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="SAM weights not found"):
        build_sam("vit_b", tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="model_type must be one of"):
        build_sam("vit_x")
    small = build_sam(model_config=os.path.join(SAM_DIR, "model.json"))
    other = tmp_path / "other.pth"
    state = {k: v for k, v in small.state_dict().items()}
    state["image_encoder.patch_embed.proj.weight"] = torch.zeros(3, 3, 3, 3)
    torch.save(state, other)
    with pytest.raises(ValueError, match=r"other\.pth: does not fit SAM of .*size mismatch"):
        build_sam(model_config=os.path.join(SAM_DIR, "model.json"), checkpoint=other)
    html = tmp_path / "page.pth"
    html.write_text("<!DOCTYPE html><html><body>Sign in</body></html>")
    with pytest.raises(Exception, match="page.pth"):
        build_sam(model_config=os.path.join(SAM_DIR, "model.json"), checkpoint=html)


def test_embedding_and_prompts_equal_sam_predictor(scene):
    from segment_anything import SamPredictor

    sam = build_sam(model_config=os.path.join(SAM_DIR, "model.json"), checkpoint=os.path.join(SAM_DIR, "synth_sam.pt"))
    image = scene.image[:150, :201]  # non-square, not a multiple of the patch
    emb = embed_image(sam, image)
    pred = SamPredictor(sam)
    pred.set_image(image)
    assert torch.equal(emb.features, pred.features) and emb.input_size == pred.input_size
    pts = torch.tensor([[[40.0, 60.0]], [[150.0, 20.0]]])
    boxes = torch.tensor([[10.0, 10.0, 90.0, 80.0], [100.0, 5.0, 200.0, 140.0]])
    low, iou = predict_masks(sam, emb, pts, torch.ones(2, 1), boxes)
    masks, iou2, low2 = pred.predict_torch(pred.transform.apply_coords_torch(pts, pred.original_size), torch.ones(2, 1),
                                           pred.transform.apply_boxes_torch(boxes, pred.original_size))
    assert torch.equal(low, low2) and torch.equal(iou, iou2)
    assert torch.equal(upscale_masks(sam, emb, low) > 0, masks)


def test_the_image_embedding_is_computed_once_per_image(seg, scene):
    provider = seg.features["sam"]
    calls = []
    hook = provider.sam.image_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        ctx = seg.encode_image(scene.image)
        assert calls == []  # image-scope: nothing before a stage asks
        first = provider.embedding(ctx)
        assert provider.embedding(ctx) is first
        grid = ctx.feature_map("sam")  # the map view shares the same embedding
        prompter = ovdense.Prompter(seg)
        prompter.masks(ctx, points=[[30, 40]])
        prompter.masks(ctx, boxes=[[0, 0, 50, 50]])
        assert len(calls) == 1
        h, w = scene.image.shape[:2]
        side = max(h, w)
        assert grid.shape[-2:] == (-(-h * 28 // side), -(-w * 28 // side))  # the cells covering the image
    finally:
        hook.remove()


def test_prompted_masks_equal_sam_predictor_best_of_three(seg, scene):
    from segment_anything import SamPredictor

    prompter = ovdense.Prompter(seg)
    points = np.array([[60, 40], [150, 100], [20, 140]], np.float32)
    dets = prompter.masks(scene.image, points=points)
    pred = SamPredictor(seg.features["sam"].sam)
    pred.set_image(scene.image)
    assert len(dets) == 3
    for i, p in enumerate(points):
        masks, scores, _ = pred.predict(point_coords=p[None], point_labels=np.array([1]), multimask_output=True)
        best = int(np.argmax(scores))
        np.testing.assert_array_equal(dets.mask[i], masks[best])
        assert dets.data["predicted_iou"][i] == pytest.approx(scores[best], abs=1e-6)
    # every mask is labelled with a class of the segmenter (the background, too, is kept)
    assert set(dets.class_name) <= set(seg.vocabulary.class_names) and all(dets.class_name)
    # a box prompt with single-mask output
    one = prompter.masks(scene.image, boxes=[10, 20, 120, 110], multimask_output=False, label=False)
    masks, scores, _ = pred.predict(box=np.array([10, 20, 120, 110]), multimask_output=False)
    np.testing.assert_array_equal(one.mask[0], masks[0])
    assert one.class_id.tolist() == [ovdense.UNLABELLED]


@pytest.mark.parametrize("kwargs, message", [
    (dict(), "give points"),
    (dict(points=[1, 2, 3]), "points must be"),
    (dict(points=[[1, 2]], boxes=[[0, 0, 5, 5], [1, 1, 4, 4]]), "one box per prompt"),
    (dict(boxes=[[0, 0, 5]]), "boxes must be"),
    (dict(points=[[np.nan, 2]]), "finite"),
    (dict(points=[[1, 2], [3, 4]], point_labels=[1, 0, 1]), "one label per point"),
])
def test_bad_prompts_are_refused(seg, scene, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ovdense.Prompter(seg).masks(scene.image, **kwargs)


def test_prompter_needs_a_sam_provider(tiny_backbone):
    seg = ovdense.OVSegmenter(backbone=tiny_backbone, head="maskclip", device="cpu")
    with pytest.raises(ValueError, match="no SAM provider 'sam'"):
        ovdense.Prompter(seg)


def test_sam_vote_gives_every_region_its_mean_logits(seg, scene):
    """Pixels of a region (the smallest SAM region covering them) all get the region's mean
    logits; pixels in no region keep theirs; the masks are the shared automatic masks."""
    from ovdense.registry import REFINERS, build

    knobs = dict(points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    vote = build(REFINERS, dict(type="sam_vote", masks=knobs))
    ctx = seg.encode_image(scene.image)
    size = scene.image.shape[:2]
    torch.manual_seed(0)
    logits = torch.randn(5, *size)
    out = vote(logits, ctx.band((0, size[0]), size, vote.halo_rows))
    dets = vote.source(ctx)
    assert len(dets) > 3
    order = np.argsort(-dets.mask.sum((1, 2)), kind="stable")
    owner = np.full(size, -1)
    for i in order:
        owner[dets.mask[i]] = i
    for i in np.unique(owner):
        inside = torch.from_numpy(owner == i)
        if i < 0:
            torch.testing.assert_close(out[:, inside], logits[:, inside], atol=0, rtol=0)
        else:
            want = logits[:, inside].double().mean(1).float()
            torch.testing.assert_close(out[:, inside], want[:, None].expand(-1, int(inside.sum())), atol=1e-6, rtol=0)
    # the Detector's sam_automatic proposals with the same settings reuse the same masks
    from ovdense.proposals.sam_automatic import SamAutomatic

    assert SamAutomatic(**knobs).masks(ctx) is vote.source.masks(ctx)


def test_sam_vote_in_a_segmenter_changes_labels_only_region_wise(scene):
    """Through OVSegmenter.predict (input and model resolution): the voted label map is
    constant inside every SAM region that owns pixels."""
    knobs = dict(points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    voter = ovdense.OVSegmenter.from_config(CONFIG, device="cpu", refiners=[dict(type="sam_vote", masks=knobs)])
    ctx = voter.encode_image(scene.image)
    res = voter.predict(ctx)
    dets = voter.refiners[0].source(ctx)
    order = np.argsort(-dets.mask.sum((1, 2)), kind="stable")
    owner = np.full(scene.image.shape[:2], -1)
    for i in order:
        owner[dets.mask[i]] = i
    for i in np.unique(owner[owner >= 0]):
        assert len(np.unique(res.label_map[owner == i])) == 1


def test_phrase_returns_regions_of_that_phrase(seg, scene):
    prompter = ovdense.Prompter(seg, proposals=dict(points_per_side=8, pred_iou_thresh=0.0,
                                                    stability_score_thresh=0.0))
    dets = prompter.phrase(scene.image, "Water", top_k=3)  # a class of the segmenter (case-insensitive)
    assert 1 <= len(dets) <= 3 and set(dets.class_name) == {"water"}
    water = torch.from_numpy(scene.label_map == 1).numpy()
    assert (dets.mask[0] & water).sum() > 0.5 * dets.mask[0].sum()  # the best region lies mostly on water
    assert np.all(np.diff(dets.confidence) <= 0)
    assert np.allclose(dets.confidence, dets.data["class_probability"] * dets.data["proposal_score"])
    new = prompter.phrase(scene.image, "a blue giraffe", top_k=2)  # not a class: added for the call
    assert set(new.class_name) <= {"a blue giraffe"} and seg.vocabulary.num_classes == 20
    with pytest.raises(ValueError, match="non-empty"):
        prompter.phrase(scene.image, "  ")


def test_phrase_scores_with_the_given_embeddings(seg, scene):
    """A vocabulary with its own embeddings (e.g. from a vocabulary file) is used as given: the
    phrase's regions equal mask_pooling with exactly those rows (plus the phrase's, encoded)."""
    from ovdense.registry import SCORERS, build
    from ovdense.structures import EncodedVocabulary

    knobs = dict(points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    prompter = ovdense.Prompter(seg, proposals=knobs)
    torch.manual_seed(0)
    names = [["water", "sea"], ["grass"], ["red circle"]]
    enc = seg.encode_vocabulary(names, embeddings=torch.randn(4, seg.backbone.embed_dim))
    ctx = seg.encode_image(scene.image)
    scorer = build(SCORERS, dict(type="mask_pooling", logit_scale=seg.decoder.logit_scale,
                                 confidence="probability_x_proposal"))
    from ovdense.proposals.sam_automatic import SamAutomatic

    regions = SamAutomatic(**knobs)(ctx)
    want = scorer(regions, ctx, enc)
    want = want[want.class_id == 1]
    got = prompter.phrase(ctx, "grass", top_k=100, vocabulary=enc)
    np.testing.assert_allclose(np.sort(got.confidence), np.sort(want.confidence), rtol=1e-6)
    new = prompter.phrase(ctx, "sand", top_k=100, vocabulary=enc)
    vocab = ovdense.Vocabulary.from_synonyms(names + [["sand"]])
    text = torch.cat([enc.text, seg.encode_vocabulary(["sand"]).text])
    scored = scorer(regions, ctx, EncodedVocabulary(vocab, text))
    np.testing.assert_allclose(np.sort(new.confidence), np.sort(scored.confidence[scored.class_id == 3]), rtol=1e-6)


def test_detector_from_config_ranks_nms_and_caps(seg, scene):
    det = ovdense.Detector.from_config(CONFIG, segmenter=seg)
    assert det.source.settings.points_per_side == 16 and det.scorer.confidence == "probability_x_proposal"
    dets = det.detect(scene.image)
    assert 0 < len(dets) <= 100 and (dets.class_id >= 0).all()
    np.testing.assert_allclose(dets.confidence, dets.data["class_probability"] * dets.data["proposal_score"],
                               rtol=1e-6)
    capped = ovdense.Detector.from_config(CONFIG, segmenter=seg, nms_threshold=0.5, max_detections=5).detect(
        scene.image)
    assert len(capped) <= 5 and np.all(np.diff(capped.confidence) <= 0)
    from ovdense.ops.masks import mask_iou_matrix

    iou = mask_iou_matrix(capped.mask)
    same = capped.class_id[:, None] == capped.class_id[None, :]
    assert not ((iou > 0.5) & same & ~np.eye(len(capped), dtype=bool)).any()
    with pytest.raises(KeyError, match="unknown keys in config section 'detector'"):
        ovdense.Detector.from_config(CONFIG, segmenter=seg, nms=0.5)


@pytest.mark.slow
def test_sam2_automatic_equals_sam2_generator():
    """The sam2_automatic source gives SAM2AutomaticMaskGenerator's masks (a random SAM 2.1
    hiera-t: the optional sam2 package)."""
    pytest.importorskip("sam2")
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    from ovdense.registry import FEATURES, PROPOSALS, build
    from ovdense.structures import ImageContext

    torch.manual_seed(0)
    provider = build(FEATURES, dict(type="sam2", config="configs/sam2.1/sam2.1_hiera_t.yaml"))
    image = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    knobs = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    want = SAM2AutomaticMaskGenerator(provider.model, **knobs).generate(image)
    ctx = ImageContext(features=torch.zeros(1, 1, 1, 1), boxes=[(0, 96, 0, 128)], pad=(0, 0, 0, 0),
                       resized_size=(96, 128), original_size=(96, 128), whole=True, guide=torch.zeros(3, 96, 128),
                       image=image, providers={"sam2": provider})
    dets = build(PROPOSALS, dict(type="sam2_automatic", **knobs))(ctx)
    want = [r for r in want if r["area"] > 0]
    assert len(dets) == len(want) > 0
    for i, r in enumerate(want):
        np.testing.assert_array_equal(dets.mask[i], r["segmentation"])
        assert dets.data["predicted_iou"][i] == pytest.approx(r["predicted_iou"], abs=1e-6)
