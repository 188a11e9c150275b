"""Decoding and PAMR against the official goldens and independent references."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ovdense.decode import decode, synonym_max
from ovdense.refine import pamr, pamr_stacked
from conftest import golden

Q2C = torch.tensor([0, 0, 1, 2, 2, 3, 4])


def test_sclip_post_processing_equals_golden():
    g = golden("sclip")
    probs, labels = decode(torch.from_numpy(g["slide_logits"]), Q2C, 5, float(g["post_scale"]),
                           float(g["post_prob_thd"]), float(g["post_area_thd"]), has_background=True)
    assert np.abs(probs.numpy() - g["post_probs"]).max() < 1e-6
    assert np.array_equal(labels.numpy(), g["post_labels"].astype(np.int64))


def test_naclip_pamr_and_post_processing_equal_golden(golden_inputs):
    g = golden("naclip")
    refined = pamr(torch.from_numpy(golden_inputs["img"]), torch.from_numpy(g["slide_logits"])[None], 10, (8, 16))[0]
    assert np.abs(refined.numpy() - g["pamr_logits"]).max() < 1e-5
    stacked = pamr_stacked(torch.from_numpy(golden_inputs["img"]), torch.from_numpy(g["slide_logits"])[None], 10)
    assert np.abs(stacked[0].numpy() - g["pamr_logits"]).max() < 1e-5
    probs, labels = decode(refined, Q2C, 5, float(g["post_scale"]), float(g["post_prob_thd"]), renormalize=True,
                           has_background=True)
    assert np.abs(probs.numpy() - g["post_probs"]).max() < 1e-5
    assert np.array_equal(labels.numpy(), g["post_labels"].astype(np.int64))


def _slow_pamr(img, mask, num_iter, dilations):
    """1-stage-wseg PAMR with unfold-style neighbour stacks (independent of ovdense's shifts)."""
    mask = F.interpolate(mask, size=img.shape[-2:], mode="bilinear", align_corners=True)
    offs = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]

    def neighbours(x, with_centre):
        out = []
        for d in dilations:
            p = F.pad(x, [d] * 4, mode="replicate")
            h, w = x.shape[-2:]
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    if (dy, dx) == (0, 0) and not with_centre:
                        continue
                    out.append(p[..., d + dy * d:d + dy * d + h, d + dx * d:d + dx * d + w])
        return torch.stack(out, 2)

    std = neighbours(img, True).std(2, keepdim=True)
    aff = -(img.unsqueeze(2) - neighbours(img, False)).abs() / (1e-8 + 0.1 * std)
    aff = aff.mean(1, keepdim=True).softmax(2)
    for _ in range(num_iter):
        mask = (neighbours(mask, False) * aff).sum(2)
    assert len(offs) == 8
    return mask


