"""ovdense: open-vocabulary dense prediction with CLIP heads, SAM masks and DINO-style features."""
from .backbones import BlockView, CLIPBackbone, WeightsNotFoundError
from .decode import Decoder
from .heads import Head, build_head, list_heads
from .io import ImageLoadError, load_image
from .ops.windows import SlidingWindows
from .predictor import ImageFeatures, OVSegmenter
from .preprocess import Preprocessor
from .proposals import build_instances
from .structures import UNLABELLED, DenseFeatures, Detections, EncodedVocabulary, SegmentationResult
from .text import Vocabulary, build_vocabulary

__version__ = "0.2.0"

__all__ = ["BlockView", "CLIPBackbone", "Decoder", "DenseFeatures", "Detections", "EncodedVocabulary", "Head",
           "ImageFeatures", "ImageLoadError", "OVSegmenter", "Preprocessor", "SegmentationResult", "SlidingWindows",
           "UNLABELLED", "Vocabulary", "WeightsNotFoundError", "build_head", "build_instances", "build_vocabulary",
           "list_heads", "load_image", "__version__"]
