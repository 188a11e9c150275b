"""Regions classified the classic way: each masked crop encoded by CLIP as a whole image.

For every region: its box, widened by ``context`` on each side (a fraction of the box's size,
clipped to the image), is cut from the uint8 image; pixels outside the mask are set to
``fill`` (``"mean"``: CLIP's mean colour, which normalises to zero; ``"keep"``: the plain crop);
the crop is resized (bilinear) to CLIP's input size, normalised, and encoded by CLIP's full
image tower (CLS token through the last block, ``ln_post``, ``proj``). The class comes from
``softmax(clip_scale x cos(embedding, text))`` over the queries and the max over each class's
synonyms; regions whose best class is the background are dropped. This is what pipelines
before dense CLIP heads did (one CLIP pass per region): far slower than ``mask_pooling``, and
blind to context outside the box, but independent of the head.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..decode import synonym_max
from ..registry import SCORERS
from ..structures import Detections
from .base import RegionScorer


@SCORERS.register_module("masked_crop")
class MaskedCrop(RegionScorer):
    """Args:
        backbone: the CLIP backbone (the :class:`~ovdense.detector.Detector` passes its
            segmenter's); ``mean``/``std``: its normalisation on 0-255 RGB (likewise).
        clip_scale: softmax temperature on the cosines (CLIP's own zero-shot scale, 100).
        context: the box widened by this fraction of its size on each side.
        fill: ``"mean"`` (pixels outside the mask become CLIP's mean colour) or ``"keep"``.
        confidence: ``"probability"`` or ``"probability_x_proposal"`` (times the proposal's
            score, e.g. SAM's predicted IoU), as ``mask_pooling``.
        batch_size: crops per CLIP forward pass.
    """

    FILLS = ("mean", "keep")

    def __init__(self, backbone: Any = None, mean: Optional[Tuple[float, float, float]] = None,
                 std: Optional[Tuple[float, float, float]] = None, clip_scale: float = 100.0, context: float = 0.1,
                 fill: str = "mean", confidence: str = "probability", batch_size: int = 32) -> None:
        if confidence not in ("probability", "probability_x_proposal"):
            raise ValueError(f"masked_crop: confidence must be 'probability' or 'probability_x_proposal', "
                             f"got {confidence!r}")
        if fill not in self.FILLS:
            raise ValueError(f"masked_crop: fill must be one of {self.FILLS}, got {fill!r}")
        if context < 0:
            raise ValueError(f"masked_crop: context must be >= 0, got {context}")
        self.backbone = backbone
        self.mean = None if mean is None else tuple(float(m) for m in mean)
        self.std = None if std is None else tuple(float(s) for s in std)
        self.clip_scale = float(clip_scale)
        self.context = float(context)
        self.fill = fill
        self.confidence = confidence
        self.batch_size = max(1, int(batch_size))

    def crops(self, image: np.ndarray, detections: Detections, size: Tuple[int, int]) -> torch.Tensor:
        """uint8 ``(H, W, 3)`` image + detections -> normalised crops ``[N, 3, *size]``."""
        h, w = image.shape[:2]
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        out = []
        for box, mask in zip(detections.xyxy, detections.mask):
            x1, y1, x2, y2 = (float(v) for v in box)
            dx, dy = self.context * (x2 - x1), self.context * (y2 - y1)
            c0, r0 = max(0, int(np.floor(x1 - dx))), max(0, int(np.floor(y1 - dy)))
            c1, r1 = min(w, int(np.ceil(x2 + dx))), min(h, int(np.ceil(y2 + dy)))
            crop = torch.from_numpy(np.ascontiguousarray(image[r0:r1, c0:c1])).permute(2, 0, 1).float()
            if self.fill == "mean":
                inside = torch.from_numpy(np.ascontiguousarray(mask[r0:r1, c0:c1]))
                crop = torch.where(inside, crop, mean)
            crop = F.interpolate(crop[None], size=size, mode="bilinear", align_corners=False)[0]
            out.append((crop - mean) / std)
        return torch.stack(out)

    @torch.no_grad()
    def embed(self, crops: torch.Tensor) -> torch.Tensor:
        """Normalised crops ``[N, 3, S, S]`` -> L2-normalised CLIP image embeddings ``[N, D]``."""
        return torch.cat([self.backbone.encode_image(crops[i:i + self.batch_size])
                          for i in range(0, len(crops), self.batch_size)])

    def __call__(self, detections: Detections, context: Any, vocabulary: Any,
                 result: Optional[Any] = None) -> Detections:
        if self.backbone is None or self.mean is None or self.std is None:
            raise ValueError("masked_crop needs CLIP's backbone and normalisation: build it through a Detector "
                             "(it passes its segmenter's), or give backbone=, mean=, std=")
        if detections.mask is None:
            raise ValueError("masked_crop crops masks; these detections are boxes only")
        vocab = vocabulary.vocabulary
        n, height, width = detections.mask.shape
        proposal = np.asarray(detections.confidence, np.float32)
        if n == 0:
            return Detections(detections.xyxy, detections.mask, detections.confidence, detections.class_id, [],
                              data={**detections.data, "proposal_score": proposal,
                                    "class_probability": np.zeros(0, np.float32)})
        image = context.uint8_at((height, width)).permute(1, 2, 0).cpu().numpy()
        size = self.backbone.visual.image_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        emb = self.embed(self.crops(image, detections, size))
        text = vocabulary.text.to(emb.device, torch.float32)
        probs = torch.softmax(self.clip_scale * emb @ text.T, dim=1)
        probs = synonym_max(probs.T, vocabulary.query_to_class.to(emb.device), vocab.num_classes).T
        confidence, class_id = probs.max(dim=1)
        area = detections.mask.reshape(n, -1).sum(1)
        keep = (area > 0) & ~((class_id.cpu().numpy() == 0) & vocab.has_background)
        class_id, probability = class_id.cpu().numpy(), confidence.cpu().numpy().astype(np.float32)
        confidence = probability * proposal if self.confidence == "probability_x_proposal" else probability
        scored = Detections(xyxy=detections.xyxy, mask=detections.mask, confidence=confidence.astype(np.float32),
                            class_id=class_id.astype(np.int64), class_name=[vocab.class_names[i] for i in class_id],
                            data={**detections.data, "proposal_score": proposal, "class_probability": probability})
        return scored[keep]

    def __repr__(self) -> str:
        return f"MaskedCrop(clip_scale={self.clip_scale}, context={self.context}, fill={self.fill!r})"