def test_pamr_equals_slow_reference_on_random_input():
    torch.manual_seed(0)
    img = torch.randn(1, 3, 37, 53)
    logits = torch.randn(1, 6, 19, 27)
    torch.testing.assert_close(pamr(img, logits, 5, (1, 3)), _slow_pamr(img, logits, 5, (1, 3)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("block_channels", [1, 2, 4])
def test_pamr_channel_blocks_are_bit_identical(monkeypatch, block_channels):
    """The CPU path refines cache-sized channel blocks (uneven last block included): the
    result equals one pass over all channels exactly, and the slow reference."""
    import importlib

    pamr_module = importlib.import_module("ovdense.refine.pamr")  # the package re-exports the function

    torch.manual_seed(1)
    img = torch.randn(2, 3, 41, 47)
    logits = torch.randn(2, 7, 21, 24)
    monkeypatch.setattr(pamr_module, "CPU_BLOCK_BYTES", 10**12)
    whole = pamr(img, logits, 4, (1, 2))
    monkeypatch.setattr(pamr_module, "CPU_BLOCK_BYTES", block_channels * 2 * 41 * 47 * 4)
    assert pamr_module._channels_per_block(torch.empty(2, 7, 41, 47)) == block_channels
    assert torch.equal(pamr(img, logits, 4, (1, 2)), whole)
    torch.testing.assert_close(whole, _slow_pamr(img, logits, 4, (1, 2)), atol=1e-5, rtol=1e-5)


def test_synonym_max_and_thresholds():
    probs = torch.tensor([0.1, 0.5, 0.2, 0.2]).view(4, 1, 1).repeat(1, 2, 3)
    out = synonym_max(probs, torch.tensor([0, 1, 1, 2]), 3)
    assert torch.equal(out[:, 0, 0], torch.tensor([0.1, 0.5, 0.2]))
    logits = torch.zeros(3, 2, 2)
    logits[1, 0, 0] = 1.0
    _, labels = decode(logits, torch.tensor([0, 1, 2]), 3, logit_scale=10, background_threshold=0.5,
                       has_background=True)
    assert labels[0, 0] == 1 and torch.all(labels.flatten()[1:] == 0)


def test_area_threshold_removes_small_foreground_classes():
    logits = torch.zeros(3, 10, 10)
    logits[1, :, :9] = 1  # class 1 covers 90 pixels
    logits[2, :, 9] = 1   # class 2 covers 10 pixels = 10% of the foreground
    probs, labels = decode(logits, torch.tensor([0, 1, 2]), 3, 10.0, 0.0, area_threshold=0.1, has_background=True)
    assert torch.all(probs[2] == 0) and torch.all(labels[:, 9] != 2)
    _, kept = decode(logits, torch.tensor([0, 1, 2]), 3, 10.0, 0.0, area_threshold=0.05, has_background=True)
    assert torch.all(kept[:, 9] == 2)


def test_naclip_threshold_sees_probabilities_before_renormalisation():
    """NACLIP thresholds the synonym-max probabilities, then renormalises only the returned scores."""
    logits = torch.zeros(4, 1, 1)  # queries: bg, bg-synonym, cat, dog -> uniform 0.25 each
    q2c = torch.tensor([0, 0, 1, 2])
    logits[2] = 0.01  # cat slightly ahead
    probs, labels = decode(logits, q2c, 3, logit_scale=1.0, background_threshold=0.3, renormalize=True,
                           has_background=True)
    assert labels.item() == 0  # max prob ~0.25 < 0.3 before renormalisation (~0.34 after)
    assert abs(probs.sum().item() - 1) < 1e-6 and probs[1].item() > 0.3


def test_decoder_without_background_marks_pixels_unlabelled_never_class_0():
    """No background class: low-confidence pixels and pixels whose every class the area rule
    removed are UNLABELLED; class 0 is an ordinary class (labels do not depend on class order)."""
    from ovdense.decode import Decoder
    from ovdense.structures import UNLABELLED

    logits = torch.tensor([[[0.9, 0.1, 0.50]], [[0.1, 0.9, 0.52]], [[0.0, 0.0, 0.51]]])  # [3, 1, 3]
    q2c = torch.arange(3)
    dec = Decoder(logit_scale=10.0, background_threshold=0.5)
    _, labels = dec(logits, q2c, 3, has_background=False)
    assert labels[0].tolist() == [0, 1, UNLABELLED]
    _, labels_bg = dec(logits, q2c, 3, has_background=True)
    assert labels_bg[0].tolist() == [0, 1, 0]
    # swap classes 0 and 1: the same pixels are unlabelled, the others swap their labels
    _, swapped = dec(logits[[1, 0, 2]], q2c, 3, has_background=False)
    assert swapped[0].tolist() == [1, 0, UNLABELLED]
    # the area rule without a background class removes every class whose share is too small,
    # class 0 included (its pixel goes to the best kept class) ...
    _, kept = Decoder(logit_scale=10.0, area_threshold=0.4)(logits, q2c, 3, has_background=False)
    assert kept[0].tolist() == [1, 1, 1]
    _, kept_bg = Decoder(logit_scale=10.0, area_threshold=0.4)(logits, q2c, 3, has_background=True)
    assert kept_bg[0].tolist() == [0, 1, 1]  # with a background class, class 0 is exempt
    # ... and pixels left with no class at all are unlabelled
    _, none = Decoder(logit_scale=10.0, area_threshold=0.9)(logits, q2c, 3, has_background=False)
    assert none[0].tolist() == [UNLABELLED] * 3
