"""Trident's SAM refinement (decoder rule ``trident_sam_refine``) against the official
``sam_refinement`` (tools/make_trident_refine_golden.py), its wiring, and end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from segment_anything.utils.transforms import ResizeLongestSide

import ovdense
from conftest import golden
from ovdense.heads.trident import cv2_to_multiple
from ovdense.registry import DECODE_RULES, FEATURES, build
from ovdense.rules.trident_sam_refine import embedding_key
from ovdense.sam import SamImageEmbedding, embed_image
from test_trident import CASES as TRIDENT_CASES
from test_trident import TINY_DINO, sam_pos_embed

#: case -> (image, logits of trident.npz, coarse_thresh, minimal_area, sam_mask_coff, sam_iou_thresh)
#: (tools/make_trident_refine_golden.py REFINE_CASES)
CASES = {
    "square": ("square", "square", 0.10, 225, 0.005, 0.9),
    "wide": ("wide", "wide", 0.10, 225, 0.005, 0.9),
    "city": ("wide", "city", 0.10, 225, 0.005, 0.9),
    "wide_coarse": ("wide", "wide", 0.6, 20, 0.05, 0.9),
    "square_zero": ("square", "square", 0.0, 10, 0.005, 0.9),
}


@pytest.fixture(scope="module")
def refs():
    return golden("trident"), golden("trident_refine")


@pytest.fixture(scope="module")
def sam_provider(refs):
    ref, refine = refs
    cfg = json.loads(str(ref["sam_config"]))
    provider = build(FEATURES, dict(type="sam", model_config=cfg)).eval()
    state = {k[4:]: torch.from_numpy(v).float() for k, v in ref.items() if k.startswith("sam.")}
    state["pos_embed"] = torch.from_numpy(sam_pos_embed(cfg["img_size"] // cfg["patch_size"], cfg["encoder_embed_dim"]))
    provider.sam.image_encoder.load_state_dict(state)
    for name in ("prompt_encoder", "mask_decoder"):
        module = getattr(provider.sam, name)
        module.load_state_dict({k[len(name) + 1:]: torch.from_numpy(v).float() for k, v in refine.items()
                                if k.startswith(name + ".")})
    return provider


class _Context:
    """What the rule reads of an ImageContext: the image, the providers and ``shared``."""

    def __init__(self, image, providers):
        self.image, self.providers, self._shared = image, providers, {}

    def shared(self, key, compute):
        if key not in self._shared:
            self._shared[key] = compute()
        return self._shared[key]


@pytest.fixture(scope="module")
def contexts(refs, sam_provider):
    """One context per image. The wide image's starts from the official embedding stored in the golden
    (SAM's 1024 px encoder is the slow part); the square's computes it (slow tests only)."""
    ref, refine = refs
    out = {}
    for image in ("square", "wide"):
        ctx = _Context(ref[f"image_{image}"], {"sam": sam_provider})
        if image == "wide":
            size = cv2_to_multiple(ref["image_wide"], 16).shape[:2]
            input_size = ResizeLongestSide.get_preprocess_shape(*size, sam_provider.sam.image_encoder.img_size)
            ctx._shared[embedding_key(sam_provider, 16)] = SamImageEmbedding(
                torch.from_numpy(refine["embedding_wide"]), tuple(input_size), tuple(size))
        out[image] = ctx
    return out


def inputs(ref, case):
    """The golden's inputs: the Trident golden's logits resized to the image, softmax(40 x), argmax."""
    image, logits_of = CASES[case][:2]
    size = ref[f"image_{image}"].shape[:2]
    x = F.interpolate(torch.from_numpy(ref[f"{logits_of}_logits"])[None].float(), size=size, mode="bilinear",
                      align_corners=False)[0]
    probs = (x * 40.0).softmax(0)
    return probs.argmax(0), probs


def refine(refs, contexts, case, **override):
    ref, _ = refs
    image, _, coarse, area, coff, iou = CASES[case]
    rule = build(DECODE_RULES, {**dict(type="trident_sam_refine", coarse_thresh=coarse, minimal_area=area,
                                       sam_mask_coff=coff, sam_iou_thresh=iou), **override})
    labels, probs = inputs(ref, case)
    return rule(labels, contexts[image], None, probs)


SLOW = pytest.mark.slow  # the square image's SAM embedding is computed (about 2 s), or many prompts


@pytest.mark.parametrize("case", ["wide", "city", pytest.param("wide_coarse", marks=SLOW),
                                  pytest.param("square", marks=SLOW), pytest.param("square_zero", marks=SLOW)])
def test_refinement_equals_the_official(case, refs, contexts):
    """The official ``sam_refinement`` on the tiny SAM (fp32): every label equal, the refined
    probabilities to 1e-4 (on a 1::3 subsample)."""
    _, refine_ref = refs
    labels, probs = refine(refs, contexts, case)
    assert labels.dtype == torch.int64
    expected = torch.from_numpy(refine_ref[f"{case}_labels"].astype(np.int64))
    assert (labels == expected).float().mean() == 1.0
    got = probs[:, 1::3, 1::3]
    want = torch.from_numpy(refine_ref[f"{case}_probs"])
    assert got.shape == want.shape and (got - want).abs().max() < 1e-4


def test_the_golden_reaches_every_branch(refs):
    """Kept and failed prompts, a case where nothing is kept (labels unchanged)."""
    ref, refine_ref = refs
    ious = {case: refine_ref[f"{case}_iou"] for case in CASES}
    assert (ious["square"] > 0.9).all() and (ious["wide"] <= 0.9).all()
    assert ((ious["city"] > 0.9).any() and (ious["city"] <= 0.9).any())
    assert ((ious["wide_coarse"] > 0.9).any() and (ious["wide_coarse"] <= 0.9).any())
    labels, _ = inputs(ref, "wide")
    assert np.array_equal(refine_ref["wide_labels"], labels.numpy())


@pytest.mark.parametrize("override, case", [(dict(mask_prompt=False), "city"), (dict(sam_iou_thresh=-1.0), "city"),
                                            pytest.param(dict(multiple_of=None), "square", marks=SLOW)], ids=str)
def test_broken_wiring_changes_the_output(override, case, refs, contexts):
    """Without the mask prompt, with every prompt kept, or with SAM set on the image as it is (not
    cv2-resized to multiples of 16) the result leaves the golden."""
    _, refine_ref = refs
    labels, probs = refine(refs, contexts, case, **override)
    expected = torch.from_numpy(refine_ref[f"{case}_labels"].astype(np.int64))
    moved = (probs[:, 1::3, 1::3] - torch.from_numpy(refine_ref[f"{case}_probs"])).abs().max()
    assert (labels != expected).any() or moved > 1e-3


def test_the_embedding_is_shared(refs, sam_provider):
    """The cv2-resized image's embedding is kept in ``context.shared``; an image already at multiples
    of 16 uses the provider's own shared embedding (``SamModel.embedding``)."""
    ref, _ = refs
    rule = build(DECODE_RULES, dict(type="trident_sam_refine"))
    resized, already = object(), object()
    ctx = _Context(ref["image_wide"], {"sam": sam_provider})
    ctx._shared[embedding_key(sam_provider, 16)] = resized
    assert rule.embedding(ctx) is resized
    ctx = _Context(np.ascontiguousarray(ref["image_wide"][:, :144]), {"sam": sam_provider})
    ctx._shared[("sam_embedding", id(sam_provider))] = already
    assert rule.embedding(ctx) is already
    with pytest.raises(ValueError, match="needs_scores"):
        rule(torch.zeros(96, 144, dtype=torch.long), ctx, None)
    with pytest.raises(ValueError, match="SAM provider 'sam'"):
        rule(torch.zeros(96, 144, dtype=torch.long), _Context(ctx.image, {}), None, torch.rand(3, 96, 144))


@pytest.mark.slow
def test_embedding_is_the_official_set_image(refs, sam_provider):
    """The embedding of the wide image cv2-resized to 96 x 160 equals the official predictor's features."""
    ref, refine = refs
    ctx = _Context(ref["image_wide"], {"sam": sam_provider})
    got = build(DECODE_RULES, dict(type="trident_sam_refine")).embedding(ctx)
    assert got.original_size == (96, 160)
    assert (got.features - torch.from_numpy(refine["embedding_wide"])).abs().max() < 1e-5
    direct = embed_image(sam_provider.sam, cv2_to_multiple(ref["image_wide"], 16))
    torch.testing.assert_close(got.features, direct.features)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["square", "city"])
