"""Segment-anything inside ovdense: building SAM from local weights, one image embedding per
image shared by every SAM stage, prompted masks and automatic masks.

* :func:`build_sam` - segment-anything's registry (``vit_b``/``vit_l``/``vit_h``) or a small
  model described by a JSON file (the shipped tiny SAM), weights from a local file.
* :class:`SamImageEmbedding`, :func:`embed_image`, :func:`predict_masks` - what
  ``SamPredictor.set_image`` / ``predict_torch`` compute, as functions of a ``Sam`` module.
* :class:`AutomaticMaskGenerator` - ``SamAutomaticMaskGenerator``'s masks (same knobs, same
  results), faster; :func:`automatic_masks` shares them per image through the context.
"""
from .automatic import AutomaticMaskGenerator, AutomaticMaskSettings, SamMasks, automatic_masks
from .model import SAM_MODEL_TYPES, build_sam
from .predict import SamImageEmbedding, embed_image, predict_masks, upscale_masks

__all__ = ["SAM_MODEL_TYPES", "build_sam", "SamImageEmbedding", "embed_image", "predict_masks", "upscale_masks",
           "AutomaticMaskGenerator", "AutomaticMaskSettings", "SamMasks", "automatic_masks"]
