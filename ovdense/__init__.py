"""ovdense: open-vocabulary dense prediction with CLIP heads, SAM masks and DINO-style features."""
from .backbones import BlockView, CLIPBackbone, WeightsFormatError, WeightsNotFoundError
from .decode import Decoder
from .detector import Detector
from .fixed_size import FixedSizePredictor
from .geometry import CameraIntrinsics, backproject
from .heads import Head, build_head, list_heads
from .io import ImageLoadError, load_image
from .ops.windows import SlidingWindows
from .predictor import OVSegmenter
from .preprocess import Preprocessor
from .prompting import Prompter
from .proposals import build_instances
from .references import ReferencePrototypes
from .structures import (UNLABELLED, ContextBand, DenseFeatures, Detections, EncodedVocabulary, ImageContext,
                         ImageFeatures, SegmentationResult)
from .text import Vocabulary, build_vocabulary

__version__ = "0.2.0"

__all__ = ["BlockView", "CLIPBackbone", "ContextBand", "Decoder", "DenseFeatures", "Detections", "Detector",
           "EncodedVocabulary", "FixedSizePredictor", "Head", "ImageContext", "ImageFeatures", "ImageLoadError",
           "OVSegmenter",
           "Preprocessor", "Prompter", "ReferencePrototypes", "SegmentationResult", "SlidingWindows", "UNLABELLED",
           "Vocabulary",
           "WeightsFormatError", "WeightsNotFoundError", "build_head", "build_instances", "build_vocabulary",
           "list_heads", "load_image", "CameraIntrinsics", "backproject", "__version__"]


# Subpackages and modules reachable as attributes (``ovdense.evaluation``) without importing
# them all in ``import ovdense``: the first access imports ``ovdense.<name>``.
_LAZY_SUBMODULES = frozenset({
    "apps", "assets", "backbones", "bench", "cli", "config", "datasets", "decode", "distributed", "evaluation",
    "detector", "features", "heads", "io", "ops", "predictor", "preprocess", "prompting", "proposals", "refine",
    "references", "registry", "rules", "runtime", "sam", "scorers", "select",
    "structures", "synthetic", "text", "viz",
})


def __getattr__(name: str):
    if name in _LAZY_SUBMODULES:
        import importlib

        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{name}":  # a dependency of the subpackage is missing: say which
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _LAZY_SUBMODULES)
