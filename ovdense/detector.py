"""Instances and boxes for any class names: a segmenter, a proposal source and a region scorer.

    image -> OVSegmenter.encode_image -> ImageContext
          -> [OVSegmenter.predict -> SegmentationResult]     only if a stage reads it
          -> proposal source (PROPOSALS)  -> Detections (classified or class-agnostic)
          -> region scorer (SCORERS)      -> Detections (classified, background dropped)

The COCO evaluator and ``ovdense detect``-style tools call :meth:`Detector.detect`; a new
proposal source or scorer is one file plus its registration.
"""
from __future__ import annotations

import inspect
from typing import Any, Mapping, Optional, Tuple, Union

import numpy as np

from .io.images import ImageInput
from .predictor import OVSegmenter
from .registry import PROPOSALS, SCORERS, build, get
from .structures import Detections, EncodedVocabulary, ImageContext, SegmentationResult


class Detector:
    """Open-vocabulary instances of one image at a time.

    Args:
        segmenter: the :class:`~ovdense.predictor.OVSegmenter` whose features, vocabulary and
            decoder the stages use.
        proposals: a proposal source: name, ``dict(type=name, **kwargs)`` of ``PROPOSALS``, or
            a built one (default: connected components of the semantic label map).
        scorer: a region scorer (``SCORERS``: ``"mask_pooling"``) or None. Needed when the
            proposals are class-agnostic; ``logit_scale`` defaults to the segmenter's decoder.
        min_confidence: drop detections whose confidence is lower.
        nms_threshold: greedy mask NMS after scoring (IoU above it suppresses the lower-scored
            detection; masks, else boxes); None: none.
        class_agnostic_nms: NMS across classes (default: within each class).
        max_detections: keep at most this many, best confidence first (None: all).

    Example::

        det = ovdense.Detector(seg, proposals=dict(type="connected_components", min_area=50))
        dets = det.detect("street.jpg", vocabulary=["car", "person"])   # Detections
    """

    def __init__(self, segmenter: OVSegmenter, proposals: Union[str, Mapping[str, Any], Any] = "connected_components",
                 scorer: Union[str, Mapping[str, Any], Any, None] = None, min_confidence: float = 0.0,
                 nms_threshold: Optional[float] = None, class_agnostic_nms: bool = False,
                 max_detections: Optional[int] = None) -> None:
        self.segmenter = segmenter
        self.source = build(PROPOSALS, proposals)
        self.scorer = None if scorer is None else build(SCORERS, scorer, **self._scorer_defaults(scorer))
        self.min_confidence = float(min_confidence)
        if nms_threshold is not None and not 0.0 <= float(nms_threshold) <= 1.0:
            raise ValueError(f"nms_threshold must be in [0, 1] (or None), got {nms_threshold}")
        if max_detections is not None and int(max_detections) < 1:
            raise ValueError(f"max_detections must be >= 1 (or None), got {max_detections}")
        self.nms_threshold = None if nms_threshold is None else float(nms_threshold)
        self.class_agnostic_nms = bool(class_agnostic_nms)
        self.max_detections = None if max_detections is None else int(max_detections)
        known = set(segmenter.features) | set(getattr(segmenter.head, "extras", ()))
        missing = [n for n in self.requires if n not in known]
        if missing:
            raise ValueError(f"the detector's stages read {missing}, which the segmenter neither computes "
                             f"(features=...) nor gets from its head")

    @classmethod
    def from_config(cls, config: Any, classes: Any = None, background: Any = None,
                    segmenter: Optional[OVSegmenter] = None, **overrides: Any) -> "Detector":
        """A detector from a config's ``detector`` section (``proposals``, ``scorer``,
        ``min_confidence``, ``nms_threshold``, ``class_agnostic_nms``, ``max_detections``)
        around the config's segmenter (or ``segmenter``); ``overrides`` replace section keys::

            det = Detector.from_config("configs/sam/sam_detect_tiny_synthetic.py", classes=["cat", "dog"])
        """
        from .config import load_config

        cfg = load_config(config)
        if segmenter is None:
            segmenter = OVSegmenter.from_config(cfg, classes=classes, background=background)
        section = dict(cfg.get("detector") or {})
        section = {k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in section.items()}
        section.update(overrides)
        params = set(inspect.signature(cls.__init__).parameters) - {"self", "segmenter"}
        unknown = sorted(set(section) - params)
        if unknown:
            raise KeyError(f"unknown keys in config section 'detector': {unknown}; it takes {sorted(params)}")
        return cls(segmenter, **section)

    def _scorer_defaults(self, spec: Any) -> dict:
        name = spec if isinstance(spec, str) else (spec.get("type") if isinstance(spec, Mapping) else None)
        if name is None:
            return {}
        params = inspect.signature(get(SCORERS, name)).parameters
        seg = self.segmenter
        offered = {"logit_scale": seg.decoder.logit_scale, "backbone": seg.backbone,
                   "mean": getattr(seg.preprocessor, "mean", None), "std": getattr(seg.preprocessor, "std", None)}
        return {k: v for k, v in offered.items() if k in params and v is not None}

    @property
    def requires(self) -> Tuple[str, ...]:
        stages = [self.source] + ([self.scorer] if self.scorer is not None else [])
        return tuple(sorted({n for s in stages for n in getattr(s, "requires", ())}))

    @property
    def needs_result(self) -> bool:
        return bool(getattr(self.source, "needs_result", False) or getattr(self.scorer, "needs_result", False))

    def detect(self, image: Union[ImageInput, ImageContext],
               vocabulary: Union[EncodedVocabulary, Any, None] = None, *, return_result: bool = False,
               bgr: bool = False) -> Union[Detections, Tuple[Detections, Optional[SegmentationResult]]]:
        """Detections of ``image`` (a path, PIL image, uint8 RGB array or an ImageContext) for
        ``vocabulary`` (default: the segmenter's classes).

        ``return_result=True`` returns ``(detections, result)`` with the semantic result
        (computed, with scores, even when no stage reads it).
        """
        seg = self.segmenter
        encoded = seg.resolve_vocabulary(vocabulary)
        if isinstance(image, ImageContext):
            context = image
        else:
            window = [n for n in self.requires if n in seg.features]
            context = seg.encode_image(image, bgr=bgr, requires=window)
        result = None
        if self.needs_result or return_result:
            result = seg.predict(context, vocabulary=encoded, return_scores=True)
        dets = self.source(context, encoded, result)
        if self.scorer is not None:
            dets = self.scorer(dets, context, encoded, result)
        elif len(dets) and (np.asarray(dets.class_id) < 0).any():
            raise ValueError(f"{type(self.source).__name__} gives class-agnostic proposals: give the Detector a "
                             f"scorer (e.g. scorer='mask_pooling')")
        if self.min_confidence > 0:
            dets = dets[dets.confidence >= self.min_confidence]
        if self.nms_threshold is not None:
            dets = dets.with_nms(self.nms_threshold, class_agnostic=self.class_agnostic_nms)
        if self.max_detections is not None and len(dets) > self.max_detections:
            dets = dets[np.argsort(-dets.confidence, kind="stable")[:self.max_detections]]
        return (dets, result) if return_result else dets

    __call__ = detect

    def __repr__(self) -> str:
        scorer = type(self.scorer).__name__ if self.scorer else None
        return (f"Detector(proposals={type(self.source).__name__}, scorer={scorer}, "
                f"min_confidence={self.min_confidence}, nms_threshold={self.nms_threshold}, "
                f"max_detections={self.max_detections})")
