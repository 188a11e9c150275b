"""Training the trainable heads with mmengine's ``Runner`` (``tools/train_head.py``; configs/train/).

An application package: it uses the library, the library never imports it. Its entries are registered
in ``ovdense.registry``'s ``TRAINING_MODELS``, ``DATASETS``, ``HOOKS`` and ``MODEL_WRAPPERS`` (which name
this package as their location), so a Runner config with ``default_scope='ovdense'`` builds them by name.

* :mod:`.data`: ``ImageFolder`` (unlabelled, recursive) and ``WorldV2Images`` (synthetic scenes).
* :mod:`.captions`: ``COCOCaptions`` (a COCO-captions JSON and its images) and ``WorldV2Captions``
  (synthetic scenes with their captions).
* :mod:`.talk2dino`: ``Talk2DINOTrainer``, Talk2DINO's text projection by InfoNCE against frozen DINOv2.
* :mod:`.dinoiser`: ``DINOiserTrainer``, CLIP-DINOiser's two convolutions against a frozen DINO teacher.
* :mod:`.hooks`: ``HeadExportHook`` (official ``last.pt`` layout), ``DeviceAwareDDP`` (CPU torchrun) and
  ``HeadRunner`` (mmengine's Runner, resuming under torch >= 2.6).
"""
from .captions import COCOCaptions, WorldV2Captions
from .data import ImageFolder, WorldV2Images, find_images
from .dinoiser import DINOiserTrainer
from .hooks import DeviceAwareDDP, HeadExportHook, HeadRunner, save_head_checkpoint, unwrap
from .talk2dino import Talk2DINOTrainer

__all__ = ["COCOCaptions", "DINOiserTrainer", "DeviceAwareDDP", "HeadExportHook", "HeadRunner", "ImageFolder",
           "Talk2DINOTrainer", "WorldV2Captions", "WorldV2Images", "find_images", "save_head_checkpoint", "unwrap"]
