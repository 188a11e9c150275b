"""The masked_crop scorer: CLIP's own image embedding of each masked crop, against the text."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ovdense
from ovdense.structures import Detections


def _seg(backbone):
    seg = ovdense.OVSegmenter(backbone=backbone, head="maskclip", preprocess=dict(short_side=None),
                              windows=dict(crop=0), device="cpu", text_encoder=dict(cache_dir=""))
    torch.manual_seed(1)
    seg.set_classes(["bg", "a", "b", "c"], embeddings=torch.randn(4, backbone.embed_dim))
    return seg


def test_masked_crop_embeds_crops_as_clip_does(tiny_backbone):
    seg = _seg(tiny_backbone)
    det = ovdense.Detector(seg, proposals="connected_components",
                           scorer=dict(type="masked_crop", context=0.0, fill="keep"))
    scorer = det.scorer
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    masks = np.zeros((2, 48, 64), bool)
    masks[0, 8:40, 16:48] = True
    masks[1, :, :] = True
    dets = Detections.from_masks(masks, confidence=np.array([0.5, 0.9]))
    ctx = seg.encode_image(image)
    size = tiny_backbone.visual.image_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    crops = scorer.crops(image, dets, size)
    # the first crop is the box's pixels resized, normalised with CLIP's mean/std
    box = torch.from_numpy(image[8:40, 16:48]).permute(2, 0, 1).float()[None]
    want = (F.interpolate(box, size=size, mode="bilinear", align_corners=False)[0]
            - torch.tensor(seg.preprocessor.mean).view(3, 1, 1)) / torch.tensor(seg.preprocessor.std).view(3, 1, 1)
    torch.testing.assert_close(crops[0], want)
    # embeddings equal open_clip's own encode_image
    with torch.no_grad():
        ref = F.normalize(tiny_backbone.model.encode_image(crops).float(), dim=-1)
    torch.testing.assert_close(scorer.embed(crops), ref, atol=1e-5, rtol=1e-5)
    scored = scorer(dets, ctx, seg.encoded_vocabulary)
    probs = torch.softmax(100.0 * ref @ seg.encoded_vocabulary.text.T, dim=1)
    best, cls = probs.max(1)
    keep = cls.numpy() != 0
    assert scored.class_id.tolist() == cls.numpy()[keep].tolist()
    np.testing.assert_allclose(scored.confidence, best.numpy()[keep], rtol=1e-5)
    # "mean" fill: pixels outside the mask normalise to zero
    filled = ovdense.Detector(seg, "connected_components", scorer=dict(type="masked_crop", context=0.5)).scorer
    ring = np.zeros((1, 48, 64), bool)
    ring[0, 20:30, 20:30] = True
    crop = filled.crops(image, Detections.from_masks(ring), (15, 15))[0]
    assert crop[:, 0, 0].abs().max() < 1e-5 and crop[:, 7, 7].abs().max() > 1e-3


def test_masked_crop_needs_a_backbone():
    from ovdense.registry import SCORERS, build

    with pytest.raises(ValueError, match="fill must be"):
        build(SCORERS, dict(type="masked_crop", fill="blur"))
    scorer = build(SCORERS, "masked_crop")
    with pytest.raises(ValueError, match="needs CLIP's backbone"):
        scorer(Detections.empty(4, 4), None, None)
