"""The typed values that flow between stages and out of the public API.

* :class:`DenseFeatures`: what a head returns (torch, on the device);
* :class:`EncodedVocabulary`: a vocabulary with its text embeddings, passed per call;
* :class:`SegmentationResult` and :class:`Detections`: numpy-first results.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .text.vocabulary import Vocabulary

#: Label of a pixel that no class claims: below ``background_threshold`` (or removed by the
#: area rule) when the vocabulary has no background class. Never a valid class index.
UNLABELLED = -1


@dataclass
class DenseFeatures:
    """A head's output for a batch of windows.

    Attributes:
        features: ``[B, D, h, w]`` float32 patch features, projected into the text space
            and L2-normalised, on the head's own grid ``(h, w)``.
        extras: optional per-window tensors with a leading batch dimension (for example a
            background map ``[B, 1, h, w]`` or region tokens), indexed along with ``features``.
    """

    features: torch.Tensor
    extras: Dict[str, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def from_tokens(cls, tokens: torch.Tensor, grid: Tuple[int, int], **extras: torch.Tensor) -> "DenseFeatures":
        """Projected patch tokens ``[B, h*w, D]`` -> normalised ``[B, D, h, w]`` float32."""
        feats = F.normalize(tokens.float(), dim=-1)
        feats = feats.reshape(feats.shape[0], grid[0], grid[1], -1).permute(0, 3, 1, 2)
        return cls(feats, dict(extras))

    @property
    def grid(self) -> Tuple[int, int]:
        return int(self.features.shape[-2]), int(self.features.shape[-1])

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def __getitem__(self, index) -> "DenseFeatures":
        if isinstance(index, int):
            index = slice(index, index + 1)
        return DenseFeatures(self.features[index], {k: v[index] for k, v in self.extras.items()})

    @classmethod
    def cat(cls, parts: List["DenseFeatures"]) -> "DenseFeatures":
        """Concatenate along the batch dimension (extras must match in keys)."""
        keys = set(parts[0].extras)
        if any(set(p.extras) != keys for p in parts):
            raise ValueError("DenseFeatures.cat: the parts carry different extras")
        return cls(torch.cat([p.features for p in parts]),
                    {k: torch.cat([p.extras[k] for p in parts]) for k in keys})


@dataclass(frozen=True)
class EncodedVocabulary:
    """A vocabulary with its text embeddings: an immutable value, safe to share across threads.

    Made by :meth:`OVSegmenter.encode_vocabulary`; pass it per call
    (``predict(image, vocabulary=enc)``) to segment with it whatever the segmenter's default.

    Attributes:
        vocabulary: the classes, their queries (synonyms) and whether class 0 is background.
        text: ``[Q, D]`` float32 L2-normalised embeddings, one row per query.
    """

    vocabulary: Vocabulary
    text: torch.Tensor
    query_to_class: torch.Tensor = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.text.ndim != 2 or self.text.shape[0] != self.vocabulary.num_queries:
            raise ValueError(f"text embeddings must be [{self.vocabulary.num_queries}, D], "
                             f"got {tuple(self.text.shape)}")
        # class index of every query, on the embeddings' device (made once, used per image)
        object.__setattr__(self, "query_to_class",
                           torch.tensor(self.vocabulary.query_to_class, device=self.text.device))

    @property
    def class_names(self) -> Tuple[str, ...]:
        return self.vocabulary.class_names

    @property
    def has_background(self) -> bool:
        return self.vocabulary.has_background

    def to(self, device: torch.device) -> "EncodedVocabulary":
        return self if self.text.device == device else EncodedVocabulary(self.vocabulary, self.text.to(device))

    def save(self, path: str) -> None:
        """Write to a ``.pt`` file (classes, synonyms, background flag, embeddings)."""
        v = self.vocabulary
        torch.save({"synonyms": [list(g) for g in v.synonyms], "has_background": v.has_background,
                    "text": self.text.detach().cpu()}, path)

    @classmethod
    def load(cls, path: str) -> "EncodedVocabulary":
        data = torch.load(path, map_location="cpu", weights_only=True)
        return cls(Vocabulary.from_synonyms(data["synonyms"], data["has_background"]), data["text"])


@dataclass
class SegmentationResult:
    """Semantic segmentation of one image.

    Attributes:
        label_map: ``(H, W)`` int64 class index per pixel, at the input image's size (or the
            model's resolution when asked). :data:`UNLABELLED` (-1) marks pixels no class
            claims; it occurs only when the vocabulary has no background class.
        class_names: name of each class index.
        has_background: class 0 is a background class (then it is "no object", and
            low-confidence pixels get class 0 rather than :data:`UNLABELLED`).
        scores: optional ``(C, H, W)`` float32 class probabilities (after the synonym max
            and the area rule), present when ``return_scores=True``.
        path: source file, when the image came from one.
        timings: milliseconds per stage (``load``, ``features``, ``logits``, ``refine``, ``decode``).
    """

    label_map: np.ndarray
    class_names: List[str]
    has_background: bool = False
    scores: Optional[np.ndarray] = None
    path: Optional[str] = None
    timings: Dict[str, float] = field(default_factory=dict)

    @property
    def image_size(self) -> Tuple[int, int]:
        return int(self.label_map.shape[0]), int(self.label_map.shape[1])

    def class_areas(self) -> Dict[str, int]:
        """Pixel count of each class present in the label map (unlabelled pixels not counted)."""
        labels = self.label_map.ravel()
        counts = np.bincount(labels[labels >= 0], minlength=len(self.class_names))
        return {self.class_names[i]: int(c) for i, c in enumerate(counts) if c}

    @property
    def unlabelled_pixels(self) -> int:
        return int((self.label_map == UNLABELLED).sum())

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready summary (no arrays)."""
        return {"path": self.path, "height": self.image_size[0], "width": self.image_size[1],
                "class_names": list(self.class_names), "has_background": self.has_background,
                "class_areas": self.class_areas(), "unlabelled_pixels": self.unlabelled_pixels,
                "timings_ms": {k: round(v, 3) for k, v in self.timings.items()}}

    def plot(self, image: Any = None, *, alpha: Optional[float] = None, contours: bool = True,
             legend: bool = True, unlabelled: str = "clear") -> np.ndarray:
        """The prediction drawn as an RGB picture: class colours, contours and a legend.

        Args:
            image: the RGB input (``(H, W, 3)`` uint8 array, PIL image or path); resized to the
                label map when sizes differ (``resolution="model"``). ``None``: the image at
                :attr:`path` when there is one, else a blank canvas.
            alpha: colour opacity (0.5 over an image by default).
            contours: draw each class's border.
            legend: append a legend (swatch, name, area %) of the classes present, by area.
            unlabelled: ``"clear"`` or ``"hatch"`` for :data:`UNLABELLED` pixels.

        Returns:
            ``(H, W', 3)`` uint8 RGB (the legend panel widens it). Background (class 0 when
            :attr:`has_background`) and unlabelled pixels are left clear.
        """
        from ovdense.viz.draw import draw_overlay

        return draw_overlay(self._plot_image(image), self.label_map, self.class_names,
                            has_background=self.has_background, alpha=alpha, contours=contours,
                            legend=legend, unlabelled=unlabelled)

    def _plot_image(self, image: Any) -> Optional[np.ndarray]:
        from ovdense.io.images import load_image

        if image is None:
            if not self.path:
                return None
            try:
                image = load_image(self.path)
            except (OSError, ValueError):
                return None
        elif not isinstance(image, np.ndarray) or image.dtype != np.uint8:
            image = load_image(image)
        h, w = self.image_size
        if image.shape[:2] != (h, w):
            import cv2

            image = cv2.resize(np.ascontiguousarray(image), (w, h), interpolation=cv2.INTER_AREA)
        return image

    def save(self, path: str, image: Any = None, *, labels: bool = False, **plot_options: Any) -> str:
        """Write the result to ``path``; what is written follows the extension.

        * ``.png``, ``.jpg``, ``.jpeg``, ``.webp``: the :meth:`plot` picture (``image`` and
          ``plot_options`` as there);
        * ``.png`` with ``labels=True``: the label map as a palette PNG of class indices
          (unlabelled = 255; 16-bit grey above 255 classes);
        * ``.npy``: the raw ``int64`` label map.

        Returns ``path``. The file is written atomically; folders are made.
        """
        import os

        ext = os.path.splitext(str(path))[1].lower()
        if ext == ".npy":
            from ovdense.io.writers import atomic_path

            with atomic_path(str(path)) as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, np.asarray(self.label_map, dtype=np.int64))
            return str(path)
        if labels:
            if ext != ".png":
                raise ValueError(f"labels=True writes a PNG, not {ext!r}")
            from ovdense.io.writers import write_label_png

            write_label_png(str(path), np.where(self.label_map < 0, 255, self.label_map), len(self.class_names))
            return str(path)
        if ext not in (".png", ".jpg", ".jpeg", ".webp"):
            raise ValueError(f"cannot tell what to write from the extension {ext!r}: use .png, .jpg, .webp "
                             "(picture), .png with labels=True (label map) or .npy (array)")
        from ovdense.viz.draw import save_image

        return save_image(path, self.plot(image, **plot_options))