def test_segmenter_with_refinement_equals_the_official(case, refs, sam_provider, golden_backbone, golden_inputs):
    """The official Trident with ``--sam_refine`` (get_trident_seg + postprocess_result) against the
    segmenter with the trident head and the rule (tiny models, fp32)."""
    ref, refine_ref = refs
    image, short, head = TRIDENT_CASES[case]
    dino = build(FEATURES, TINY_DINO).eval()
    dino.model.load_state_dict({k[5:]: torch.from_numpy(v).float() for k, v in ref.items() if k.startswith("dino.")})
    sam_spec = dict(type="sam", model_config=json.loads(str(ref["sam_config"])))  # replaced by the golden's
    seg = ovdense.OVSegmenter(backbone=golden_backbone, head=dict(type="trident", **head),
                              features=dict(dino=TINY_DINO, sam=sam_spec),
                              preprocess=dict(short_side=short, multiple_of=16, min_fit=112),
                              windows=dict(crop=112, stride=64), device="cpu", text_encoder=dict(cache_dir=""),
                              decode=dict(logit_scale=40.0, background_threshold=0.0, renormalize=False,
                                          rules=[dict(type="trident_sam_refine", sam="sam")]))
    seg.features["dino"], seg.features["sam"] = dino, sam_provider
    q = torch.from_numpy(golden_inputs["Q"])
    seg.set_classes([f"class{i}" for i in range(q.shape[0])], embeddings=q)
    result = seg.predict(ref[f"image_{image}"], return_scores=True)
    expected = refine_ref[f"e2e_{case}_labels"].astype(np.int64)
    assert (result.label_map == expected).mean() >= 0.999
    got = torch.from_numpy(result.scores[:, 1::3, 1::3])
    assert (got - torch.from_numpy(refine_ref[f"e2e_{case}_probs"])).abs().max() < 1e-4
