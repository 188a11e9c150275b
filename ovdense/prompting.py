"""Prompted masks: SAM masks for clicked points, boxes or a phrase, labelled with text.

    prompter = ovdense.Prompter(seg)                 # seg has features=dict(sam=dict(type="sam", ...))
    dets = prompter.masks("frame.jpg", points=[[120, 80]])            # one labelled mask per point
    dets = prompter.masks(context, boxes=[[10, 20, 200, 180]])       # one per box
    dets = prompter.phrase(context, "red mug", top_k=3)              # the best regions for a phrase

Every call reads SAM's image embedding from the image's context (computed once per image and
shared with every other SAM stage), so a robot that clicks several times on one frame pays for
the image encoder once: pass the context from ``seg.encode_image(frame)``.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Union

import numpy as np
import torch

from .registry import PROPOSALS, SCORERS, build
from .sam import predict_masks, upscale_masks
from .structures import Detections, EncodedVocabulary, ImageContext
from .text.vocabulary import Vocabulary, split_synonyms


class Prompter:
    """SAM's prompted masks on an :class:`~ovdense.predictor.OVSegmenter`'s images.

    Args:
        segmenter: a segmenter with a ``sam`` feature provider (``features=dict(sam=dict(type="sam", ...))``).
        sam: the provider's name.
        proposals: ``sam_automatic`` settings for :meth:`phrase` (SAM's knob names).
    """

    def __init__(self, segmenter: Any, sam: str = "sam", proposals: Optional[Mapping[str, Any]] = None) -> None:
        features = getattr(segmenter, "features", {})
        provider = features[sam] if sam in features else None
        if provider is None or not hasattr(provider, "embedding"):
            raise ValueError(f"the segmenter has no SAM provider {sam!r}: build it with "
                             f"features=dict({sam}=dict(type='sam', model_type='vit_b', checkpoint=...))")
        self.segmenter = segmenter
        self.sam = sam
        self.provider = provider
        self.proposal_options = dict(proposals or {})
        self._source = None

    def context(self, image: Any) -> ImageContext:
        """The image's context (a path, array or PIL image; a context is returned as is)."""
        return image if isinstance(image, ImageContext) else self.segmenter.encode_image(image)

    def masks(self, image: Any, points: Optional[Any] = None, point_labels: Optional[Any] = None,
              boxes: Optional[Any] = None, vocabulary: Union[EncodedVocabulary, Any, None] = None,
              multimask_output: bool = True, label: bool = True) -> Detections:
        """One mask per prompt, at the input image's size.

        Args:
            points: ``(N, 2)`` x, y pixels (N prompts of one point each) or ``(N, K, 2)`` (N
                prompts of K points).
            point_labels: ``(N,)``/``(N, K)``: 1 foreground (default), 0 background.
            boxes: ``(N, 4)`` xyxy pixels (with points: the same N, one box per prompt).
            vocabulary: classes to label the masks with (default: the segmenter's).
            multimask_output: SAM's 3 candidate masks per prompt, the one with the highest
                predicted IoU kept (SAM's advice for a single ambiguous point); False: SAM's
                single-mask output.
            label: classify each mask by its pooled dense features (``mask_pooling``); False
                leaves them class-agnostic.

        Returns :class:`~ovdense.structures.Detections` in prompt order: confidence = the
        class probability (SAM's predicted IoU when ``label=False``), ``data["predicted_iou"]``;
        a mask whose best class is the background keeps that label.
        """
        context = self.context(image)
        coords, labels, box_t = _prompts(points, point_labels, boxes)
        embedding = self.provider.embedding(context)
        low_res, iou = predict_masks(self.provider.sam, embedding, coords, labels, box_t,
                                     multimask_output=multimask_output)
        best = iou.argmax(1)
        rows = torch.arange(len(best), device=iou.device)
        low_res, iou = low_res[rows, best][:, None], iou[rows, best]
        masks = (upscale_masks(self.provider.sam, embedding, low_res)[:, 0] > self.provider.mask_threshold)
        dets = Detections.from_masks(masks.cpu().numpy(), confidence=iou.cpu().numpy(),
                                     predicted_iou=iou.cpu().numpy().astype(np.float32))
        if not label or len(dets) == 0:
            return dets
        encoded = self.segmenter.resolve_vocabulary(vocabulary)
        scorer = build(SCORERS, dict(type="mask_pooling", logit_scale=self.segmenter.decoder.logit_scale,
                                     drop_background=False))
        return scorer(dets, context, encoded)

    def phrase(self, image: Any, phrase: str, top_k: int = 1, vocabulary: Union[EncodedVocabulary, Any, None] = None,
               min_confidence: float = 0.0) -> Detections:
        """The ``top_k`` SAM regions that best match ``phrase`` (synonyms separated by ``", "``;
        a phrase that names one of the classes is that class).

        Every automatic SAM region (``sam_automatic``, shared per image) is classified
        against ``phrase`` plus the other classes (``vocabulary``, else the segmenter's
        classes, else only a background class; their embeddings as given, only the phrase is
        encoded): the regions whose best class is the phrase, ranked by class probability x
        SAM's predicted IoU, at most ``top_k``.
        """
        if not isinstance(phrase, str) or not split_synonyms(phrase):
            raise ValueError("phrase must be a non-empty string")
        words = split_synonyms(phrase)
        context = self.context(image)
        if vocabulary is None and self.segmenter.vocabulary is None:
            base = self.segmenter.encode_vocabulary(Vocabulary.from_synonyms([["background"]], has_background=True))
        else:
            base = self.segmenter.resolve_vocabulary(vocabulary)

        def matches(synonyms):
            return any(w.lower() == n.lower() for w in words for n in synonyms)

        target = next((i for i, s in enumerate(base.vocabulary.synonyms) if matches(s)), None)
        if target is None:  # the phrase becomes one more class; only its queries are encoded
            vocab = Vocabulary.from_synonyms(list(base.vocabulary.synonyms) + [words],
                                             has_background=base.has_background)
            extra = self.segmenter.encode_vocabulary([words]).text.to(base.text.device)
            encoded = EncodedVocabulary(vocab, torch.cat([base.text, extra]))
            target = vocab.num_classes - 1
        else:
            encoded = base
        if self._source is None:
            self._source = build(PROPOSALS, dict(type="sam_automatic", provider=self.sam, **self.proposal_options))
        scorer = build(SCORERS, dict(type="mask_pooling", logit_scale=self.segmenter.decoder.logit_scale,
                                     confidence="probability_x_proposal"))
        dets = scorer(self._source(context, encoded), context, encoded)
        dets = dets[(dets.class_id == target) & (dets.confidence >= min_confidence)]
        return dets[np.argsort(-dets.confidence, kind="stable")[:max(1, int(top_k))]]


def _prompts(points: Any, point_labels: Any, boxes: Any):
    """Prompt tensors ``[N, K, 2]``, ``[N, K]``, ``[N, 4]`` (or None), checked."""
    if points is None and boxes is None:
        raise ValueError("give points=... and/or boxes=...")
    coords = labels = box_t = None
    n = None
    if points is not None:
        coords = torch.as_tensor(np.asarray(points, dtype=np.float32))
        if coords.ndim == 2:
            coords = coords[:, None]
        if coords.ndim != 3 or coords.shape[-1] != 2 or coords.shape[0] == 0:
            raise ValueError(f"points must be (N, 2) or (N, K, 2) x, y pixels, got shape {tuple(np.shape(points))}")
        if point_labels is None:
            labels = torch.ones(coords.shape[:2])
        else:
            labels = torch.as_tensor(np.asarray(point_labels, dtype=np.float32))
            if labels.numel() != coords.shape[0] * coords.shape[1]:
                raise ValueError(f"point_labels must have one label per point {tuple(coords.shape[:2])}, got shape "
                                 f"{tuple(labels.shape)}")
            labels = labels.reshape(coords.shape[:2])
        n = coords.shape[0]
    if boxes is not None:
        box_t = torch.as_tensor(np.asarray(boxes, dtype=np.float32))
        if box_t.ndim == 1:
            box_t = box_t[None]
        if box_t.ndim != 2 or box_t.shape[1] != 4 or box_t.shape[0] == 0:
            raise ValueError(f"boxes must be (N, 4) xyxy pixels, got shape {tuple(np.shape(boxes))}")
        if n is not None and box_t.shape[0] != n:
            raise ValueError(f"{n} point prompts and {box_t.shape[0]} boxes: give one box per prompt")
    for t in (coords, box_t):
        if t is not None and not torch.isfinite(t).all():
            raise ValueError("prompt coordinates must be finite")
    return coords, labels, box_t


__all__ = ["Prompter"]
