"""SAM's automatic masks, equal to ``SamAutomaticMaskGenerator`` and faster.

``AutomaticMaskGenerator(sam, **knobs).generate(image)`` gives the masks, scores, boxes and
order of ``segment_anything.SamAutomaticMaskGenerator(sam, **knobs).generate(image)`` (SAM's
own knob names and defaults); :meth:`SamMasks.records` gives its list of dicts. The model
calls are SAM's own, made exactly as ``SamPredictor`` makes them (the same prompt batches of
``points_per_batch``); the work after the mask decoder is reorganised:

* masks are filtered by predicted IoU **before** upscaling (the official code upscales every
  mask to full resolution first);
* stability scores, boxes and areas come from full-resolution logits computed a chunk of
  ``masks_per_chunk`` masks at a time and dropped at once (by default as many masks as keep
  each full-resolution tensor under :data:`CHUNK_BYTES`: small allocations are reused by the
  allocator, big ones cost page faults every time); only the survivors are kept, as
  low-resolution logits or packed bits (whichever is smaller), and the final masks are
  rebuilt from them (the same upscaling again: identical values);
* the first bilinear step of ``Sam.postprocess_masks`` computes only the rows and columns that
  the crop to the input size keeps (the same values: same scale, no clamping inside);
* no per-mask Python loops and no run-length encoding unless a record format asks for it
  (``records(output_mode="uncompressed_rle" | "coco_rle")``).

Everything that decides which masks survive is SAM's own code (``segment_anything.utils.amg``:
``calculate_stability_score``, ``is_box_near_crop_edge``, ``generate_crop_boxes``,
``remove_small_regions``; torchvision's ``batched_nms``) called on the same values in the same
order, so ties break the same way; boxes are ``batched_mask_to_box``'s integer arithmetic on a
row count (which also gives the area) and a column "any" (:func:`mask_boxes`).

Peak memory, beyond the model's own decoder activations for ``points_per_batch`` prompts:

* one chunk at full resolution: ``masks_per_chunk x (Hc' x Wc' + 2 x Hc x Wc) x 4`` bytes
  (``Hc x Wc`` the crop, ``Hc' x Wc'`` its size inside the encoder input, at most ``img_size``
  squared; the second ``Hc x Wc`` is the cropped copy ``postprocess_masks`` makes too) plus
  ``masks_per_chunk x Hc x Wc`` bytes of booleans: about 4 x :data:`CHUNK_BYTES` by default;
* the survivors of the filters: ``min(Hc x Wc / 8, 4 x L^2)`` bytes each (``L`` = 256 for the
  released SAMs: 256 KiB of low-res logits, or the packed mask when that is smaller);
* the result's masks ``N x H x W`` booleans, only when :attr:`SamMasks.masks` is read
  (``max_masks`` caps ``N``; :meth:`SamMasks.iter_masks` streams them instead).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .predict import SamImageEmbedding, embed_image

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")
#: Default size of the biggest full-resolution tensor of a chunk (``masks_per_chunk=None``).
CHUNK_BYTES = 24 << 20


@dataclass(frozen=True)
class AutomaticMaskSettings:
    """``SamAutomaticMaskGenerator``'s knobs (same names, defaults and meaning) and ours.

    Ours: ``max_masks`` keeps the first ``max_masks`` masks of SAM's order (None: all, as
    SAM); ``masks_per_chunk`` masks are upscaled to full resolution at once (memory and speed,
    not results; None: as many as keep a chunk's biggest tensor under :data:`CHUNK_BYTES`).
    """

    points_per_side: Optional[int] = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    point_grids: Optional[Sequence[np.ndarray]] = None
    min_mask_region_area: int = 0
    output_mode: str = "binary_mask"
    max_masks: Optional[int] = None
    masks_per_chunk: Optional[int] = None
    grids: Tuple[np.ndarray, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from segment_anything.utils.amg import build_all_layer_point_grids

        if (self.points_per_side is None) == (self.point_grids is None):
            raise ValueError("SAM automatic masks: give exactly one of points_per_side or point_grids")
        if self.points_per_side is not None:
            if int(self.points_per_side) < 1:
                raise ValueError(f"points_per_side must be >= 1, got {self.points_per_side}")
            grids = build_all_layer_point_grids(int(self.points_per_side), int(self.crop_n_layers),
                                                int(self.crop_n_points_downscale_factor))
        else:
            grids = [np.asarray(g) for g in self.point_grids]
            if len(grids) < int(self.crop_n_layers) + 1:
                raise ValueError(f"point_grids: one grid per crop layer needed ({int(self.crop_n_layers) + 1}), "
                                 f"got {len(grids)}")
            if any(g.ndim != 2 or g.shape[1] != 2 for g in grids):
                raise ValueError("point_grids: each grid is an (N, 2) array of x, y in [0, 1]")
        object.__setattr__(self, "grids", tuple(grids))
        if self.output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode must be one of {list(OUTPUT_MODES)}, got {self.output_mode!r}")
        if self.output_mode == "coco_rle":
            from pycocotools import mask as _  # noqa: F401  (as SAM: fail early)
        if int(self.points_per_batch) < 1 or (self.masks_per_chunk is not None and int(self.masks_per_chunk) < 1):
            raise ValueError("points_per_batch and masks_per_chunk must be >= 1")
        if int(self.crop_n_layers) < 0 or int(self.min_mask_region_area) < 0:
            raise ValueError("crop_n_layers and min_mask_region_area must be >= 0")
        if self.max_masks is not None and int(self.max_masks) < 0:
            raise ValueError(f"max_masks must be >= 0 or None, got {self.max_masks}")

    def key(self) -> tuple:
        """What decides the masks (a cache key): every knob but ``output_mode`` and ``masks_per_chunk``."""
        grids = tuple((g.shape, np.ascontiguousarray(g, dtype=np.float64).tobytes()) for g in self.grids)
        return (int(self.points_per_batch), float(self.pred_iou_thresh), float(self.stability_score_thresh),
                float(self.stability_score_offset), float(self.box_nms_thresh), int(self.crop_n_layers),
                float(self.crop_nms_thresh), float(self.crop_overlap_ratio), int(self.min_mask_region_area),
                None if self.max_masks is None else int(self.max_masks), grids)

    def sam_kwargs(self) -> Dict[str, Any]:
        """The knobs as ``SamAutomaticMaskGenerator`` takes them."""
        names = ("points_per_side", "points_per_batch", "pred_iou_thresh", "stability_score_thresh",
                 "stability_score_offset", "box_nms_thresh", "crop_n_layers", "crop_nms_thresh",
                 "crop_overlap_ratio", "crop_n_points_downscale_factor", "point_grids", "min_mask_region_area",
                 "output_mode")
        return {n: getattr(self, n) for n in names}


# ------------------------------------------------------------------------------ the result
@dataclass
class SamMasks:
    """Automatic masks of one image, in SAM's order (numpy).

    Attributes:
        image_size: ``(H, W)``.
        boxes: ``(N, 4)`` int64 ``x0, y0, x1, y1`` in SAM's convention (``batched_mask_to_box``:
            the last row/column inside the mask, so the width is ``x1 - x0``; ``[0, 0, 0, 0]``
            for an empty mask).
        predicted_iou, stability_score: ``(N,)`` float32.
        point_coords: ``(N, 2)`` float64 x, y of the point prompt (image pixels).
        crop_boxes: ``(N, 4)`` int64 ``x0, y0, x1, y1`` of the crop the mask came from.
        areas: ``(N,)`` int64 pixel counts.
        output_mode: the default format of :meth:`records`.

    :attr:`masks` (``(N, H, W)`` bool) is built on first use and kept; :meth:`iter_masks`
    streams them without keeping them.
    """

    image_size: Tuple[int, int]
    boxes: np.ndarray
    predicted_iou: np.ndarray
    stability_score: np.ndarray
    point_coords: np.ndarray
    crop_boxes: np.ndarray
    areas: np.ndarray
    output_mode: str = "binary_mask"
    _build: Optional[Callable[[np.ndarray], np.ndarray]] = field(default=None, repr=False, compare=False)
    _masks: Optional[np.ndarray] = field(default=None, repr=False, compare=False)
    chunk: int = field(default=16, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.boxes)

    def build_masks(self, index: np.ndarray) -> np.ndarray:
        """Fresh ``(k, H, W)`` bool masks of the given indices."""
        index = np.asarray(index, dtype=np.int64)
        if self._masks is not None:
            return self._masks[index].copy()
        if len(index) == 0 or self._build is None:
            return np.zeros((len(index), *self.image_size), dtype=bool)
        return self._build(index)

    def iter_masks(self, chunk: Optional[int] = None) -> Iterator[Tuple[int, np.ndarray]]:
        """``(start, masks[start:start + k])`` chunk by chunk (fresh arrays, nothing kept)."""
        step = max(1, int(chunk or self.chunk))
        for start in range(0, len(self), step):
            yield start, self.build_masks(np.arange(start, min(len(self), start + step)))

    @property
    def masks(self) -> np.ndarray:
        """``(N, H, W)`` bool, built once (treat as read-only: it may be shared)."""
        if self._masks is None:
            out = np.zeros((len(self), *self.image_size), dtype=bool)
            for start, part in self.iter_masks():
                out[start:start + len(part)] = part
            self._masks = out
        return self._masks

    def records(self, output_mode: Optional[str] = None) -> List[Dict[str, Any]]:
        """``SamAutomaticMaskGenerator.generate``'s list of dicts: ``segmentation`` (a bool
        ``(H, W)`` array, or an RLE dict for ``"uncompressed_rle"`` / ``"coco_rle"``), ``area``,
        ``bbox`` (XYWH), ``predicted_iou``, ``point_coords`` (``[[x, y]]``), ``stability_score``,
        ``crop_box`` (XYWH)."""
        mode = output_mode or self.output_mode
        if mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode must be one of {list(OUTPUT_MODES)}, got {mode!r}")
        if mode == "coco_rle":
            from segment_anything.utils.amg import coco_encode_rle
        out: List[Dict[str, Any]] = []
        for start, part in self.iter_masks():
            for j, mask in enumerate(part):
                i = start + j
                if mode == "binary_mask":
                    seg: Any = mask
                else:
                    seg = mask_to_uncompressed_rle(mask)
                    if mode == "coco_rle":
                        seg = coco_encode_rle(seg)
                out.append({
                    "segmentation": seg,
                    "area": int(self.areas[i]),
                    "bbox": _xywh(self.boxes[i]),
                    "predicted_iou": float(self.predicted_iou[i]),
                    "point_coords": [self.point_coords[i].tolist()],
                    "stability_score": float(self.stability_score[i]),
                    "crop_box": _xywh(self.crop_boxes[i]),
                })
        return out


def _xywh(box: np.ndarray) -> List[Any]:
    x0, y0, x1, y1 = box.tolist()
    return [x0, y0, x1 - x0, y1 - y0]


def mask_to_uncompressed_rle(mask: np.ndarray) -> Dict[str, Any]:
    """SAM's uncompressed RLE of one bool ``(H, W)`` mask (``mask_to_rle_pytorch``'s format:
    column-major runs, starting with a run of zeros)."""
    h, w = mask.shape
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [h * w]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0] + counts
    return {"size": [h, w], "counts": counts}


# ------------------------------------------------------------------------------ helpers
def upscale_logits(sam: torch.nn.Module, embedding: SamImageEmbedding, low_res: torch.Tensor) -> torch.Tensor:
    """Low-res logits ``[N, L, L]`` -> ``[N, H, W]`` at the embedding's original size, equal to
    ``Sam.postprocess_masks``. The first bilinear step (to the encoder's ``img_size``) computes
    only the rows and columns the crop to ``input_size`` keeps: same scale factor, and no kept
    output reads past the cut, so every value is the same."""
    side = int(sam.image_encoder.img_size)
    size = int(low_res.shape[-1])
    ih, iw = embedding.input_size
    x = low_res[:, None]
    if side % size == 0 and low_res.shape[-2] == size:
        f = side // size
        rows, cols = min(size, -(-ih // f) + 1), min(size, -(-iw // f) + 1)
        x = F.interpolate(x[..., :rows, :cols], (rows * f, cols * f), mode="bilinear", align_corners=False)
    else:
        x = F.interpolate(x, (side, side), mode="bilinear", align_corners=False)
    x = x[..., :ih, :iw]
    x = F.interpolate(x, tuple(embedding.original_size), mode="bilinear", align_corners=False)
    return x[:, 0]


def mask_boxes(rows_any: torch.Tensor, cols_any: torch.Tensor) -> torch.Tensor:
    """``batched_mask_to_box`` of masks ``[N, H, W]`` from their ``[N, H]`` row and ``[N, W]``
    column "any" (``torch.max`` of a bool mask along a side is its "any"): the same int64
    ``x0, y0, x1, y1`` (last pixel inside), ``[0, 0, 0, 0]`` for an empty mask."""
    h, w = rows_any.shape[-1], cols_any.shape[-1]
    in_height_coords = rows_any * torch.arange(h, device=rows_any.device)[None, :]
    bottom_edges, _ = torch.max(in_height_coords, dim=-1)
    in_height_coords = in_height_coords + h * (~rows_any)
    top_edges, _ = torch.min(in_height_coords, dim=-1)
    in_width_coords = cols_any * torch.arange(w, device=cols_any.device)[None, :]
    right_edges, _ = torch.max(in_width_coords, dim=-1)
    in_width_coords = in_width_coords + w * (~cols_any)
    left_edges, _ = torch.min(in_width_coords, dim=-1)
    empty_filter = (right_edges < left_edges) | (bottom_edges < top_edges)
    out = torch.stack([left_edges, top_edges, right_edges, bottom_edges], dim=-1)
    return out * (~empty_filter).unsqueeze(-1)


class _Survivors:
    """The masks of one crop that passed every per-mask filter: low-res logits or packed bits
    (whichever is smaller), with their scores, points, boxes and areas."""

    def __init__(self, sam: torch.nn.Module, embedding: SamImageEmbedding, crop_box: List[int]) -> None:
        self.sam, self.embedding, self.crop_box = sam, embedding, list(crop_box)
        self.h, self.w = embedding.original_size
        low_side = 4 * int(embedding.features.shape[-1])  # the decoder's mask grid
        self.packed = self.h * self.w / 8 <= 4 * low_side * low_side
        self.store: List[Any] = []
        self.iou: List[torch.Tensor] = []
        self.stability: List[torch.Tensor] = []
        self.points: List[np.ndarray] = []
        self.boxes: List[torch.Tensor] = []
        self.areas: List[torch.Tensor] = []

    def add(self, low: torch.Tensor, binary: torch.Tensor, iou: torch.Tensor, stability: torch.Tensor,
            points: np.ndarray, boxes: torch.Tensor, areas: torch.Tensor) -> None:
        if self.packed:
            self.store.append(np.packbits(binary.cpu().numpy().reshape(len(binary), -1), axis=1))
        else:
            self.store.append(low.clone())
        self.iou.append(iou)
        self.stability.append(stability)
        self.points.append(points)
        self.boxes.append(boxes)
        self.areas.append(areas)

    def finish(self) -> None:
        if self.packed:
            self.store = np.concatenate(self.store) if self.store else np.zeros((0, 0), np.uint8)
        else:
            self.store = torch.cat(self.store) if self.store else None
        self.iou = torch.cat(self.iou) if self.iou else torch.zeros(0)
        self.stability = torch.cat(self.stability) if self.stability else torch.zeros(0)
        self.points = np.concatenate(self.points) if self.points else np.zeros((0, 2))
        self.boxes = torch.cat(self.boxes) if self.boxes else torch.zeros(0, 4, dtype=torch.int64)
        self.areas = torch.cat(self.areas).cpu().numpy() if self.areas else np.zeros(0, np.int64)

    def masks(self, index: np.ndarray, chunk: int) -> np.ndarray:
        """``(k, Hc, Wc)`` bool masks (crop frame) of survivors ``index``."""
        if self.packed:
            bits = np.unpackbits(self.store[index], axis=1, count=self.h * self.w)
            return bits.view(bool).reshape(len(index), self.h, self.w)
        out = np.empty((len(index), self.h, self.w), dtype=bool)
        threshold = float(self.sam.mask_threshold)
        sel = torch.as_tensor(index, device=self.store.device)
        for s in range(0, len(index), chunk):
            with torch.no_grad():
                logits = upscale_logits(self.sam, self.embedding, self.store[sel[s:s + chunk]])
            out[s:s + chunk] = (logits > threshold).cpu().numpy()
        return out


# ------------------------------------------------------------------------------ the generator
class AutomaticMaskGenerator:
    """SAM's automatic masks: ``SamAutomaticMaskGenerator``'s results, faster.

    Args:
        sam: a segment-anything ``Sam`` (``ovdense.sam.build_sam``).
        settings: an :class:`AutomaticMaskSettings`, or the knobs as keyword arguments (SAM's
            names and defaults: ``points_per_side=32``, ``points_per_batch=64``,
            ``pred_iou_thresh=0.88``, ``stability_score_thresh=0.95``,
            ``stability_score_offset=1.0``, ``box_nms_thresh=0.7``, ``crop_n_layers=0``,
            ``crop_nms_thresh=0.7``, ``crop_overlap_ratio=512/1500``,
            ``crop_n_points_downscale_factor=1``, ``point_grids=None``,
            ``min_mask_region_area=0``, ``output_mode="binary_mask"``; ours: ``max_masks=None``,
            ``masks_per_chunk=None``).

    Example::

        gen = AutomaticMaskGenerator(build_sam("vit_b", "sam_vit_b_01ec64.pth"), points_per_side=16)
        masks = gen.generate(image)           # SamMasks
        records = masks.records()             # == SamAutomaticMaskGenerator(sam, points_per_side=16).generate(image)
    """

    def __init__(self, sam: torch.nn.Module, settings: Optional[AutomaticMaskSettings] = None, **knobs: Any) -> None:
        if settings is not None and knobs:
            raise TypeError("give settings= or knobs, not both")
        self.sam = sam
        self.settings = settings if settings is not None else AutomaticMaskSettings(**knobs)

    @property
    def device(self) -> torch.device:
        return self.sam.pixel_mean.device

    def generate(self, image: np.ndarray, embedding: Optional[SamImageEmbedding] = None) -> SamMasks:
        """The automatic masks of a uint8 RGB ``(H, W, 3)`` image.

        ``embedding``: the image's SAM embedding when already computed (``SamModel.embedding``);
        it serves crop 0 (the whole image). Other crops are embedded here.
        """
        from segment_anything.utils.amg import generate_crop_boxes
        from torchvision.ops.boxes import batched_nms, box_area

        s = self.settings
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"automatic masks need a uint8 RGB image (H, W, 3), got {image.dtype} {image.shape}")
        orig_h, orig_w = int(image.shape[0]), int(image.shape[1])
        if embedding is not None and tuple(embedding.original_size) != (orig_h, orig_w):
            raise ValueError(f"the embedding is of a {embedding.original_size} image, not {(orig_h, orig_w)}")
        crop_boxes, layer_idxs = generate_crop_boxes((orig_h, orig_w), int(s.crop_n_layers), s.crop_overlap_ratio)

        crops: List[_Survivors] = []
        for ci, (crop_box, layer) in enumerate(zip(crop_boxes, layer_idxs)):
            x0, y0, x1, y1 = crop_box
            if ci == 0 and embedding is not None:
                emb = embedding
            else:
                emb = embed_image(self.sam, image[y0:y1, x0:x1, :])
            crops.append(self._process_crop(emb, crop_box, layer, (orig_h, orig_w)))

        # within-crop NMS (SAM: batched_nms on the crop's boxes with predicted IoUs)
        kept = []
        for crop in crops:
            keep = batched_nms(crop.boxes.float(), crop.iou, torch.zeros(len(crop.boxes)),
                               iou_threshold=s.box_nms_thresh)
            kept.append(keep.cpu().numpy())
        origin = np.concatenate([np.full(len(k), ci, np.int64) for ci, k in enumerate(kept)])
        local = np.concatenate(kept).astype(np.int64)
        offsets = np.asarray([[c.crop_box[0], c.crop_box[1]] for c in crops], np.int64)
        boxes = np.concatenate([c.boxes[k].cpu().numpy().reshape(-1, 4) for c, k in zip(crops, kept)])
        boxes = boxes + np.tile(offsets[origin], 2) if len(boxes) else boxes
        points = np.concatenate([c.points[k].reshape(-1, 2) for c, k in zip(crops, kept)]) + offsets[origin]
        iou = np.concatenate([c.iou[k].cpu().numpy() for c, k in zip(crops, kept)])
        stability = np.concatenate([c.stability[k].cpu().numpy() for c, k in zip(crops, kept)])
        areas = np.concatenate([c.areas[k] for c, k in zip(crops, kept)]).astype(np.int64)
        crop_arr = np.asarray(crop_boxes, np.int64)[origin].reshape(-1, 4)

        # across crops (SAM: prefer masks from smaller crops)
        if len(crop_boxes) > 1:
            box_t = torch.as_tensor(boxes, device=self.device)  # where SAM's are (the NMS kernel's device)
            scores = (1 / box_area(torch.as_tensor(crop_arr))).to(box_t.device)
            keep = batched_nms(box_t.float(), scores, torch.zeros(len(boxes)),
                               iou_threshold=s.crop_nms_thresh).cpu().numpy()
            origin, local, boxes, points = origin[keep], local[keep], boxes[keep], points[keep]
            iou, stability, areas, crop_arr = iou[keep], stability[keep], areas[keep], crop_arr[keep]

        chunk = self._chunk(orig_h * orig_w, 0)

        def build(index: np.ndarray, origin=origin, local=local) -> np.ndarray:
            out = np.zeros((len(index), orig_h, orig_w), dtype=bool)
            for ci in np.unique(origin[index]):
                rows = np.flatnonzero(origin[index] == ci)
                x0, y0, x1, y1 = crops[ci].crop_box
                out[rows, y0:y1, x0:x1] = crops[ci].masks(local[index[rows]], chunk)
            return out

        result = SamMasks((orig_h, orig_w), boxes.astype(np.int64).reshape(-1, 4), iou.astype(np.float32),
                          stability.astype(np.float32), points.astype(np.float64).reshape(-1, 2), crop_arr,
                          areas, s.output_mode, build, chunk=chunk)
        if s.min_mask_region_area > 0 and len(result):
            result = self._remove_small_regions(result)
        if s.max_masks is not None and len(result) > int(s.max_masks):
            result = _subset(result, np.arange(int(s.max_masks)))
        return result

    def __call__(self, image: np.ndarray, embedding: Optional[SamImageEmbedding] = None) -> List[Dict[str, Any]]:
        """``generate(image).records()``: ``SamAutomaticMaskGenerator.generate``'s output."""
        return self.generate(image, embedding).records()

    def _chunk(self, pixels: int, step_pixels: int) -> int:
        """Masks per chunk: the knob, else as many as keep ``max(pixels, step_pixels)`` floats
        each under :data:`CHUNK_BYTES` (at least 1)."""
        if self.settings.masks_per_chunk is not None:
            return int(self.settings.masks_per_chunk)
        return int(max(1, min(256, CHUNK_BYTES // (4 * max(1, pixels, step_pixels)))))

    # ------------------------------------------------------------------ one crop
    @torch.no_grad()
    def _process_crop(self, embedding: SamImageEmbedding, crop_box: List[int], layer: int,
                      orig_size: Tuple[int, int]) -> _Survivors:
        from segment_anything.utils.amg import batch_iterator, calculate_stability_score, is_box_near_crop_edge
        from segment_anything.utils.transforms import ResizeLongestSide

        s = self.settings
        sam = self.sam
        threshold = float(sam.mask_threshold)
        transform = ResizeLongestSide(sam.image_encoder.img_size)
        crop_size = tuple(embedding.original_size)
        points_scale = np.array(crop_size)[None, ::-1]
        points_for_image = s.grids[layer] * points_scale
        orig_h, orig_w = orig_size
        out = _Survivors(sam, embedding, crop_box)
        side = int(sam.image_encoder.img_size)
        chunk = self._chunk(crop_size[0] * crop_size[1], side * side)  # the crop; the encoder's square at most
        dense_pe = sam.prompt_encoder.get_dense_pe()
        for (points,) in batch_iterator(int(s.points_per_batch), points_for_image):
            # the model, exactly as SamAutomaticMaskGenerator._process_batch -> SamPredictor.predict_torch
            transformed = transform.apply_coords(points, crop_size)
            in_points = torch.as_tensor(transformed, device=self.device)
            in_labels = torch.ones(in_points.shape[0], dtype=torch.int, device=in_points.device)
            sparse, dense = sam.prompt_encoder(points=(in_points[:, None, :], in_labels[:, None]), boxes=None,
                                               masks=None)
            low_res, iou_preds = sam.mask_decoder(image_embeddings=embedding.features, image_pe=dense_pe,
                                                  sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                                  multimask_output=True)
            per_point = low_res.shape[1]
            low_res, iou_preds = low_res.flatten(0, 1), iou_preds.flatten(0, 1)
            pts = points.repeat(per_point, axis=0)
            # predicted IoU first, on the low-res logits
            if s.pred_iou_thresh > 0.0:
                keep = iou_preds > s.pred_iou_thresh
                idx = torch.nonzero(keep).flatten()
                low_res, iou_preds, pts = low_res[idx], iou_preds[idx], pts[idx.cpu().numpy()]
            for c in range(0, len(low_res), chunk):
                low = low_res[c:c + chunk]
                logits = upscale_logits(sam, embedding, low)
                stability = calculate_stability_score(logits, threshold, s.stability_score_offset)
                iou_c, pts_c = iou_preds[c:c + len(low)], pts[c:c + len(low)]
                if s.stability_score_thresh > 0.0:
                    keep = stability >= s.stability_score_thresh
                    if not bool(keep.all()):
                        logits, low, stability, iou_c = logits[keep], low[keep], stability[keep], iou_c[keep]
                        pts_c = pts_c[keep.cpu().numpy()]
                if len(low) == 0:
                    continue
                binary = logits > threshold
                del logits
                # batched_mask_to_box and the area from one row count and one column "any"
                rows = binary.sum(-1, dtype=torch.int16 if binary.shape[-1] < 32768 else torch.int32)
                boxes = mask_boxes(rows > 0, binary.any(-2))
                areas = rows.sum(-1, dtype=torch.int64)
                keep = ~is_box_near_crop_edge(boxes, crop_box, [0, 0, orig_w, orig_h])
                if not bool(keep.all()):
                    binary, low, stability, iou_c, boxes, areas = binary[keep], low[keep], stability[keep], \
                        iou_c[keep], boxes[keep], areas[keep]
                    pts_c = pts_c[keep.cpu().numpy()]
                if len(low):
                    out.add(low, binary, iou_c, stability, pts_c, boxes, areas)
        out.finish()
        return out

    # ------------------------------------------------------------------ min_mask_region_area
    def _remove_small_regions(self, result: SamMasks) -> SamMasks:
        """SAM's ``postprocess_small_regions``: holes then islands smaller than
        ``min_mask_region_area`` removed mask by mask (SAM's own cv2 routine), new boxes, then
        box NMS that prefers unchanged masks; changed masks are kept as packed bits."""
        from segment_anything.utils.amg import batched_mask_to_box, remove_small_regions
        from torchvision.ops.boxes import batched_nms

        s = self.settings
        area = int(s.min_mask_region_area)
        h, w = result.image_size
        n = len(result)
        scores = np.zeros(n, np.float32)
        new_boxes = np.zeros((n, 4), np.int64)
        changed: Dict[int, np.ndarray] = {}
        for start, part in result.iter_masks():
            for j, mask in enumerate(part):
                i = start + j
                mask, holes = remove_small_regions(mask, area, mode="holes")
                mask, islands = remove_small_regions(mask, area, mode="islands")
                scores[i] = float(not holes and not islands)
                new_boxes[i] = batched_mask_to_box(torch.as_tensor(mask)[None])[0].numpy()
                if holes or islands:
                    changed[i] = np.packbits(mask.ravel())
        keep = batched_nms(torch.as_tensor(new_boxes).float(), torch.as_tensor(scores), torch.zeros(n),
                           iou_threshold=max(s.box_nms_thresh, s.crop_nms_thresh)).cpu().numpy()
        boxes, areas = result.boxes.copy(), result.areas.copy()
        for i in changed:
            boxes[i] = new_boxes[i]
            areas[i] = int(np.unpackbits(changed[i], count=h * w).sum())
        base = result.build_masks

        def build(index: np.ndarray) -> np.ndarray:
            original = keep[index]
            out = base(original)
            for row, i in enumerate(original.tolist()):
                if i in changed:
                    out[row] = np.unpackbits(changed[i], count=h * w).view(bool).reshape(h, w)
            return out

        return SamMasks(result.image_size, boxes[keep], result.predicted_iou[keep], result.stability_score[keep],
                        result.point_coords[keep], result.crop_boxes[keep], areas[keep], result.output_mode, build,
                        chunk=result.chunk)


def _subset(result: SamMasks, index: np.ndarray) -> SamMasks:
    base = result.build_masks
    return SamMasks(result.image_size, result.boxes[index], result.predicted_iou[index],
                    result.stability_score[index], result.point_coords[index], result.crop_boxes[index],
                    result.areas[index], result.output_mode, lambda sel: base(index[sel]), chunk=result.chunk)


def automatic_masks(context: Any, provider: str = "sam", settings: Optional[AutomaticMaskSettings] = None,
                    **knobs: Any) -> SamMasks:
    """The automatic masks of ``context``'s image with the SAM provider ``provider``, computed
    once per image and settings and shared through ``context.shared`` (the ``sam_automatic``
    proposals, SAM voting and phrase prompts of one image all get the same :class:`SamMasks`).
    Crop 0 reuses the provider's shared image embedding."""
    providers = getattr(context, "providers", {}) or {}
    sam_provider = providers.get(provider)
    if sam_provider is None or not hasattr(sam_provider, "embedding"):
        found = sorted(n for n, p in providers.items() if hasattr(p, "embedding"))
        raise KeyError(f"automatic SAM masks read the SAM provider {provider!r}, which this context does not have "
                       f"(SAM providers: {found or 'none'}): build the segmenter with "
                       f"features=dict({provider}=dict(type='sam', ...))")
    if settings is None:
        settings = AutomaticMaskSettings(**knobs)
    elif knobs:
        raise TypeError("give settings= or knobs, not both")
    if context.image is None:
        raise ValueError("automatic SAM masks run on the uint8 image, which this context does not hold")
    key = ("sam_automatic", id(sam_provider), settings.key())

    def compute() -> SamMasks:
        generator = AutomaticMaskGenerator(sam_provider.sam, settings)
        return generator.generate(context.image, embedding=sam_provider.embedding(context))

    return context.shared(key, compute)
