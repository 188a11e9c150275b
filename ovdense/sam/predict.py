"""What ``SamPredictor`` computes, as functions of a ``Sam`` module and one image embedding.

:func:`embed_image` equals ``SamPredictor.set_image`` (the long side resized to the encoder's
input with ``ResizeLongestSide``, SAM's normalisation and padding, the image encoder);
:func:`predict_masks` equals ``SamPredictor.predict_torch`` for a batch of prompts (point
and box coordinates in the original image's pixels); :func:`upscale_masks` is
``Sam.postprocess_masks``. Masks stay low-resolution logits until a caller upscales them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch


@dataclass(frozen=True)
class SamImageEmbedding:
    """SAM's image embedding of one image (or one crop of it).

    Attributes:
        features: ``[1, C, h, w]`` image-encoder output (the padded square input's grid).
        input_size: ``(H', W')`` of the resized image inside the padded encoder input.
        original_size: ``(H, W)`` of the image the embedding was computed from.
    """

    features: torch.Tensor
    input_size: Tuple[int, int]
    original_size: Tuple[int, int]

    def valid_features(self) -> torch.Tensor:
        """``[1, C, h', w']``: the embedding cells that cover the image (padding cut; a
        partially covered cell is kept)."""
        _, _, h, w = self.features.shape
        side = max(self.input_size)
        rows = -(-self.input_size[0] * h // side)
        cols = -(-self.input_size[1] * w // side)
        return self.features[:, :, :rows, :cols]


def _resize_longest_side(sam: torch.nn.Module):
    from segment_anything.utils.transforms import ResizeLongestSide

    return ResizeLongestSide(sam.image_encoder.img_size)


def embed_image(sam: torch.nn.Module, image: np.ndarray) -> SamImageEmbedding:
    """SAM's embedding of a uint8 RGB image ``(H, W, 3)``, exactly as ``SamPredictor.set_image``."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"embed_image expects a uint8 RGB image (H, W, 3), got {image.dtype} {image.shape}")
    resized = _resize_longest_side(sam).apply_image(image)
    device = sam.pixel_mean.device
    x = torch.as_tensor(resized, device=device).permute(2, 0, 1).contiguous()[None]
    with torch.no_grad():
        features = sam.image_encoder(sam.preprocess(x))
    return SamImageEmbedding(features, (int(x.shape[-2]), int(x.shape[-1])), (int(image.shape[0]), int(image.shape[1])))


def predict_masks(sam: torch.nn.Module, embedding: SamImageEmbedding, point_coords: Optional[torch.Tensor] = None,
                  point_labels: Optional[torch.Tensor] = None, boxes: Optional[torch.Tensor] = None,
                  mask_input: Optional[torch.Tensor] = None,
                  multimask_output: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
    """Low-resolution mask logits ``[B, M, 256, 256]`` and predicted IoUs ``[B, M]`` for ``B``
    prompts (``M`` = 3 with ``multimask_output``, else 1), as ``SamPredictor.predict_torch``.

    Args:
        point_coords: ``[B, N, 2]`` (x, y) in the original image's pixels; ``point_labels``
            ``[B, N]`` (1 foreground, 0 background).
        boxes: ``[B, 4]`` xyxy in the original image's pixels.
        mask_input: ``[B, 1, 256, 256]`` low-res logits of an earlier call.
    """
    transform = _resize_longest_side(sam)
    device = embedding.features.device
    points = None
    if point_coords is not None:
        if point_labels is None:
            raise ValueError("point_coords need point_labels (1 foreground, 0 background)")
        coords = transform.apply_coords_torch(point_coords.to(device), embedding.original_size)
        points = (coords, point_labels.to(device))
    if boxes is not None:
        boxes = transform.apply_boxes_torch(boxes.to(device), embedding.original_size)
    with torch.no_grad():
        sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        low_res, iou = sam.mask_decoder(image_embeddings=embedding.features,
                                        image_pe=sam.prompt_encoder.get_dense_pe(),
                                        sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                        multimask_output=multimask_output)
    return low_res, iou


def upscale_masks(sam: torch.nn.Module, embedding: SamImageEmbedding, low_res: torch.Tensor) -> torch.Tensor:
    """Low-res logits ``[B, M, 256, 256]`` -> logits ``[B, M, H, W]`` at the original size
    (``Sam.postprocess_masks``: bilinear to the padded input, padding cut, bilinear to ``(H, W)``)."""
    with torch.no_grad():
        return sam.postprocess_masks(low_res, embedding.input_size, embedding.original_size)
