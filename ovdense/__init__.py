"""ovdense: open-vocabulary dense prediction with training-free CLIP heads."""
from .backbones import BlockView, CLIPBackbone, WeightsNotFoundError
from .heads import Head, build_head, list_heads
from .io import ImageLoadError, load_image
from .predictor import ImageFeatures, OVSegmenter
from .text import Vocabulary, build_vocabulary
from .types import Detections, SegmentationResult

__version__ = "0.1.0"

__all__ = ["BlockView", "CLIPBackbone", "Detections", "Head", "ImageFeatures", "ImageLoadError", "OVSegmenter",
           "SegmentationResult", "Vocabulary", "WeightsNotFoundError", "build_head", "build_vocabulary",
           "list_heads", "load_image", "__version__"]
