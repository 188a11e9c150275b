"""SAM's image encoder as a provider: equal to segment-anything's own encoder on the tiny SAM
fixture, the checkpoint reading, and ProxyCLIP fed by it."""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ovdense
from ovdense.registry import FEATURES, build

pytest.importorskip("segment_anything")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "synth_sam")


def tiny_sam_spec():
    """``sam_encoder`` kwargs of the shipped tiny SAM (its model.json) and its checkpoint."""
    with open(os.path.join(FIXTURE, "model.json")) as fh:
        cfg = json.load(fh)
    return dict(type="sam_encoder", checkpoint=os.path.join(FIXTURE, "synth_sam.pt"), encoder_kwargs=dict(
        img_size=cfg["img_size"], patch_size=cfg["patch_size"], embed_dim=cfg["encoder_embed_dim"],
        depth=cfg["encoder_depth"], num_heads=cfg["encoder_num_heads"], window_size=cfg["encoder_window_size"],
        global_attn_indexes=cfg["encoder_global_attn_indexes"], use_rel_pos=cfg["use_rel_pos"],
        out_chans=cfg["prompt_embed_dim"]))


def test_equals_segment_anythings_encoder_on_the_tiny_sam():
    """The provider on uint8 windows == the fixture's ``Sam.image_encoder`` on the window
    normalised with ``Sam.pixel_mean/std`` and stretched to the encoder's input, computed here."""
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    from train_tiny_sam import build_tiny_sam

    sam = build_tiny_sam(os.path.join(FIXTURE, "model.json"), os.path.join(FIXTURE, "synth_sam.pt"))
    provider = build(FEATURES, tiny_sam_spec()).eval()
    raw = torch.randint(0, 256, (2, 3, 64, 96), dtype=torch.uint8)
    with torch.no_grad():
        ours = provider(raw)
        x = (raw.float() - sam.pixel_mean) / sam.pixel_std
        ref = sam.image_encoder(F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False))
    assert ours.shape == (2, 64, 28, 28) == (2, 64, *provider.output_grid((64, 96)))
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_reads_encoder_only_files_and_refuses_wrong_ones(tmp_path):
    spec = tiny_sam_spec()
    state = torch.load(spec["checkpoint"], weights_only=True)
    encoder_only = tmp_path / "encoder.pt"
    torch.save({k[len("image_encoder."):]: v for k, v in state.items() if k.startswith("image_encoder.")},
               encoder_only)
    a = build(FEATURES, spec)
    b = build(FEATURES, dict(spec, checkpoint=str(encoder_only)))
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        torch.testing.assert_close(pa, pb)
    with pytest.raises(ValueError, match="does not fit"):
        build(FEATURES, dict(spec, encoder_kwargs=dict(spec["encoder_kwargs"], embed_dim=48)))
    with pytest.raises(FileNotFoundError, match="not found"):
        build(FEATURES, dict(spec, checkpoint=str(tmp_path / "missing.pth")))
    with pytest.raises(ValueError, match="model_type"):
        build(FEATURES, dict(type="sam_encoder", model_type="vit_x"))


def test_proxyclip_with_the_sam_encoder(tiny_backbone):
    """ProxyCLIP's ``sam`` VFM: the logits live on the encoder's square grid whatever the window."""
    seg = ovdense.OVSegmenter(backbone=tiny_backbone, head="proxyclip", features=dict(vfm=tiny_sam_spec()),
                              preprocess=dict(short_side=None), windows=dict(crop=48, stride=32), device="cpu",
                              text_encoder=dict(cache_dir=""))
    seg.set_classes(["a", "b"], embeddings=torch.randn(2, tiny_backbone.embed_dim))
    ctx = seg.encode_image(np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8))
    assert ctx.features.shape[-2:] == (28, 28)
    assert seg.predict(ctx).label_map.shape == (48, 80)
