# Trident (DINO ViT-B/16 + SAM ViT-B), ViT-B/16, COCO-Object: 41.1 README mIoU (with --sam_refine).
# Source: YuHengsss/Trident configs/cfg_coco_object.py + configs/base_config.py + trident.py (--sam_refine on: decoder rule trident_sam_refine).
# Paper: Trident: "Harnessing CLIP, DINO and SAM for Open Vocabulary Segmentation" (Yu et al., ICCV 2025).
#   Official code: https://github.com/YuHengsss/Trident.
# Weights: local DINO ViT-B/16 and SAM ViT-B checkpoints (see _base_/trident.py); other paths with
#   --cfg-options features.dino.weights=... features.sam.checkpoint=...
_base_ = ['../_base_/trident.py']

decode = dict(background_threshold=0.25)
# Trident's configs/cls_coco_object.txt equals ProxyCLIP's (17-word background).
classes = dict(names='../names/cls_coco_object_proxyclip.txt', background='first')
dataset_type = 'coco_object'
