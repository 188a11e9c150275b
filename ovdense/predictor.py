"""The open-vocabulary segmenter: windows, dense features, logits, refinement, decoding.

Data flows one way (design.md): an image is resized and normalised once, its windows run
through the CLIP prefix and the head in batches, and the normalised dense features are
kept in an :class:`ImageFeatures`; a vocabulary turns them into logits without touching
the backbone again.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from .backbones.clip import CLIPBackbone
from .heads import Head, build_head
from .io.images import ImageInput, load_image
from .postprocess import decode
from .refine.pamr import pamr
from .text import TextEmbedder, Vocabulary, build_vocabulary, default_cache_dir, resolve_templates
from .types import SegmentationResult
from .windows import Box, centred_padding, crop_windows, stitch, window_boxes

#: CLIP's normalisation on 0-255 RGB, as in the reference methods' data preprocessors.
CLIP_MEAN = (122.771, 116.746, 104.094)
CLIP_STD = (68.501, 66.632, 70.323)

_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
           "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


def resolve_device(device: Union[str, torch.device, None]) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: Union[str, torch.dtype, None], device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use fp32, fp16, bf16 or auto") from None


def rescale_size(height: int, width: int, scale: Tuple[int, int]) -> Tuple[int, int]:
    """mmcv ``imrescale`` size: factor ``min(max(scale)/long, min(scale)/short)``, rounded half up."""
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


@dataclass
class ImageFeatures:
    """Dense features of one image, ready for any vocabulary.

    Attributes:
        features: ``[n_windows, D, h, w]`` L2-normalised patch features (float32).
        boxes: window boxes ``(y1, y2, x1, x2)`` in the resized image.
        pad: ``(left, right, top, bottom)`` zero padding applied to every window.
        resized_size: size of the resized image the windows tile.
        original_size: size of the input image; logits are returned at this size.
        whole: True for a single whole-image pass (logits go from the patch grid straight
            to ``original_size``, as the references' ``forward_feature(img, ori_shape)``).
        guide: ``[3, H', W']`` normalised resized image (PAMR's guide).
        image: the uint8 RGB input, when it was loaded here.
    """

    features: torch.Tensor
    boxes: List[Box]
    pad: Tuple[int, int, int, int]
    resized_size: Tuple[int, int]
    original_size: Tuple[int, int]
    whole: bool
    guide: torch.Tensor
    image: Optional[np.ndarray] = None
    path: Optional[str] = None
    timings: Dict[str, float] = field(default_factory=dict)

    @property
    def window_size(self) -> Tuple[int, int]:
        """Pixel size of every window as the backbone sees it (padding included)."""
        y1, y2, x1, x2 = self.boxes[0]
        left, right, top, bottom = self.pad
        return (y2 - y1 + top + bottom, x2 - x1 + left + right)


class OVSegmenter:
    """Open-vocabulary semantic segmentation with a training-free CLIP head.

    Build once, set the classes once, predict many times::

        seg = OVSegmenter(clip_model="ViT-B-16", pretrained="openai", head="naclip",
                          short_side=336, slide_crop=224, slide_stride=112, pamr_steps=10)
        seg.set_classes("configs/names/cls_voc21.txt", background="first")
        res = seg.predict("image.jpg")          # SegmentationResult(label_map, class_names, ...)

    Args:
        clip_model: open_clip model name, model-config ``.json`` path, or None for a local
            OpenAI-format file (see :meth:`CLIPBackbone.load`).
        pretrained: open_clip tag, local checkpoint path, or None (random weights).
        head: head name (``ovdense.list_heads()``), ``dict(type=name, **kwargs)`` or a Head.
        backbone: an already built :class:`CLIPBackbone` (then clip_model/pretrained are unused);
            it is moved to ``device``/``dtype`` in place, so segmenters sharing it share those.
        weights_format: ``"auto"``, ``"openai"`` or ``"open_clip"`` for local checkpoints.
        pos_interp: ``"scale_factor"`` (SCLIP/NACLIP/ClearCLIP call) or ``"size"`` (MaskCLIP);
            a given ``backbone`` keeps its own.
        short_side: resize so the short side is this long (mmcv ``Resize(scale=(2048, S),
            keep_ratio=True)``); None keeps the input size. ``image_scale`` gives the full
            mmcv ``(long, short)`` pair instead (e.g. ``(520, 520)``: long side 520).
        slide_crop, slide_stride: sliding window in pixels of the resized image; a crop of 0
            runs one pass over the whole image.
        pad_to: zero-pad each window, centred, to a multiple of this (ClearCLIP: the patch
            size; 0 = none, the patch embedding floors leftover pixels as SCLIP/NACLIP).
        logit_scale: temperature of the softmax over queries.
        background_threshold: pixels whose max class probability is below it get class 0.
        area_threshold: SCLIP's area rule (None = off).
        renormalize: divide probabilities by their sum after the synonym max (NACLIP).
        pamr_steps, pamr_dilations: PAMR refinement of the logits (0 = off).
        templates: ``"openai80"``, ``"simple"``, ``"none"`` or a list of patterns.
        text_cache_dir: disk cache of text embeddings (default ``~/.cache/ovdense``; ``""``
            keeps it in memory only).
        batch_size: windows per forward pass (windows of several images share batches).
        compile: wrap the backbone-and-head forward in ``torch.compile`` (True, or a
            torch.compile backend name such as ``"inductor"``); shapes vary with image sizes,
            so it is meant for fixed-size windows on GPU (on the 2-core development CPU the
            inductor build of the ViT-B/16 forward was about 20% slower than eager, after a
            36 s compile).
        mean, std: normalisation on 0-255 RGB (CLIP's by default).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda:0"``...
        dtype: ``"fp32"``, ``"fp16"``, ``"bf16"`` or ``"auto"`` (fp16 on CUDA); softmaxes,
            logits and PAMR always run in fp32.
    """

    def __init__(
        self,
        clip_model: Optional[str] = "ViT-B-16",
        pretrained: Optional[str] = "openai",
        head: Union[str, Mapping[str, Any], Head] = "sclip",
        *,
        backbone: Optional[CLIPBackbone] = None,
        weights_format: str = "auto",
        pos_interp: str = "scale_factor",
        short_side: Optional[int] = 336,
        image_scale: Optional[Tuple[int, int]] = None,
        slide_crop: int = 224,
        slide_stride: int = 112,
        pad_to: int = 0,
        logit_scale: float = 40.0,
        background_threshold: float = 0.0,
        area_threshold: Optional[float] = None,
        renormalize: bool = False,
        pamr_steps: int = 0,
        pamr_dilations: Sequence[int] = (8, 16),
        templates: Union[str, Sequence[str], None] = "openai80",
        text_cache_dir: Optional[str] = None,
        batch_size: int = 16,
        compile: Union[bool, str] = False,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
        device: Union[str, torch.device, None] = "auto",
        dtype: Union[str, torch.dtype, None] = "fp32",
    ) -> None:
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        if backbone is None:
            backbone = CLIPBackbone.load(clip_model, pretrained, weights_format=weights_format,
                                         pos_interp=pos_interp, device=self.device, dtype=self.dtype)
        else:
            backbone = backbone.to(device=self.device, dtype=self.dtype)
        self.backbone = backbone
        self.head: Head = build_head(head).to(self.device).eval()
        if short_side is not None and image_scale is not None:
            raise ValueError("give short_side or image_scale, not both")
        self.image_scale: Optional[Tuple[int, int]] = (
            tuple(image_scale) if image_scale is not None else (None if short_side is None else (2048, int(short_side)))
        )
        if slide_crop < 0 or (slide_crop > 0 and slide_stride <= 0):
            raise ValueError("slide_crop must be >= 0 and slide_stride > 0")
        self.slide_crop = int(slide_crop)
        self.slide_stride = int(slide_stride)
        self.pad_to = int(pad_to)
        self.logit_scale = float(logit_scale)
        self.background_threshold = float(background_threshold)
        self.area_threshold = None if area_threshold is None else float(area_threshold)
        self.renormalize = bool(renormalize)
        self.pamr_steps = int(pamr_steps)
        self.pamr_dilations = tuple(int(d) for d in pamr_dilations)
        self.batch_size = max(1, int(batch_size))
        self._mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(3, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32, device=self.device).view(3, 1, 1)
        cache = default_cache_dir() if text_cache_dir is None else text_cache_dir
        self.text = TextEmbedder(backbone, resolve_templates(templates), cache_dir=cache or None)
        self.vocabulary: Optional[Vocabulary] = None
        self._text_features: Optional[torch.Tensor] = None
        self._query_to_class: Optional[torch.Tensor] = None
        self._lock = threading.RLock()
        self._forward = self._tokens
        if compile:
            backend = compile if isinstance(compile, str) else "inductor"
            self._forward = torch.compile(self._tokens, backend=backend, dynamic=None)
        self.config: Optional[Dict[str, Any]] = None  # filled by from_config

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, config: Union[str, os.PathLike, Mapping[str, Any]], **overrides: Any) -> "OVSegmenter":
        """Build from an mmengine config file (or dict) and set its classes; see :mod:`ovdense.config`."""
        from .config import segmenter_from_config

        return segmenter_from_config(config, **overrides)

    # ------------------------------------------------------------------ vocabulary
    def set_classes(
        self,
        classes: Union[str, os.PathLike, Sequence[Union[str, Sequence[str]]], Vocabulary],
        background: Optional[Union[str, Sequence[str]]] = None,
        embeddings: Optional[Union[torch.Tensor, np.ndarray]] = None,
    ) -> Vocabulary:
        """Set the vocabulary; returns it.

        Args:
            classes: a name file (one class per line, synonyms separated by ``", "`` or
                ``"; "``), a list of names / synonym strings / synonym lists, or a Vocabulary.
            background: a background line to prepend as class 0, or ``"first"`` when the
                first line of ``classes`` already is the background.
            embeddings: optional precomputed ``[Q, D]`` text embeddings, one row per query
                (per class when there are no synonyms); skips the text encoder.
        """
        vocab = classes if isinstance(classes, Vocabulary) else build_vocabulary(classes, background)
        if embeddings is not None:
            emb = torch.as_tensor(np.asarray(embeddings) if not isinstance(embeddings, torch.Tensor) else embeddings)
            if emb.ndim != 2 or emb.shape[0] != vocab.num_queries:
                raise ValueError(f"embeddings must be [{vocab.num_queries}, D] (one row per query), got {tuple(emb.shape)}")
            if emb.shape[1] != self.backbone.embed_dim:
                raise ValueError(f"embedding width {emb.shape[1]} does not match the model's {self.backbone.embed_dim}")
            text = F.normalize(emb.float(), dim=-1)
        else:
            text = self.text(vocab.queries)
        with self._lock:
            self.vocabulary = vocab
            self._text_features = text.to(self.device)
            self._query_to_class = torch.tensor(vocab.query_to_class, device=self.device)
        return vocab

    @property
    def class_names(self) -> List[str]:
        return list(self.vocabulary.class_names) if self.vocabulary else []

    # ------------------------------------------------------------------ image side
    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """uint8 RGB ``(H, W, 3)`` -> resized, normalised ``[3, H', W']`` float32 on the device."""
        import cv2

        h, w = image.shape[:2]
        if self.image_scale is not None:
            nh, nw = rescale_size(h, w, self.image_scale)
            if (nh, nw) != (h, w):
                image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
        x = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1).float()
        return (x - self._mean) / self._std

    def _tokens(self, crops: torch.Tensor) -> torch.Tensor:
        """Projected patch tokens ``[B, h*w, D]`` of normalised crops (backbone prefix + head)."""
        view = self.backbone.prefix(crops)
        return self.backbone.project(self.head(view, self.backbone)[:, 1:])

    @staticmethod
    def _feature_map(tokens: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
        feats = F.normalize(tokens.float(), dim=-1)
        return feats.reshape(feats.shape[0], grid[0], grid[1], -1).permute(0, 3, 1, 2)

    @torch.no_grad()
    def dense_features(self, crops: torch.Tensor) -> torch.Tensor:
        """L2-normalised dense features ``[B, D, h, w]`` (float32) of normalised crops ``[B, 3, H, W]``."""
        crops = crops.to(self.device)
        return self._feature_map(self._forward(crops), self.backbone.grid_for(tuple(crops.shape[-2:])))

    @torch.no_grad()
    def dense_features_per_head(self, crops: torch.Tensor, heads: Mapping[str, Head]) -> Dict[str, torch.Tensor]:
        """Dense features of several heads; the CLIP prefix (all blocks but the last) runs once."""
        view = self.backbone.prefix(crops.to(self.device))
        return {name: self._feature_map(self.backbone.project(head(view, self.backbone)[:, 1:]), view.grid)
                for name, head in heads.items()}

    def _windows(self, size: Tuple[int, int]) -> Tuple[List[Box], Tuple[int, int, int, int], bool]:
        whole = self.slide_crop <= 0
        boxes = window_boxes(size[0], size[1], self.slide_crop, self.slide_stride)
        y1, y2, x1, x2 = boxes[0]
        pad = (0, 0, 0, 0) if whole else centred_padding(y2 - y1, x2 - x1, self.pad_to)
        return boxes, pad, whole

    @torch.no_grad()
    def encode_images(self, images: Sequence[ImageInput], bgr: bool = False) -> List[ImageFeatures]:
        """Dense features of several images; their windows share forward batches."""
        loaded = []
        for image in images:
            t0 = time.perf_counter()
            path = os.fspath(image) if isinstance(image, (str, os.PathLike)) else None
            rgb = load_image(image, bgr=bgr)
            guide = self.preprocess(rgb)
            loaded.append((guide, rgb, path, (time.perf_counter() - t0) * 1e3))
        feats = self.encode_normalized([g for g, *_ in loaded], [r.shape[:2] for _, r, *_ in loaded])
        for f, (_, rgb, path, load_ms) in zip(feats, loaded):
            f.image, f.path = rgb, path
            f.timings["load"] = load_ms
        return feats

    @torch.no_grad()
    def encode_normalized(self, images: Sequence[torch.Tensor],
                          original_sizes: Optional[Sequence[Tuple[int, int]]] = None,
                          heads: Optional[Mapping[str, Head]] = None):
        """Dense features of already resized and normalised images ``[3, H, W]``.

        ``original_sizes`` are the sizes the logits are returned at (default: the input size).
        With ``heads`` (name -> Head) every image gives a dict name -> ImageFeatures, the
        CLIP prefix shared by the heads.
        """
        if original_sizes is None:
            original_sizes = [tuple(x.shape[-2:]) for x in images]
        plans = []
        for x in images:
            x = x.to(self.device, torch.float32)
            boxes, pad, whole = self._windows(tuple(x.shape[-2:]))
            plans.append((x, boxes, pad, whole, crop_windows(x, boxes, pad)))

        # windows of equal shape from all images run together, `batch_size` at a time
        names = list(heads) if heads is not None else [None]
        outputs = [{name: [] for name in names} for _ in plans]
        groups: Dict[tuple, List[Tuple[int, int]]] = {}
        for i, plan in enumerate(plans):
            for j in range(plan[4].shape[0]):
                groups.setdefault(tuple(plan[4].shape[1:]), []).append((i, j))
        t0 = time.perf_counter()
        for members in groups.values():
            for start in range(0, len(members), self.batch_size):
                chunk = members[start:start + self.batch_size]
                batch = torch.stack([plans[i][4][j] for i, j in chunk])
                per_head = ({None: self.dense_features(batch)} if heads is None
                            else self.dense_features_per_head(batch, heads))
                for name, feats in per_head.items():
                    for (i, _), feat in zip(chunk, feats):
                        outputs[i][name].append(feat)
        self._sync()
        per_image_ms = (time.perf_counter() - t0) * 1e3 / max(len(plans), 1)
        results = []
        for (x, boxes, pad, whole, _), feats, size in zip(plans, outputs, original_sizes):
            made = {name: ImageFeatures(features=torch.stack(f), boxes=boxes, pad=pad, resized_size=tuple(x.shape[-2:]),
                                        original_size=(int(size[0]), int(size[1])), whole=whole, guide=x,
                                        timings={"features": per_image_ms})
                    for name, f in feats.items()}
            results.append(made[None] if heads is None else made)
        return results

    @torch.no_grad()
    def predict_heads(self, image: ImageInput, heads: Sequence[Union[str, Mapping[str, Any], Head]],
                      return_scores: bool = False, bgr: bool = False) -> Dict[str, SegmentationResult]:
        """Segment one image with several heads under this segmenter's protocol.

        The image is loaded, resized and windowed once and the CLIP prefix runs once per
        window batch; only the last block differs per head. Keys are the head names (or
        ``head0``, ``head1``... for Head instances).
        """
        built = {}
        for i, spec in enumerate(heads):
            name = spec if isinstance(spec, str) else (spec.get("type") if isinstance(spec, Mapping) else f"head{i}")
            built[name] = build_head(spec).to(self.device).eval()
        rgb = load_image(image, bgr=bgr)
        per_head = self.encode_normalized([self.preprocess(rgb)], [rgb.shape[:2]], heads=built)[0]
        path = os.fspath(image) if isinstance(image, (str, os.PathLike)) else None
        out = {}
        for name, feats in per_head.items():
            feats.image, feats.path = rgb, path
            out[name] = self._predict_one(feats, return_scores)
        return out

    def encode_image(self, image: ImageInput, bgr: bool = False) -> ImageFeatures:
        """Dense features of one image (reusable with any vocabulary)."""
        return self.encode_images([image], bgr=bgr)[0]

    # ------------------------------------------------------------------ logits
    def _require_vocabulary(self) -> Tuple[torch.Tensor, torch.Tensor, Vocabulary]:
        if self.vocabulary is None or self._text_features is None:
            raise RuntimeError("no classes set: call set_classes(...) before predicting")
        return self._text_features, self._query_to_class, self.vocabulary

    @torch.no_grad()
    def query_logits(self, feats: ImageFeatures, text: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Cosine logits ``[Q, H, W]`` at the original image size, stitched over windows."""
        if text is None:
            text = self._require_vocabulary()[0]
        text = text.to(self.device, torch.float32)
        win = torch.einsum("ndhw,qd->nqhw", feats.features, text)
        if feats.whole:
            return F.interpolate(win, size=feats.original_size, mode="bilinear", align_corners=False)[0]
        y1, y2, x1, x2 = feats.boxes[0]
        l, _, t, _ = feats.pad
        win = F.interpolate(win, size=feats.window_size, mode="bilinear", align_corners=False)
        if any(feats.pad):
            win = win[:, :, t:t + y2 - y1, l:l + x2 - x1]
        stitched = stitch(win, feats.boxes, feats.resized_size)
        if tuple(feats.resized_size) == tuple(feats.original_size):
            return stitched
        return F.interpolate(stitched[None], size=feats.original_size, mode="bilinear", align_corners=False)[0]

    def refine(self, logits: torch.Tensor, feats: ImageFeatures) -> torch.Tensor:
        """PAMR on the query logits with the normalised image (resized to the output) as guide."""
        if self.pamr_steps <= 0:
            return logits
        guide = F.interpolate(feats.guide[None], size=logits.shape[-2:], mode="bilinear", align_corners=False)
        return pamr(guide, logits[None], self.pamr_steps, self.pamr_dilations)[0]

    # ------------------------------------------------------------------ prediction
    @torch.no_grad()
    def predict(
        self,
        image: Union[ImageInput, ImageFeatures, Sequence[Union[ImageInput, ImageFeatures]]],
        return_scores: bool = False,
        bgr: bool = False,
    ) -> Union[SegmentationResult, List[SegmentationResult]]:
        """Segment an image (path, PIL image, ``HxWx3`` uint8 RGB array, or ImageFeatures).

        A list gives a list; the windows of all its images are batched together.
        """
        if isinstance(image, (list, tuple)):
            pending = [i for i, img in enumerate(image) if not isinstance(img, ImageFeatures)]
            encoded = dict(zip(pending, self.encode_images([image[i] for i in pending], bgr=bgr)))
            feats = [encoded.get(i, img) for i, img in enumerate(image)]
            return [self._predict_one(f, return_scores) for f in feats]
        feats = image if isinstance(image, ImageFeatures) else self.encode_image(image, bgr=bgr)
        return self._predict_one(feats, return_scores)

    def _predict_one(self, feats: ImageFeatures, return_scores: bool) -> SegmentationResult:
        with self._lock:
            text, q2c, vocab = self._require_vocabulary()
            timings = dict(feats.timings)
            t0 = time.perf_counter()
            logits = self.query_logits(feats, text)
            t1 = time.perf_counter()
            logits = self.refine(logits, feats)
            t2 = time.perf_counter()
            probs, labels = decode(logits, q2c, vocab.num_classes, self.logit_scale, self.background_threshold,
                                   self.area_threshold, self.renormalize)
            label_map = labels.cpu().numpy().astype(np.int64)
            scores = probs.cpu().numpy().astype(np.float32) if return_scores else None
            t3 = time.perf_counter()
        timings.update(logits=(t1 - t0) * 1e3, refine=(t2 - t1) * 1e3, decode=(t3 - t2) * 1e3)
        return SegmentationResult(label_map=label_map, class_names=list(vocab.class_names), scores=scores,
                                  path=feats.path, timings=timings)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __repr__(self) -> str:
        return (f"OVSegmenter(backbone={self.backbone!r}, head={type(self.head).__name__}, scale={self.image_scale}, "
                f"crop={self.slide_crop}, stride={self.slide_stride}, logit_scale={self.logit_scale}, "
                f"pamr_steps={self.pamr_steps}, device={self.device}, dtype={self.dtype})")