@dataclass
class Detections:
    """Instances of one image, numpy-first, with ``supervision.Detections`` field names.

    Attributes:
        xyxy: ``(N, 4)`` float32 boxes ``x1, y1, x2, y2`` in pixels (``x2 = x1 + width``).
        mask: ``(N, H, W)`` bool instance masks.
        confidence: ``(N,)`` float32 scores.
        class_id: ``(N,)`` int64 class indices into the vocabulary.
        class_name: ``N`` class names.
    """

    xyxy: np.ndarray
    mask: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    class_name: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        if self.xyxy.shape != (n, 4) or self.mask.ndim != 3 or len(self.mask) != n:
            raise ValueError("xyxy must be (N, 4) and mask (N, H, W)")
        if len(self.confidence) != n or len(self.class_id) != n or len(self.class_name) != n:
            raise ValueError("confidence, class_id and class_name need one entry per instance")

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index) -> "Detections":
        """A subset, as ``supervision.Detections`` indexes: an int, a slice, an index array or
        a boolean array of length ``N`` (e.g. ``dets[dets.confidence > 0.5]``). Always
        returns ``Detections`` (an int gives one instance)."""
        if isinstance(index, (int, np.integer)):
            if not -len(self) <= index < len(self):
                raise IndexError(f"instance {index} out of range for {len(self)} detections")
            index = [int(index) % len(self)]
        if not isinstance(index, slice):
            index = np.asarray(index)
            if index.dtype == np.bool_:
                if index.shape != (len(self),):
                    raise IndexError(f"boolean index of shape {index.shape} for {len(self)} detections")
                index = np.flatnonzero(index)
            elif index.size == 0:
                index = index.astype(np.int64)
            elif not np.issubdtype(index.dtype, np.integer):
                raise IndexError(f"detections are indexed by int, slice, int array or bool array, not {index.dtype}")
        names = np.asarray(self.class_name, dtype=object)[index].tolist()
        return Detections(xyxy=self.xyxy[index], mask=self.mask[index], confidence=self.confidence[index],
                          class_id=self.class_id[index], class_name=names)

    @classmethod
    def cat(cls, parts: Sequence["Detections"]) -> "Detections":
        """Concatenate detections of the same image size, in order (``ValueError`` when the
        mask sizes differ or ``parts`` is empty)."""
        parts = list(parts)
        if not parts:
            raise ValueError("Detections.cat needs at least one Detections")
        sizes = {p.mask.shape[1:] for p in parts}
        if len(sizes) != 1:
            raise ValueError(f"Detections.cat: masks of different sizes {sorted(sizes)}")
        return cls(xyxy=np.concatenate([p.xyxy for p in parts]), mask=np.concatenate([p.mask for p in parts]),
                   confidence=np.concatenate([p.confidence for p in parts]),
                   class_id=np.concatenate([p.class_id for p in parts]),
                   class_name=[n for p in parts for n in p.class_name])

    @classmethod
    def empty(cls, height: int, width: int) -> "Detections":
        """No instances, with correctly shaped empty arrays."""
        return cls(
            xyxy=np.zeros((0, 4), dtype=np.float32),
            mask=np.zeros((0, height, width), dtype=bool),
            confidence=np.zeros((0,), dtype=np.float32),
            class_id=np.zeros((0,), dtype=np.int64),
            class_name=[],
        )
