# Trident (DINO ViT-B/16 + SAM ViT-B), ViT-B/16, VOC20: 84.5 README mIoU (with --sam_refine).
# Source: YuHengsss/Trident configs/cfg_voc20.py + configs/base_config.py + trident.py (--sam_refine on: decoder rule trident_sam_refine).
# Paper: Trident: "Harnessing CLIP, DINO and SAM for Open Vocabulary Segmentation" (Yu et al., ICCV 2025).
#   Official code: https://github.com/YuHengsss/Trident.
# Weights: local DINO ViT-B/16 and SAM ViT-B checkpoints (see _base_/trident.py); other paths with
#   --cfg-options features.dino.weights=... features.sam.checkpoint=...
_base_ = ['../_base_/trident.py']

preprocess = dict(short_side=336)
head = dict(cos_fac=0.0)
windows = dict(stride=112)
# Trident's configs/cls_voc20.txt equals ProxyCLIP's (plain 'person', 'tvmonitor').
classes = dict(names='../names/cls_voc20_proxyclip.txt', background=None)
dataset_type = 'voc20'
