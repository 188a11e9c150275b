"""The typed values that flow between stages and out of the public API.

* :class:`DenseFeatures`: what a head returns (torch, on the device);
* :class:`ImageContext`: everything known about one image after the head (the seam every
  later stage reads), and :class:`ContextBand`, a band of its rows at the output size;
* :class:`EncodedVocabulary`: a vocabulary with its text embeddings, passed per call;
* :class:`SegmentationResult` and :class:`Detections`: numpy-first results.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .ops.bilinear import resize_rows
from .ops.windows import Box, stitch
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


@dataclass
class ImageContext:
    """Everything known about one image once its windows went through the head: the seam
    between the head and every later stage (refiners, decoder rules, proposal sources,
    region scorers). It does not depend on the vocabulary, so one context serves any
    number of vocabularies.

    Coordinates: the *model canvas* is the resized image the windows tile
    (``resized_size``); the *output* is the input size (``original_size``) or the canvas
    (``resolution="model"``). Window-level tensors go onto the canvas with :meth:`canvas`;
    :meth:`band` cuts rows of the output (with a halo) for stages that work band by band.

    Attributes:
        features: ``[n_windows, D, h, w]`` L2-normalised patch features (float32) on the head's grid.
        boxes: window boxes ``(y1, y2, x1, x2)`` on the canvas.
        pad: ``(left, right, top, bottom)`` zero padding applied to every window.
        stretch_pad: the output of a padded window is resized over the unpadded window instead
            of having its padding cut (``windows.pad_mode="end"``, CLIP-DINOiser).
        resized_size: the canvas size (the model's resolution).
        original_size: the input image's size (results are returned at this size by default).
        whole: one whole-image pass: canvas maps stay on their own grid and go from there
            straight to the output size (the references' ``forward_feature(img, ori_shape)``).
        guide: ``[3, H', W']`` normalised canvas image (PAMR's guide).
        extras: the head's per-window extras (``DenseFeatures.extras``).
        aux: window-scope providers' per-window outputs ``[n_windows, C, h, w]``, by name.
        image_level: image-scope providers' outputs ``[1, C, h, w]`` covering the whole
            image, by name, filled on first use by :meth:`feature_map` (shared by every stage).
        image: the uint8 RGB input ``(H, W, 3)`` (kept whenever the image was loaded here).
        resized_image: the uint8 canvas image ``[3, H', W']`` (torch, on the device).
        path: the source file, when there is one.
        timings: milliseconds per stage so far.
    """

    features: torch.Tensor
    boxes: List[Box]
    pad: Tuple[int, int, int, int]
    resized_size: Tuple[int, int]
    original_size: Tuple[int, int]
    whole: bool
    guide: torch.Tensor
    stretch_pad: bool = False
    extras: Dict[str, torch.Tensor] = field(default_factory=dict)
    aux: Dict[str, torch.Tensor] = field(default_factory=dict)
    image_level: Dict[str, torch.Tensor] = field(default_factory=dict)
    image: Optional[np.ndarray] = None
    resized_image: Optional[torch.Tensor] = None
    path: Optional[str] = None
    timings: Dict[str, float] = field(default_factory=dict)
    #: image-scope providers that may still be run on demand (set by the segmenter)
    providers: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    #: ``(context, text [Q, D]) -> [n_windows, Q, h, w]`` for heads that score windows
    #: themselves (CASS); None: cosines of :attr:`features` and the text
    window_scorer: Optional[Callable[["ImageContext", torch.Tensor], torch.Tensor]] = field(
        default=None, repr=False, compare=False)
    #: the segmenter's window rules (:class:`~ovdense.rules.base.WindowRule`), applied by
    #: :meth:`vocabulary_logits` so that stages without the segmenter (region scorers) see the
    #: same logits as its decoder
    window_rules: Tuple[Any, ...] = field(default=(), repr=False, compare=False)
    _canvases: Dict[str, torch.Tensor] = field(default_factory=dict, repr=False, compare=False)
    _shared: Dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def window_size(self) -> Tuple[int, int]:
        """Pixel size of every window as the backbone sees it (padding included)."""
        y1, y2, x1, x2 = self.boxes[0]
        left, right, top, bottom = self.pad
        return (y2 - y1 + top + bottom, x2 - x1 + left + right)

    @property
    def device(self) -> torch.device:
        return self.features.device

    # ------------------------------------------------------------------ canvas
    def to_canvas(self, windows: torch.Tensor) -> torch.Tensor:
        """Window-level maps ``[n_windows, C, h, w]`` -> ``[C, H', W']`` on the canvas: each
        window resized bilinearly to its pixel size, its padding cut, overlaps averaged (as
        mmseg stitches logits). A whole-image pass keeps the map on its own grid ``[C, h, w]``."""
        if self.whole:
            return windows[0]
        y1, y2, x1, x2 = self.boxes[0]
        left, _, top, _ = self.pad
        if self.stretch_pad:  # the padded window's output over the unpadded window (CLIP-DINOiser)
            win = F.interpolate(windows.float(), size=(y2 - y1, x2 - x1), mode="bilinear", align_corners=False)
            return stitch(win, self.boxes, self.resized_size)
        win = F.interpolate(windows.float(), size=self.window_size, mode="bilinear", align_corners=False)
        if any(self.pad):
            win = win[:, :, top:top + y2 - y1, left:left + x2 - x1]
        return stitch(win, self.boxes, self.resized_size)

    def canvas_logits(self, text: torch.Tensor, rules: Sequence[Any] = (), vocabulary: Any = None) -> torch.Tensor:
        """Logits ``[Q, H', W']`` of the text rows ``[Q, D]`` on the canvas: the cosines with
        the features, or the head's own window scores (:attr:`window_scorer`). ``rules``: the
        decoder's window rules (:class:`~ovdense.rules.base.WindowRule`), run on the window
        scores before they are stitched, with the ``vocabulary`` (an EncodedVocabulary)."""
        text = text.to(self.device, torch.float32)
        if self.window_scorer is not None:
            scores = self.window_scorer(self, text)
        else:
            scores = torch.einsum("ndhw,qd->nqhw", self.features, text)
        for rule in rules:
            scores = rule(scores, self, vocabulary)
        return self.to_canvas(scores)

    def vocabulary_logits(self, vocabulary: Any) -> torch.Tensor:
        """Logits ``[Q, H', W']`` of an EncodedVocabulary on the canvas, with the window rules the
        segmenter's decoder runs (:attr:`window_rules`): what its label maps are decoded from."""
        rules = tuple(self.window_rules)
        return self.canvas_logits(vocabulary.text, rules=rules, vocabulary=vocabulary if rules else None)

    def map_names(self) -> List[str]:
        """Names :meth:`canvas` accepts: the head's extras, window- and image-scope providers."""
        return sorted(set(self.extras) | set(self.aux) | set(self.image_level) | set(self.providers))

    def feature_map(self, name: str) -> torch.Tensor:
        """The output ``[1, C, h, w]`` of image-scope provider ``name``, run once on the uint8
        input image and cached here (every later stage shares it)."""
        if name not in self.image_level:
            if name not in self.providers:
                raise KeyError(f"no map {name!r} in this context (it has {self.map_names()}): a window-scope "
                               f"provider runs only when a stage requires it or encode_image(requires=[...]) "
                               f"asks for it")
            if self.image is None:
                raise ValueError(f"provider {name!r} runs on the uint8 image, which this context does not hold")
            provider = self.providers[name]
            if hasattr(provider, "context_map"):  # providers that share a per-image value (SAM)
                self.image_level[name] = provider.context_map(self, name).float()
            else:
                raw = torch.from_numpy(np.ascontiguousarray(self.image)).permute(2, 0, 1)[None]
                with torch.no_grad():
                    self.image_level[name] = provider(raw.to(self.device)).float()
        return self.image_level[name]

    def shared(self, key: Any, compute: Callable[[], Any]) -> Any:
        """A per-image value computed once by ``compute()`` and kept under ``key`` (e.g. SAM's
        image embedding, or its automatic masks): every stage that asks again gets the same
        object. Values are not copied: treat them as read-only."""
        if key not in self._shared:
            self._shared[key] = compute()
        return self._shared[key]

    def canvas(self, name: str) -> torch.Tensor:
        """Map ``name`` in the canvas frame, computed once and cached: a head extra or a
        window-scope provider's output stitched as :meth:`to_canvas` does (``[C, H', W']``;
        its own grid for a whole-image pass), or an image-scope provider's output ``[C, h, w]``
        (which covers the whole image at its own resolution). Any of them covers the image
        exactly, so :meth:`band` resizes it to output rows the same way."""
        if name not in self._canvases:
            sources = [s for s in (self.extras, self.aux) if name in s]
            if len(sources) > 1:
                raise KeyError(f"{name!r} is both a head extra and a provider output: rename one")
            if sources:
                self._canvases[name] = self.to_canvas(sources[0][name])
            else:
                self._canvases[name] = self.feature_map(name)[0]
        return self._canvases[name]

    # ------------------------------------------------------------------ bands
    def output_size(self, resolution: str = "input") -> Tuple[int, int]:
        if resolution not in ("input", "model"):
            raise ValueError(f"resolution must be 'input' or 'model', got {resolution!r}")
        return tuple(self.original_size if resolution == "input" else self.resized_size)

    def band(self, rows: Tuple[int, int], size: Tuple[int, int], halo: int = 0) -> "ContextBand":
        """Output rows ``rows = (r0, r1)`` of an output of ``size`` with ``halo`` rows of
        context on each side (clipped at the image's edges)."""
        r0, r1 = rows
        height = int(size[0])
        return ContextBand(self, (max(0, r0 - halo), min(height, r1 + halo)), (int(size[0]), int(size[1])))

    def uint8_at(self, size: Tuple[int, int]) -> torch.Tensor:
        """The uint8 image ``[3, H, W]`` at ``size`` (the input or the canvas; others are resized)."""
        size = (int(size[0]), int(size[1]))
        if self.image is not None and size == tuple(self.original_size):
            return torch.from_numpy(np.ascontiguousarray(self.image)).permute(2, 0, 1)
        if self.resized_image is not None and size == tuple(self.resized_size):
            return self.resized_image
        key = f"uint8@{size}"
        if key not in self._canvases:
            source = self.image if self.image is not None else (
                None if self.resized_image is None else self.resized_image.permute(1, 2, 0).cpu().numpy())
            if source is None:
                raise ValueError("this context holds no uint8 image")
            import cv2

            resized = cv2.resize(np.ascontiguousarray(source), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
            self._canvases[key] = torch.from_numpy(resized).permute(2, 0, 1)
        return self._canvases[key]


#: The name the context had before it was the seam of every stage (kept for callers).
ImageFeatures = ImageContext


@dataclass
class ContextBand:
    """Rows ``rows = (a0, a1)`` (halo included) of an :class:`ImageContext` at the output
    ``size``: what a refiner or a decoder rule gets. Everything is computed on first use
    and cached, so a stage pays only for what it reads.

    A bare guide tensor ``[3, h, w]`` becomes a guide-only band with :meth:`coerce`
    (refiners may be called as ``refiner(logits, guide)`` outside a segmenter).
    """

    context: Optional[ImageContext]
    rows: Tuple[int, int]
    size: Tuple[int, int]
    _cache: Dict[str, torch.Tensor] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def coerce(cls, band: Any) -> "ContextBand":
        if isinstance(band, ContextBand):
            return band
        if isinstance(band, torch.Tensor) and band.ndim == 3:
            made = cls(None, (0, int(band.shape[-2])), (int(band.shape[-2]), int(band.shape[-1])))
            made._cache["guide"] = band
            return made
        raise TypeError(f"expected a ContextBand or a [3, H, W] guide tensor, got {type(band).__name__}")

    @property
    def height(self) -> int:
        return self.rows[1] - self.rows[0]

    @property
    def width(self) -> int:
        return self.size[1]

    def _need_context(self, what: str) -> ImageContext:
        if self.context is None:
            raise ValueError(f"this band carries only a guide image; {what} needs the image's context "
                             f"(run the stage through a segmenter, or pass ImageContext.band(...))")
        return self.context

    @property
    def guide(self) -> torch.Tensor:
        """``[3, h, W]`` normalised image rows (the canvas guide resized to the output)."""
        if "guide" not in self._cache:
            self._cache["guide"] = resize_rows(self._need_context("the guide").guide, self.size, *self.rows)
        return self._cache["guide"]

    @property
    def image(self) -> torch.Tensor:
        """``[3, h, W]`` uint8 image rows at the output size (on the context's device)."""
        if "image" not in self._cache:
            ctx = self._need_context("the uint8 image")
            self._cache["image"] = ctx.uint8_at(self.size)[:, self.rows[0]:self.rows[1]].to(ctx.device)
        return self._cache["image"]

    def map(self, name: str, channels: Optional[slice] = None) -> torch.Tensor:
        """``[C, h, W]`` float32 rows of :meth:`ImageContext.canvas` ``name`` (a head extra or a
        provider output) resized bilinearly to the output. ``channels`` (a slice) resizes only
        those channels and is not cached: a stage that reads a wide map (768 DINO channels) at
        full resolution streams it in chunks instead of holding ``C x h x W`` floats."""
        if channels is not None:
            canvas = self._need_context(f"map {name!r}").canvas(name)
            return resize_rows(canvas[channels].float(), self.size, *self.rows)
        key = f"map:{name}"
        if key not in self._cache:
            self._cache[key] = resize_rows(self._need_context(f"map {name!r}").canvas(name).float(), self.size,
                                           *self.rows)
        return self._cache[key]

    def map_channels(self, name: str) -> int:
        """The channel count of map ``name``."""
        return int(self._need_context(f"map {name!r}").canvas(name).shape[0])


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
        mask: ``(N, H, W)`` bool instance masks, or ``None`` for box-only detections.
        confidence: ``(N,)`` float32 scores.
        class_id: ``(N,)`` int64 class indices into the vocabulary; :data:`UNLABELLED` (-1)
            for a class-agnostic proposal that no region scorer has classified yet.
        class_name: ``N`` class names (``""`` for class-agnostic proposals).
        data: extra per-instance arrays with a leading ``N`` dimension (supervision's
            ``data``), e.g. ``data["proposal_score"]`` kept by a region scorer.
    """

    xyxy: np.ndarray
    mask: Optional[np.ndarray]
    confidence: np.ndarray
    class_id: np.ndarray
    class_name: List[str] = field(default_factory=list)
    data: Dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        if self.xyxy.shape != (n, 4):
            raise ValueError(f"xyxy must be (N, 4), got {self.xyxy.shape}")
        if self.mask is not None and (self.mask.ndim != 3 or len(self.mask) != n):
            raise ValueError(f"mask must be (N, H, W) with N = {n} (or None), got {self.mask.shape}")
        if len(self.confidence) != n or len(self.class_id) != n or len(self.class_name) != n:
            raise ValueError("confidence, class_id and class_name need one entry per instance")
        for key, value in self.data.items():
            if len(value) != n:
                raise ValueError(f"data[{key!r}] has {len(value)} entries for {n} instances")

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
        return Detections(xyxy=self.xyxy[index], mask=None if self.mask is None else self.mask[index],
                          confidence=self.confidence[index], class_id=self.class_id[index], class_name=names,
                          data={k: np.asarray(v)[index] for k, v in self.data.items()})

    @classmethod
    def cat(cls, parts: Sequence["Detections"]) -> "Detections":
        """Concatenate detections of the same image, in order (``ValueError`` when the mask
        sizes differ, some have masks and others not, the data keys differ, or ``parts`` is
        empty)."""
        parts = list(parts)
        if not parts:
            raise ValueError("Detections.cat needs at least one Detections")
        with_mask = {p.mask is not None for p in parts}
        if len(with_mask) != 1:
            raise ValueError("Detections.cat: some parts have masks and others do not")
        if with_mask == {True}:
            sizes = {p.mask.shape[1:] for p in parts}
            if len(sizes) != 1:
                raise ValueError(f"Detections.cat: masks of different sizes {sorted(sizes)}")
        keys = {frozenset(p.data) for p in parts}
        if len(keys) != 1:
            raise ValueError("Detections.cat: the parts carry different data keys")
        return cls(xyxy=np.concatenate([p.xyxy for p in parts]),
                   mask=np.concatenate([p.mask for p in parts]) if with_mask == {True} else None,
                   confidence=np.concatenate([p.confidence for p in parts]),
                   class_id=np.concatenate([p.class_id for p in parts]),
                   class_name=[n for p in parts for n in p.class_name],
                   data={k: np.concatenate([np.asarray(p.data[k]) for p in parts]) for k in parts[0].data})

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

    @classmethod
    def from_masks(cls, masks: np.ndarray, confidence: Optional[np.ndarray] = None,
                   class_id: Optional[np.ndarray] = None, class_names: Optional[Sequence[str]] = None,
                   **data: np.ndarray) -> "Detections":
        """Detections of boolean masks ``(N, H, W)``, with the tight boxes that bound them.

        Without ``class_id`` the detections are class-agnostic (:data:`UNLABELLED`); names
        come from ``class_names[class_id]``. Empty masks get a zero box.
        """
        from .ops.masks import masks_to_boxes

        masks = np.asarray(masks, dtype=bool)
        n = len(masks)
        boxes = masks_to_boxes(masks)
        ids = np.full(n, UNLABELLED, np.int64) if class_id is None else np.asarray(class_id, np.int64)
        conf = np.ones(n, np.float32) if confidence is None else np.asarray(confidence, np.float32)
        names = [class_names[i] if class_names is not None and 0 <= i < len(class_names) else "" for i in ids]
        return cls(xyxy=boxes, mask=masks, confidence=conf, class_id=ids, class_name=names, data=dict(data))

    def with_nms(self, threshold: float = 0.5, class_agnostic: bool = False) -> "Detections":
        """Greedy non-maximum suppression, best confidence first: a detection is dropped when
        its IoU with a kept one of the same class (any class with ``class_agnostic``) exceeds
        ``threshold``. IoU of masks when there are masks (exact pixel counts), else of boxes.
        The kept detections come in decreasing confidence."""
        from .ops.masks import greedy_nms, mask_iou_matrix

        if len(self) == 0:
            return self
        if self.mask is not None:
            iou = mask_iou_matrix(self.mask)
        else:
            from torchvision.ops import box_iou

            boxes = torch.from_numpy(np.asarray(self.xyxy, np.float64))
            iou = box_iou(boxes, boxes).numpy()
        keep = greedy_nms(iou, self.confidence, float(threshold), None if class_agnostic else self.class_id)
        return self[keep]

    def to_supervision(self) -> Any:
        """A ``supervision.Detections`` with the same boxes, masks, confidences and class ids;
        ``data["class_name"]`` holds the names (supervision's convention) and every entry of
        :attr:`data` is passed on. Needs the optional ``supervision`` package."""
        try:
            import supervision as sv
        except ImportError as err:
            raise ImportError("to_supervision needs the supervision package: pip install 'ovdense[supervision]'") \
                from err
        data = {k: np.asarray(v) for k, v in self.data.items()}
        data["class_name"] = np.asarray(self.class_name, dtype=object).astype(str) if len(self) else \
            np.zeros((0,), dtype=str)
        return sv.Detections(xyxy=np.asarray(self.xyxy, np.float32), mask=self.mask,
                             confidence=np.asarray(self.confidence, np.float32),
                             class_id=np.asarray(self.class_id, np.int64), data=data)

    @classmethod
    def from_supervision(cls, detections: Any) -> "Detections":
        """The inverse of :meth:`to_supervision` (names from ``data["class_name"]``, else ``""``)."""
        n = len(detections.xyxy)
        data = {k: np.asarray(v) for k, v in dict(detections.data).items() if k != "class_name"}
        names = [str(x) for x in detections.data["class_name"]] if "class_name" in detections.data else [""] * n
        conf = np.ones(n, np.float32) if detections.confidence is None else detections.confidence
        ids = np.full(n, UNLABELLED, np.int64) if detections.class_id is None else detections.class_id
        return cls(xyxy=np.asarray(detections.xyxy, np.float32), mask=detections.mask,
                   confidence=np.asarray(conf, np.float32), class_id=np.asarray(ids, np.int64), class_name=names,
                   data=data)

    def to_json(self) -> Dict[str, Any]:
        """A JSON-ready dict: per detection its class id and name, confidence, ``xyxy`` box,
        the mask as COCO RLE (``{"size": [H, W], "counts": str}``; absent for box-only
        detections) and its scalar ``data`` entries."""
        from .ops.masks import encode_mask

        items = []
        for i in range(len(self)):
            item = {"class_id": int(self.class_id[i]), "class_name": str(self.class_name[i]),
                    "confidence": float(self.confidence[i]), "xyxy": [float(c) for c in self.xyxy[i]]}
            if self.mask is not None:
                item["area"] = int(self.mask[i].sum())
                item["segmentation"] = encode_mask(self.mask[i])
            for key, value in self.data.items():
                v = np.asarray(value)[i]
                if np.ndim(v) == 0:
                    item[key] = v.item() if hasattr(v, "item") else v
            items.append(item)
        out: Dict[str, Any] = {"detections": items}
        if self.mask is not None:
            out["size"] = [int(self.mask.shape[1]), int(self.mask.shape[2])]
        return out

    def to_vision_msgs(self, header: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """A plain dict laid out as ROS 2 ``vision_msgs/msg/Detection2DArray`` (no ROS needed).

        ``header`` is passed through (``{}`` when ``None``). Each detection has ``bbox``
        (a ``BoundingBox2D``: centre ``position`` x/y and ``theta`` 0, ``size_x`` = width,
        ``size_y`` = height, in pixels), one ``results`` hypothesis (``class_id`` = the class
        *name*, ``""`` for a class-agnostic proposal; ``score`` = confidence) and ``id`` = its
        index as a string. Values are plain Python floats and strings (``json.dumps`` works)::

            msg = Detection2DArray(header=...)
            for d in dets.to_vision_msgs()["detections"]:  # fill the message field by field
                ...
        """
        detections = []
        for i in range(len(self)):
            x1, y1, x2, y2 = (float(c) for c in self.xyxy[i])
            detections.append({
                "bbox": {"center": {"position": {"x": (x1 + x2) / 2.0, "y": (y1 + y2) / 2.0}, "theta": 0.0},
                         "size_x": x2 - x1, "size_y": y2 - y1},
                "results": [{"hypothesis": {"class_id": str(self.class_name[i]),
                                            "score": float(self.confidence[i])}}],
                "id": str(i),
            })
        return {"header": {} if header is None else header, "detections": detections}

    def label_image(self, height: int, width: int) -> np.ndarray:
        """``(height, width)`` int32 instance image: pixel = instance index + 1, 0 = no
        instance; later instances are drawn over earlier ones (``ValueError`` without masks
        or when the masks are another size)."""
        if self.mask is None:
            raise ValueError("label_image needs detections with masks (these are box-only)")
        if tuple(self.mask.shape[1:]) != (int(height), int(width)):
            raise ValueError(f"the masks are {self.mask.shape[1]}x{self.mask.shape[2]}, "
                             f"not {int(height)}x{int(width)}")
        out = np.zeros((int(height), int(width)), dtype=np.int32)
        for i, m in enumerate(self.mask):
            out[np.asarray(m, dtype=bool)] = i + 1
        return out
