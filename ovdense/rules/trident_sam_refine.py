"""Trident's SAM refinement (the official ``--sam_refine``, ``seg_utils.utils.sam_refinement``).

A label rule with ``needs_scores``: it reads the whole image's labels ``[H, W]`` and class
probabilities ``[C, H, W]`` (the decoder's returned scores: Trident's ``seg_pred`` and
``seg_logits`` after the softmax and the background synonym max) and returns Trident's
``refined_masks`` and ``refined_logits``. With ``d = down_ratio`` (2) and ``(h, w) = (H // d, W // d)``:

1. ``labels`` resized to ``(h, w)`` (nearest; the official goes through ``.half()``, exact for
   labels < 2048), the probabilities bilinearly (``align_corners=False``). With
   ``coarse_thresh > 0`` the cells whose highest probability is below it leave every class.
2. For each class ``c`` whose highest (downsampled) probability reaches ``coarse_thresh``: the
   8-connected regions of its cells (OpenCV's ``connectedComponents``, numbered in raster order:
   what ``skimage.measure.label(..., connectivity=2)`` gives) of at least ``minimal_area`` cells; per region its box
   (``masks_to_boxes``: inclusive xyxy), and as point the first cell (raster order) of the largest
   value of ``prob_c * region`` over the whole map.
3. SAM, prompted per class with every region's box + point (label 1) and one shared mask input:
   ``prob_c`` resized (bilinear) to ``256`` on the long side of ``(H, W)``, zero-padded to
   ``256 x 256``, ``sam_mask_coff * p`` where ``p > coarse_thresh``, else 0; one mask per prompt
   (``multimask_output=False``). Coordinates are transformed from the ``(h, w)`` frame
   (``ResizeLongestSide.apply_*_torch(.., [h, w])``). The embedding is the one
   ``SamPredictor.set_image`` gives the image Trident's head gives SAM: the image resized with
   ``cv2.resize`` to multiples of ``multiple_of`` (16, CLIP's patch); for Cityscapes, where the head
   embeds two halves, the official code sets the whole image again, which is what is used here.
4. A prompt is kept when SAM's IoU prediction is above ``sam_iou_thresh``; the other regions
   are "failed". With no kept prompt at all, labels and probabilities are returned unchanged.
5. The kept masks' logits are upscaled as ``Sam.postprocess_masks`` (to the SAM image's size),
   then bilinearly to ``(H, W)`` when that differs (masks: logits > 0). Per class ``c`` with kept
   prompts: ``R_c = max_k(sigmoid(logit_k) * prob_c) * any_k(mask_k)``, 0 for other classes;
   labels ``argmax_c R_c`` where some ``R_c > 0``, else the input label.
6. Failed regions (union, nearest-upsampled to ``(H, W)``): ``R = max(R, prob)`` there. (The
   official then keeps the input label where ``max prob > max R``, which never holds after that
   maximum; reproduced anyway.)

The returned probabilities are ``R``: zero wherever neither a kept mask nor a failed region lies,
as the official ``seg_logits``.

Quirks kept: the mask input goes to SAM's prompt encoder unbatched (``[1, 256, 256]``, as the
official passes it), so ``LayerNorm2d`` in ``mask_downscaling`` normalises over rows instead of
channels; it is shared by all prompts of the class. Not reproduced: the official hard-codes 256
(SAM's mask input for 1024 px, patch 16); here SAM's own ``prompt_encoder.mask_input_size`` (the
same for every released SAM); labels outside ``[0, C)`` (``UNLABELLED``; the official one-hot
would fail) belong to no class. The official runs SAM's encoder in fp16 and the rest in fp32;
here SAM's own dtype.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..registry import DECODE_RULES
from .base import LabelRule


def sam_refine_embedding(context: Any, provider: Any, multiple_of: Optional[int] = 16):
    """SAM's embedding (``SamPredictor.set_image``) of ``context``'s image resized with ``cv2.resize``
    to multiples of ``multiple_of`` (None or 0: as it is), computed once per image and shared
    through ``context.shared`` (the provider's own embedding when no resize is needed)."""
    from ..heads.trident import cv2_to_multiple
    from ..sam import embed_image

    if context.image is None:
        raise ValueError("trident_sam_refine runs SAM on the uint8 input image, which this context does not hold")
    image = np.asarray(context.image)
    resized = cv2_to_multiple(image, int(multiple_of)) if multiple_of else image
    if resized is image and hasattr(provider, "embedding"):
        return provider.embedding(context)
    return context.shared(embedding_key(provider, multiple_of), lambda: embed_image(provider.sam, resized))


def embedding_key(provider: Any, multiple_of: Optional[int] = 16) -> tuple:
    """The ``context.shared`` key of :func:`sam_refine_embedding`'s embedding of a resized image."""
    return ("sam_embedding", id(provider), "cv2_multiple", int(multiple_of or 0))


def _regions(mask: np.ndarray, probs: torch.Tensor, minimal_area: int):
    """8-connected regions of a bool ``mask [h, w]`` of at least ``minimal_area`` cells:
    ``(masks [R, h, w] uint8, boxes [R, 4] xyxy int64, points [R, 2] xy int64)`` (raster order of
    the regions' first cells); the point of a region is ``argmax(probs * region)`` over the map."""
    import cv2

    count, labelled = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    count -= 1
    if count == 0:
        return None
    flat = labelled.ravel()  # renumbered in the raster order of each region's first cell (skimage's)
    firsts = np.full(count + 1, flat.size, dtype=np.int64)
    np.minimum.at(firsts, flat, np.arange(flat.size))
    remap = np.zeros(count + 1, dtype=np.int64)
    remap[np.argsort(firsts[1:], kind="stable") + 1] = np.arange(1, count + 1)
    labelled = remap[labelled]
    h, w = mask.shape
    ids = torch.from_numpy(labelled.astype(np.int64)).flatten()
    areas = torch.bincount(ids, minlength=count + 1)
    keep = torch.nonzero(areas[1:] >= minimal_area).flatten() + 1  # region ids, ascending
    if keep.numel() == 0:
        return None
    values = probs.detach().float().cpu().flatten()
    inside = ids > 0
    best = torch.full((count + 1,), float("-inf"))
    best.scatter_reduce_(0, ids[inside], values[inside], reduce="amax")
    index = torch.arange(ids.numel())
    hit = inside & (values == best[ids])
    first = torch.full((count + 1,), ids.numel(), dtype=torch.long)
    first.scatter_reduce_(0, ids[hit], index[hit], reduce="amin")
    masks, boxes, points = [], [], []
    for r in keep.tolist():
        region = labelled == r
        if not best[r] > 0:  # the literal argmax of probs * region (ties with the zeros outside)
            pos = int(torch.argmax(values * torch.from_numpy(region).flatten().float()))
        else:
            pos = int(first[r])
        ys, xs = np.nonzero(region)
        masks.append(region.astype(np.uint8))
        boxes.append([int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())])
        points.append([pos % w, pos // w])
    return (torch.from_numpy(np.stack(masks)), torch.tensor(boxes, dtype=torch.long),
            torch.tensor(points, dtype=torch.long))


@torch.no_grad()
def sam_refinement(labels: torch.Tensor, probs: torch.Tensor, sam: torch.nn.Module, embedding: Any,
                   coarse_thresh: float = 0.10, minimal_area: int = 225, sam_mask_coff: float = 0.005,
                   sam_iou_thresh: float = 0.9, down_ratio: int = 2, mask_prompt: bool = True,
                   stats: Optional[Dict[str, Any]] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """The official ``sam_refinement`` (see the module doc): int64 ``labels [H, W]`` and
    probabilities ``[C, H, W]`` -> ``(labels [H, W], refined probabilities [C, H, W])``.
    ``embedding``: a :class:`~ovdense.sam.SamImageEmbedding` of the image SAM is set on.
    ``stats`` (a dict) receives the prompts per class and their IoU predictions."""
    from segment_anything.utils.transforms import ResizeLongestSide

    from ..sam import predict_masks, upscale_masks

    num_classes, height, width = probs.shape
    device = probs.device
    probs = probs.float()
    labels = labels.to(device).long()
    if down_ratio != 1:
        dh, dw = height // down_ratio, width // down_ratio
        # nearest on floats (the official: on .half(), the same for labels < 2048)
        labels_down = F.interpolate(labels[None, None].float(), [dh, dw], mode="nearest")[0, 0].long()
        probs_down = F.interpolate(probs[None], [dh, dw], mode="bilinear", align_corners=False)[0]
    else:
        dh, dw = height, width
        labels_down, probs_down = labels.clone(), probs
    if coarse_thresh > 0:
        labels_down[probs_down.max(dim=0)[0] < coarse_thresh] = num_classes
    labels_np = labels_down.cpu().numpy()
    prompt_frame = dataclasses.replace(embedding, original_size=(dh, dw))  # prompts live on the (h, w) grid
    mask_side = int(sam.prompt_encoder.mask_input_size[0])
    new_h, new_w = ResizeLongestSide.get_preprocess_shape(height, width, mask_side)
    kept: Dict[int, torch.Tensor] = {}
    failed: List[torch.Tensor] = []
    for c in range(num_classes):
        if probs_down[c].max() < coarse_thresh:
            continue
        found = _regions(labels_np == c, probs_down[c], minimal_area)
        if found is None:
            continue
        masks, boxes, points = found
        mask_input = None
        if mask_prompt:
            m = F.interpolate(probs_down[c][None, None], [new_h, new_w], mode="bilinear", align_corners=False)[0]
            m = F.pad(m, (0, mask_side - new_w, 0, mask_side - new_h), mode="constant", value=0)
            mask_input = torch.where(m > coarse_thresh, sam_mask_coff * m, torch.zeros((), device=device)).float()
        low_res, iou = predict_masks(sam, prompt_frame, point_coords=points[:, None].float().to(device),
                                     point_labels=torch.ones(points.shape[0], 1, device=device),
                                     boxes=boxes.float().to(device), mask_input=mask_input, multimask_output=False)
        valid = (iou > sam_iou_thresh).squeeze(-1)
        if stats is not None:
            stats.setdefault("prompts", {})[c] = int(points.shape[0])
            stats.setdefault("iou", {})[c] = iou[:, 0].detach().cpu()
        if int(valid.sum()) != masks.shape[0]:
            failed.append(masks[~valid.cpu()])
        if int(valid.sum()):
            kept[c] = low_res[valid]
    if not kept:
        return labels, probs
    refined = torch.zeros(num_classes, height, width, device=device)
    sam_size = tuple(embedding.original_size)
    threshold = float(sam.mask_threshold)
    for c, low_res in kept.items():
        logits = upscale_masks(sam, embedding, low_res)
        if sam_size != (height, width):
            logits = F.interpolate(logits, (height, width), mode="bilinear", align_corners=False)
        covered = (logits[:, 0] > threshold).sum(dim=0).bool()
        refined[c] = (logits[:, 0].sigmoid() * probs[c]).max(dim=0).values * covered
    out = refined.argmax(dim=0)
    out = torch.where(refined.sum(dim=0) == 0, labels, out)
    if failed:
        regions = torch.cat(failed).to(device)
        if down_ratio != 1:
            regions = F.interpolate(regions[None].float(), (height, width), mode="nearest")[0].long()
        area = regions.sum(dim=0, keepdim=True) != 0
        failed_probs = area * probs
        refined = torch.where(failed_probs > refined, failed_probs, refined)
        out = torch.where(failed_probs.max(dim=0)[0] > refined.max(dim=0)[0], labels, out)
    return out, refined


@DECODE_RULES.register_module("trident_sam_refine")
class TridentSamRefine(LabelRule):
    """Args:
        sam: name of the image-scope ``sam`` provider (segment-anything's model).
        coarse_thresh, minimal_area, sam_mask_coff, sam_iou_thresh: the official parameters
            (0.10, 225, 0.005, 0.9).
        down_ratio: resolution divisor of the region search (official 2).
        multiple_of: SAM's image is resized (cv2) to multiples of it (CLIP's patch, 16; None: as it is).
        mask_prompt: give SAM the class's probabilities as mask input (official True; False only for
            ablations and the wiring test).
    """

    needs_scores = True

    def __init__(self, sam: str = "sam", coarse_thresh: float = 0.10, minimal_area: int = 225,
                 sam_mask_coff: float = 0.005, sam_iou_thresh: float = 0.9, down_ratio: int = 2,
                 multiple_of: Optional[int] = 16, mask_prompt: bool = True) -> None:
        if int(down_ratio) < 1:
            raise ValueError(f"trident_sam_refine: down_ratio must be >= 1, got {down_ratio}")
        self.sam = sam
        self.requires = (sam,)
        self.coarse_thresh, self.minimal_area = float(coarse_thresh), int(minimal_area)
        self.sam_mask_coff, self.sam_iou_thresh = float(sam_mask_coff), float(sam_iou_thresh)
        self.down_ratio, self.multiple_of, self.mask_prompt = int(down_ratio), multiple_of, bool(mask_prompt)

    def provider(self, context: Any) -> Any:
        provider = (context.providers or {}).get(self.sam)
        if provider is None or not hasattr(provider, "sam"):
            raise ValueError(f"trident_sam_refine needs the image-scope SAM provider {self.sam!r}: add "
                             f"features=dict({self.sam}=dict(type='sam', ...))")
        return provider

    def embedding(self, context: Any):
        """SAM's embedding of the image as Trident sets it (shared through ``context.shared``)."""
        return sam_refine_embedding(context, self.provider(context), self.multiple_of)

    def __call__(self, labels: torch.Tensor, context: Any, vocabulary: Any, scores: Any = None):
        if scores is None:
            raise ValueError("trident_sam_refine reads the image's class probabilities (needs_scores)")
        provider = self.provider(context)
        scores = torch.as_tensor(scores)
        if tuple(scores.shape[-2:]) != tuple(labels.shape):
            raise ValueError(f"trident_sam_refine: scores {tuple(scores.shape)} do not cover labels "
                             f"{tuple(labels.shape)}")
        embedding = sam_refine_embedding(context, provider, self.multiple_of)
        out, refined = sam_refinement(labels, scores, provider.sam, embedding, self.coarse_thresh, self.minimal_area,
                                      self.sam_mask_coff, self.sam_iou_thresh, self.down_ratio, self.mask_prompt)
        return out.to(labels.device), refined.to(scores.dtype)

    def __repr__(self) -> str:
        return (f"TridentSamRefine(sam={self.sam!r}, coarse_thresh={self.coarse_thresh}, "
                f"minimal_area={self.minimal_area}, sam_mask_coff={self.sam_mask_coff}, "
                f"sam_iou_thresh={self.sam_iou_thresh}, down_ratio={self.down_ratio}, "
                f"multiple_of={self.multiple_of}, mask_prompt={self.mask_prompt})")
